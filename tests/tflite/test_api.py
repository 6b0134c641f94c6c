"""tflite_runtime API surface: details dicts, set/get/resize, signatures, alias."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from app.errors import ModelInputError
from app.tflite import Interpreter, TensorValueError, install_alias
from app.tflite.interpreter import InterpreterStateError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"
DETAIL_KEYS = {"name", "index", "shape", "shape_signature", "dtype", "quantization",
               "quantization_parameters", "sparsity_parameters"}


@pytest.fixture()
def int8_interp():
    return Interpreter(model_path=str(FIXTURES / "cnn_int8" / "model.tflite"))


def test_details_have_tflite_runtime_keys(int8_interp):
    d = int8_interp.get_input_details()[0]
    assert set(d) == DETAIL_KEYS
    assert d["dtype"] is np.int8
    assert d["shape"].dtype == np.int32 and tuple(d["shape"]) == (1, 16, 16, 3)
    assert d["shape_signature"][0] == -1
    scale, zero_point = d["quantization"]
    params = d["quantization_parameters"]
    assert params["scales"][0] == pytest.approx(scale) and params["zero_points"][0] == zero_point
    assert set(params) == {"scales", "zero_points", "quantized_dimension", "block_size"}


def test_set_tensor_rejects_wrong_dtype_and_shape(int8_interp):
    index = int8_interp.get_input_details()[0]["index"]
    int8_interp.allocate_tensors()
    with pytest.raises(TensorValueError, match="got value of type float32 but expected type int8"):
        int8_interp.set_tensor(index, np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match=r"dimension mismatch. Got shape \(2, 16, 16, 3\)"):
        int8_interp.set_tensor(index, np.zeros((2, 16, 16, 3), np.int8))


def test_resize_then_invoke_batch(int8_interp):
    index = int8_interp.get_input_details()[0]["index"]
    int8_interp.resize_tensor_input(index, [3, 16, 16, 3])
    int8_interp.allocate_tensors()
    assert tuple(int8_interp.get_input_details()[0]["shape"]) == (3, 16, 16, 3)
    int8_interp.set_tensor(index, np.zeros((3, 16, 16, 3), np.int8))
    int8_interp.invoke()
    out = int8_interp.get_tensor(int8_interp.get_output_details()[0]["index"])
    assert out.shape == (3, 5) and out.dtype == np.int8


def test_resize_rejects_fixed_dimension(int8_interp):
    index = int8_interp.get_input_details()[0]["index"]
    with pytest.raises(TensorValueError, match="dimension 1 is fixed to 16"):
        int8_interp.resize_tensor_input(index, [1, 17, 16, 3])
    with pytest.raises(TensorValueError, match="of rank 4"):
        int8_interp.resize_tensor_input(index, [1, 16, 16])


def test_invoke_order_errors(int8_interp):
    with pytest.raises(InterpreterStateError, match="allocate_tensors"):
        int8_interp.invoke()
    int8_interp.allocate_tensors()
    with pytest.raises(InterpreterStateError, match="was never set"):
        int8_interp.invoke()
    with pytest.raises(InterpreterStateError, match="call invoke"):
        int8_interp.get_tensor(int8_interp.get_output_details()[0]["index"])


def test_tensor_index_and_non_input_errors(int8_interp):
    with pytest.raises(TensorValueError, match="out of range"):
        int8_interp.get_tensor(10_000)
    out_index = int8_interp.get_output_details()[0]["index"]
    with pytest.raises(TensorValueError, match="is not an input"):
        int8_interp.set_tensor(out_index, np.zeros((1, 5), np.int8))
    with pytest.raises(TensorValueError, match="cannot be resized"):
        int8_interp.resize_tensor_input(out_index, [1, 5])
    assert issubclass(TensorValueError, ModelInputError)


def test_constructor_arguments(tmp_path):
    with pytest.raises(ValueError, match="exactly one of model_path or model_content"):
        Interpreter()
    from app.errors import ModelFormatError
    with pytest.raises(ModelFormatError, match="cannot read model file"):
        Interpreter(model_path=tmp_path / "missing.tflite")


def test_signature_runner_matches_litert_outputs():
    folder = FIXTURES / "cnn_int8"
    io = np.load(folder / "io.npz")
    interp = Interpreter(model_path=str(folder / "model.tflite"))
    assert interp.get_signature_list() == {"serving_default": {"inputs": ["image"],
                                                               "outputs": ["output_0"]}}
    runner = interp.get_signature_runner()
    assert set(runner.get_input_details()) == {"image"}
    outputs = runner(image=io["input_0"])
    assert set(outputs) == {"output_0"}
    np.testing.assert_array_equal(outputs["output_0"], io["output_0"])
    with pytest.raises(TensorValueError, match="takes inputs"):
        runner(x=io["input_0"])
    with pytest.raises(ValueError, match="no signature 'nope'"):
        interp.get_signature_runner("nope")


def test_signature_runner_needs_signatures():
    interp = Interpreter(model_path=str(FIXTURES / "ops_float32" / "model.tflite"))
    assert interp.get_signature_list() == {}
    with pytest.raises(ValueError, match="no signature definitions"):
        interp.get_signature_runner()


def test_install_alias_makes_tflite_runtime_importable(monkeypatch):
    for name in ("tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert install_alias(force=True)
    from tflite_runtime.interpreter import Interpreter as Aliased  # noqa: PLC0415
    assert Aliased is Interpreter
