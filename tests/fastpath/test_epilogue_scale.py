"""conv2d's epilogue ``scale`` input (a batch-norm kept out of the kernel): the numpy engine kernel
against the naive loop of test_conv2d.py, and app.optimize sharing the loader's kernel array."""

from __future__ import annotations

import numpy as np
import pytest

from app.ir import Graph, Node, TensorSpec
from app.kernels import KERNELS
from app.kernels.conv import conv2d as numpy_conv2d
from app.optimize import optimize
from app.runtime import Plan

from .test_conv2d import CASES, naive_conv2d


@pytest.mark.parametrize("case", CASES)
def test_numpy_conv2d_with_scale_matches_naive_loop(case):
    n, h, w, cin, kh, kw, cout, strides, dilations, pads, groups = case
    rng = np.random.default_rng(h * 1000 + cin * 10 + cout + 2)
    x = (2 * rng.standard_normal((n, h, w, cin))).astype(np.float32)
    kernel = rng.standard_normal((kh, kw, cin // groups, cout)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    scale = rng.uniform(-2, 2, cout).astype(np.float32)
    got = numpy_conv2d(x, kernel, bias, scale, strides=strides, dilations=dilations, pads=pads, groups=groups,
                       activation="relu")
    expected, tolerance = naive_conv2d(x, kernel, bias, strides, dilations, pads, groups, "relu", scale)
    # numpy's matmul sums in another order than the naive loop: allow a few more roundings
    assert (np.abs(got - expected) <= 4 * tolerance + 1e-6).all(), float(np.max(np.abs(got - expected)))


def _conv_bn_graph(kernel, gamma, beta, mean, variance, second_scale=None):
    weights = {"k": kernel, "g": gamma, "be": beta, "m": mean, "v": variance}
    nodes = [Node("conv", "conv2d", ("x", "k"), ("c",), {"pads": (1, 1, 1, 1)}),
             Node("bn", "batch_norm", ("c", "g", "be", "m", "v"), ("b",), {"epsilon": 1e-3, "axis": -1})]
    out = "b"
    if second_scale is not None:  # e.g. a Rescaling right after the batch-norm
        weights |= {"s2": second_scale, "t2": np.full_like(second_scale, 0.25)}
        nodes.append(Node("rescale", "scale_shift", ("b", "s2", "t2"), ("r",), {}))
        out = "r"
    nodes.append(Node("act", "relu", (out,), ("y",)))
    return Graph(nodes=nodes, inputs=[TensorSpec("x", (None, 6, 5, 3))], outputs=[TensorSpec("y", ())],
                 weights=weights, layer_outputs={n.name: n.outputs for n in nodes})


@pytest.mark.parametrize("second", [False, True])
def test_optimize_keeps_the_loaded_conv_kernel_and_matches_the_unfolded_graph(second):
    rng = np.random.default_rng(3)
    kernel = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    gamma, beta, mean = (rng.standard_normal(4).astype(np.float32) for _ in range(3))
    variance = (np.abs(rng.standard_normal(4)) + 0.5).astype(np.float32)
    second_scale = rng.uniform(0.5, 2, 4).astype(np.float32) if second else None
    graph = _conv_bn_graph(kernel, gamma, beta, mean, variance, second_scale)
    fast = optimize(graph)
    assert [n.op for n in fast.nodes] == ["conv2d"]
    conv = fast.nodes[0]
    assert len(conv.inputs) == 4 and conv.attrs["activation"] == "relu"
    assert fast.weights[conv.inputs[1]] is kernel  # shared with the source graph: no scaled copy
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    y = naive_conv2d(x, kernel, None, (1, 1), (1, 1), (1, 1, 1, 1), 1, "linear")[0]
    expected = (y - mean) / np.sqrt(variance.astype(np.float64) + 1e-3) * gamma + beta
    if second:
        expected = expected * second_scale + 0.25
    expected = np.maximum(expected, 0)
    got = Plan(fast).run([x])["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(Plan(graph).run([x])["y"], expected, rtol=1e-5, atol=1e-5)


def test_registered_conv2d_takes_the_scale_input():
    # whatever implementation is registered (numpy, or SIMD after install_fastpath_kernels)
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    got = KERNELS["conv2d"](x, np.ones((2, 2, 1, 1), np.float32), np.array([1.0], np.float32),
                            np.array([0.5], np.float32))
    np.testing.assert_array_equal(got[0, :, :, 0], [[7.0, 9.0], [13.0, 15.0]])
