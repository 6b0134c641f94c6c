"""End to end: every committed TF.js fixture (outputs made by real TensorFlow, see
tools/make_tfjs_fixtures.py) run with the SIMD GEMM hook *and* the SIMD conv2d /
depthwise_conv2d / scale_shift kernels installed must still match TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tfjs"


def _cases():
    if not FIXTURES.is_dir():
        return []
    return sorted(p.name for p in FIXTURES.iterdir() if (p / "model.json").is_file() and (p / "io.npz").is_file())


@pytest.fixture(scope="module")
def simd_engine(native_library):
    kernels = pytest.importorskip("app.kernels", reason="engine kernels (app/kernels) not present")
    from app import fastpath

    fastpath.select_backend(("simd",), kernel_path=native_library)
    fastpath.install()
    originals = {op: kernels.KERNELS[op] for op in fastpath.SIMD_OPS}
    for op, kernel in fastpath.conv_kernels(originals).items():
        kernels.replace_kernel(op, kernel)
    yield fastpath
    for op in originals:
        kernels.replace_kernel(op, None)
    fastpath.uninstall()
    fastpath.select_backend(("numpy",))


@pytest.mark.parametrize("case", _cases() or [pytest.param("none", marks=pytest.mark.skip(reason=f"no fixtures in {FIXTURES}"))])
def test_fixture_matches_tensorflow_on_simd_kernels(simd_engine, case):
    import app

    folder = FIXTURES / case
    meta = json.loads((folder / "meta.json").read_text())
    arrays = np.load(folder / "io.npz")
    inputs = [arrays[k] for k in sorted((k for k in arrays.files if k.startswith("input_")), key=lambda k: int(k[6:]))]
    expected = [arrays[k] for k in sorted((k for k in arrays.files if k.startswith("output_")), key=lambda k: int(k[7:]))]
    model = app.load_model(folder)
    got = model.predict(inputs if len(inputs) > 1 else inputs[0])
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(expected)
    for index, (g, e) in enumerate(zip(got, expected)):
        assert g.shape == e.shape and g.dtype == np.float32
        # the same tolerance the engine's own conformance test uses for the numpy kernels
        tolerance = 1e-4 if meta.get("kind") == "probabilities" else 1e-4 * max(1.0, float(np.max(np.abs(e))))
        diff = float(np.max(np.abs(g - e))) if e.size else 0.0
        assert diff <= tolerance, f"output {index}: max |diff| {diff:.3g} > {tolerance:.3g} ({meta.get('description')})"


def test_fallbacks_during_the_fixture_run_are_only_unsupported_variants(simd_engine):
    """Runs after the fixtures (same module): the engine kernels took over only for variants the C
    kernels do not implement, never because a supported call was rejected."""
    if not _cases():
        pytest.skip(f"no fixtures in {FIXTURES}")
    allowed = ("activation must be one of", "(multiplier 1)", "must be float32 with")
    unexpected = {reason: n for reason, n in simd_engine.backend_report()["fallbacks"].items()
                  if not any(marker in reason for marker in allowed)}
    assert unexpected == {}
