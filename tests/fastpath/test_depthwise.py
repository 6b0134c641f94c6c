"""SIMD depthwise conv (NHWC, multiplier 1) against a naive float64 numpy loop written here."""

from __future__ import annotations

import numpy as np
import pytest

from app.fastpath import FastpathError

EPS32 = float(np.finfo(np.float32).eps)


def naive_depthwise(x, kernel, bias, strides, dilations, pads, activation):
    """Direct definition: y[n,i,j,c] = sum_{p,q} xpad[n, i*sh + p*dh, j*sw + q*dw, c] * k[p,q,c]."""
    n, h, w, c = x.shape
    kh, kw = kernel.shape[:2]
    top, bottom, left, right = pads
    xp = np.zeros((n, h + top + bottom, w + left + right, c))
    xp[:, top:top + h, left:left + w] = x
    oh = (h + top + bottom - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w + left + right - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    y = np.zeros((n, oh, ow, c))
    magnitude = np.zeros_like(y)
    for i in range(oh):
        for j in range(ow):
            for p in range(kh):
                for q in range(kw):
                    pixel = xp[:, i * strides[0] + p * dilations[0], j * strides[1] + q * dilations[1]]
                    y[:, i, j] += pixel * kernel[p, q, :, 0]
                    magnitude[:, i, j] += np.abs(pixel * kernel[p, q, :, 0])
    if bias is not None:
        y += bias
        magnitude += np.abs(bias)
    if activation == "relu":
        y = np.maximum(y, 0)
    elif activation == "relu6":
        y = np.clip(y, 0, 6)
    tolerance = (kh * kw + 2) * EPS32 * magnitude + 1e-30
    if activation == "hard_swish":  # slope of z*clip(z+3,0,6)/6 is at most 1.5, plus its own roundings
        tolerance = np.where(np.abs(y) < 3, 1.5, 1.0) * tolerance + 4 * EPS32 * np.abs(y * np.clip(y + 3, 0, 6) / 6)
        y = y * np.clip(y + 3, 0, 6) / 6
    return y, tolerance


CASES = [
    # (n, h, w, c, kh, kw, strides, dilations, pads)
    (1, 7, 7, 1, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    (2, 8, 9, 13, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    (1, 9, 8, 32, 3, 3, (2, 2), (1, 1), (0, 1, 0, 1)),
    (1, 10, 10, 8, 5, 5, (1, 1), (1, 1), (2, 2, 2, 2)),
    (1, 11, 12, 20, 5, 5, (2, 2), (1, 1), (1, 2, 1, 2)),
    (1, 6, 6, 4, 3, 3, (1, 1), (1, 1), (0, 0, 0, 0)),
    (1, 9, 9, 5, 3, 3, (1, 1), (2, 2), (2, 2, 2, 2)),
    (1, 5, 7, 3, 1, 1, (2, 1), (1, 1), (0, 0, 0, 0)),
    (1, 4, 4, 12, 3, 5, (1, 2), (1, 1), (1, 1, 2, 2)),
]


@pytest.mark.parametrize("activation", ["linear", "relu", "relu6", "hard_swish"])
@pytest.mark.parametrize("case", CASES)
def test_depthwise_matches_naive_loop(simd_backend, case, activation):
    n, h, w, c, kh, kw, strides, dilations, pads = case
    rng = np.random.default_rng(h * 100 + c)
    x = (3 * rng.standard_normal((n, h, w, c))).astype(np.float32)
    kernel = rng.standard_normal((kh, kw, c, 1)).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    got = simd_backend.depthwise_conv2d(x, kernel, bias, strides=strides, dilations=dilations, pads=pads,
                                        activation=activation)
    expected, tolerance = naive_depthwise(x, kernel, bias, strides, dilations, pads, activation)
    assert got.shape == expected.shape
    assert (np.abs(got - expected) <= tolerance).all(), float(np.max(np.abs(got - expected) - tolerance))


def test_depthwise_without_bias(simd_backend):
    x = np.arange(2 * 3 * 3 * 4, dtype=np.float32).reshape(2, 3, 3, 4)
    kernel = np.ones((3, 3, 4, 1), np.float32)
    got = simd_backend.depthwise_conv2d(x, kernel, None, pads=(0, 0, 0, 0))
    np.testing.assert_array_equal(got[:, 0, 0, :], x.sum(axis=(1, 2)))


GOOD_X = np.ones((1, 5, 5, 3), np.float32)
GOOD_K = np.ones((3, 3, 3, 1), np.float32)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(x=np.ones((5, 5, 3), np.float32)), r"x must be a 4-D float32 NHWC array, got float32 array of shape \(5, 5, 3\)"),
        (dict(x=GOOD_X.astype(np.float64)), r"x must be a 4-D float32 NHWC array, got float64"),
        (dict(kernel=np.ones((3, 3, 3, 2), np.float32)), r"kernel must be float32 \[KH, KW, 3, 1\] \(multiplier 1\)"),
        (dict(kernel=np.ones((3, 3, 4, 1), np.float32)), r"kernel must be float32 \[KH, KW, 3, 1\]"),
        (dict(bias=np.ones(4, np.float32)), r"bias must be a float32 array of shape \(3,\)"),
        (dict(activation="tanh"), r"activation must be one of \['hard_silu', 'hard_swish', 'linear', 'relu', 'relu6'\], got 'tanh'"),
        (dict(strides=(0, 1)), r"strides/dilations must be >= 1 and pads >= 0, got strides=\(0, 1\)"),
        (dict(pads=(-1, 0, 0, 0)), r"pads >= 0, got .*pads=\(-1, 0, 0, 0\)"),
        (dict(pads="valid"), r"pads must be explicit \(top, bottom, left, right\), got 'valid'"),
        (dict(kernel=np.ones((7, 7, 3, 1), np.float32)), r"kernel 7x7 with pads \(0, 0, 0, 0\) does not fit input 5x5"),
    ],
)
def test_depthwise_invalid_arguments(simd_backend, kwargs, message):
    args = dict(x=GOOD_X, kernel=GOOD_K, bias=None, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                activation="linear") | kwargs
    with pytest.raises(FastpathError, match=message):
        simd_backend.depthwise_conv2d(args.pop("x"), args.pop("kernel"), args.pop("bias"), **args)
