"""Per-op VJPs of app.explain.backward against central finite differences of naive float64
forward references written here (directional derivatives: <g, J v> == <J^T g, v>)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.errors import UnsupportedLayerError
from app.explain.backward import VJPS, node_vjp
from app.ir import Node

EPS = 1e-6
RNG = np.random.default_rng(20261122)


def _pads_same(size, k, s, d=1):
    eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def naive_conv2d(x, kernel, strides, dilations, pads, groups=1):
    n, h, w, c = x.shape
    kh, kw, cin_g, cout = kernel.shape
    top, bottom, left, right = pads
    xp = np.zeros((n, h + top + bottom, w + left + right, c))
    xp[:, top:top + h, left:left + w] = x
    oh = (h + top + bottom - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (w + left + right - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    cout_g = cout // groups
    y = np.zeros((n, oh, ow, cout))
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for o in range(cout):
                    g = o // cout_g
                    for a in range(kh):
                        for e in range(kw):
                            r = i * strides[0] + a * dilations[0]
                            q = j * strides[1] + e * dilations[1]
                            y[b, i, j, o] += xp[b, r, q, g * cin_g:(g + 1) * cin_g] @ kernel[a, e, :, o]
    return y


def naive_depthwise(x, kernel, strides, pads):
    n, h, w, c = x.shape
    kh, kw, _, m = kernel.shape
    full = np.zeros((kh, kw, c, c * m))
    for ch in range(c):
        for k in range(m):
            full[:, :, ch, ch * m + k] = kernel[:, :, ch, k]
    return naive_conv2d(x, full, strides, (1, 1), pads)


def naive_pool(x, pool, strides, pads, mode):
    n, h, w, c = x.shape
    top, bottom, left, right = pads
    oh = (h + top + bottom - pool[0]) // strides[0] + 1
    ow = (w + left + right - pool[1]) // strides[1] + 1
    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * strides[0] - top, j * strides[1] - left
            window = x[:, max(r0, 0):min(r0 + pool[0], h), max(c0, 0):min(c0 + pool[1], w)]
            y[:, i, j] = window.max(axis=(1, 2)) if mode == "max" else window.mean(axis=(1, 2))
    return y


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_erf = np.vectorize(math.erf)


def _r(*shape):
    return RNG.standard_normal(shape)


# (case id, op, attrs, inputs, needs, naive forward over the inputs)
CASES = [
    ("relu", "relu", {}, [_r(2, 3, 4)], [True], lambda x: np.maximum(x, 0)),
    ("relu6", "relu6", {}, [_r(2, 3, 4) * 4], [True], lambda x: np.clip(x, 0, 6)),
    ("sigmoid", "sigmoid", {}, [_r(2, 5)], [True], _sigmoid),
    ("tanh", "tanh", {}, [_r(2, 5)], [True], np.tanh),
    ("swish", "swish", {}, [_r(2, 5)], [True], lambda x: x * _sigmoid(x)),
    ("elu", "elu", {"alpha": 0.7}, [_r(2, 5)], [True], lambda x: np.where(x > 0, x, 0.7 * np.expm1(x))),
    ("leaky_relu", "leaky_relu", {"alpha": 0.2}, [_r(2, 5)], [True], lambda x: np.where(x > 0, x, 0.2 * x)),
    ("softplus", "softplus", {}, [_r(2, 5)], [True], lambda x: np.log1p(np.exp(x))),
    ("gelu", "gelu", {}, [_r(2, 5)], [True], lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    ("gelu_tanh", "gelu", {"approximate": True}, [_r(2, 5)], [True],
     lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    ("clip", "clip", {"min": -0.5, "max": 0.8}, [_r(2, 5)], [True], lambda x: np.clip(x, -0.5, 0.8)),
    ("relu_ex", "relu_ex", {"max_value": 1.0, "threshold": 0.2, "negative_slope": 0.1}, [_r(3, 5)], [True],
     lambda x: np.minimum(np.where(x >= 0.2, x, 0.1 * (x - 0.2)), 1.0)),
    ("softmax", "softmax", {"axis": -1}, [_r(3, 6)], [True], _softmax),
    ("dense", "dense", {}, [_r(3, 5), _r(5, 4), _r(4)], [True, False, False], lambda x, k, b: x @ k + b),
    ("dense_fused_relu", "dense", {"activation": "relu"}, [_r(3, 5), _r(5, 4), _r(4)], [True, False, False],
     lambda x, k, b: np.maximum(x @ k + b, 0)),
    ("conv_same_s1", "conv2d", {"strides": (1, 1), "dilations": (1, 1), "pads": "same"},
     [_r(1, 5, 6, 3), _r(3, 3, 3, 4)], [True, False],
     lambda x, k: naive_conv2d(x, k, (1, 1), (1, 1), (1, 1, 1, 1))),
    ("conv_same_s2_odd", "conv2d", {"strides": (2, 2), "dilations": (1, 1), "pads": (0, 1, 1, 1)},
     [_r(2, 7, 6, 2), _r(3, 3, 2, 3)], [True, False],
     lambda x, k: naive_conv2d(x, k, (2, 2), (1, 1), (0, 1, 1, 1))),
    ("conv_valid_s2_drops_rows", "conv2d", {"strides": (2, 2), "dilations": (1, 1), "pads": (0, 0, 0, 0)},
     [_r(1, 6, 7, 2), _r(3, 3, 2, 2)], [True, False],
     lambda x, k: naive_conv2d(x, k, (2, 2), (1, 1), (0, 0, 0, 0))),
    ("conv_dilated", "conv2d", {"strides": (1, 1), "dilations": (2, 2), "pads": (2, 2, 2, 2)},
     [_r(1, 6, 6, 2), _r(3, 3, 2, 3)], [True, False],
     lambda x, k: naive_conv2d(x, k, (1, 1), (2, 2), (2, 2, 2, 2))),
    ("conv_groups", "conv2d", {"strides": (1, 1), "dilations": (1, 1), "pads": (1, 1, 1, 1), "groups": 2},
     [_r(1, 4, 5, 4), _r(3, 3, 2, 6)], [True, False],
     lambda x, k: naive_conv2d(x, k, (1, 1), (1, 1), (1, 1, 1, 1), groups=2)),
    ("conv_bias_fused_relu", "conv2d", {"strides": (1, 1), "dilations": (1, 1), "pads": (0, 0, 0, 0),
                                        "activation": "relu"},
     [_r(1, 4, 4, 2), _r(1, 1, 2, 3), _r(3)], [True, False, False],
     lambda x, k, b: np.maximum(naive_conv2d(x, k, (1, 1), (1, 1), (0, 0, 0, 0)) + b, 0)),
    ("depthwise_m2_s2", "depthwise_conv2d", {"strides": (2, 2), "dilations": (1, 1), "pads": (1, 1, 1, 1)},
     [_r(1, 6, 5, 3), _r(3, 3, 3, 2)], [True, False],
     lambda x, k: naive_depthwise(x, k, (2, 2), (1, 1, 1, 1))),
    ("scale_shift", "scale_shift", {}, [_r(2, 3, 3, 4), _r(4), _r(4)], [True, False, False],
     lambda x, s, t: x * s + t),
    ("batch_norm", "batch_norm", {"epsilon": 1e-3, "axis": -1},
     [_r(2, 4), _r(4), _r(4), _r(4), np.abs(_r(4)) + 0.5], [True] + [False] * 4,
     lambda x, g, b, m, v: (x - m) / np.sqrt(v + 1e-3) * g + b),
    ("add_broadcast", "add", {}, [_r(2, 3, 4), _r(1, 1, 4)], [True, True], lambda a, b: a + b),
    ("add_fused_relu", "add", {"activation": "relu"}, [_r(2, 3, 4), _r(2, 3, 4)], [True, True],
     lambda a, b: np.maximum(a + b, 0)),
    ("sub", "sub", {}, [_r(2, 3), _r(2, 3)], [True, True], lambda a, b: a - b),
    ("mul", "mul", {}, [_r(2, 3), _r(2, 3), _r(3)], [True, True, True], lambda a, b, c: a * b * c),
    ("average", "average", {}, [_r(2, 3), _r(2, 3)], [True, True], lambda a, b: (a + b) / 2),
    ("concat", "concat", {"axis": -1}, [_r(2, 3, 3, 2), _r(2, 3, 3, 3)], [True, True],
     lambda a, b: np.concatenate([a, b], axis=-1)),
    ("global_avg_pool", "global_avg_pool", {}, [_r(2, 3, 4, 5)], [True], lambda x: x.mean(axis=(1, 2))),
    ("global_avg_pool_keepdims", "global_avg_pool", {"keepdims": True}, [_r(2, 3, 4, 5)], [True],
     lambda x: x.mean(axis=(1, 2), keepdims=True)),
    ("global_max_pool", "global_max_pool", {}, [_r(2, 3, 4, 5)], [True], lambda x: x.max(axis=(1, 2))),
    ("mean", "mean", {"axes": (1, 2), "keepdims": False}, [_r(2, 3, 4, 5)], [True], lambda x: x.mean(axis=(1, 2))),
    ("sum", "sum", {"axes": (-1,), "keepdims": True}, [_r(2, 3, 4)], [True], lambda x: x.sum(axis=-1, keepdims=True)),
    ("max_pool_2x2", "max_pool2d", {"pool": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0)},
     [_r(2, 5, 6, 3)], [True], lambda x: naive_pool(x, (2, 2), (2, 2), (0, 0, 0, 0), "max")),
    ("max_pool_3x3_s2_same", "max_pool2d", {"pool": (3, 3), "strides": (2, 2), "pads": "same"},
     [_r(1, 6, 5, 2)], [True], lambda x: naive_pool(x, (3, 3), (2, 2), (0, 1, 1, 1), "max")),
    ("avg_pool_same", "avg_pool2d", {"pool": (3, 3), "strides": (1, 1), "pads": (1, 1, 1, 1)},
     [_r(1, 4, 5, 2)], [True], lambda x: naive_pool(x, (3, 3), (1, 1), (1, 1, 1, 1), "avg")),
    ("avg_pool_2x2", "avg_pool2d", {"pool": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0)},
     [_r(2, 4, 6, 3)], [True], lambda x: naive_pool(x, (2, 2), (2, 2), (0, 0, 0, 0), "avg")),
    ("flatten", "flatten", {}, [_r(2, 3, 4, 2)], [True], lambda x: x.reshape(2, -1)),
    ("reshape", "reshape", {"shape": (6, 4)}, [_r(2, 3, 4, 2)], [True], lambda x: x.reshape(2, 6, 4)),
    ("transpose", "transpose", {"perm": (0, 2, 3, 1)}, [_r(2, 3, 4, 5)], [True], lambda x: x.transpose(0, 2, 3, 1)),
    ("pad", "pad", {"pads": ((0, 0), (1, 2), (0, 1), (0, 0))}, [_r(2, 3, 4, 2)], [True],
     lambda x: np.pad(x, ((0, 0), (1, 2), (0, 1), (0, 0)))),
    ("crop", "crop", {"begin": (0, 1, 0, 0), "end": (2, 3, 3, 2)}, [_r(2, 4, 4, 2)], [True],
     lambda x: x[:, 1:3, 0:3, :]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_vjp_matches_finite_differences(case):
    _, op, attrs, inputs, needs, forward = case
    node = Node("layer", op, tuple(f"in{i}" for i in range(len(inputs))), ("out",), attrs)
    output = forward(*inputs)
    grad = RNG.standard_normal(np.shape(output))
    vjps = node_vjp(node, grad, inputs, output, needs)
    assert len(vjps) == len(inputs)
    for index, need in enumerate(needs):
        if not need:
            assert vjps[index] is None
            continue
        for _ in range(3):
            direction = RNG.standard_normal(np.shape(inputs[index]))
            plus = list(inputs)
            minus = list(inputs)
            plus[index] = inputs[index] + EPS * direction
            minus[index] = inputs[index] - EPS * direction
            numeric = np.sum(grad * (forward(*plus) - forward(*minus))) / (2 * EPS)
            analytic = np.sum(np.asarray(vjps[index]) * direction)
            assert np.shape(vjps[index]) == np.shape(inputs[index])
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-6), f"{op} input {index}"


def test_registry_covers_the_cases():
    assert {c[1] for c in CASES} <= set(VJPS)


def test_fused_softmax_skip_activation_gives_pre_activation_gradient():
    x, kernel = _r(2, 3), _r(3, 4)
    node = Node("predictions", "dense", ("x", "k"), ("y",), {"activation": "softmax"})
    grad = _r(2, 4)
    gx, _ = node_vjp(node, grad, [x, kernel], _softmax(x @ kernel), [True, False], skip_activation=True)
    np.testing.assert_allclose(gx, grad @ kernel.T, rtol=1e-12)


def test_unknown_op_is_unsupported():
    node = Node("my_lstm", "lstm", ("x",), ("y",), {})
    with pytest.raises(UnsupportedLayerError, match=r"layer 'my_lstm' \(lstm\): op 'lstm' has no gradient; "
                                                    r"the backward pass supports: .*conv2d"):
        node_vjp(node, _r(2, 2), [_r(2, 2)], _r(2, 2), [True])


def test_unsupported_fused_activation():
    node = Node("fc", "dense", ("x", "k"), ("y",), {"activation": "mish"})
    with pytest.raises(UnsupportedLayerError, match="fused activation 'mish' has no gradient"):
        node_vjp(node, _r(2, 2), [_r(2, 3), _r(3, 2)], _r(2, 2), [True, False])


def test_reflect_pad_is_unsupported():
    node = Node("reflect", "pad", ("x",), ("y",), {"pads": ((0, 0), (1, 1)), "mode": "reflect"})
    with pytest.raises(UnsupportedLayerError, match="pad mode 'reflect' has no gradient"):
        node_vjp(node, _r(2, 5), [_r(2, 3)], _r(2, 5), [True])
