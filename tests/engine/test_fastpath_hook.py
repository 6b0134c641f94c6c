"""The engine with app.fastpath's SIMD conv kernels plugged in still matches TensorFlow."""

from __future__ import annotations

import pytest

from app.kernels import KERNELS, install_fastpath_kernels, restore_kernels

from .test_conformance import FIXTURES, _cases, check_case

CASES = [c for c in _cases() if "conv" in c or "depthwise" in c or "separable" in c or "classifier" in c]


@pytest.fixture(scope="module")
def fast_kernels():
    import shutil

    from tests.fastpath.conftest import KERNEL_CACHE, load_build_tool

    fastpath = pytest.importorskip("app.fastpath")
    if not any(shutil.which(c) for c in ("clang-16", "gcc", "cc")):
        pytest.skip("no C compiler (clang-16/gcc/cc) on PATH: cannot build csrc/ natively")
    # build the native library here: on a fresh clone nothing has built it before this module runs
    library = load_build_tool().build_kernels(KERNEL_CACHE, "native")
    backend = fastpath.select_backend(kernel_path=library)
    if not backend.name.startswith("simd"):
        pytest.skip(f"fastpath selected {backend.name!r}, not the SIMD kernels")
    numpy_conv = KERNELS["conv2d"]
    installed = install_fastpath_kernels()
    assert {"conv2d", "depthwise_conv2d"} <= set(installed)
    assert KERNELS["conv2d"] is not numpy_conv
    yield
    restore_kernels()
    assert KERNELS["conv2d"] is numpy_conv


@pytest.mark.parametrize("case", CASES or [pytest.param("none", marks=pytest.mark.skip(reason="no conv fixtures"))])
def test_fixture_matches_tensorflow_with_fastpath_kernels(fast_kernels, case):
    check_case(FIXTURES / case)


def test_unknown_fastpath_op_is_refused():
    pytest.importorskip("app.fastpath")
    with pytest.raises(KeyError, match=r"app.fastpath has no kernels for \['dense'\]"):
        install_fastpath_kernels(("dense",))
