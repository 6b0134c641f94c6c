"""Hand-built flatbuffers (tests/tflite/fbbuild.py) for cases the converter never produces,
with hand-computed expected values."""

from __future__ import annotations

import numpy as np
import pytest

from app.errors import ModelFormatError, UnsupportedLayerError
from app.tflite import Interpreter
from app.tflite.schema import BUILTIN_CODES

from . import fbbuild as fb

FLOAT32 = 0
CONST = np.array([1.5, -2.0, 0.25, 4.0], np.float32)


def _add_model(const_buffer: fb.Table, tail: bytes = b"", custom: str | None = None) -> bytes:
    code = fb.opcode(BUILTIN_CODES["CUSTOM"], custom) if custom else fb.opcode(BUILTIN_CODES["ADD"])
    model = fb.tflite_model(
        opcodes=[code],
        tensors=[fb.tensor([1, 4], FLOAT32, 0, "x"), fb.tensor([4], FLOAT32, 2, "c"),
                 fb.tensor([1, 4], FLOAT32, 0, "y")],
        operators=[fb.operator(0, [0, 1], [2])],
        inputs=[0], outputs=[2],
        buffers=[fb.buffer(), fb.buffer(), const_buffer])
    return fb.build(model, tail=tail)


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    interp.set_tensor(0, x)
    interp.invoke()
    return interp.get_tensor(2)


def test_inline_buffer_add():
    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    np.testing.assert_array_equal(_run(_add_model(fb.buffer(CONST.tobytes())), x),
                                  [[2.5, 0.0, 3.25, 8.0]])


def test_external_buffer_after_flatbuffer():
    probe = _add_model(fb.buffer(offset=10**6, size=16))      # learn the flatbuffer's length
    offset = len(probe) + 16                                  # leave a gap, as writers align
    tail = bytes(16) + CONST.tobytes()
    data = _add_model(fb.buffer(offset=offset, size=16), tail=tail)
    assert len(data) == offset + 16
    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    np.testing.assert_array_equal(_run(data, x), [[2.5, 0.0, 3.25, 8.0]])


def test_external_buffer_out_of_range():
    data = _add_model(fb.buffer(offset=10**6, size=16))
    with pytest.raises(ModelFormatError, match=r"buffers\[2\] \(stored outside the flatbuffer\) at byte 1000000"):
        Interpreter(model_content=data)


def test_custom_operator_names_its_code():
    with pytest.raises(UnsupportedLayerError, match="is a custom operator 'MyFancyOp'"):
        Interpreter(model_content=_add_model(fb.buffer(CONST.tobytes()), custom="MyFancyOp"))


def test_invalid_utf8_name():
    model = fb.tflite_model(opcodes=[fb.opcode(0)], tensors=[], operators=[], inputs=[], outputs=[],
                            buffers=[fb.buffer()])
    data = bytearray(fb.build(model))
    where = bytes(data).index(b"main")
    data[where] = 0xFF
    with pytest.raises(ModelFormatError, match="is not valid UTF-8"):
        Interpreter(model_content=bytes(data))


def test_model_without_subgraph():
    model = fb.Table(fb.Scalar("I", 3), fb.Vector(None, []), fb.Vector(None, []))
    with pytest.raises(ModelFormatError, match="the model has no subgraph"):
        Interpreter(model_content=fb.build(model))


def test_scale_zero_point_count_mismatch():
    quant = fb.Table(None, None, fb.Vector("f", [0.1, 0.2]), fb.Vector("q", [0]))
    t = fb.Table(fb.Vector("i", [1, 2]), fb.Scalar("b", 9), fb.Scalar("I", 0), fb.String("q"), quant)
    model = fb.tflite_model(opcodes=[], tensors=[t], operators=[], inputs=[0], outputs=[0],
                            buffers=[fb.buffer()])
    with pytest.raises(ModelFormatError, match="has 2 scales but 1 zero points"):
        Interpreter(model_content=fb.build(model))


def test_operator_reads_unproduced_tensor():
    model = fb.tflite_model(
        opcodes=[fb.opcode(BUILTIN_CODES["ADD"])],
        tensors=[fb.tensor([1, 4], FLOAT32, 0, "x"), fb.tensor([1, 4], FLOAT32, 0, "ghost"),
                 fb.tensor([1, 4], FLOAT32, 0, "y")],
        operators=[fb.operator(0, [0, 1], [2])], inputs=[0], outputs=[2], buffers=[fb.buffer()])
    interp = Interpreter(model_content=fb.build(model))
    interp.allocate_tensors()
    interp.set_tensor(0, np.zeros((1, 4), np.float32))
    with pytest.raises(ModelFormatError, match="reads tensor 1 \\('ghost'\\) before any operator produced it"):
        interp.invoke()


INT8 = 9


def _int8_tensor(name, scale=None, type_code=INT8):
    quant = None if scale is None else fb.Table(None, None, fb.Vector("f", [scale]), fb.Vector("q", [0]))
    return fb.Table(fb.Vector("i", [1, 4]), fb.Scalar("b", type_code), fb.Scalar("I", 0),
                    fb.String(name), quant)


def _relu_model(x, y) -> bytes:
    return fb.build(fb.tflite_model(opcodes=[fb.opcode(BUILTIN_CODES["RELU"])], tensors=[x, y],
                                    operators=[fb.operator(0, [0], [1])], inputs=[0], outputs=[1],
                                    buffers=[fb.buffer()]))


def test_int8_relu_hand_computed():
    data = _relu_model(_int8_tensor("x", 0.5), _int8_tensor("y", 0.25))
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    interp.set_tensor(0, np.array([[-3, 0, 3, 100]], np.int8))
    interp.invoke()
    # real = 0.5*q -> relu -> requantized at scale 0.25: q_out = 2*q_in clamped to [0, 127]
    np.testing.assert_array_equal(interp.get_tensor(1), [[0, 0, 6, 127]])


def test_int8_tensor_without_quantization():
    with pytest.raises(ModelFormatError, match="INT8 tensor 'y' has no quantization parameters"):
        Interpreter(model_content=_relu_model(_int8_tensor("x", 0.5), _int8_tensor("y")))


def test_invalid_quantization_scale():
    with pytest.raises(ModelFormatError, match=r"tensor 'y' has invalid quantization scales \[0.0\]"):
        Interpreter(model_content=_relu_model(_int8_tensor("x", 0.5), _int8_tensor("y", 0.0)))


def test_integer_input_float_output_mismatch():
    y = _int8_tensor("y", 0.5, type_code=FLOAT32)
    with pytest.raises(ModelFormatError, match="has INT8 input but FLOAT32 output 'y'"):
        Interpreter(model_content=_relu_model(_int8_tensor("x", 0.5), y))
