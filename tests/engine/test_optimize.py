"""Load-time passes (app.optimize): each rewrite fires where it should and leaves results equal to
the layer definitions computed here with naive numpy."""

from __future__ import annotations

import numpy as np
import pytest

from app.ir import Graph, Node, TensorSpec
from app.optimize import optimize
from app.runtime import Plan, infer_shapes

from .test_kernels import naive_conv2d, naive_depthwise, rand


def run(graph, *inputs):
    env = Plan(graph).run(list(inputs))
    return [env[t.name] for t in graph.outputs]


def graph_of(nodes, weights, input_shape, outputs):
    return Graph(nodes=nodes, inputs=[TensorSpec("x", (None, *input_shape))],
                 outputs=[TensorSpec(o, ()) for o in outputs], weights=weights,
                 layer_outputs={n.name: n.outputs for n in nodes})


def test_conv_batchnorm_relu_fold_into_one_node():
    k, b = rand(3, 3, 3, 4), rand(4)
    gamma, beta, mean, var = rand(4), rand(4), rand(4), np.abs(rand(4)) + 0.5
    nodes = [
        Node("conv", "conv2d", ("x", "k", "b"), ("c",), {"pads": "same", "strides": (1, 1), "dilations": (1, 1)}),
        Node("bn", "batch_norm", ("c", "g", "be", "m", "v"), ("n",), {"epsilon": 1e-3, "axis": 3}),
        Node("act", "relu", ("n",), ("y",)),
    ]
    graph = graph_of(nodes, {"k": k, "b": b, "g": gamma, "be": beta, "m": mean, "v": var}, (6, 5, 3), ["y"])
    fast = optimize(graph)
    assert [n.op for n in fast.nodes] == ["conv2d"]
    assert fast.nodes[0].attrs["activation"] == "relu" and fast.nodes[0].attrs["pads"] == (1, 1, 1, 1)
    assert "conv" not in fast.layer_outputs and fast.layer_outputs["act"] == ("y",)
    x = rand(2, 6, 5, 3)
    conv = naive_conv2d(x, k, b, (1, 1), (1, 1), (1, 1, 1, 1), 1)
    expected = np.maximum((conv - mean) / np.sqrt(var + 1e-3) * gamma + beta, 0)
    np.testing.assert_allclose(run(fast, x)[0], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(run(graph, x)[0], expected, rtol=1e-4, atol=1e-4)


def test_no_fusion_when_the_intermediate_has_another_reader():
    k = rand(1, 1, 3, 3)
    nodes = [
        Node("conv", "conv2d", ("x", "k"), ("c",), {}),
        Node("act", "relu", ("c",), ("r",)),
        Node("sum", "add", ("c", "r"), ("y",)),
    ]
    graph = graph_of(nodes, {"k": k}, (4, 4, 3), ["y"])
    fast = optimize(graph)
    assert [n.op for n in fast.nodes] == ["conv2d", "relu", "add"]
    x = rand(1, 4, 4, 3)
    conv = naive_conv2d(x, k, None, (1, 1), (1, 1), (0, 0, 0, 0), 1)
    np.testing.assert_allclose(run(fast, x)[0], conv + np.maximum(conv, 0), rtol=1e-5, atol=1e-5)


def test_grouped_conv_with_one_channel_per_group_becomes_depthwise():
    k = rand(3, 3, 1, 8)  # 4 groups of 1 input channel, 2 outputs each
    nodes = [Node("conv", "conv2d", ("x", "k"), ("y",), {"groups": 4, "pads": "same", "strides": (2, 2)})]
    graph = graph_of(nodes, {"k": k}, (7, 6, 4), ["y"])
    fast = optimize(graph)
    assert [n.op for n in fast.nodes] == ["depthwise_conv2d"]
    x = rand(2, 7, 6, 4)
    pads = (1, 1, 0, 1)  # TF SAME for 7x6, k3, s2
    expected = naive_conv2d(x, k, None, (2, 2), (1, 1), pads, 4)
    np.testing.assert_allclose(run(fast, x)[0], expected, rtol=1e-4, atol=1e-4)


def test_zero_pad_merges_into_following_conv_and_bn_folds_into_depthwise():
    k = rand(3, 3, 3, 2)
    scale, shift = rand(6), rand(6)
    nodes = [
        Node("pad", "pad", ("x",), ("p",), {"pads": ((0, 0), (1, 0), (0, 1), (0, 0)), "mode": "constant", "value": 0.0}),
        Node("dw", "depthwise_conv2d", ("p", "k"), ("d",), {"strides": (2, 2), "pads": (0, 0, 0, 0)}),
        Node("bn", "scale_shift", ("d", "s", "t"), ("y",)),
    ]
    graph = graph_of(nodes, {"k": k, "s": scale, "t": shift}, (6, 6, 3), ["y"])
    fast = optimize(graph)
    assert [n.op for n in fast.nodes] == ["depthwise_conv2d"]
    assert fast.nodes[0].attrs["pads"] == (1, 0, 0, 1)
    x = rand(2, 6, 6, 3)
    expected = naive_depthwise(x, k, None, (2, 2), (1, 1), (1, 0, 0, 1)) * scale + shift
    np.testing.assert_allclose(run(fast, x)[0], expected, rtol=1e-4, atol=1e-4)


def test_max_pool_after_zero_pad_is_not_merged():
    """Zero padding then max-pool differs from max-pool's own (-inf) padding: must stay."""
    nodes = [
        Node("pad", "pad", ("x",), ("p",), {"pads": ((0, 0), (1, 1), (1, 1), (0, 0))}),
        Node("pool", "max_pool2d", ("p",), ("y",), {"pool": (3, 3), "strides": (2, 2), "pads": (0, 0, 0, 0)}),
    ]
    graph = graph_of(nodes, {}, (5, 5, 1), ["y"])
    fast = optimize(graph)
    assert [n.op for n in fast.nodes] == ["pad", "max_pool2d"]
    x = -np.ones((1, 5, 5, 1), np.float32)
    assert run(fast, x)[0].max() == 0.0  # the zero border wins, as in Keras


def test_dense_scale_shift_fold():
    k, b = rand(5, 3), rand(3)
    nodes = [Node("fc", "dense", ("x", "k", "b"), ("d",)), Node("norm", "scale_shift", ("d", "s", "t"), ("y",))]
    graph = graph_of(nodes, {"k": k, "b": b, "s": np.float32(2.0), "t": rand(3)}, (5,), ["y"])
    fast = optimize(graph)
    assert [n.op for n in fast.nodes] == ["dense"]
    x = rand(4, 5)
    np.testing.assert_allclose(run(fast, x)[0], (x @ k + b) * 2.0 + graph.weights["t"], rtol=1e-5, atol=1e-5)


def test_unknown_spatial_size_keeps_same_pads_and_runs_any_size():
    k = rand(3, 3, 2, 3)
    nodes = [Node("conv", "conv2d", ("x", "k"), ("y",), {"pads": "same", "strides": (2, 2)})]
    graph = Graph(nodes=nodes, inputs=[TensorSpec("x", (None, None, None, 2))], outputs=[TensorSpec("y", ())],
                  weights={"k": k})
    assert infer_shapes(graph) is None
    fast = optimize(graph)
    assert fast.nodes[0].attrs["pads"] == "same"
    for h, w in ((5, 6), (8, 7)):
        x = rand(1, h, w, 2)
        top, bottom = (0, 1) if h % 2 == 0 else (1, 1)
        left, right = (0, 1) if w % 2 == 0 else (1, 1)
        expected = naive_conv2d(x, k, None, (2, 2), (1, 1), (top, bottom, left, right), 1)
        np.testing.assert_allclose(run(fast, x)[0], expected, rtol=1e-4, atol=1e-4)


def test_graph_output_is_never_fused_away():
    k = rand(1, 1, 2, 2)
    nodes = [Node("conv", "conv2d", ("x", "k"), ("c",), {}), Node("act", "relu", ("c",), ("y",))]
    graph = Graph(nodes=nodes, inputs=[TensorSpec("x", (None, 3, 3, 2))],
                  outputs=[TensorSpec("c", ()), TensorSpec("y", ())], weights={"k": k})
    fast = optimize(graph)
    assert [n.op for n in fast.nodes] == ["conv2d", "relu"]


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
def test_pool_same_pads_become_explicit(op):
    nodes = [Node("pool", op, ("x",), ("y",), {"pool": (3, 3), "strides": (2, 2), "pads": "same"})]
    graph = graph_of(nodes, {}, (6, 7, 1), ["y"])
    fast = optimize(graph)
    assert fast.nodes[0].attrs["pads"] == (0, 1, 1, 1)
    x = rand(1, 6, 7, 1)
    np.testing.assert_allclose(run(fast, x)[0], run(graph, x)[0])


def test_add_relu_fuses():
    nodes = [Node("sum", "add", ("x", "x"), ("s",)), Node("act", "relu", ("s",), ("y",))]
    graph = graph_of(nodes, {}, (3,), ["y"])
    fast = optimize(graph)
    assert [(n.op, n.attrs.get("activation")) for n in fast.nodes] == [("add", "relu")]
    x = np.array([[-1.0, 0.5, 2.0]], np.float32)
    np.testing.assert_array_equal(run(fast, x)[0], [[0.0, 1.0, 4.0]])


def dense_block(layers=3, growth=4, channels=5):
    """x -> [bn-relu -> 1x1 conv (growth) -> concat onto the block] x layers, as in DenseNet."""
    nodes, weights, block = [], {}, "x"
    for i in range(layers):
        weights[f"s{i}"], weights[f"t{i}"] = rand(channels + i * growth), rand(channels + i * growth)
        weights[f"k{i}"] = rand(1, 1, channels + i * growth, growth)
        nodes += [Node(f"bn{i}", "scale_shift", (block, f"s{i}", f"t{i}"), (f"a{i}",), {"activation": "relu"}),
                  Node(f"conv{i}", "conv2d", (f"a{i}", f"k{i}"), (f"c{i}",), {}),
                  Node(f"cat{i}", "concat", (block, f"c{i}"), (f"b{i}",), {"axis": -1})]
        block = f"b{i}"
    return nodes, weights, block


def test_concat_chain_gets_one_buffer_and_the_same_values():
    nodes, weights, out = dense_block()
    graph = graph_of(nodes, weights, (3, 4, 5), [out])
    fast = optimize(graph)
    assert [n.attrs.get("capacity") for n in fast.nodes if n.op == "concat"] == [17, 17, 17]
    # each batch-norm + ReLU moved into its 1x1 conv as the prologue
    assert [n.op for n in fast.nodes] == ["conv2d", "concat"] * 3
    assert all(n.attrs["in_activation"] == "relu" and len(n.inputs) == 6 for n in fast.nodes if n.op == "conv2d")
    x = rand(2, 3, 4, 5)
    expected = x.astype(np.float64)
    for i in range(3):
        activated = np.maximum(expected * weights[f"s{i}"] + weights[f"t{i}"], 0)
        expected = np.concatenate([expected, activated @ weights[f"k{i}"][0, 0]], axis=-1)
    got = run(fast, x)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got, run(graph, x)[0])  # same kernels, same rounding
    # the chain grew in place: every concat's result is a view on the one buffer
    env = Plan(fast).run([x], wanted=["b0", "b1", "b2"])
    assert env["b2"].base is not None and env["b0"].base is env["b2"].base
    assert env["b2"].shape == (2, 3, 4, 17) and env["b0"].shape == (2, 3, 4, 9)


def test_concat_onto_the_same_view_twice_copies_the_second_time():
    from app.kernels.shape import concat

    x, a, b = rand(1, 2, 2, 3), rand(1, 2, 2, 2), rand(1, 2, 2, 2)
    base = concat(x, a, capacity=9)
    first = concat(base, a, capacity=9)   # appended behind base in its buffer
    second = concat(base, b, capacity=9)  # base's buffer is filled further: copied, first untouched
    assert first.base is base.base and second.base is not base.base
    np.testing.assert_array_equal(first, np.concatenate([x, a, a], axis=-1))
    np.testing.assert_array_equal(second, np.concatenate([x, a, b], axis=-1))
    # over capacity or along another axis: plain np.concatenate
    np.testing.assert_array_equal(concat(x, a, capacity=4), np.concatenate([x, a], axis=-1))
    np.testing.assert_array_equal(concat(x, x, axis=1, capacity=99), np.concatenate([x, x], axis=1))
