"""Operator input / output counts are checked at load time (app.tflite.loader.OPERATOR_ARITY), so a
kernel or the IR converter never indexes past an operator's tensor lists (regression: a
FULLY_CONNECTED with 1 input raised IndexError in to_ir, tests/hostile/test_reproducers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import ModelFormatError
from app.tflite import Interpreter, load
from app.tflite.loader import OPERATOR_ARITY, parse_model
from app.tflite.ops import HANDLERS
from app.tflite.schema import BUILTIN_CODES

from . import fbbuild as fb

FLOAT32 = 0
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"


def _one_op_model(builtin: str, inputs, outputs, tensor_count: int = 4) -> bytes:
    """One operator over ``tensor_count`` float [1, 4] run-time tensors; model input 0, output = the
    operator's first output."""
    tensors = [fb.tensor([1, 4], FLOAT32, 0, f"t{i}") for i in range(tensor_count)]
    return fb.build(fb.tflite_model(
        opcodes=[fb.opcode(BUILTIN_CODES[builtin])], tensors=tensors,
        operators=[fb.operator(0, inputs, outputs)], inputs=[0], outputs=[outputs[0] if outputs else 1],
        buffers=[fb.buffer()]))


def test_every_runnable_builtin_has_an_arity():
    assert sorted(set(HANDLERS) - set(OPERATOR_ARITY)) == []


@pytest.mark.parametrize("builtin, inputs, outputs, message", [
    ("FULLY_CONNECTED", [0], [1], r"FULLY_CONNECTED expects 2 to 3 input tensor\(s\), received 1"),
    ("ADD", [0, 1, 2], [3], r"ADD expects 2 input tensor\(s\), received 3"),
    ("SOFTMAX", [0], [1, 2], r"SOFTMAX expects 1 output tensor\(s\), received 2"),
    ("CONCATENATION", [], [1], r"CONCATENATION expects at least 1 input tensor\(s\), received 0"),
    ("STRIDED_SLICE", [0, 1, 2], [3], r"STRIDED_SLICE expects 4 input tensor\(s\), received 3"),
    ("CONV_2D", [0, -1, 2], [3], r"omits its required input\(s\) \[1\] \(index -1\); CONV_2D needs its first 2"),
])
def test_wrong_operator_arity_is_a_format_error(builtin, inputs, outputs, message):
    data = _one_op_model(builtin, inputs, outputs)
    pattern = rf"arity.tflite: subgraph 0 operator #0 \({builtin}\).*{message}"
    with pytest.raises(ModelFormatError, match=pattern):
        load(data, "arity.tflite")
    with pytest.raises(ModelFormatError, match=pattern):
        Interpreter(model_content=data, model_name="arity.tflite")


def test_optional_trailing_input_may_be_omitted():
    """An omitted bias (-1) is legal for FULLY_CONNECTED (and counts as its third input)."""
    info = parse_model(_one_op_model("FULLY_CONNECTED", [0, 1, -1], [2]), "no_bias.tflite")
    assert info.subgraphs[0].operators[0].inputs == (0, 1, -1)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*/model.tflite")), ids=lambda p: p.parent.name)
def test_committed_fixtures_pass_the_arity_check(path):
    # The interpreter is what checks operator arity; load() would also refuse multi-input models.
    Interpreter(model_content=path.read_bytes(), model_name=path.parent.name + ".tflite")
