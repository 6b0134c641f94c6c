"""Per-kernel tests: every kernel against a naive loop written here (the definition, not our code),
plus tiny hand-computed goldens."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.kernels import KERNELS, gemm as gemm_module

RNG = np.random.default_rng(1234)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def tf_same_pads(size, kernel, stride, dilation=1):
    """TensorFlow SAME padding, written out from the TF docs."""
    out = math.ceil(size / stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def explicit(pads, h, w, kh, kw, strides, dilations):
    if pads == "same":
        return (*tf_same_pads(h, kh, strides[0], dilations[0]), *tf_same_pads(w, kw, strides[1], dilations[1]))
    if pads == "valid":
        return (0, 0, 0, 0)
    return pads


def naive_conv2d(x, k, b, strides, dilations, pads, groups):
    n, h, w, c = x.shape
    kh, kw, cg, cout = k.shape
    top, bottom, left, right = pads
    xp = np.zeros((n, h + top + bottom, w + left + right, c), np.float64)
    xp[:, top:top + h, left:left + w] = x
    oh = (h + top + bottom - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (w + left + right - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    out = np.zeros((n, oh, ow, cout))
    per_group = cout // groups
    for bi in range(n):
        for i in range(oh):
            for j in range(ow):
                for o in range(cout):
                    g = o // per_group
                    acc = 0.0 if b is None else float(b[o])
                    for a in range(kh):
                        for bb in range(kw):
                            for ci in range(cg):
                                acc += xp[bi, i * strides[0] + a * dilations[0], j * strides[1] + bb * dilations[1],
                                          g * cg + ci] * k[a, bb, ci, o]
                    out[bi, i, j, o] = acc
    return out


CONV_CASES = [
    # (H, W, C, KH, KW, Cout, strides, dilations, pads, groups)
    (7, 6, 3, 3, 3, 4, (1, 1), (1, 1), "same", 1),
    (7, 6, 3, 3, 3, 4, (2, 2), (1, 1), "same", 1),
    (8, 8, 2, 3, 3, 5, (2, 2), (1, 1), "same", 1),
    (7, 9, 3, 2, 3, 4, (2, 3), (1, 1), "valid", 1),
    (9, 7, 2, 3, 3, 3, (1, 1), (2, 2), "same", 1),
    (9, 9, 2, 3, 2, 3, (1, 2), (2, 1), "valid", 1),
    (7, 6, 4, 3, 3, 6, (1, 1), (1, 1), "same", 2),
    (7, 7, 6, 3, 3, 6, (2, 2), (1, 1), (1, 0, 2, 1), 3),
    (5, 6, 3, 1, 1, 4, (1, 1), (1, 1), "valid", 1),
    (5, 7, 3, 1, 1, 4, (2, 2), (1, 1), "valid", 1),
    (11, 10, 3, 5, 5, 2, (3, 3), (1, 1), "same", 1),
    (6, 6, 2, 3, 3, 2, (1, 1), (1, 1), (2, 0, 0, 1), 1),
    # Cin >= 2 * Cout at stride 1: the tap-GEMM path
    (7, 6, 8, 3, 3, 3, (1, 1), (1, 1), "same", 1),
    (9, 8, 6, 3, 2, 2, (1, 1), (2, 1), "valid", 1),
    (6, 7, 8, 3, 3, 4, (1, 1), (1, 1), (2, 0, 0, 2), 1),
    (4, 5, 8, 5, 5, 2, (1, 1), (1, 1), "same", 1),
    (5, 5, 9, 3, 3, 2, (1, 1), (2, 2), "same", 1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[str(c) for c in CONV_CASES])
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_matches_naive_loop(case, with_bias):
    h, w, c, kh, kw, cout, strides, dilations, pads, groups = case
    x = rand(2, h, w, c)
    k = rand(kh, kw, c // groups, cout)
    b = rand(cout) if with_bias else None
    inputs = (x, k) if b is None else (x, k, b)
    got = KERNELS["conv2d"](*inputs, strides=strides, dilations=dilations, pads=pads, groups=groups)
    expected = naive_conv2d(x, k, b, strides, dilations, explicit(pads, h, w, kh, kw, strides, dilations), groups)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_conv2d_row_blocking_matches_single_block(monkeypatch):
    """A tiny im2col budget forces the row-block path; results must not change."""
    from app.kernels import conv

    x, k = rand(3, 9, 8, 3), rand(3, 3, 3, 4)
    whole = KERNELS["conv2d"](x, k, pads="same", strides=(1, 1), dilations=(1, 1))
    monkeypatch.setattr(conv, "_IM2COL_MAX_ELEMENTS", 100)
    blocked = KERNELS["conv2d"](x, k, pads="same", strides=(1, 1), dilations=(1, 1))
    np.testing.assert_allclose(blocked, naive_conv2d(x, k, None, (1, 1), (1, 1), (1, 1, 1, 1), 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-5)


def naive_depthwise(x, k, b, strides, dilations, pads):
    n, h, w, c = x.shape
    kh, kw, _, m = k.shape
    # depthwise = grouped conv with one input channel per group and m outputs per group
    grouped = k.reshape(kh, kw, 1, c * m)
    return naive_conv2d(x, grouped, b, strides, dilations, pads, c)


@pytest.mark.parametrize("case", [
    (7, 6, 3, 3, 3, 1, (1, 1), (1, 1), "same"),
    (7, 6, 3, 3, 3, 2, (2, 2), (1, 1), "same"),
    (8, 9, 2, 5, 5, 1, (2, 2), (1, 1), "same"),
    (9, 9, 4, 3, 3, 1, (1, 1), (2, 2), "valid"),
    (7, 8, 2, 3, 2, 3, (3, 2), (1, 1), "valid"),
    (6, 6, 3, 3, 3, 1, (1, 1), (1, 1), (0, 2, 1, 1)),
])
def test_depthwise_conv2d_matches_naive_loop(case):
    h, w, c, kh, kw, m, strides, dilations, pads = case
    x, k, b = rand(2, h, w, c), rand(kh, kw, c, m), rand(c * m)
    got = KERNELS["depthwise_conv2d"](x, k, b, strides=strides, dilations=dilations, pads=pads)
    expected = naive_depthwise(x, k, b, strides, dilations, explicit(pads, h, w, kh, kw, strides, dilations))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def naive_conv_transpose(x, k, b, strides, dilations, pads):
    """Scatter definition: every input pixel adds kernel*value at stride-spaced offsets."""
    n, h, w, cin = x.shape
    kh, kw, cout, _ = k.shape
    top, bottom, left, right = pads
    full_h = (h - 1) * strides[0] + (kh - 1) * dilations[0] + 1
    full_w = (w - 1) * strides[1] + (kw - 1) * dilations[1] + 1
    out_h, out_w = full_h - top - bottom, full_w - left - right
    canvas = np.zeros((n, max(full_h, top + out_h), max(full_w, left + out_w), cout))
    for bi in range(n):
        for i in range(h):
            for j in range(w):
                for a in range(kh):
                    for bb in range(kw):
                        r, col = i * strides[0] + a * dilations[0], j * strides[1] + bb * dilations[1]
                        canvas[bi, r, col] += k[a, bb] @ x[bi, i, j]
    out = canvas[:, top:top + out_h, left:left + out_w]
    return out + (0 if b is None else b)


@pytest.mark.parametrize("case", [
    (4, 5, 3, 3, 3, 2, (2, 2), (1, 1), (1, 0, 1, 0)),
    (4, 4, 2, 2, 2, 3, (1, 1), (1, 1), (0, 0, 0, 0)),
    (3, 5, 2, 1, 1, 2, (3, 3), (1, 1), (0, -2, 0, -2)),
    (4, 3, 2, 4, 4, 2, (2, 2), (1, 1), (1, 1, 1, 1)),
    (3, 3, 2, 3, 3, 2, (1, 2), (2, 1), (0, 0, 0, 0)),
])
def test_conv2d_transpose_matches_naive_scatter(case):
    h, w, cin, kh, kw, cout, strides, dilations, pads = case
    x, k, b = rand(2, h, w, cin), rand(kh, kw, cout, cin), rand(cout)
    got = KERNELS["conv2d_transpose"](x, k, b, strides=strides, dilations=dilations, pads=pads)
    np.testing.assert_allclose(got, naive_conv_transpose(x, k, b, strides, dilations, pads), rtol=1e-4, atol=1e-4)


def naive_pool(x, pool, strides, pads, kind):
    n, h, w, c = x.shape
    top, bottom, left, right = pads
    oh = (h + top + bottom - pool[0]) // strides[0] + 1
    ow = (w + left + right - pool[1]) // strides[1] + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * strides[0] - top, j * strides[1] - left
            rows = range(max(r0, 0), min(r0 + pool[0], h))
            cols = range(max(c0, 0), min(c0 + pool[1], w))
            window = x[:, rows.start:rows.stop, cols.start:cols.stop, :]
            out[:, i, j] = window.max(axis=(1, 2)) if kind == "max" else window.mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool,strides,pads", [
    ((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "same"), ((3, 3), (1, 1), "same"), ((2, 3), (1, 2), "valid"),
    ((3, 3), (2, 2), "valid"), ((2, 2), (2, 2), "same"),
])
def test_pooling_matches_naive_loop(kind, pool, strides, pads):
    x = rand(2, 7, 6, 3)
    got = KERNELS["max_pool2d" if kind == "max" else "avg_pool2d"](x, pool=pool, strides=strides, pads=pads)
    expected = naive_pool(x, pool, strides, explicit(pads, 7, 6, pool[0], pool[1], strides, (1, 1)), kind)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_avg_pool_same_excludes_padding_golden():
    x = np.arange(1, 5, dtype=np.float32).reshape(1, 2, 2, 1)  # [[1,2],[3,4]]
    got = KERNELS["avg_pool2d"](x, pool=(3, 3), strides=(1, 1), pads="same")
    # every 3x3 window covers the whole 2x2 image -> mean 2.5 (padding not counted)
    np.testing.assert_allclose(got[0, :, :, 0], [[2.5, 2.5], [2.5, 2.5]])


def test_max_pool_same_ignores_padding_golden():
    x = -np.ones((1, 3, 3, 1), np.float32)
    got = KERNELS["max_pool2d"](x, pool=(2, 2), strides=(2, 2), pads="same")
    np.testing.assert_array_equal(got, -np.ones((1, 2, 2, 1)))


@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 3, 5)])
def test_dense_matches_naive(shape):
    x, k, b = rand(*shape), rand(shape[-1], 7), rand(7)
    expected = np.einsum("...i,io->...o", x.astype(np.float64), k) + b
    np.testing.assert_allclose(KERNELS["dense"](x, k, b, activation="relu"), np.maximum(expected, 0), rtol=1e-5, atol=1e-5)


def test_global_pools_golden():
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    np.testing.assert_allclose(KERNELS["global_avg_pool"](x), [[3.0, 4.0]])
    np.testing.assert_allclose(KERNELS["global_max_pool"](x, keepdims=True), [[[[6.0, 7.0]]]])


def test_activation_goldens():
    x = np.array([-4.0, -1.0, 0.0, 0.5, 7.0], np.float32)
    np.testing.assert_allclose(KERNELS["relu6"](x), [0, 0, 0, 0.5, 6])
    np.testing.assert_allclose(KERNELS["hard_sigmoid"](x, variant="keras2"), [0, 0.3, 0.5, 0.6, 1], atol=1e-7)
    np.testing.assert_allclose(KERNELS["hard_sigmoid"](x, variant="keras3"), [0, 2 / 6, 0.5, 3.5 / 6, 1], atol=1e-7)
    np.testing.assert_allclose(KERNELS["hard_swish"](x), [0, -2 / 6, 0, 0.5 * 3.5 / 6, 7], atol=1e-6)
    np.testing.assert_allclose(KERNELS["leaky_relu"](x, alpha=0.1), [-0.4, -0.1, 0, 0.5, 7], atol=1e-7)
    np.testing.assert_allclose(KERNELS["relu_ex"](x, max_value=5.0, threshold=0.25, negative_slope=0.5),
                               [-2.125, -0.625, -0.125, 0.5, 5.0], atol=1e-7)
    np.testing.assert_allclose(KERNELS["elu"](x, alpha=2.0), [2 * math.expm1(-4), 2 * math.expm1(-1), 0, 0.5, 7], rtol=1e-6)
    np.testing.assert_allclose(KERNELS["sigmoid"](x), [1 / (1 + math.exp(-v)) for v in x], rtol=1e-6)
    np.testing.assert_allclose(KERNELS["swish"](x), [v / (1 + math.exp(-v)) for v in x], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(KERNELS["softplus"](x), [math.log1p(math.exp(v)) for v in x], rtol=1e-6)
    np.testing.assert_allclose(KERNELS["mish"](x), [v * math.tanh(math.log1p(math.exp(v))) for v in x], rtol=1e-5, atol=1e-7)
    selu = [1.0507009873554805 * (v if v > 0 else 1.6732632423543772 * math.expm1(v)) for v in x]
    np.testing.assert_allclose(KERNELS["selu"](x), selu, rtol=1e-6)


def test_gelu_exact_and_tanh_against_math_erf():
    x = np.linspace(-6, 6, 101).astype(np.float32)
    exact = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)]
    np.testing.assert_allclose(KERNELS["gelu"](x), exact, atol=2e-6)
    approx = [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))) for v in x.astype(np.float64)]
    np.testing.assert_allclose(KERNELS["gelu"](x, approximate=True), approx, atol=2e-6)


def test_softmax_and_log_softmax_golden():
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(KERNELS["softmax"](x), [e / e.sum()], rtol=1e-6)
    np.testing.assert_allclose(KERNELS["log_softmax"](x), [np.log(e / e.sum())], rtol=1e-6)
    big = np.array([[1000.0, 1000.0]], np.float32)  # no overflow
    np.testing.assert_allclose(KERNELS["softmax"](big), [[0.5, 0.5]])


def test_norm_kernels_match_definitions():
    x = rand(2, 3, 4, 5)
    gamma, beta, mean, var = rand(5), rand(5), rand(5), np.abs(rand(5)) + 0.1
    expected = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(KERNELS["batch_norm"](x, gamma, beta, mean, var, epsilon=1e-3), expected, rtol=1e-5, atol=1e-5)
    mu = x.mean(axis=-1, keepdims=True)
    sd = np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(KERNELS["layer_norm"](x, gamma, beta, axes=(-1,), epsilon=1e-6),
                               (x - mu) / sd * gamma + beta, rtol=1e-4, atol=1e-5)
    # batch-norm on axis 1 (channels not last)
    y = KERNELS["batch_norm"](x, rand(3), rand(3), rand(3), np.ones(3, np.float32), epsilon=0.0, axis=1)
    assert y.shape == x.shape


def naive_resize_bilinear_half_pixel(x, out_h, out_w):
    n, h, w, c = x.shape
    out = np.zeros((n, out_h, out_w, c))
    for i in range(out_h):
        for j in range(out_w):
            sy = max((i + 0.5) * h / out_h - 0.5, 0)
            sx = max((j + 0.5) * w / out_w - 0.5, 0)
            y0, x0 = int(math.floor(sy)), int(math.floor(sx))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = sy - y0, sx - x0
            out[:, i, j] = ((1 - fy) * (1 - fx) * x[:, y0, x0] + (1 - fy) * fx * x[:, y0, x1]
                            + fy * (1 - fx) * x[:, y1, x0] + fy * fx * x[:, y1, x1])
    return out


@pytest.mark.parametrize("size", [(6, 8), (5, 7), (2, 3)])
def test_resize_bilinear_matches_naive(size):
    x = rand(2, 3, 4, 2)
    got = KERNELS["resize"](x, size=size, method="bilinear", half_pixel_centers=True)
    np.testing.assert_allclose(got, naive_resize_bilinear_half_pixel(x, *size), rtol=1e-5, atol=1e-5)


def test_resize_nearest_integer_scale_golden():
    x = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 2, 2, 1)
    got = KERNELS["resize"](x, scale=(2, 3), method="nearest")
    expected = [[1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2], [3, 3, 3, 4, 4, 4], [3, 3, 3, 4, 4, 4]]
    np.testing.assert_array_equal(got[0, :, :, 0], expected)


def test_shape_kernels_golden():
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    assert KERNELS["reshape"](x, shape=(-1, 4)).shape == (1, 6, 4)
    assert KERNELS["flatten"](x).shape == (1, 24)
    assert KERNELS["flatten"](np.zeros((0, 2, 3, 4), np.float32)).shape == (0, 24)  # empty batch (shape inference)
    assert KERNELS["reshape"](np.zeros((0, 2, 3, 4), np.float32), shape=(-1,)).shape == (0, 24)
    np.testing.assert_array_equal(KERNELS["transpose"](x, perm=(0, 3, 1, 2)), x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(KERNELS["crop"](x, begin=(0, 1, 0, 0), end=(0, 0, 1, 0)), x[:, 1:, :2])
    padded = KERNELS["pad"](x, pads=((0, 0), (1, 0), (0, 2), (0, 0)))
    assert padded.shape == (1, 3, 5, 4) and padded[0, 0].sum() == 0 and padded[0, 1, 0, 0] == 0
    a, b = KERNELS["split"](x, axis=3, sizes=(1, 3))
    np.testing.assert_array_equal(np.concatenate([a, b], axis=3), x)


def test_elementwise_goldens():
    a = np.array([1.0, -2.0, 3.0], np.float32)
    b = np.array([2.0, 2.0, -1.0], np.float32)
    np.testing.assert_array_equal(KERNELS["add"](a, b, a), [4, -2, 5])
    np.testing.assert_array_equal(KERNELS["sub"](a, b), [-1, -4, 4])
    np.testing.assert_array_equal(KERNELS["mul"](a, b), [2, -4, -3])
    np.testing.assert_array_equal(KERNELS["average"](a, b), [1.5, 0, 1])
    np.testing.assert_array_equal(KERNELS["maximum"](a, b), [2, 2, 3])
    np.testing.assert_array_equal(KERNELS["minimum"](a, b), [1, -2, -1])
    np.testing.assert_array_equal(KERNELS["div"](a, b), [0.5, -1, -3])
    np.testing.assert_array_equal(KERNELS["scale_shift"](a, np.float32(2), np.float32(1)), [3, -3, 7])


def test_every_flop_heavy_kernel_goes_through_the_pluggable_gemm():
    calls = []

    def counting_gemm(a, b, out=None):
        calls.append((a.shape, b.shape))
        return np.matmul(a, b, out=out)

    gemm_module.set_gemm_backend(counting_gemm, "counting")
    try:
        assert gemm_module.gemm_backend_name() == "counting"
        x = rand(1, 5, 5, 3)
        KERNELS["conv2d"](x, rand(3, 3, 3, 4), pads="same")
        KERNELS["conv2d"](x, rand(1, 1, 3, 4))
        KERNELS["conv2d_transpose"](x, rand(2, 2, 4, 3), strides=(2, 2))
        KERNELS["dense"](rand(2, 3), rand(3, 4))
    finally:
        gemm_module.set_gemm_backend(None)
    assert gemm_module.gemm_backend_name() == "numpy"
    assert [s for s, _ in calls] == [(25, 27), (25, 3), (25, 3), (2, 3)]


def test_getitem_golden():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    got = KERNELS["getitem"](x, index=("ellipsis", ("slice", None, 2, None)))
    np.testing.assert_array_equal(got, x[..., :2])
    got = KERNELS["getitem"](x, index=(("slice", None, None, None), 1, "newaxis"))
    np.testing.assert_array_equal(got, x[:, 1, None])


def test_replace_kernel_applies_to_loaded_plans_and_restores():
    from app.ir import Graph, Node, TensorSpec
    from app.kernels import replace_kernel
    from app.runtime import Plan

    graph = Graph(nodes=[Node("act", "relu", ("x",), ("y",))], inputs=[TensorSpec("x", (None, 2))],
                  outputs=[TensorSpec("y", ())], weights={})
    plan = Plan(graph)
    x = np.array([[-1.0, 2.0]], np.float32)
    original = replace_kernel("relu", lambda v: np.full_like(v, 7.0))
    try:
        np.testing.assert_array_equal(plan.run([x])["y"], [[7.0, 7.0]])
    finally:
        replace_kernel("relu", None)
    assert KERNELS["relu"] is original
    np.testing.assert_array_equal(plan.run([x])["y"], [[0.0, 2.0]])
    with pytest.raises(KeyError, match="no kernel registered for op 'nope'"):
        replace_kernel("nope", None)
