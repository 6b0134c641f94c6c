"""Axis / permutation values of float operators are range-checked when the model is converted to
the IR (regression: a CONCATENATION over rank-0 tensors raised ZeroDivisionError in to_ir, found by
a 10 000-example run of tests/fuzz on model_float.tflite)."""

from __future__ import annotations

import numpy as np
import pytest

from app.errors import ModelFormatError
from app.tflite import load
from app.tflite.schema import BUILTIN_CODES

from . import fbbuild as fb

FLOAT32, INT32 = 0, 2


def _model(builtin: str, input_shape, const: np.ndarray | None, output_shape, options=None) -> bytes:
    """x (run-time input) [, const] -> builtin -> y."""
    tensors = [fb.tensor(input_shape, FLOAT32, 0, "x")]
    buffers = [fb.buffer()]
    inputs = [0]
    if const is not None:
        buffers.append(fb.buffer(np.ascontiguousarray(const, np.int32).tobytes()))
        tensors.append(fb.tensor(list(const.shape), INT32, 1, "c"))
        inputs.append(1)
    tensors.append(fb.tensor(output_shape, FLOAT32, 0, "y"))
    operator = fb.operator(0, inputs, [len(tensors) - 1])
    return fb.build(fb.tflite_model(opcodes=[fb.opcode(BUILTIN_CODES[builtin])], tensors=tensors,
                                    operators=[operator], inputs=[0], outputs=[len(tensors) - 1],
                                    buffers=buffers))


@pytest.mark.parametrize("builtin, input_shape, const, message", [
    ("CONCATENATION", [], None, r"axis 0 is out of range for a rank-0 input"),
    ("MEAN", [1, 4, 4, 3], np.array([1, 7]), r"reduction axis 7 is out of range for a rank-4 input \(expected -4 to 3\)"),
    ("SUM", [], np.array([0]), r"reduction axis 0 is out of range for a rank-0 input"),
    ("EXPAND_DIMS", [1, 4], np.array([3]), r"axis 3 is out of range for a rank-2 input \(expected -3 to 2\)"),
    ("EXPAND_DIMS", [1, 4], np.array([1, 1]), r"axis must hold 1 value, got 2"),
    ("TRANSPOSE", [1, 4, 3], np.array([0, 2]), r"permutation \[0, 2\] is not a permutation of the 3 axes"),
])
def test_out_of_range_axes_are_format_errors(builtin, input_shape, const, message):
    data = _model(builtin, input_shape, const, [1])
    with pytest.raises(ModelFormatError, match=rf"axes.tflite: operator #0 \({builtin}\): {message}"):
        load(data, "axes.tflite")
