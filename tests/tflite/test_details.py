"""Detail dicts and signature lists against LiteRT's, key by key, on every committed fixture.

``tools/make_tflite_fixtures.py`` stored LiteRT's ``get_input_details()``, ``get_output_details()``
(in three states: right after ``allocate_tensors()``, after resizing the inputs to the fixture's
shapes and allocating again, after invoking on the fixture's inputs) and ``get_signature_list()``
in each case's ``meta.json["litert_details"]`` (arrays as lists, dtypes as names). Nothing here
is derived from app.tflite.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.tflite import Interpreter
from .details_protocol import drive_details

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "model.tflite").exists()) if FIXTURES.exists() else []
STATES = ("allocated", "resized", "invoked")
KEYS = {"name", "index", "shape", "shape_signature", "dtype", "quantization", "quantization_parameters",
        "sparsity_parameters"}


def _litert(case: str) -> dict:
    meta = json.loads((FIXTURES / case / "meta.json").read_text())
    assert "litert_details" in meta, f"{case}: meta.json has no litert_details; rerun tools/make_tflite_fixtures.py"
    return meta["litert_details"]


def details_states(model_path, inputs: list[np.ndarray]) -> dict:
    """Our interpreter driven through the calls the generator made on LiteRT (litert_details)."""
    return drive_details(Interpreter(model_path=model_path), inputs)


def _ours(case: str) -> dict:
    io = np.load(FIXTURES / case / "io.npz")
    inputs = [io[name] for name in sorted(io.files, key=lambda n: int(n.rsplit("_", 1)[1])) if name.startswith("input_")]
    return details_states(FIXTURES / case / "model.tflite", inputs)


# After resize_tensor_input + allocate_tensors, LiteRT prepares operators in order and so knows
# the new output shapes, up to its first operator with a dynamic output (a RESHAPE of a computed
# shape, a SLICE of an input with a -1 dimension, ...), after which it reports the old ones
# until invoke. Vitrine plans shapes the same way (app/tflite/shapes.py): resized output shapes are
# compared like the others, and on their own in test_resized_output_shapes.


def _compare_state(ours: dict, theirs: dict, label: str, state: str) -> None:
    for kind in ("inputs", "outputs"):
        assert len(ours[state][kind]) == len(theirs[state][kind]), f"{label} {state}: {kind} count"
        for position, (mine, litert) in enumerate(zip(ours[state][kind], theirs[state][kind])):
            _compare(mine, litert, f"{label} {state} {kind}[{position}]")


def assert_states_match(ours: dict, theirs: dict, label: str) -> None:
    """Every detail dict of every state, key by key, and the signature list."""
    for state in STATES:
        _compare_state(ours, theirs, label, state)
    assert ours["signature_list"] == theirs["signature_list"], label


def _compare(ours: dict, theirs: dict, where: str, shape: bool = True) -> None:
    assert set(ours) == KEYS and set(theirs) == KEYS, f"{where}: keys {sorted(ours)} vs LiteRT {sorted(theirs)}"
    assert ours["name"] == theirs["name"], where
    assert ours["index"] == theirs["index"], f"{where} ({theirs['name']})"
    for key in ("shape", "shape_signature") if shape else ("shape_signature",):
        assert isinstance(ours[key], np.ndarray) and ours[key].dtype == np.int32, f"{where}: {key} {ours[key]!r}"
        assert ours[key].tolist() == theirs[key], f"{where} ({theirs['name']}): {key} {ours[key].tolist()} != {theirs[key]}"
    assert isinstance(ours["dtype"], type) and issubclass(ours["dtype"], np.generic), where
    assert np.dtype(ours["dtype"]).name == theirs["dtype"], where
    scale, zero_point = ours["quantization"]
    assert isinstance(ours["quantization"], tuple) and [scale, zero_point] == theirs["quantization"], where
    assert type(scale) is float and type(zero_point) is int, where
    params, their_params = ours["quantization_parameters"], theirs["quantization_parameters"]
    assert set(params) == set(their_params), where
    assert params["scales"].dtype == np.float32 and params["zero_points"].dtype == np.int32, where
    assert params["scales"].tolist() == their_params["scales"], where
    assert params["zero_points"].tolist() == their_params["zero_points"], where
    assert params["quantized_dimension"] == their_params["quantized_dimension"], where
    assert ours["sparsity_parameters"] == theirs["sparsity_parameters"], where


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("case", CASES)
def test_details_match_litert(case, state):
    _compare_state(_ours(case), _litert(case), case, state)


def _litert_propagated(case: str) -> bool:
    """Whether LiteRT's outputs after resize + allocate_tensors already had new shapes."""
    details = json.loads((FIXTURES / case / "meta.json").read_text()).get("litert_details")
    return details is not None and any(
        after["shape"] != before["shape"]
        for after, before in zip(details["resized"]["outputs"], details["allocated"]["outputs"]))


def test_some_fixture_propagates_resized_shapes():
    """The fixtures exercise both sides: LiteRT planned new output shapes for some cases, and
    stopped at a dynamic operator (old shapes until invoke) for others."""
    propagated = [case for case in CASES if _litert_propagated(case)]
    assert propagated and len(propagated) < len(CASES)


@pytest.mark.parametrize("case", CASES)
def test_resized_output_shapes(case):
    ours, theirs = _ours(case)["resized"]["outputs"], _litert(case)["resized"]["outputs"]
    assert [d["shape"].tolist() for d in ours] == [d["shape"] for d in theirs]


@pytest.mark.parametrize("case", CASES)
def test_signature_list_matches_litert(case):
    assert _ours(case)["signature_list"] == _litert(case)["signature_list"]
