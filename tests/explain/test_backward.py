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


def naive_conv2d_transpose(x, kernel, strides, pads, output_padding=(0, 0)):
    """Every input pixel adds kernel[a, e] @ x to output (i * s + a, j * s + e) of the full canvas;
    then ``pads`` are cropped (a negative bottom / right pad adds zero rows) and output_padding
    adds zero rows at the bottom / right."""
    n, h, w, cin = x.shape
    kh, kw, cout, _ = kernel.shape
    full = np.zeros((n, (h - 1) * strides[0] + kh, (w - 1) * strides[1] + kw, cout))
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for a in range(kh):
                    for e in range(kw):
                        full[b, i * strides[0] + a, j * strides[1] + e] += kernel[a, e] @ x[b, i, j]
    top, bottom, left, right = pads
    out_h = full.shape[1] - top - bottom + output_padding[0]
    out_w = full.shape[2] - left - right + output_padding[1]
    canvas = np.zeros((n, max(full.shape[1], top + out_h), max(full.shape[2], left + out_w), cout))
    canvas[:, :full.shape[1], :full.shape[2]] = full
    return canvas[:, top:top + out_h, left:left + out_w]


def _tf_source(i, in_size, out_size, align_corners, half_pixel):
    if align_corners and out_size > 1:
        return i * (in_size - 1) / (out_size - 1)
    scale = in_size / out_size
    return (i + 0.5) * scale - 0.5 if half_pixel else i * scale


def naive_resize(x, size, method, align_corners=False, half_pixel=False):
    """tf.image.resize (TF2: half_pixel) / tf.compat.v1 (align_corners, legacy) per output pixel,
    written from TensorFlow's resize kernels (compute_interpolation_weights, nearest scaler)."""
    n, h, w, c = x.shape
    out = np.zeros((n, size[0], size[1], c))
    for i in range(size[0]):
        for j in range(size[1]):
            if method == "nearest":
                def pick(k, in_size, out_size):
                    if align_corners and out_size > 1:
                        src = round(k * (in_size - 1) / (out_size - 1))
                    elif half_pixel:
                        src = math.floor((k + 0.5) * in_size / out_size)
                    else:
                        src = math.floor(k * in_size / out_size)
                    return min(max(src, 0), in_size - 1)
                out[:, i, j] = x[:, pick(i, h, size[0]), pick(j, w, size[1])]
                continue
            value = 0.0
            for (r, wr) in _taps(_tf_source(i, h, size[0], align_corners, half_pixel), h):
                for (q, wq) in _taps(_tf_source(j, w, size[1], align_corners, half_pixel), w):
                    value = value + wr * wq * x[:, r, q]
            out[:, i, j] = value
    return out


def _taps(src, in_size):
    low = math.floor(src)
    lerp = src - low
    return [(min(max(low, 0), in_size - 1), 1 - lerp), (min(max(math.ceil(src), 0), in_size - 1), lerp)]


def naive_layer_norm(x, gamma, beta, axes, epsilon):
    mean = x.mean(axis=axes, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


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
    # heads of real models: ConvNeXt (LayerNorm), U-Nets / FPNs (resize, transposed conv), MobileNetV3
    # (hard swish / hard sigmoid), TFLite graphs (prelu, maximum, div, slices, mirror pad)
    ("layer_norm_last_axis", "layer_norm", {"axes": (-1,), "epsilon": 1e-6}, [_r(3, 7), _r(7), _r(7)],
     [True, False, False], lambda x, g, b: naive_layer_norm(x, g, b, (-1,), 1e-6)),
    ("layer_norm_4d_channels", "layer_norm", {"axes": (3,), "epsilon": 1e-3}, [_r(2, 3, 4, 5), _r(5), _r(5)],
     [True, False, False], lambda x, g, b: naive_layer_norm(x, g, b, (3,), 1e-3)),
    ("layer_norm_hwc_no_beta", "layer_norm", {"axes": (1, 2, 3), "epsilon": 1e-3}, [_r(2, 3, 4, 2), _r(2)],
     [True, False], lambda x, g: naive_layer_norm(x, g, 0.0, (1, 2, 3), 1e-3)),
    ("layer_norm_no_scale", "layer_norm", {"axes": (-1,), "epsilon": 1e-3}, [_r(4, 6)], [True],
     lambda x: naive_layer_norm(x, 1.0, 0.0, (-1,), 1e-3)),
    ("resize_bilinear_half_pixel_up", "resize", {"size": (7, 8), "method": "bilinear", "half_pixel_centers": True},
     [_r(2, 3, 5, 2)], [True], lambda x: naive_resize(x, (7, 8), "bilinear", half_pixel=True)),
    ("resize_bilinear_half_pixel_down", "resize", {"size": (3, 2), "method": "bilinear", "half_pixel_centers": True},
     [_r(1, 7, 5, 3)], [True], lambda x: naive_resize(x, (3, 2), "bilinear", half_pixel=True)),
    ("resize_bilinear_align_corners", "resize", {"size": (6, 9), "method": "bilinear", "align_corners": True},
     [_r(1, 4, 5, 2)], [True], lambda x: naive_resize(x, (6, 9), "bilinear", align_corners=True)),
    ("resize_bilinear_legacy", "resize", {"size": (5, 7), "method": "bilinear"},
     [_r(1, 3, 4, 2)], [True], lambda x: naive_resize(x, (5, 7), "bilinear")),
    ("resize_nearest_upsampling_2x", "resize", {"scale": (2, 2), "method": "nearest"},
     [_r(2, 3, 4, 2)], [True], lambda x: naive_resize(x, (6, 8), "nearest")),
    ("resize_nearest_half_pixel", "resize", {"size": (5, 7), "method": "nearest", "half_pixel_centers": True},
     [_r(1, 3, 4, 2)], [True], lambda x: naive_resize(x, (5, 7), "nearest", half_pixel=True)),
    ("resize_nearest_align_corners", "resize", {"size": (5, 3), "method": "nearest", "align_corners": True},
     [_r(1, 3, 4, 2)], [True], lambda x: naive_resize(x, (5, 3), "nearest", align_corners=True)),
    ("conv_transpose_s2_same", "conv2d_transpose", {"strides": (2, 2), "pads": (0, 1, 0, 1)},
     [_r(2, 3, 4, 3), _r(3, 3, 2, 3)], [True, False],
     lambda x, k: naive_conv2d_transpose(x, k, (2, 2), (0, 1, 0, 1))),
    ("conv_transpose_s2_k2_bias_relu", "conv2d_transpose", {"strides": (2, 2), "activation": "relu"},
     [_r(1, 3, 3, 4), _r(2, 2, 3, 4), _r(3)], [True, False, False],
     lambda x, k, b: np.maximum(naive_conv2d_transpose(x, k, (2, 2), (0, 0, 0, 0)) + b, 0)),
    ("conv_transpose_k1_s3_negative_pad", "conv2d_transpose", {"strides": (3, 3), "pads": (0, -2, 0, -2)},
     [_r(1, 2, 3, 2), _r(1, 1, 3, 2)], [True, False],
     lambda x, k: naive_conv2d_transpose(x, k, (3, 3), (0, -2, 0, -2))),
    ("conv_transpose_output_padding", "conv2d_transpose", {"strides": (2, 2), "pads": (1, 1, 1, 1),
                                                           "output_padding": (1, 1)},
     [_r(1, 3, 3, 2), _r(3, 3, 2, 2)], [True, False],
     lambda x, k: naive_conv2d_transpose(x, k, (2, 2), (1, 1, 1, 1), (1, 1))),
    ("selu", "selu", {}, [_r(2, 5)], [True],
     lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x))),
    ("hard_sigmoid_keras3", "hard_sigmoid", {}, [_r(3, 5) * 3], [True], lambda x: np.clip(x + 3, 0, 6) / 6),
    ("hard_sigmoid_keras2", "hard_sigmoid", {"variant": "keras2"}, [_r(3, 5) * 2], [True],
     lambda x: np.clip(0.2 * x + 0.5, 0, 1)),
    ("hard_swish", "hard_swish", {}, [_r(3, 5) * 3], [True], lambda x: x * np.clip(x + 3, 0, 6) / 6),
    ("dense_fused_hard_swish", "dense", {"activation": "hard_swish"}, [_r(3, 5), _r(5, 4)], [True, False],
     lambda x, k: (x @ k) * np.clip(x @ k + 3, 0, 6) / 6),
    ("softsign", "softsign", {}, [_r(2, 5)], [True], lambda x: x / (1 + np.abs(x))),
    ("exponential", "exponential", {}, [_r(2, 5)], [True], np.exp),
    ("mish", "mish", {}, [_r(2, 5)], [True], lambda x: x * np.tanh(np.log1p(np.exp(x)))),
    ("log_softmax", "log_softmax", {"axis": -1}, [_r(3, 6)], [True], lambda x: np.log(_softmax(x))),
    ("prelu", "prelu", {}, [_r(2, 3, 3, 4), np.abs(_r(1, 1, 4)) * 0.3], [True, False],
     lambda x, a: np.where(x >= 0, x, a * x)),
    ("div", "div", {}, [_r(2, 3), np.abs(_r(1, 3)) + 0.5], [True, True], lambda a, b: a / b),
    ("maximum_3_broadcast", "maximum", {}, [_r(2, 3, 4), _r(2, 3, 4), _r(1, 1, 4)], [True, True, True],
     lambda a, b, c: np.maximum(np.maximum(a, b), c)),
    ("minimum", "minimum", {}, [_r(2, 5), _r(2, 5)], [True, True], np.minimum),
    ("pow", "pow", {}, [np.abs(_r(2, 4)) + 0.5, _r(2, 4)], [True, True], np.power),
    ("neg", "neg", {}, [_r(2, 4)], [True], np.negative),
    ("sqrt", "sqrt", {}, [np.abs(_r(2, 4)) + 0.5], [True], np.sqrt),
    ("square", "square", {}, [_r(2, 4)], [True], np.square),
    ("abs", "abs", {}, [_r(2, 4)], [True], np.abs),
    ("reduce_max", "reduce_max", {"axes": (1, 2), "keepdims": False}, [_r(2, 3, 4, 5)], [True],
     lambda x: x.max(axis=(1, 2))),
    ("reduce_min_keepdims", "reduce_min", {"axes": (-1,), "keepdims": True}, [_r(2, 3, 4)], [True],
     lambda x: x.min(axis=-1, keepdims=True)),
    ("slice", "slice", {"begin": (0, 1, 0, 1), "size": (-1, 2, 3, -1)}, [_r(2, 4, 4, 3)], [True],
     lambda x: x[:, 1:3, 0:3, 1:]),
    ("strided_slice", "strided_slice", {"begin": (0, 1, None, 0), "end": (None, None, None, 3),
                                        "strides": (1, 2, -1, 1)}, [_r(2, 5, 4, 4)], [True],
     lambda x: x[:, 1::2, ::-1, 0:3]),
    ("getitem", "getitem", {"index": ("ellipsis", ("slice", None, 2, None), 1)}, [_r(2, 3, 4, 3)], [True],
     lambda x: x[..., :2, 1]),
    ("tile", "tile", {"reps": (1, 2, 3)}, [_r(2, 3, 2)], [True], lambda x: np.tile(x, (1, 2, 3))),
    ("gather_last_axis", "gather", {"axis": -1}, [_r(2, 3, 5), np.array([4, 0, 4, 2])], [True, False],
     lambda x, i: np.take(x, i, axis=-1)),
    ("cast", "cast", {"dtype": "float32"}, [_r(2, 3)], [True], lambda x: x),
    ("pad_reflect", "pad", {"pads": ((0, 0), (2, 1), (1, 2), (0, 0)), "mode": "reflect"}, [_r(2, 4, 4, 2)],
     [True], lambda x: np.pad(x, ((0, 0), (2, 1), (1, 2), (0, 0)), mode="reflect")),
    ("pad_symmetric", "pad", {"pads": ((0, 0), (2, 2), (0, 1), (0, 0)), "mode": "symmetric"}, [_r(1, 3, 4, 2)],
     [True], lambda x: np.pad(x, ((0, 0), (2, 2), (0, 1), (0, 0)), mode="symmetric")),
    ("pad_edge", "pad", {"pads": ((0, 0), (1, 3), (2, 0), (0, 0)), "mode": "edge"}, [_r(1, 3, 3, 2)],
     [True], lambda x: np.pad(x, ((0, 0), (1, 3), (2, 0), (0, 0)), mode="edge")),
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
    node = Node("fc", "dense", ("x", "k"), ("y",), {"activation": "my_activation"})
    with pytest.raises(UnsupportedLayerError, match="fused activation 'my_activation' has no gradient"):
        node_vjp(node, _r(2, 2), [_r(2, 3), _r(3, 2)], _r(2, 2), [True, False])


def test_non_copying_pad_mode_is_unsupported():
    node = Node("ramp", "pad", ("x",), ("y",), {"pads": ((0, 0), (1, 1)), "mode": "linear_ramp"})
    with pytest.raises(UnsupportedLayerError, match="pad mode 'linear_ramp' has no gradient"):
        node_vjp(node, _r(2, 5), [_r(2, 3)], _r(2, 5), [True])


def test_unknown_resize_method_is_unsupported():
    node = Node("up", "resize", ("x",), ("y",), {"size": (4, 4), "method": "bicubic"})
    with pytest.raises(UnsupportedLayerError, match="resize method 'bicubic' has no gradient"):
        node_vjp(node, _r(1, 4, 4, 1), [_r(1, 2, 2, 1)], _r(1, 4, 4, 1), [True])


def test_forward_kernels_equal_the_naive_references_used_here():
    """The finite differences above differentiate the naive references: they must be the
    functions the engine computes (else a VJP could match a different function)."""
    from app.kernels import KERNELS

    for _, op, attrs, inputs, _, forward in CASES:
        if op in ("resize", "conv2d_transpose", "layer_norm"):
            mine = KERNELS[op](*[np.asarray(x, np.float32) if np.asarray(x).dtype.kind == "f" else x
                                 for x in inputs], **attrs)
            np.testing.assert_allclose(mine, forward(*inputs), rtol=1e-4, atol=1e-5, err_msg=f"{op} {attrs}")
