"""End-to-end conformance: every committed TF.js fixture (made with real TensorFlow + the
tensorflowjs converter by tools/make_tfjs_fixtures.py) must reproduce TensorFlow's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tfjs"

# case name -> reason. Every entry is a known gap, not a tolerance tweak.
KNOWN_GAPS: dict[str, str] = {}


def _cases():
    if not FIXTURES.is_dir():
        return []
    return sorted(p.name for p in FIXTURES.iterdir() if (p / "model.json").is_file() and (p / "io.npz").is_file())


def _ordered(arrays, prefix):
    keys = sorted((k for k in arrays.files if k.startswith(prefix)), key=lambda k: int(k[len(prefix):]))
    return [arrays[k] for k in keys]


def check_case(folder: Path):
    meta = json.loads((folder / "meta.json").read_text())
    arrays = np.load(folder / "io.npz")
    inputs = _ordered(arrays, "input_")
    expected = _ordered(arrays, "output_")
    model = app.load_model(folder)
    got = model.predict(inputs if len(inputs) > 1 else inputs[0])
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(expected)
    for index, (g, e) in enumerate(zip(got, expected)):
        assert g.dtype == np.float32
        assert g.shape == e.shape, f"output {index}: shape {g.shape} != TensorFlow's {e.shape}"
        tolerance = 1e-4 if meta.get("kind") == "probabilities" else 1e-4 * max(1.0, float(np.max(np.abs(e))))
        diff = float(np.max(np.abs(g - e))) if e.size else 0.0
        assert diff <= tolerance, f"output {index}: max |diff| {diff:.3g} > {tolerance:.3g} ({meta.get('description')})"
    return model


@pytest.mark.parametrize("case", _cases() or [pytest.param("none", marks=pytest.mark.skip(reason=f"no fixtures in {FIXTURES}"))])
def test_fixture_matches_tensorflow(case):
    if case in KNOWN_GAPS:
        pytest.skip(KNOWN_GAPS[case])
    check_case(FIXTURES / case)
