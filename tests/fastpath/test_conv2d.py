"""SIMD direct (im2col-free) conv2d, NHWC, against a naive float64 numpy loop written here."""

from __future__ import annotations

import numpy as np
import pytest

from app.fastpath import FastpathError

EPS32 = float(np.finfo(np.float32).eps)


def naive_conv2d(x, kernel, bias, strides, dilations, pads, groups, activation, scale=None):
    """y[n,i,j,o] = sum_{p,q,c in group(o)} xpad[n, i*sh + p*dh, j*sw + q*dw, c] * k[p,q,c,o]
    (times scale[o] when given), plus bias[o], then the activation."""
    n, h, w, c = x.shape
    kh, kw, cin_g, cout = kernel.shape
    cout_g = cout // groups
    top, bottom, left, right = pads
    xp = np.zeros((n, h + top + bottom, w + left + right, c))
    xp[:, top:top + h, left:left + w] = x
    oh = (h + top + bottom - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w + left + right - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    y = np.zeros((n, oh, ow, cout))
    magnitude = np.zeros_like(y)
    for i in range(oh):
        for j in range(ow):
            for p in range(kh):
                for q in range(kw):
                    pixel = xp[:, i * strides[0] + p * dilations[0], j * strides[1] + q * dilations[1]]
                    for g in range(groups):
                        part = pixel[:, g * cin_g:(g + 1) * cin_g]
                        taps = kernel[p, q, :, g * cout_g:(g + 1) * cout_g].astype(np.float64)
                        y[:, i, j, g * cout_g:(g + 1) * cout_g] += part @ taps
                        magnitude[:, i, j, g * cout_g:(g + 1) * cout_g] += np.abs(part) @ np.abs(taps)
    if scale is not None:
        y *= scale
        magnitude *= np.abs(scale) * (1 + 2 * EPS32)
    if bias is not None:
        y += bias
        magnitude += np.abs(bias)
    if activation == "relu":
        y = np.maximum(y, 0)
    elif activation == "relu6":
        y = np.clip(y, 0, 6)
    tolerance = (kh * kw * cin_g + 2) * EPS32 * magnitude + 1e-30
    if activation == "hard_swish":  # slope of z*clip(z+3,0,6)/6 is at most 1.5, plus its own roundings
        tolerance = np.where(np.abs(y) < 3, 1.5, 1.0) * tolerance + 4 * EPS32 * np.abs(y * np.clip(y + 3, 0, 6) / 6)
        y = y * np.clip(y + 3, 0, 6) / 6
    return y, tolerance


CASES = [
    # (n, h, w, cin, kh, kw, cout, strides, dilations, pads, groups)
    (1, 5, 5, 1, 1, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),
    (1, 7, 7, 3, 3, 3, 8, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (2, 9, 8, 5, 3, 3, 13, (2, 2), (1, 1), (0, 1, 0, 1), 1),
    (1, 11, 11, 3, 7, 7, 17, (2, 2), (1, 1), (3, 3, 3, 3), 1),
    (1, 8, 8, 16, 1, 1, 33, (1, 1), (1, 1), (0, 0, 0, 0), 1),
    (1, 6, 7, 9, 3, 5, 10, (1, 2), (1, 1), (1, 1, 2, 2), 1),
    (1, 9, 9, 4, 3, 3, 6, (1, 1), (2, 2), (2, 2, 2, 2), 1),
    (3, 5, 5, 8, 3, 3, 12, (1, 1), (1, 1), (1, 1, 1, 1), 2),
    (1, 6, 6, 12, 3, 3, 9, (2, 1), (1, 1), (1, 0, 1, 0), 3),
    (1, 14, 14, 64, 3, 3, 32, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    # groups of 8 output channels: each group's weights read in place at a column offset
    (2, 6, 6, 8, 3, 3, 16, (1, 1), (1, 1), (1, 1, 1, 1), 2),
    # K = 360 > VK_CONV_KC (256): two K blocks, the boundary inside tap 6; a Cout tail of 4
    (1, 5, 6, 40, 3, 3, 20, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    # one tap with K = 300: the K boundary inside the channels; Cout 140 > VK_CONV_NC (128): a
    # second column block of 12 (one whole panel and a tail)
    (2, 3, 5, 300, 1, 1, 140, (1, 1), (1, 1), (0, 0, 0, 0), 1),
    # Cin < 16 (the tile's input rows are gathered) with K = 343: two K blocks, boundary mid-tap
    (1, 9, 8, 7, 7, 7, 9, (1, 1), (1, 1), (3, 3, 3, 3), 1),
    # groups whose 6 output channels are no whole panel, K blocks per group (2 x 3x3x33 = 297)
    (1, 6, 5, 66, 3, 3, 12, (2, 1), (1, 1), (1, 1, 1, 1), 2),
]


def test_conv2d_with_a_non_contiguous_kernel_packs_it(simd_backend):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 6, 6, 4)).astype(np.float32)
    kernel = np.asfortranarray(rng.standard_normal((3, 3, 4, 16)).astype(np.float32))  # not C-contiguous
    got = simd_backend.conv2d(x, kernel, None, pads=(1, 1, 1, 1))
    expected, tolerance = naive_conv2d(x, kernel, None, (1, 1), (1, 1), (1, 1, 1, 1), 1, "linear")
    assert (np.abs(got - expected) <= tolerance).all()


@pytest.mark.parametrize("activation", ["linear", "relu", "relu6", "hard_swish"])
@pytest.mark.parametrize("case", CASES)
def test_conv2d_matches_naive_loop(simd_backend, case, activation):
    n, h, w, cin, kh, kw, cout, strides, dilations, pads, groups = case
    rng = np.random.default_rng(h * 1000 + cin * 10 + cout)
    x = (2 * rng.standard_normal((n, h, w, cin))).astype(np.float32)
    kernel = rng.standard_normal((kh, kw, cin // groups, cout)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    got = simd_backend.conv2d(x, kernel, bias, strides=strides, dilations=dilations, pads=pads, groups=groups,
                              activation=activation)
    expected, tolerance = naive_conv2d(x, kernel, bias, strides, dilations, pads, groups, activation)
    assert got.shape == expected.shape
    assert (np.abs(got - expected) <= tolerance).all(), float(np.max(np.abs(got - expected) - tolerance))


@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("case", CASES)
def test_conv2d_with_epilogue_scale_matches_naive_loop(simd_backend, case, activation):
    # a batch-norm applied after the sum (app.optimize keeps the loader's kernel and adds a scale)
    n, h, w, cin, kh, kw, cout, strides, dilations, pads, groups = case
    rng = np.random.default_rng(h * 1000 + cin * 10 + cout + 1)
    x = (2 * rng.standard_normal((n, h, w, cin))).astype(np.float32)
    kernel = rng.standard_normal((kh, kw, cin // groups, cout)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    scale = rng.uniform(-2, 2, cout).astype(np.float32)
    got = simd_backend.conv2d(x, kernel, bias, scale, strides=strides, dilations=dilations, pads=pads, groups=groups,
                              activation=activation)
    expected, tolerance = naive_conv2d(x, kernel, bias, strides, dilations, pads, groups, activation, scale)
    assert (np.abs(got - expected) <= tolerance).all(), float(np.max(np.abs(got - expected) - tolerance))


def test_conv2d_scale_without_bias_hand_computed(simd_backend):
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    kernel = np.ones((2, 2, 1, 2), np.float32)
    got = simd_backend.conv2d(x, kernel, None, np.array([0.5, -1.0], np.float32))
    np.testing.assert_array_equal(got[0, :, :, 0], [[6.0, 8.0], [12.0, 14.0]])
    np.testing.assert_array_equal(got[0, :, :, 1], [[-12.0, -16.0], [-24.0, -28.0]])


def test_conv2d_without_bias_hand_computed(simd_backend):
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    kernel = np.ones((2, 2, 1, 1), np.float32)
    got = simd_backend.conv2d(x, kernel, None)
    np.testing.assert_array_equal(got[0, :, :, 0], [[12.0, 16.0], [24.0, 28.0]])


GOOD_X = np.ones((1, 5, 5, 4), np.float32)
GOOD_K = np.ones((3, 3, 4, 6), np.float32)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(x=np.ones((5, 5, 4), np.float32)), r"conv2d: x must be a 4-D float32 NHWC array, got float32 array of shape \(5, 5, 4\)"),
        (dict(kernel=np.ones((3, 3, 3, 6), np.float32)), r"kernel must be float32 \[KH, KW, 4, Cout\], got float32 array of shape \(3, 3, 3, 6\)"),
        (dict(kernel=GOOD_K.astype(np.float64)), r"kernel must be float32 \[KH, KW, 4, Cout\], got float64"),
        (dict(groups=3), r"groups must be a positive divisor of the 4 input channels, got 3"),
        (dict(groups=2, kernel=np.ones((3, 3, 2, 5), np.float32)), r"5 output channels are not divisible by groups=2"),
        (dict(bias=np.ones(5, np.float32)), r"conv2d: bias must be a float32 array of shape \(6,\)"),
        (dict(scale=np.ones(6, np.float64)), r"conv2d: scale must be a float32 array of shape \(6,\), got float64"),
        (dict(activation="swish"), r"conv2d: activation must be one of \['hard_silu', 'hard_swish', 'linear', 'relu', 'relu6'\], got 'swish'"),
        (dict(pads="same"), r"conv2d: pads must be explicit \(top, bottom, left, right\), got 'same'"),
        (dict(dilations=(1, 0)), r"strides/dilations must be >= 1 and pads >= 0, got strides=\(1, 1\), dilations=\(1, 0\)"),
        (dict(pads=(0, 0, 0, 0), kernel=np.ones((6, 1, 4, 6), np.float32)), r"kernel 6x1 with pads \(0, 0, 0, 0\) does not fit input 5x5"),
    ],
)
def test_conv2d_invalid_arguments(simd_backend, kwargs, message):
    args = dict(x=GOOD_X, kernel=GOOD_K, bias=None, scale=None, strides=(1, 1), dilations=(1, 1), pads=(1, 1, 1, 1),
                groups=1, activation="linear") | kwargs
    with pytest.raises(FastpathError, match=message):
        simd_backend.conv2d(args.pop("x"), args.pop("kernel"), args.pop("bias"), args.pop("scale"), **args)


def test_c_conv2d_argument_checks(simd_backend):
    lib = simd_backend._lib
    backing = np.zeros(256, np.float32)  # keep the array alive: a bare .ctypes.data would dangle
    buf = backing.ctypes.data
    common = dict(N=1, H=4, W=4, x=buf, xs=2, cin=2, kh=3, kw=3, sh=1, sw=1, dh=1, dw=1, pt=0, pl=0, oh=2, ow=2,
                  w=buf, w_ld=0, cout=2, bias=None, y=buf, ys=2, act=0, zeros=buf, scale=None, ws=None,
                  in_scale=None, in_shift=None, in_act=0)
    workspace = np.zeros(lib.vk_conv2d_workspace_floats(), np.float32)

    def call(**changes):
        a = common | changes
        return lib.vk_conv2d(a["N"], a["H"], a["W"], a["x"], a["xs"], a["cin"], a["kh"], a["kw"], a["sh"], a["sw"],
                             a["dh"], a["dw"], a["pt"], a["pl"], a["oh"], a["ow"], a["w"], a["w_ld"], a["cout"], a["bias"], a["y"],
                             a["ys"], a["act"], a["zeros"], a["scale"], a["ws"], a["in_scale"], a["in_shift"],
                             a["in_act"])

    common["ws"] = workspace.ctypes.data
    assert call() == 0
    assert call(scale=buf) == 0
    assert call(w_ld=2) == 0  # row-major weights, any Cout: packed block by block into the workspace
    assert call(ws=None) == -4
    assert call(in_scale=buf, in_shift=buf, in_act=1) == 0
    assert call(in_scale=buf) == -4  # a prologue needs both its scale and its shift
    assert call(in_scale=buf, in_shift=buf, in_act=4) == -3
    assert call(w_ld=8, cout=8, ys=8, ws=workspace.ctypes.data) == 0
    assert call(w_ld=4, cout=8, ys=8, ws=workspace.ctypes.data) == -2  # row stride < Cout
    assert call(cin=0) == -1
    assert call(xs=1) == -2  # pixel stride < Cin
    assert call(act=9) == -3
    assert call(zeros=None) == -4
    assert call(sh=0) == -5


PROLOGUE_CASES = [
    # (n, h, w, cin, kh, kw, cout, strides, pads, capacity of the buffer x is a view of, or None)
    (1, 6, 5, 20, 1, 1, 16, (1, 1), (0, 0, 0, 0), 52),      # DenseNet: a 1x1 conv on a concat view
    (2, 4, 4, 300, 1, 1, 24, (1, 1), (0, 0, 0, 0), None),   # two K blocks
    (1, 7, 7, 6, 3, 3, 10, (2, 2), (1, 1, 1, 1), 8),        # padding stays zero after the prologue
    (1, 5, 6, 9, 3, 3, 8, (1, 1), (1, 1, 1, 1), None),      # stride 1 3x3: direct, not Winograd
]


@pytest.mark.parametrize("in_activation", ["linear", "relu", "relu6"])
@pytest.mark.parametrize("case", PROLOGUE_CASES)
def test_conv2d_prologue_matches_naive_loop_and_scale_shift_first(simd_backend, case, in_activation):
    n, h, w, cin, kh, kw, cout, strides, pads, capacity = case
    rng = np.random.default_rng(cin * 7 + cout)
    buffer = (2 * rng.standard_normal((n, h, w, capacity or cin))).astype(np.float32)
    x = buffer[..., :cin]
    kernel = rng.standard_normal((kh, kw, cin, cout)).astype(np.float32)
    bias, scale = rng.standard_normal(cout).astype(np.float32), rng.uniform(-2, 2, cout).astype(np.float32)
    in_scale, in_shift = rng.uniform(-2, 2, cin).astype(np.float32), rng.standard_normal(cin).astype(np.float32)
    got = simd_backend.conv2d(x, kernel, bias, scale, in_scale, in_shift, strides=strides, pads=pads,
                              activation="relu", in_activation=in_activation)
    normalised = simd_backend.scale_shift(x, in_scale, in_shift, activation=in_activation)
    expected, tolerance = naive_conv2d(normalised, kernel, bias, strides, (1, 1), pads, 1, "relu", scale)
    assert (np.abs(got - expected) <= tolerance).all(), float(np.max(np.abs(got - expected) - tolerance))
    # the same float32 operations in the same order as a scale_shift node then the conv node
    direct = simd_backend.conv2d(normalised, kernel, bias, scale, strides=strides, pads=pads, activation="relu")
    if (kh, kw) != (3, 3) or strides != (1, 1):
        np.testing.assert_array_equal(got, direct)


def test_numpy_conv2d_prologue_is_scale_shift_then_conv():
    from app.kernels.conv import conv2d
    from app.kernels.norm import scale_shift

    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 5, 5, 6)).astype(np.float32)
    kernel, bias = rng.standard_normal((1, 1, 6, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    s, t = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    np.testing.assert_array_equal(conv2d(x, kernel, bias, None, s, t, in_activation="relu"),
                                  conv2d(scale_shift(x, s, t, activation="relu"), kernel, bias))


def test_conv2d_prologue_invalid_arguments(simd_backend):
    x, kernel, ones = np.ones((1, 4, 4, 4), np.float32), np.ones((1, 1, 4, 8), np.float32), np.ones(4, np.float32)
    with pytest.raises(FastpathError, match=r"in_scale and in_shift come together"):
        simd_backend.conv2d(x, kernel, None, None, ones, None)
    with pytest.raises(FastpathError, match=r"conv2d: in_scale must be a float32 array of shape \(4,\)"):
        simd_backend.conv2d(x, kernel, None, None, np.ones(3, np.float32), ones)
    with pytest.raises(FastpathError, match=r"in_activation must be one of .*, got 'swish'"):
        simd_backend.conv2d(x, kernel, None, None, ones, ones, in_activation="swish")
    with pytest.raises(FastpathError, match=r"a prologue \(in_scale / in_shift\) needs groups=1, got 2"):
        simd_backend.conv2d(x, np.ones((1, 1, 2, 8), np.float32), None, None, ones, ones, groups=2)


def test_prepared_conv2d_falls_back_like_the_kernel_on_inputs_it_was_not_prepared_for(native_library):
    from app import fastpath
    from app import kernels

    fastpath.select_backend(("simd",), kernel_path=native_library)
    try:
        kernels.install_fastpath_kernels()
        conv = kernels.KERNELS["conv2d"]
        rng = np.random.default_rng(9)
        x = rng.standard_normal((1, 6, 6, 4)).astype(np.float32)
        kernel, bias = rng.standard_normal((3, 3, 4, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
        attrs = dict(strides=(1, 1), dilations=(1, 1), pads="same", activation="relu")
        prepared = conv.prepare(x, kernel, bias, **attrs)
        np.testing.assert_array_equal(prepared(x, kernel, bias), conv(x, kernel, bias, **attrs))
        # float64 input of the same shape: the C kernels refuse it, the numpy kernel computes it
        x64 = x.astype(np.float64)
        expected, tolerance = naive_conv2d(x, kernel, bias, (1, 1), (1, 1), (1, 1, 1, 1), 1, "relu")
        assert (np.abs(prepared(x64, kernel, bias) - expected) <= tolerance + 1e-6).all()
        assert any("x must be a 4-D float32" in reason for reason in fastpath.backend_report()["fallbacks"])
        # another kernel array: the full kernel with that array
        other = kernel * 2
        np.testing.assert_array_equal(prepared(x, other, bias), conv(x, other, bias, **attrs))
    finally:
        kernels.restore_kernels()
