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


# ---- fused activations and L2_NORMALIZATION as LiteRT's Prepare checks them ----------------------

def _fc_model(activation: int) -> bytes:
    """FULLY_CONNECTED [1, 4] x [2, 4]^T with FullyConnectedOptions(fused_activation_function)."""
    weights = np.array([[1.0, 0.0, -1.0, 0.5], [0.25, 2.0, 0.0, -1.0]], np.float32)
    model = fb.tflite_model(
        opcodes=[fb.opcode(BUILTIN_CODES["FULLY_CONNECTED"])],
        tensors=[fb.tensor([1, 4], FLOAT32, 0, "x"), fb.tensor([2, 4], FLOAT32, 1, "w"),
                 fb.tensor([1, 2], FLOAT32, 0, "y")],
        operators=[fb.operator(0, [0, 1, -1], [2], 8, fb.Table(fb.Scalar("b", activation)))],
        inputs=[0], outputs=[2], buffers=[fb.buffer(), fb.buffer(weights.tobytes())])
    return fb.build(model)


def test_fully_connected_with_fused_relu_n1_to_1():
    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)       # raw [0.0, 0.25] -> clamp to [-1, 1]
    np.testing.assert_array_equal(_run(_fc_model(2), x), [[0.0, 0.25]])
    np.testing.assert_array_equal(_run(_fc_model(2), 8 * x), [[0.0, 1.0]])


@pytest.mark.parametrize("code,name", [(4, "TANH"), (5, "SIGN_BIT")])
def test_fully_connected_with_fused_tanh_is_refused_like_litert(code, name):
    """LiteRT 2.3: 'fully_connected.cc:752 params->activation == kTfLiteActNone || ... Relu6 was
    not true' when preparing this model."""
    with pytest.raises(UnsupportedLayerError, match=rf"operator #0 \(FULLY_CONNECTED\) has fused activation {name}, "
                                                    r"which LiteRT's FULLY_CONNECTED refuses"):
        Interpreter(model_content=_fc_model(code), model_name="fc.tflite")


def test_fused_tanh_is_kept_as_declared_but_not_applied():
    """The file's activation stays visible (declared_activation); the kernels compute none, as
    LiteRT does (fixtures fused_tanh_float32 / fused_tanh_int8 hold LiteRT's outputs)."""
    model = fb.tflite_model(
        opcodes=[fb.opcode(BUILTIN_CODES["ADD"])],
        tensors=[fb.tensor([1, 2], FLOAT32, 0, "a"), fb.tensor([1, 2], FLOAT32, 0, "b"),
                 fb.tensor([1, 2], FLOAT32, 0, "y")],
        operators=[fb.operator(0, [0, 1], [2], 11, fb.Table(fb.Scalar("b", 4)))],
        inputs=[0, 1], outputs=[2], buffers=[fb.buffer()])
    interp = Interpreter(model_content=fb.build(model))
    op = interp.model_info.subgraphs[0].operators[0]
    assert (op.options["activation"], op.options["declared_activation"]) == ("linear", "tanh")
    interp.allocate_tensors()
    interp.set_tensor(0, np.array([[2.0, -3.0]], np.float32))
    interp.set_tensor(1, np.array([[1.0, 0.5]], np.float32))
    interp.invoke()
    np.testing.assert_array_equal(interp.get_tensor(2), [[3.0, -2.5]])


def _l2_model(out_scale: float, out_zero_point: int, activation: int = 0) -> bytes:
    int8 = 9
    model = fb.tflite_model(
        opcodes=[fb.opcode(BUILTIN_CODES["L2_NORMALIZATION"])],
        tensors=[fb.tensor([1, 4], int8, 0, "x", quantization=([0.1], [0])),
                 fb.tensor([1, 4], int8, 0, "y", quantization=([out_scale], [out_zero_point]))],
        operators=[fb.operator(0, [0], [1], 12, fb.Table(fb.Scalar("b", activation)))],
        inputs=[0], outputs=[1], buffers=[fb.buffer()])
    return fb.build(model)


def test_int8_l2_normalization_hand_computed():
    """[3, 4, 0, 0] / 5 = [0.6, 0.8, 0, 0] in steps of 1/128: 76.8 -> 77, 102.4 -> 102."""
    interp = Interpreter(model_content=_l2_model(1 / 128, 0))
    interp.allocate_tensors()
    interp.set_tensor(0, np.array([[3, 4, 0, 0]], np.int8))
    interp.invoke()
    np.testing.assert_array_equal(interp.get_tensor(1), [[77, 102, 0, 0]])


@pytest.mark.parametrize("scale,zero_point,activation,message", [
    (1 / 64, 0, 0, r"8-bit output 'y' must be int8 with scale 1/128 and zero point 0, got int8 scale 0.015625"),
    (1 / 128, 5, 0, r"must be int8 with scale 1/128 and zero point 0, got int8 scale 0.0078125 zero point 5"),
    (1 / 128, 0, 1, r"fused activation relu is not supported \(LiteRT's kernel refuses any but NONE\)"),
])
def test_l2_normalization_refuses_what_litert_prepare_refuses(scale, zero_point, activation, message):
    interp = Interpreter(model_content=_l2_model(scale, zero_point, activation), model_name="l2.tflite")
    interp.allocate_tensors()
    interp.set_tensor(0, np.array([[3, 4, 0, 0]], np.int8))
    with pytest.raises(ModelFormatError, match=message):
        interp.invoke()
