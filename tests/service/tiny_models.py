"""Tiny hand-written TF.js layers-models for protocol tests (weights chosen in the test)."""

import io
import json
import zipfile

import numpy as np


def dense_softmax_zip(kernel: np.ndarray, bias: np.ndarray) -> bytes:
    """A zipped TF.js layers-model: Input(3) -> Dense(2, softmax) with the given weights."""
    units = int(kernel.shape[1])
    topology = {
        "class_name": "Sequential",
        "config": {"name": "tiny", "layers": [
            {"class_name": "InputLayer", "config": {"batch_input_shape": [None, int(kernel.shape[0])], "dtype": "float32",
                                                     "name": "input_1", "sparse": False}},
            {"class_name": "Dense", "config": {
                "name": "dense", "trainable": True, "dtype": "float32", "units": units, "activation": "softmax",
                "use_bias": True, "kernel_initializer": {"class_name": "Zeros", "config": {}},
                "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
                "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None}},
        ]},
        "keras_version": "2.15.0",
        "backend": "tensorflow",
    }
    manifest = [{"paths": ["group1-shard1of1.bin"], "weights": [
        {"name": "dense/kernel", "shape": list(kernel.shape), "dtype": "float32"},
        {"name": "dense/bias", "shape": list(bias.shape), "dtype": "float32"},
    ]}]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.json", json.dumps({"format": "layers-model", "modelTopology": topology, "weightsManifest": manifest}))
        archive.writestr("group1-shard1of1.bin", kernel.astype("<f4").tobytes() + bias.astype("<f4").tobytes())
    return buffer.getvalue()


def softmax_reference(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    logits = x.astype(np.float64) @ kernel.astype(np.float64) + bias
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)
