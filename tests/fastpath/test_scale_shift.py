"""SIMD scale_shift (folded batch-norm + fused activation) against numpy written here."""

from __future__ import annotations

import numpy as np
import pytest

from app.fastpath import FastpathError


def reference(x, scale, shift, activation):
    y = x.astype(np.float64) * scale.astype(np.float64).reshape(-1) + shift.astype(np.float64).reshape(-1)
    if activation == "relu":
        y = np.maximum(y, 0)
    elif activation == "relu6":
        y = np.clip(y, 0, 6)
    elif activation == "hard_swish":
        y = y * np.clip(y + 3, 0, 6) / 6
    return y


@pytest.mark.parametrize("activation", ["linear", "relu", "relu6", "hard_swish"])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 4), (2, 5, 5, 3), (1, 4, 4, 8), (1, 3, 3, 9), (2, 2, 2, 17), (1, 7, 7, 33)])
def test_scale_shift_matches_numpy(simd_backend, shape, activation):
    rng = np.random.default_rng(sum(shape))
    x = (4 * rng.standard_normal(shape)).astype(np.float32)
    scale = rng.standard_normal(shape[-1]).astype(np.float32)
    shift = rng.standard_normal(shape[-1]).astype(np.float32)
    got = simd_backend.scale_shift(x, scale, shift, activation=activation)
    assert got.shape == x.shape and got.dtype == np.float32
    # one float32 rounding of the product and one of the sum (hard_swish: four more)
    rtol = 2e-6 if activation == "hard_swish" else 3e-7
    np.testing.assert_allclose(got, reference(x, scale, shift, activation), rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("channels,capacity", [(9, 20), (32, 256), (3, 4)])
def test_scale_shift_reads_the_first_channels_of_a_wider_buffer_in_place(simd_backend, channels, capacity):
    # DenseNet's batch-norm on a concat that is a view buffer[..., :C] (app.kernels.shape.concat)
    rng = np.random.default_rng(channels)
    buffer = (4 * rng.standard_normal((2, 5, 6, capacity))).astype(np.float32)
    x = buffer[..., :channels]
    assert not x.flags.c_contiguous
    scale, shift = rng.standard_normal(channels).astype(np.float32), rng.standard_normal(channels).astype(np.float32)
    got = simd_backend.scale_shift(x, scale, shift, activation="relu")
    assert got.flags.c_contiguous and got.shape == x.shape
    np.testing.assert_array_equal(got, simd_backend.scale_shift(np.ascontiguousarray(x), scale, shift, activation="relu"))
    np.testing.assert_allclose(got, reference(x, scale, shift, "relu"), rtol=3e-7, atol=1e-6)


def test_scale_shift_of_unevenly_spaced_rows_copies_first(simd_backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 8)).astype(np.float32)[:, :3, :5]  # rows 8 apart, images 48 apart
    from app.fastpath._backends import _row_stride

    assert _row_stride(x) is None and _row_stride(x[:, ::2]) is None and _row_stride(x[:1]) == 8
    scale, shift = np.full(5, 2, np.float32), np.ones(5, np.float32)
    np.testing.assert_array_equal(simd_backend.scale_shift(x, scale, shift), x * 2 + 1)


def test_scalar_and_keepdims_parameters_broadcast(simd_backend):
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    got = simd_backend.scale_shift(x, np.array([0.5], np.float32), np.ones((1, 1, 1, 4), np.float32))
    np.testing.assert_array_equal(got, x * 0.5 + 1)


def test_input_is_not_modified_and_nan_survives_relu(simd_backend):
    x = np.array([[-1.0, np.nan, 2.0, 8.0]], np.float32)
    before = x.copy()
    got = simd_backend.scale_shift(x, np.ones(4, np.float32), np.zeros(4, np.float32), activation="relu6")
    np.testing.assert_array_equal(x, before)
    assert got[0, 0] == 0 and np.isnan(got[0, 1]) and got[0, 2] == 2 and got[0, 3] == 6


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(x=np.ones((2, 3))), r"x must be a float32 array with a channel axis, got float64 array of shape \(2, 3\)"),
        (dict(x=np.float32(1.0)), r"x must be a float32 array with a channel axis, got float32"),
        (dict(scale=np.ones(2, np.float32)), r"scale must be float32 with 3 values on the last axis \(or one value\), got float32 array of shape \(2,\)"),
        (dict(scale=np.ones((3, 1), np.float32)), r"scale must be float32 with 3 values on the last axis"),
        (dict(shift=np.ones(3)), r"shift must be float32 with 3 values on the last axis \(or one value\), got float64"),
        (dict(activation="elu"), r"activation must be one of \['hard_silu', 'hard_swish', 'linear', 'relu', 'relu6'\], got 'elu'"),
    ],
)
def test_scale_shift_invalid_arguments(simd_backend, kwargs, message):
    args = dict(x=np.ones((2, 3), np.float32), scale=np.ones(3, np.float32), shift=np.ones(3, np.float32),
                activation="linear") | kwargs
    with pytest.raises(FastpathError, match=message):
        simd_backend.scale_shift(args["x"], args["scale"], args["shift"], activation=args["activation"])


def test_c_scale_shift_argument_checks(simd_backend):
    lib = simd_backend._lib
    backing = np.zeros(16, np.float32)  # keep the array alive: a bare .ctypes.data would dangle
    buf = backing.ctypes.data
    assert lib.vk_scale_shift(2, 4, buf, 4, buf, buf, buf, 0) == 0
    assert lib.vk_scale_shift(2, 4, buf, 6, buf, buf, buf, 0) == 0  # rows 6 floats apart
    assert lib.vk_scale_shift(-1, 4, buf, 4, buf, buf, buf, 0) == -1
    assert lib.vk_scale_shift(2, 4, buf, 3, buf, buf, buf, 0) == -2  # row stride < C
    assert lib.vk_scale_shift(2, 4, buf, 4, buf, buf, buf, 5) == -3
    assert lib.vk_scale_shift(2, 4, buf, 4, buf, None, buf, 0) == -4
