"""SIMD max / average pooling against a naive float64 loop written here, and against the engine's
own numpy kernels (same rounding: the C kernel sums in the same order)."""

from __future__ import annotations

import numpy as np
import pytest

from app.fastpath import FastpathError


def naive_pool(x, pool, strides, pads, kind, count_include_pad=False):
    """Every output cell from its window's cells inside the input (padding never wins a max and
    counts in an average only with count_include_pad)."""
    n, h, w, c = x.shape
    top, bottom, left, right = pads
    oh = (h + top + bottom - pool[0]) // strides[0] + 1
    ow = (w + left + right - pool[1]) // strides[1] + 1
    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * strides[0] - top, j * strides[1] - left
            rows = range(max(r0, 0), min(r0 + pool[0], h))
            cols = range(max(c0, 0), min(c0 + pool[1], w))
            cells = x[:, rows.start:rows.stop, cols.start:cols.stop].astype(np.float64).reshape(n, -1, c)
            if kind == "max":
                y[:, i, j] = cells.max(axis=1) if cells.shape[1] else -np.inf
            else:
                count = pool[0] * pool[1] if count_include_pad else cells.shape[1]
                y[:, i, j] = cells.sum(axis=1) / count
    return y


CASES = [
    # (n, h, w, c, pool, strides, pads)
    (1, 114, 114, 64, (3, 3), (2, 2), (0, 0, 0, 0)),   # DenseNet's stem max pool
    (2, 7, 7, 3, (2, 2), (2, 2), (0, 0, 0, 0)),         # odd size, channel tail only
    (1, 9, 8, 13, (3, 3), (1, 1), (1, 1, 1, 1)),       # "same", 13 channels = 3 vectors + 1
    (1, 8, 8, 6, (3, 3), (2, 2), (0, 1, 0, 1)),        # TF "same" with stride 2: extra cell bottom/right
    (3, 5, 6, 9, (2, 3), (1, 2), (1, 0, 2, 1)),        # asymmetric everything
    (1, 2, 2, 4, (3, 3), (1, 1), (2, 2, 2, 2)),        # windows wholly in the padding
]


@pytest.mark.parametrize("case", CASES)
def test_max_pool_matches_naive_loop_and_engine_kernel(simd_backend, case):
    from app.kernels.pool import max_pool2d

    n, h, w, c, pool, strides, pads = case
    x = np.random.default_rng(h * 10 + c).standard_normal((n, h, w, c)).astype(np.float32)
    got = simd_backend.max_pool2d(x, pool=pool, strides=strides, pads=pads)
    np.testing.assert_array_equal(got, naive_pool(x, pool, strides, pads, "max").astype(np.float32))
    np.testing.assert_array_equal(got, max_pool2d(x, pool=pool, strides=strides, pads=pads))


@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("case", CASES[:-1])
def test_avg_pool_matches_naive_loop_and_engine_kernel(simd_backend, case, count_include_pad):
    from app.kernels.pool import avg_pool2d

    n, h, w, c, pool, strides, pads = case
    x = np.random.default_rng(h * 10 + c + 1).standard_normal((n, h, w, c)).astype(np.float32)
    got = simd_backend.avg_pool2d(x, pool=pool, strides=strides, pads=pads, count_include_pad=count_include_pad)
    expected = naive_pool(x, pool, strides, pads, "avg", count_include_pad)
    # float32 sum of at most PH * PW terms, then one division / multiplication
    tolerance = (pool[0] * pool[1] + 2) * np.finfo(np.float32).eps * naive_pool(np.abs(x), pool, strides, pads, "avg",
                                                                                 count_include_pad)
    assert (np.abs(got - expected) <= tolerance).all()
    np.testing.assert_array_equal(got, avg_pool2d(x, pool=pool, strides=strides, pads=pads,
                                                  count_include_pad=count_include_pad))


def test_max_pool_propagates_nan_and_ignores_padding(simd_backend):
    x = -np.ones((1, 2, 2, 5), np.float32) * 7
    x[0, 1, 1, 2] = np.nan
    got = simd_backend.max_pool2d(x, pool=(2, 2), strides=(1, 1), pads=(1, 0, 1, 0))
    # the padding (top row / left column) never beats -7; the NaN reaches every window holding it
    assert got.shape == (1, 2, 2, 5)
    assert np.isnan(got[0, 1, 1, 2]) and not np.isnan(got[0, 0, 0, 2])
    np.testing.assert_array_equal(got[0, :, :, 0], [[-7, -7], [-7, -7]])


def test_pool_kernels_registered_through_the_engine(native_library):
    from app import fastpath
    from app import kernels

    fastpath.select_backend(("simd",), kernel_path=native_library)
    try:
        assert {"max_pool2d", "avg_pool2d"} <= set(kernels.install_fastpath_kernels())
        x = np.random.default_rng(2).standard_normal((1, 9, 9, 10)).astype(np.float32)
        pooled = kernels.KERNELS["max_pool2d"](x, pool=(3, 3), strides=(2, 2), pads="same")
        np.testing.assert_array_equal(pooled, naive_pool(x, (3, 3), (2, 2), (1, 1, 1, 1), "max").astype(np.float32))
        averaged = kernels.KERNELS["avg_pool2d"](x, pool=(2, 2), strides=(2, 2), pads="valid")
        assert averaged.shape == (1, 4, 4, 10)
        assert fastpath.backend_report()["fallbacks"] == {}
    finally:
        kernels.restore_kernels()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(x=np.ones((4, 4, 3), np.float32)), r"max_pool2d: x must be a 4-D float32 NHWC array"),
        (dict(pool=(0, 2)), r"max_pool2d: pool must be two sizes >= 1, got \(0, 2\)"),
        (dict(pads="same"), r"max_pool2d: pads must be explicit"),
        (dict(strides=(0, 1)), r"max_pool2d: strides/dilations must be >= 1"),
        (dict(pool=(5, 5)), r"max_pool2d: kernel 5x5 with pads \(0, 0, 0, 0\) does not fit input 4x4"),
    ],
)
def test_pool_invalid_arguments(simd_backend, kwargs, message):
    args = dict(x=np.ones((1, 4, 4, 3), np.float32), pool=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0)) | kwargs
    with pytest.raises(FastpathError, match=message):
        simd_backend.max_pool2d(args.pop("x"), **args)


def test_c_pool_argument_checks(simd_backend):
    lib = simd_backend._lib
    backing = np.zeros(64, np.float32)
    buf = backing.ctypes.data
    assert lib.vk_pool2d(1, 2, 2, 1, buf, 2, 2, 1, 1, 0, 0, 1, 1, buf, 0) == 0
    assert lib.vk_pool2d(1, 2, 2, 1, buf, 0, 2, 1, 1, 0, 0, 1, 1, buf, 0) == -1
    assert lib.vk_pool2d(1, 2, 2, 1, buf, 2, 2, 0, 1, 0, 0, 1, 1, buf, 0) == -5
    assert lib.vk_pool2d(1, 2, 2, 1, buf, 2, 2, 1, 1, 0, 0, 1, 1, buf, 3) == -3
    assert lib.vk_pool2d(1, 2, 2, 1, None, 2, 2, 1, 1, 0, 0, 1, 1, buf, 0) == -4
