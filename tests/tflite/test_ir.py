"""Float TFLite graphs converted to app.ir and run by the engine's Model, against LiteRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.ir import Graph
from app.model import Model
from app.tflite import load
from app.tflite.loader import parse_model
from app.tflite.model import TFLiteModel
from app.tflite.to_ir import to_graph

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"

# Which fixtures map onto the IR, and the reason the others do not (from the converter's output).
CONVERTIBLE = ["cnn_static_float32", "cnn_static_float16"]
NOT_CONVERTIBLE = {
    "cnn_float32": "SHAPE) has no IR equivalent",
    "ops_float32": "STRIDED_SLICE) has no IR equivalent",
    "cnn_int8": "is INT8",
    "legacy_uint8": "is UINT8",
    "cnn_dynamic": "SHAPE) has no IR equivalent",
}


@pytest.mark.parametrize("case", CONVERTIBLE)
def test_engine_runs_converted_graph_like_litert(case):
    data = (FIXTURES / case / "model.tflite").read_bytes()
    graph, reason = to_graph(parse_model(data, case))
    assert graph is not None, reason
    io = np.load(FIXTURES / case / "io.npz")
    model = Model(graph, format="tflite")
    y = model.predict(io["input_0"])
    expected = io["output_0"]
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() <= 1e-4 * np.abs(expected).max()
    # Every TFLite operator output stays addressable by its tensor name (Grad-CAM targets).
    conv_layers = [name for name in model.layer_names if "conv3" in name]
    assert conv_layers, model.layer_names


@pytest.mark.parametrize("case,reason", sorted(NOT_CONVERTIBLE.items()))
def test_unconvertible_models_say_why(case, reason):
    data = (FIXTURES / case / "model.tflite").read_bytes()
    graph, why = to_graph(parse_model(data, case))
    assert graph is None and reason in why


def test_load_auto_picks_graph_for_float_and_interpreter_otherwise():
    static = (FIXTURES / "cnn_static_float32" / "model.tflite").read_bytes()
    assert isinstance(load(static, "s.tflite"), Graph)
    assert isinstance(load(static, "s.tflite", engine="interpreter"), TFLiteModel)
    quantized = (FIXTURES / "cnn_int8" / "model.tflite").read_bytes()
    assert isinstance(load(quantized, "q.tflite"), TFLiteModel)
    with pytest.raises(ValueError, match="engine must be 'auto' or 'interpreter'"):
        load(static, "s.tflite", engine="gpu")


def test_app_load_model_wraps_graph_in_engine_model():
    import app

    model = app.load_model(str(FIXTURES / "cnn_static_float16" / "model.tflite"))
    assert isinstance(model, Model) and model.format == "tflite"
    io = np.load(FIXTURES / "cnn_static_float16" / "io.npz")
    batch = np.concatenate([io["input_0"], io["input_0"]])     # the engine takes any batch
    y = model.predict(batch)
    assert np.abs(y - np.concatenate([io["output_0"]] * 2)).max() <= 1e-4 * np.abs(io["output_0"]).max()


def test_engine_applies_fused_tanh_as_litert_does():
    """fused_tanh_float32 (fused TANH on CONV_2D / DEPTHWISE_CONV_2D / ADD, which LiteRT applies
    as no activation) maps onto app.ir and gives LiteRT's outputs there too."""
    data = (FIXTURES / "fused_tanh_float32" / "model.tflite").read_bytes()
    graph, reason = to_graph(parse_model(data, "fused_tanh_float32"))
    assert graph is not None, reason
    io = np.load(FIXTURES / "fused_tanh_float32" / "io.npz")
    outputs = Model(graph, format="tflite").predict(io["input_0"])
    assert len(outputs) == 2
    for i, got in enumerate(outputs):
        expected = io[f"output_{i}"]
        assert np.abs(expected).max() > 1.5            # LiteRT's values are not squashed by tanh
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
