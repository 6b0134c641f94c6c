"""SIMD Winograd F(2x2, 3x3) convolution against the naive float64 direct loop of test_conv2d.

The expected values are the direct convolution's (independent of Winograd). The tolerance is an
a-priori float32 error bound for the Winograd algorithm: every stage (filter transform G g G^T,
input transform B^T d B, the Cin-term sums, output transform A^T M A) rounds sums of magnitudes
bounded by the same expression with |G|, |B|, |A| and |g|, |d| in place of G, B, A, g, d, so the
error is at most (Cin + 14) * eps * A'^T [sum_c (|G||g||G|^T) . (|B|^T|d||B|)] A' (A' = |A|),
plus the bias / scale / activation roundings of the direct bound.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.fastpath import FastpathError

from .test_conv2d import EPS32, naive_conv2d

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def winograd_magnitude(x, kernel, pads, oh, ow):
    """A'^T [sum_c (|G||g||G|^T) . (|B^T||d||B|)] A' for every output pixel and channel."""
    n, h, w, cin = x.shape
    cout = kernel.shape[3]
    top, _, left, _ = pads
    tiles_h, tiles_w = (oh + 1) // 2, (ow + 1) // 2
    xp = np.zeros((n, 2 * tiles_h + 2, 2 * tiles_w + 2, cin))
    rows = min(h, xp.shape[1] - top)
    cols = min(w, xp.shape[2] - left)
    xp[:, top:top + rows, left:left + cols] = np.abs(x[:, :rows, :cols])
    u = np.einsum("ik,klco,jl->ijco", np.abs(G), np.abs(kernel.astype(np.float64)), np.abs(G))  # [4,4,Cin,Cout]
    out = np.zeros((n, 2 * tiles_h, 2 * tiles_w, cout))
    for ty in range(tiles_h):
        for tx in range(tiles_w):
            d = xp[:, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4]  # [n,4,4,Cin]
            v = np.einsum("ik,nklc,jl->nijc", np.abs(BT), d, np.abs(BT))
            m = np.einsum("nijc,ijco->nijo", v, u)
            out[:, 2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2] = np.einsum("ai,nijo,bj->nabo", np.abs(AT), m, np.abs(AT))
    return out[:, :oh, :ow]


def expected_and_tolerance(x, kernel, bias, scale, pads, activation):
    expected, direct_tolerance = naive_conv2d(x, kernel, bias, (1, 1), (1, 1), pads, 1, activation, scale)
    oh, ow = expected.shape[1:3]
    magnitude = winograd_magnitude(x, kernel, pads, oh, ow)
    if scale is not None:
        magnitude = magnitude * np.abs(scale)
    slope = 1.5 if activation == "hard_swish" else 1.0
    return expected, direct_tolerance + slope * (x.shape[3] + 14) * EPS32 * magnitude


CASES = [
    # (n, h, w, cin, cout, pads)
    (1, 4, 4, 1, 1, (1, 1, 1, 1)),
    (1, 7, 7, 3, 8, (1, 1, 1, 1)),       # odd output: the last tiles are half outside
    (2, 6, 9, 5, 13, (0, 0, 0, 0)),      # valid padding, Cout tail of 5 lanes
    (1, 5, 8, 16, 32, (1, 1, 1, 1)),
    (1, 9, 6, 7, 6, (2, 0, 1, 2)),       # asymmetric pads, Cin tail of 3 channels
    (3, 8, 8, 12, 20, (1, 1, 1, 1)),     # more tiles than one block of 16, over images
    (1, 14, 14, 128, 32, (1, 1, 1, 1)),  # DenseNet's bottleneck 3x3 at 14x14
    (1, 3, 3, 9, 4, (0, 0, 0, 0)),       # one output pixel
]


@pytest.mark.parametrize("activation", ["linear", "relu", "relu6", "hard_swish"])
@pytest.mark.parametrize("case", CASES)
def test_winograd_matches_the_direct_naive_loop(simd_backend, case, activation):
    n, h, w, cin, cout, pads = case
    rng = np.random.default_rng(h * 100 + cin * 10 + cout)
    x = (2 * rng.standard_normal((n, h, w, cin))).astype(np.float32)
    kernel = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    got = simd_backend.conv2d_winograd3x3(x, kernel, bias, pads=pads, activation=activation)
    expected, tolerance = expected_and_tolerance(x, kernel, bias, None, pads, activation)
    assert got.shape == expected.shape
    assert (np.abs(got - expected) <= tolerance).all(), float(np.max(np.abs(got - expected) - tolerance))


@pytest.mark.parametrize("case", CASES[1:6])
def test_winograd_with_epilogue_scale_and_no_bias(simd_backend, case):
    n, h, w, cin, cout, pads = case
    rng = np.random.default_rng(h * 100 + cin * 10 + cout + 1)
    x = (2 * rng.standard_normal((n, h, w, cin))).astype(np.float32)
    kernel = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    scale = rng.uniform(-2, 2, cout).astype(np.float32)
    for bias in (None, rng.standard_normal(cout).astype(np.float32)):
        got = simd_backend.conv2d_winograd3x3(x, kernel, bias, scale, pads=pads, activation="relu")
        expected, tolerance = expected_and_tolerance(x, kernel, bias, scale, pads, "relu")
        assert (np.abs(got - expected) <= tolerance).all(), float(np.max(np.abs(got - expected) - tolerance))


def test_winograd_of_ones_is_exact(simd_backend):
    # small integers stay exact through every transform (halves of integer sums of 3x3 ones)
    x = np.ones((1, 4, 4, 1), np.float32)
    kernel = np.ones((3, 3, 1, 1), np.float32)
    got = simd_backend.conv2d_winograd3x3(x, kernel, None, pads=(1, 1, 1, 1))
    np.testing.assert_array_equal(got[0, :, :, 0], [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])


def test_conv2d_dispatches_stride_1_3x3_to_winograd(simd_backend):
    """The IR conv2d gives Winograd's result (same rounding) where winograd_pays, the direct
    kernel's elsewhere (stride 2)."""
    from app.fastpath._backends import winograd_pays

    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 28, 28, 128)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 128, 32)).astype(np.float32)
    assert winograd_pays(128, 32, 28, 28)
    np.testing.assert_array_equal(simd_backend.conv2d(x, kernel, None, pads=(1, 1, 1, 1)),
                                  simd_backend.conv2d_winograd3x3(x, kernel, None, pads=(1, 1, 1, 1)))
    strided = simd_backend.conv2d(x, kernel, None, strides=(2, 2), pads=(0, 1, 0, 1))
    expected, tolerance = naive_conv2d(x, kernel, None, (2, 2), (1, 1), (0, 1, 0, 1), 1, "linear")
    assert (np.abs(strided - expected) <= tolerance).all()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(kernel=np.ones((3, 3, 3, 6), np.float32)), r"kernel must be float32 \[3, 3, 4, Cout\], got float32 array of shape \(3, 3, 3, 6\)"),
        (dict(kernel=np.ones((5, 5, 4, 6), np.float32)), r"kernel must be float32 \[3, 3, 4, Cout\]"),
        (dict(bias=np.ones(5, np.float32)), r"conv2d_winograd3x3: bias must be a float32 array of shape \(6,\)"),
        (dict(activation="swish"), r"conv2d_winograd3x3: activation must be one of"),
        (dict(pads=(0, 0, 0, 0), x=np.ones((1, 2, 5, 4), np.float32)), r"kernel 3x3 with pads \(0, 0, 0, 0\) does not fit input 2x5"),
    ],
)
def test_winograd_invalid_arguments(simd_backend, kwargs, message):
    args = dict(x=np.ones((1, 5, 5, 4), np.float32), kernel=np.ones((3, 3, 4, 6), np.float32), bias=None,
                pads=(1, 1, 1, 1), activation="linear") | kwargs
    with pytest.raises(FastpathError, match=message):
        simd_backend.conv2d_winograd3x3(args.pop("x"), args.pop("kernel"), args.pop("bias"), **args)


def test_winograd_filters_are_made_once_per_kernel_array(simd_backend):
    rng = np.random.default_rng(5)
    kernel = rng.standard_normal((3, 3, 4, 8)).astype(np.float32)
    first = simd_backend.winograd_filters(kernel)
    assert simd_backend.winograd_filters(kernel) is first
    # the transform itself: U[xi] = (G g G^T)[i, j] packed in 8-column panels, K-major
    expected = np.einsum("ik,klco,jl->ijco", G, kernel.astype(np.float64), G).reshape(16, 4, 8)
    magnitude = np.einsum("ik,klco,jl->ijco", np.abs(G), np.abs(kernel.astype(np.float64)), np.abs(G)).reshape(16, 4, 8)
    assert (np.abs(first.reshape(16, 4, 8) - expected) <= 6 * EPS32 * magnitude).all()
    key = id(kernel)
    assert key in simd_backend._winograd_cache
    del kernel  # the cached transform goes with its kernel
    assert key not in simd_backend._winograd_cache


def test_c_winograd_argument_checks(simd_backend):
    lib = simd_backend._lib
    backing = np.zeros(4096, np.float32)
    buf = backing.ctypes.data
    assert lib.vk_winograd3x3_filter_floats(2, 3) == 16 * 2 * 8
    assert lib.vk_winograd3x3_workspace_floats(2, 3) == 16 * (16 * (2 + 8) + 32)
    assert lib.vk_winograd3x3_workspace_floats(0, 3) == -1
    assert lib.vk_winograd3x3_filters(2, 3, buf, 3, buf + 4 * 2048) == 0
    assert lib.vk_winograd3x3_filters(2, 3, buf, 2, buf) == -2
    assert lib.vk_winograd3x3_filters(2, 3, None, 3, buf) == -4
    common = dict(N=1, H=4, W=4, x=buf, xs=2, cin=2, pt=1, pl=1, oh=4, ow=4, u=buf, cout=3, bias=None,
                  y=buf, ys=3, act=0, scale=None, ws=buf)

    def call(**changes):
        a = common | changes
        return lib.vk_conv2d_winograd3x3(a["N"], a["H"], a["W"], a["x"], a["xs"], a["cin"], a["pt"], a["pl"], a["oh"],
                                         a["ow"], a["u"], a["cout"], a["bias"], a["y"], a["ys"], a["act"],
                                         a["scale"], a["ws"])

    assert call() == 0
    assert call(cin=0) == -1
    assert call(pt=-1) == -1
    assert call(ys=2) == -2
    assert call(xs=1) == -2
    assert call(act=7) == -3
    assert call(ws=None) == -4
    assert call(u=None) == -4
