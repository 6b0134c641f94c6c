"""Topology corner cases with hand-written Keras configs whose expected output is computed here
from the layer definitions (x @ kernel + bias etc.), independent of the engine."""

from __future__ import annotations

import json

import numpy as np

import app

RNG = np.random.default_rng(7)


def files_for(topology: dict, weights: list[tuple[str, np.ndarray]], keras_version="2.15.0") -> dict:
    data = b"".join(np.asarray(a, np.float32).tobytes() for _, a in weights)
    model_json = {
        "format": "layers-model",
        "modelTopology": {"keras_version": keras_version, "model_config": topology},
        "weightsManifest": [{"paths": ["w.bin"], "weights": [
            {"name": n, "shape": list(np.shape(a)), "dtype": "float32"} for n, a in weights]}],
    }
    return {"model.json": json.dumps(model_json).encode(), "w.bin": data}


def k2_input(name, shape):
    return {"class_name": "InputLayer", "name": name, "inbound_nodes": [],
            "config": {"name": name, "batch_input_shape": [None, *shape], "dtype": "float32"}}


def test_keras2_shared_nested_model_node_indices_start_at_one():
    """A nested Functional called twice: Keras 2 numbers its calls 1 and 2 (node 0 is its own)."""
    inner = {"class_name": "Functional", "name": "inner", "config": {
        "name": "inner",
        "layers": [k2_input("inner_in", (3,)),
                   {"class_name": "Dense", "name": "fc", "config": {"name": "fc", "units": 2, "activation": "linear"},
                    "inbound_nodes": [[["inner_in", 0, 0, {}]]]}],
        "input_layers": [["inner_in", 0, 0]], "output_layers": [["fc", 0, 0]]},
        "inbound_nodes": [[["a", 0, 0, {}]], [["b", 0, 0, {}]]]}
    topology = {"class_name": "Functional", "config": {
        "name": "outer",
        "layers": [k2_input("a", (3,)), k2_input("b", (3,)), inner,
                   {"class_name": "Subtract", "name": "diff", "config": {"name": "diff"},
                    "inbound_nodes": [[["inner", 1, 0, {}], ["inner", 2, 0, {}]]]}],
        "input_layers": [["a", 0, 0], ["b", 0, 0]], "output_layers": [["diff", 0, 0]]}}
    kernel, bias = RNG.standard_normal((3, 2)), RNG.standard_normal(2)
    model = app.load_model(files_for(topology, [("fc/kernel", kernel), ("fc/bias", bias)]))
    a, b = RNG.standard_normal((4, 3)).astype(np.float32), RNG.standard_normal((4, 3)).astype(np.float32)
    expected = (a @ kernel + bias) - (b @ kernel + bias)
    np.testing.assert_allclose(model.predict([a, b]), expected, rtol=1e-5, atol=1e-5)
    assert "inner@1" in model.layer_names  # the second call is addressable too


def test_keras2_tfoplambda_with_constant_first_argument():
    """``1.0 - x`` is recorded as math.subtract with x = _CONSTANT_VALUE and y = the tensor."""
    topology = {"class_name": "Functional", "config": {
        "name": "m",
        "layers": [k2_input("x", (4,)),
                   {"class_name": "TFOpLambda", "name": "tf.math.subtract",
                    "config": {"name": "tf.math.subtract", "function": "math.subtract"},
                    "inbound_nodes": [["_CONSTANT_VALUE", -1, 1.0, {"y": ["x", 0, 0], "name": None}]]},
                   {"class_name": "TFOpLambda", "name": "tf.math.multiply",
                    "config": {"name": "tf.math.multiply", "function": "math.multiply"},
                    "inbound_nodes": [["tf.math.subtract", 0, 0, {"y": ["x", 0, 0], "name": None}]]}],
        "input_layers": [["x", 0, 0]], "output_layers": [["tf.math.multiply", 0, 0]]}}
    model = app.load_model(files_for(topology, []))
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), (1.0 - x) * x, rtol=1e-6)


def test_keras3_dict_inputs_and_op_node_with_constant():
    tensor = lambda layer: {"class_name": "__keras_tensor__", "config": {"shape": [None, 3], "dtype": "float32",
                                                                           "keras_history": [layer, 0, 0]}}
    topology = {"class_name": "Functional", "config": {
        "name": "m",
        "layers": [{"class_name": "InputLayer", "name": "x", "inbound_nodes": [],
                    "config": {"name": "x", "batch_shape": [None, 3], "dtype": "float32"}},
                   {"class_name": "Dense", "name": "fc", "module": "keras.layers",
                    "config": {"name": "fc", "units": 3, "activation": "relu", "trainable": True,
                               "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}}},
                    "inbound_nodes": [{"args": [tensor("x")], "kwargs": {}}]},
                   {"class_name": "Multiply", "name": "multiply", "config": {"name": "multiply"},
                    "inbound_nodes": [{"args": [tensor("fc"), 0.5], "kwargs": {}}]}],
        "input_layers": {"x": ["x", 0, 0]}, "output_layers": ["multiply", 0, 0]}}
    kernel, bias = RNG.standard_normal((3, 3)), RNG.standard_normal(3)
    weights = [("layers/dense/vars/0", kernel), ("layers/dense/vars/1", bias)]
    model = app.load_model(files_for(topology, weights, keras_version="3.5.0"))
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), np.maximum(x @ kernel + bias, 0) * 0.5, rtol=1e-5, atol=1e-6)


def test_any_size_input_model_reports_static_output_dims_and_runs_two_sizes():
    topology = {"class_name": "Functional", "config": {
        "name": "m",
        "layers": [k2_input("img", (None, None, 2)),
                   {"class_name": "Conv2D", "name": "conv", "config": {
                       "name": "conv", "filters": 3, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same",
                       "activation": "relu", "use_bias": False}, "inbound_nodes": [[["img", 0, 0, {}]]]},
                   {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"},
                    "inbound_nodes": [[["conv", 0, 0, {}]]]}],
        "input_layers": [["img", 0, 0]], "output_layers": [["gap", 0, 0]]}}
    kernel = RNG.standard_normal((3, 3, 2, 3))
    model = app.load_model(files_for(topology, [("conv/kernel", kernel)]))
    assert model.input_shape == (None, None, None, 2)
    assert model.output_shape == (None, 3)
    for h, w in ((7, 8), (10, 5)):
        x = RNG.standard_normal((1, h, w, 2)).astype(np.float32)
        # TF SAME, stride 2: out = ceil(n/2), total pad = max((out-1)*2 + 3 - n, 0), extra after
        pads = []
        for n in (h, w):
            total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
            pads.append((total // 2, total - total // 2))
        xp = np.pad(x[0].astype(np.float64), (pads[0], pads[1], (0, 0)))
        out_h, out_w = -(-h // 2), -(-w // 2)
        conv = np.zeros((out_h, out_w, 3))
        for i in range(out_h):
            for j in range(out_w):
                conv[i, j] = np.einsum("abc,abco->o", xp[2 * i:2 * i + 3, 2 * j:2 * j + 3], kernel)
        expected = np.maximum(conv, 0).mean(axis=(0, 1))
        np.testing.assert_allclose(model.predict(x)[0], expected, rtol=1e-5, atol=1e-5)
