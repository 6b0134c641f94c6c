"""Shape planning at allocate_tensors() (app/tflite/shapes.py), beyond the LiteRT comparison of
test_details.py: a planned shape is never contradicted by invoke, planning stops where LiteRT's
Prepare does, and an operator without a rule leaves its outputs (and what reads them) unplanned."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from app.tflite import Interpreter
from app.tflite.loader import parse_model
from app.tflite.shapes import plan_shapes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"
MODELS = sorted(p for p in FIXTURES.glob("*/model.tflite")) + sorted(
    p for p in (FIXTURES / "page").glob("demo_*.tflite"))


def _sub(case: str):
    return parse_model((FIXTURES / case / "model.tflite").read_bytes()).subgraphs[0]


def _inputs(interp: Interpreter, rng) -> None:
    for d in interp.get_input_details():
        dtype = np.dtype(d["dtype"])
        x = rng.integers(-5, 5, d["shape"]) if dtype.kind in "iu" else rng.standard_normal(d["shape"])
        interp.set_tensor(d["index"], x.astype(dtype))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("path", MODELS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_planned_shapes_match_invoke(path, batch):
    interp = Interpreter(model_path=path)
    sub = interp.model_info.subgraphs[0]
    interp.allocate_tensors()
    # with the file's input shapes, planning gives the file's shapes
    assert {i: tuple(sub.tensors[i].shape) for i in interp._exec.planned} == interp._exec.planned
    for d in interp.get_input_details():
        shape = list(d["shape"])
        if -1 in d["shape_signature"][:1]:
            shape[0] = batch
        interp.resize_tensor_input(d["index"], shape)
    interp.allocate_tensors()
    planned = dict(interp._exec.planned)
    before = {d["index"]: d["shape"].tolist() for d in interp.get_tensor_details()}
    _inputs(interp, np.random.default_rng(0))
    interp.invoke()
    after = {d["index"]: d["shape"].tolist() for d in interp.get_tensor_details()}
    assert planned, "nothing planned"
    for index, shape in planned.items():
        assert before[index] == list(shape) == after[index], sub.tensors[index].name
    assert interp._exec.planned == {}


def test_planning_stops_at_slice_of_unknown_dimension():
    """LiteRT postpones SLICE when its input has a -1 dimension: ops_float32's operator 8."""
    sub = _sub("ops_float32")
    planned = plan_shapes(sub, {sub.inputs[0]: (2, 6, 6, 4)})
    slice_op = next(op for op in sub.operators if op.name == "SLICE")
    assert all(i not in planned for op in sub.operators[slice_op.index:] for i in op.outputs)
    assert all(planned[i][0] == 2 for op in sub.operators[:slice_op.index] for i in op.outputs)


def test_planning_stops_at_reshape_of_computed_shape():
    sub = _sub("heads_int8")
    planned = plan_shapes(sub, {sub.inputs[0]: (2, 8, 8, 4)})
    reshape = next(op for op in sub.operators if op.name == "RESHAPE")
    assert planned[reshape.inputs[1]] == (2,)              # PACK before it: planned
    assert all(i not in planned for op in sub.operators[reshape.index:] for i in op.outputs)


def test_operator_without_rule_leaves_its_outputs_unplanned():
    sub = _sub("acts_float32")
    conv = next(op for op in sub.operators if op.name == "CONV_2D")
    reader = next(op for op in sub.operators if conv.outputs[0] in op.inputs)
    operators = [dataclasses.replace(op, name="NO_SUCH_OP") if op is conv else op for op in sub.operators]
    planned = plan_shapes(dataclasses.replace(sub, operators=operators),
                          {i: (2,) + tuple(sub.tensors[i].shape[1:]) for i in sub.inputs})
    assert conv.outputs[0] not in planned and reader.outputs[0] not in planned
    others = [i for op in sub.operators if op not in (conv, reader) for i in op.outputs]
    assert others and all(planned[i][0] == 2 for i in others)
