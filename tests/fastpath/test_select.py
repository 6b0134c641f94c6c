"""Backend selection, the engine hook and the kernel build tool."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from app import fastpath
from app.fastpath import FastpathError


@pytest.fixture(autouse=True)
def restore_selection():
    yield
    fastpath.select_backend(("numpy",))
    try:
        fastpath.uninstall()
    except ImportError:
        pass


def test_simd_selected_first_when_library_present(native_library):
    backend = fastpath.select_backend(kernel_path=native_library)
    assert backend.name == "simd (vitrine_kernels.native.so)"
    assert fastpath.backend_name() == backend.name
    assert fastpath.backend_report() == {"backend": backend.name, "skipped": [], "fallbacks": {}}


def test_default_search_finds_the_cache_build(native_library, monkeypatch):
    monkeypatch.delenv(fastpath.LIBRARY_ENV, raising=False)
    assert native_library in fastpath.library_candidates()
    assert fastpath.select_backend().name.startswith("simd")


def test_missing_library_falls_back_with_reason(tmp_path):
    missing = tmp_path / "nope.so"
    backend = fastpath.select_backend(("simd", "numpy"), kernel_path=missing)
    assert backend.name == "numpy"
    assert fastpath.backend_report()["skipped"] == [f"simd: SIMD kernels: {missing} does not exist"]


def test_env_variable_overrides_search(tmp_path, monkeypatch):
    monkeypatch.setenv(fastpath.LIBRARY_ENV, str(tmp_path / "elsewhere.so"))
    assert fastpath.library_candidates()[0] == tmp_path / "elsewhere.so"


def test_unloadable_library_is_skipped_with_loader_message(tmp_path):
    bogus = tmp_path / "bogus.so"
    bogus.write_bytes(b"not a shared library")
    fastpath.select_backend(("simd", "numpy"), kernel_path=bogus)
    (reason,) = fastpath.backend_report()["skipped"]
    assert reason.startswith(f"simd: SIMD kernels: cannot load {bogus}:")


def test_kernel_bytes_are_written_and_loaded(native_library):
    backend = fastpath.select_backend(("simd",), kernel_bytes=native_library.read_bytes())
    digest = hashlib.sha256(native_library.read_bytes()).hexdigest()[:16]
    assert backend.path == f"/tmp/vitrine_kernels.{digest}.so"


def test_no_usable_backend_raises_with_all_reasons(tmp_path):
    with pytest.raises(FastpathError, match=r"no usable backend; simd: SIMD kernels: .* does not exist"):
        fastpath.select_backend(("simd",), kernel_path=tmp_path / "missing.so")


def test_unknown_backend_name_is_rejected():
    with pytest.raises(FastpathError, match=r"order must be a non-empty subset of \('simd', 'openblas', 'numpy'\), got \('gpu',\)"):
        fastpath.select_backend(("gpu",))


def test_sgemm_uses_selected_backend(native_library):
    fastpath.select_backend(kernel_path=native_library)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(fastpath.sgemm(a, b, np.ones(4, np.float32), "relu"),
                                  [[21.0, 24.0, 27.0, 30.0], [57.0, 69.0, 81.0, 93.0]])


def test_install_routes_engine_gemm_and_records_fallbacks(native_library):
    gemm_module = pytest.importorskip("app.kernels.gemm", reason="engine GEMM hook (app/kernels/gemm.py) not present")
    fastpath.select_backend(kernel_path=native_library)
    backend = fastpath.install()
    assert gemm_module.gemm_backend_name() == backend.name
    a = np.random.default_rng(0).standard_normal((37, 19)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((19, 11)).astype(np.float32)
    out = np.empty((37, 11), np.float32)
    assert gemm_module.gemm(a, b, out) is out
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
    # float64 operands are not the kernel's business: numpy computes them and the reason is counted
    gemm_module.gemm(a.astype(np.float64), b)
    assert fastpath.backend_report()["fallbacks"] == {
        "sgemm: a must be a 2-D float32 array, got float64 array of shape (37, 19)": 1
    }
    fastpath.uninstall()
    assert gemm_module.gemm_backend_name() == "numpy"


def test_build_is_deterministic(build_tool, tmp_path):
    targets = ["native"] + (["wasm"] if shutil.which("clang-16") and shutil.which("wasm-ld-16") else [])
    for target in targets:
        first = build_tool.build_kernels(tmp_path / "one", target).read_bytes()
        second = build_tool.build_kernels(tmp_path / "two", target).read_bytes()
        assert first == second, f"{target} build differs between two runs"
    if "wasm" in targets:
        wasm = (tmp_path / "one" / "vitrine_kernels.wasm.so").read_bytes()
        # an emscripten side module: wasm magic, then the dylink.0 custom section first
        assert wasm[:4] == b"\0asm" and wasm[8] == 0 and b"dylink.0" in wasm[:32]


def test_build_rejects_unknown_target(build_tool, tmp_path):
    with pytest.raises(build_tool.KernelBuildError, match=r"target must be one of \['native', 'wasm'\], got 'arm'"):
        build_tool.build_kernels(tmp_path, "arm")


def test_build_reports_missing_wasm_toolchain(build_tool, tmp_path, monkeypatch):
    monkeypatch.setattr(build_tool.shutil, "which", lambda name: None)
    with pytest.raises(build_tool.KernelBuildError, match=r"`clang-16` not found on PATH; install clang-16 and lld-16"):
        build_tool.build_kernels(tmp_path, "wasm")


def test_conv_kernels_use_simd_and_fall_back_with_reason(native_library):
    kernels = pytest.importorskip("app.kernels", reason="engine kernels (app/kernels) not present")
    fastpath.select_backend(kernel_path=native_library)
    wrapped = fastpath.conv_kernels(kernels.KERNELS)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 9, 9, 6)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 6, 10)).astype(np.float32)
    bias = rng.standard_normal(10).astype(np.float32)
    reference = kernels.KERNELS["conv2d"](x, kernel, bias, strides=(2, 2), pads="same", activation="relu")
    got = wrapped["conv2d"](x, kernel, bias, strides=(2, 2), pads="same", activation="relu")
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5)
    assert fastpath.backend_report()["fallbacks"] == {}
    # depthwise multiplier 2 is outside the C kernel: the engine kernel runs and the reason is counted
    dw_kernel = rng.standard_normal((3, 3, 6, 2)).astype(np.float32)
    got = wrapped["depthwise_conv2d"](x, dw_kernel, None, pads=(1, 1, 1, 1))
    np.testing.assert_array_equal(got, kernels.KERNELS["depthwise_conv2d"](x, dw_kernel, None, pads=(1, 1, 1, 1)))
    (reason,) = fastpath.backend_report()["fallbacks"]
    assert reason.startswith("depthwise_conv2d: kernel must be float32 [KH, KW, 6, 1] (multiplier 1)")


def test_conv_kernels_defer_to_engine_when_backend_is_not_simd():
    kernels = pytest.importorskip("app.kernels", reason="engine kernels (app/kernels) not present")
    fastpath.select_backend(("numpy",))
    calls = []
    wrapped = fastpath.conv_kernels({"conv2d": lambda *a, **k: calls.append("conv2d") or "engine",
                                     "depthwise_conv2d": kernels.KERNELS["depthwise_conv2d"]})
    assert wrapped["conv2d"](np.ones((1, 3, 3, 1), np.float32), np.ones((1, 1, 1, 1), np.float32)) == "engine"
    assert calls == ["conv2d"] and fastpath.backend_report()["fallbacks"] == {}


def test_add_library_to_wheel_updates_record(build_tool, tmp_path):
    import base64
    import zipfile

    wheel = tmp_path / "vitrine-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("app/__init__.py", "")
        archive.writestr("vitrine-0.1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")
        archive.writestr("vitrine-0.1.0.dist-info/RECORD", "app/__init__.py,,0\nvitrine-0.1.0.dist-info/RECORD,,\n")
    library = tmp_path / "lib.so"
    library.write_bytes(b"\0asm first")
    build_tool.add_library_to_wheel(wheel, library)
    library.write_bytes(b"\0asm second build")
    build_tool.add_library_to_wheel(wheel, library)  # replaces, never duplicates
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read("vitrine-0.1.0.dist-info/RECORD").decode().splitlines()
        shipped = archive.read("app/fastpath/vitrine_kernels.wasm.so")
    assert names.count("app/fastpath/vitrine_kernels.wasm.so") == 1
    assert names[-1] == "vitrine-0.1.0.dist-info/RECORD"
    assert shipped == b"\0asm second build"
    digest = base64.urlsafe_b64encode(hashlib.sha256(shipped).digest()).rstrip(b"=").decode()
    assert [row for row in record if row.startswith("app/fastpath/")] == [
        f"app/fastpath/vitrine_kernels.wasm.so,sha256={digest},{len(shipped)}"
    ]


def test_add_library_to_wheel_rejects_a_wheel_without_record(build_tool, tmp_path):
    import zipfile

    wheel = tmp_path / "broken.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("app/__init__.py", "")
    (tmp_path / "lib.so").write_bytes(b"\0asm")
    with pytest.raises(build_tool.KernelBuildError, match=r"broken.whl has 0 RECORD files, expected 1"):
        build_tool.add_library_to_wheel(wheel, tmp_path / "lib.so")


def _wasm_imports_exports(data: bytes):
    """Import (module, name) and export names of a wasm binary (minimal section reader)."""

    def leb(pos):
        result = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return result, pos

    def name(pos):
        length, pos = leb(pos)
        return data[pos:pos + length].decode(), pos + length

    imports, exports, pos = [], [], 8
    while pos < len(data):
        section, size_pos = data[pos], pos + 1
        size, body = leb(size_pos)
        if section == 2:
            count, p = leb(body)
            for _ in range(count):
                module, p = name(p)
                field, p = name(p)
                kind = data[p]
                p += 1
                if kind == 0:
                    _, p = leb(p)
                elif kind == 1:
                    flags = data[p + 1]
                    _, p = leb(p + 2)
                    if flags & 1:
                        _, p = leb(p)
                elif kind == 2:
                    flags = data[p]
                    _, p = leb(p + 1)
                    if flags & 1:
                        _, p = leb(p)
                else:
                    p += 2
                imports.append((module, field))
        elif section == 7:
            count, p = leb(body)
            for _ in range(count):
                field, p = name(p)
                _, p = leb(p + 1)
                exports.append(field)
        pos = body + size
    return imports, exports


def test_wasm_side_module_imports_no_libc(build_tool, tmp_path):
    """Pyodide resolves a side module's imports from its main module; ours needs none but memory
    and the PIC bases, so it cannot break on a libc symbol Pyodide does not export."""
    if not (shutil.which("clang-16") and shutil.which("wasm-ld-16")):
        pytest.skip("clang-16 / wasm-ld-16 not installed: cannot build the wasm side module")
    imports, exports = _wasm_imports_exports(build_tool.build_kernels(tmp_path, "wasm").read_bytes())
    assert sorted(imports) == [("env", "__memory_base"), ("env", "__stack_pointer"), ("env", "__table_base"),
                               ("env", "memory")]
    assert {"vk_abi_version", "vk_pack_b", "vk_sgemm", "vk_sgemm_packed", "vk_conv2d",
            "vk_depthwise_conv2d", "vk_packed_b_floats", "vk_scale_shift"} <= set(exports)


def test_conv_kernels_wrap_scale_shift_when_the_engine_offers_it(native_library):
    kernels = pytest.importorskip("app.kernels", reason="engine kernels (app/kernels) not present")
    fastpath.select_backend(kernel_path=native_library)
    wrapped = fastpath.conv_kernels(kernels.KERNELS)
    assert set(wrapped) == set(fastpath.SIMD_OPS)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 4, 4, 12)).astype(np.float32)
    scale, shift = rng.standard_normal(12).astype(np.float32), rng.standard_normal(12).astype(np.float32)
    np.testing.assert_array_equal(wrapped["scale_shift"](x, scale, shift, activation="relu"),
                                  kernels.KERNELS["scale_shift"](x, scale, shift, activation="relu"))
    # a fused activation the C kernel lacks goes to the engine kernel, counted
    np.testing.assert_array_equal(wrapped["scale_shift"](x, scale, shift, activation="sigmoid"),
                                  kernels.KERNELS["scale_shift"](x, scale, shift, activation="sigmoid"))
    assert fastpath.backend_report()["fallbacks"] == {
        "scale_shift: activation must be one of ['hard_silu', 'hard_swish', 'linear', 'relu', 'relu6'], got 'sigmoid'": 1
    }
