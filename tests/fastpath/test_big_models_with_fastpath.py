"""The big Keras Applications fixtures (tools/make_big_fixtures.py: real TensorFlow outputs) run
the way the site runs them: SIMD GEMM hook plus every SIMD kernel registered by
``app.kernels.install_fastpath_kernels`` (Winograd 3x3, pooling, prepared calls), and still
match TensorFlow at the engine's own tolerance. Slow: ``pytest -m slow tests/fastpath``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

BIG = Path(__file__).resolve().parents[2] / ".cache" / "fixtures" / "big"


def _cases():
    if not BIG.is_dir():
        return []
    return sorted(p.name for p in BIG.iterdir() if (p / "model.json").is_file() and (p / "io.npz").is_file())


@pytest.fixture(scope="module")
def site_engine(native_library):
    from app import fastpath
    from app import kernels

    fastpath.select_backend(("simd",), kernel_path=native_library)
    fastpath.install()
    installed = kernels.install_fastpath_kernels()
    yield fastpath, installed
    kernels.restore_kernels()
    fastpath.uninstall()
    fastpath.select_backend(("numpy",))


@pytest.mark.slow
@pytest.mark.parametrize("case", _cases() or [pytest.param(
    "none", marks=pytest.mark.skip(reason=f"no big fixtures in {BIG}; generate them with "
                                          "/opt/tfenv/bin/python tools/make_big_fixtures.py"))])
def test_big_model_on_simd_kernels_matches_tensorflow(site_engine, case):
    import app

    folder = BIG / case
    meta = json.loads((folder / "meta.json").read_text())
    arrays = np.load(folder / "io.npz")
    inputs = [arrays[k] for k in sorted((k for k in arrays.files if k.startswith("input_")), key=lambda k: int(k[6:]))]
    expected = [arrays[k] for k in sorted((k for k in arrays.files if k.startswith("output_")), key=lambda k: int(k[7:]))]
    model = app.load_model(folder)
    for attempt in range(2):  # the second run goes through the prepared calls
        got = model.predict(inputs if len(inputs) > 1 else inputs[0])
        got = got if isinstance(got, list) else [got]
        assert len(got) == len(expected)
        for index, (g, e) in enumerate(zip(got, expected)):
            assert g.shape == e.shape and g.dtype == np.float32
            tolerance = 1e-4 if meta.get("kind") == "probabilities" else 1e-4 * max(1.0, float(np.max(np.abs(e))))
            diff = float(np.max(np.abs(g - e))) if e.size else 0.0
            assert diff <= tolerance, (f"run {attempt + 1}, output {index}: max |diff| {diff:.3g} > {tolerance:.3g} "
                                       f"({meta.get('description')})")


@pytest.mark.slow
def test_big_models_fell_back_only_for_unsupported_variants(site_engine):
    """After the models (same module): numpy kernels ran only for what the C kernels lack."""
    if not _cases():
        pytest.skip(f"no big fixtures in {BIG}")
    fastpath, installed = site_engine
    assert {"conv2d", "depthwise_conv2d", "scale_shift", "max_pool2d", "avg_pool2d"} <= set(installed)
    allowed = ("activation must be one of", "(multiplier 1)", "must be float32 with")
    unexpected = {reason: n for reason, n in fastpath.backend_report()["fallbacks"].items()
                  if not any(marker in reason for marker in allowed)}
    assert unexpected == {}
