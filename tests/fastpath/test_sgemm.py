"""SIMD / OpenBLAS / numpy GEMM backends against a float64 numpy reference written here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from app.fastpath import FastpathError, NumpyBackend

EPS32 = float(np.finfo(np.float32).eps)


def reference(a, b, bias=None, activation="linear"):
    """act(a @ b + bias) in float64, plus the elementwise float32 error bound (K+2)*eps*(|a||b|+|bias|)."""
    exact = a.astype(np.float64) @ b.astype(np.float64)
    magnitude = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    if bias is not None:
        exact = exact + bias
        magnitude = magnitude + np.abs(bias)
    if activation == "relu":
        exact = np.maximum(exact, 0.0)
    elif activation == "relu6":
        exact = np.clip(exact, 0.0, 6.0)
    tolerance = (a.shape[1] + 2) * EPS32 * magnitude + 1e-30
    if activation == "hard_swish":
        # d/dz [z * clip(z+3, 0, 6) / 6] is (2z+3)/6 on (-3, 3), 1 above, 0 below; plus its own 4 roundings
        slope = np.where(np.abs(exact) < 3, 1.5, 1.0)
        exact = exact * np.clip(exact + 3, 0, 6) / 6
        tolerance = slope * tolerance + 4 * EPS32 * np.abs(exact) + 1e-30
    return exact, tolerance


def assert_close(got, a, b, bias=None, activation="linear"):
    expected, tolerance = reference(a, b, bias, activation)
    assert got.dtype == np.float32 and got.shape == expected.shape
    excess = np.abs(got - expected) - tolerance
    worst = np.unravel_index(np.argmax(excess), excess.shape) if excess.size else None
    assert excess.size == 0 or excess[worst] <= 0, (
        f"max error beyond bound at {worst}: got {got[worst]}, expected {expected[worst]}, tol {tolerance[worst]}"
    )


def operands(m, k, n, seed=0, with_bias=False):
    rng = np.random.default_rng(seed + 1000 * m + 100 * n + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    return a, b, bias


@pytest.fixture(scope="module", params=["simd", "openblas", "numpy"])
def backend(request, simd_backend):
    if request.param == "simd":
        return simd_backend
    if request.param == "numpy":
        return NumpyBackend()
    from app.fastpath import _make_openblas

    try:
        return _make_openblas()
    except FastpathError as exc:
        pytest.skip(f"OpenBLAS backend unavailable here: {exc}")


# Tails of the 4x8 register tile (M mod 4, N mod 8) crossed with K sizes around the VK_KC=256 block.
SMALL = list(itertools.product([1, 2, 3, 4, 5, 7, 9, 17, 33], [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33], [1, 3, 8, 17, 257]))
# Larger and conv-shaped (M = output pixels, K = kh*kw*cin, N = cout); N > 256 crosses VK_NC.
LARGE = [
    (64, 64, 64), (65, 127, 255), (127, 300, 513), (255, 513, 65), (16, 1, 300), (1, 1152, 256),
    (3136, 576, 64), (784, 1152, 128), (196, 2304, 256), (12544, 27, 32), (49, 1024, 1000),
]


# Every K of the brief's list and both sides of the K block boundaries (256, 512).
K_SWEEP = [(6, 19, k) for k in (1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 127, 255, 256, 511, 512, 513)]
# N and M beyond one register tile, around the N block (VK_NC = 256).
N_SWEEP = [(5, n, 33) for n in (64, 65, 127, 255, 256, 257)] + [(m, 10, 12) for m in (64, 65, 127, 255)]


@pytest.mark.parametrize("m,n,k", SMALL + K_SWEEP + N_SWEEP)
def test_simd_small_shapes_and_tails(simd_backend, m, n, k):
    a, b, _ = operands(m, k, n)
    assert_close(simd_backend.sgemm(a, b), a, b)


@pytest.mark.parametrize("m,k,n", LARGE)
def test_large_and_conv_shapes(backend, m, k, n):
    a, b, bias = operands(m, k, n, with_bias=True)
    assert_close(backend.sgemm(a, b, bias, "linear"), a, b, bias)


@pytest.mark.parametrize("activation", ["linear", "relu", "relu6", "hard_swish"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (5, 9, 7), (33, 65, 17), (130, 300, 70)])
def test_bias_and_activation(backend, m, k, n, with_bias, activation):
    a, b, bias = operands(m, k, n, seed=3, with_bias=with_bias)
    a *= 2.0  # values beyond 6 so relu6 clips
    assert_close(backend.sgemm(a, b, bias, activation), a, b, bias, activation)


def test_relu6_clips_known_values(backend):
    a = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    b = np.array([[-3.0, 2.5, 9.0], [3.0, -2.5, -9.0]], dtype=np.float32)
    got = backend.sgemm(a, b, None, "relu6")
    np.testing.assert_array_equal(got, [[0.0, 2.5, 6.0], [3.0, 0.0, 0.0]])


def test_nan_propagates_through_relu(backend):
    a = np.array([[np.nan, 1.0]], dtype=np.float32)
    b = np.ones((2, 9), dtype=np.float32)
    assert np.isnan(backend.sgemm(a, b, None, "relu")).all()
    assert np.isnan(backend.sgemm(a, b, None, "relu6")).all()


@pytest.mark.parametrize("m,k,n", [(7, 5, 3), (9, 33, 17), (70, 300, 41)])
def test_leading_dimensions_and_untouched_padding(backend, m, k, n):
    rng = np.random.default_rng(5)
    a_buf = rng.standard_normal((m, k + 3)).astype(np.float32)
    b_buf = rng.standard_normal((k, n + 5)).astype(np.float32)
    out_buf = np.full((m, n + 7), 123.0, dtype=np.float32)
    a, b, out = a_buf[:, 1:k + 1], b_buf[:, 2:n + 2], out_buf[:, 3:n + 3]
    bias = rng.standard_normal(n).astype(np.float32)
    result = backend.sgemm(a, b, bias, "relu", out)
    assert result is out
    assert_close(out, a, b, bias, "relu")
    assert (out_buf[:, :3] == 123.0).all() and (out_buf[:, n + 3:] == 123.0).all()


def test_out_is_written_in_place_without_copies(simd_backend):
    a, b, _ = operands(40, 20, 24)
    out = np.empty((40, 24), dtype=np.float32)
    assert simd_backend.sgemm(a, b, out=out) is out
    assert_close(out, a, b)


def test_non_unit_column_stride_is_copied_and_correct(backend):
    a, b, _ = operands(6, 22, 10)
    a_strided = np.repeat(a, 2, axis=1)[:, ::2]
    b_transposed_view = np.ascontiguousarray(b.T).T  # column-major: column stride != 4 bytes
    assert_close(backend.sgemm(a_strided, b_transposed_view), a, b)


def test_empty_dimensions(backend):
    a = np.zeros((0, 4), np.float32)
    assert backend.sgemm(a, np.ones((4, 3), np.float32)).shape == (0, 3)
    got = backend.sgemm(np.zeros((3, 0), np.float32), np.zeros((0, 2), np.float32),
                        np.array([1.0, -2.0], np.float32), "relu")
    np.testing.assert_array_equal(got, [[1.0, 0.0]] * 3)


def test_packed_weights_reused_across_inputs(simd_backend):
    _, b, bias = operands(1, 300, 37, with_bias=True)
    packed = simd_backend.pack_weights(b)
    for m in (1, 5, 64):
        a = np.random.default_rng(m).standard_normal((m, 300)).astype(np.float32)
        assert_close(simd_backend.sgemm_packed(a, packed, bias, "relu6"), a, b, bias, "relu6")


# --- validation: one negative test per check, matching the message --------------------------

GOOD_A = np.ones((3, 4), np.float32)
GOOD_B = np.ones((4, 5), np.float32)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(a=GOOD_A.astype(np.float64)), r"a must be a 2-D float32 array, got float64 array of shape \(3, 4\)"),
        (dict(a=np.ones((2, 3, 4), np.float32)), r"a must be a 2-D float32 array, got float32 array of shape \(2, 3, 4\)"),
        (dict(a=[[1.0]]), r"a must be a 2-D float32 array, got list"),
        (dict(b=GOOD_B.astype(np.float16)), r"b must be a 2-D float32 array, got float16"),
        (dict(b=np.ones((5, 5), np.float32)), r"inner dimensions differ: a is \(3, 4\), b is \(5, 5\)"),
        (dict(activation="gelu"), r"activation must be one of \['hard_silu', 'hard_swish', 'linear', 'relu', 'relu6'\], got 'gelu'"),
        (dict(bias=np.ones(4, np.float32)), r"bias must be a float32 array of shape \(5,\), got float32 array of shape \(4,\)"),
        (dict(bias=np.ones(5, np.float64)), r"bias must be a float32 array of shape \(5,\), got float64"),
        (dict(out=np.empty((3, 4), np.float32)), r"out must be a float32 array of shape \(3, 5\)"),
        (dict(out=np.empty((3, 5), np.float64)), r"out must be a float32 array of shape \(3, 5\), got float64"),
        (dict(out=np.empty((5, 3), np.float32).T), r"out must have unit column stride"),
    ],
)
def test_invalid_arguments_are_rejected(backend, kwargs, message):
    args = dict(a=GOOD_A, b=GOOD_B, bias=None, activation="linear", out=None) | kwargs
    with pytest.raises(FastpathError, match=message):
        backend.sgemm(args["a"], args["b"], args["bias"], args["activation"], args["out"])


def test_read_only_out_is_rejected(backend):
    out = np.empty((3, 5), np.float32)
    out.flags.writeable = False
    with pytest.raises(FastpathError, match="out is read-only"):
        backend.sgemm(GOOD_A, GOOD_B, out=out)


def test_out_overlapping_an_input_is_rejected(backend):
    square = np.ones((4, 4), np.float32)
    with pytest.raises(FastpathError, match="out overlaps a or b"):
        backend.sgemm(square, square, out=square)


def test_pack_weights_rejects_non_float32(simd_backend):
    with pytest.raises(FastpathError, match=r"pack_weights: b must be a 2-D float32 array, got float64"):
        simd_backend.pack_weights(np.ones((3, 3)))


def test_sgemm_packed_rejects_foreign_weights(simd_backend):
    with pytest.raises(FastpathError, match="weights must come from pack_weights"):
        simd_backend.sgemm_packed(GOOD_A, GOOD_B)


def test_c_level_argument_checks(simd_backend):
    """The C entry points validate on their own (VK_E_* codes) for callers other than Python."""
    lib = simd_backend._lib
    backing = np.zeros(64, np.float32)  # keep the array alive: a bare .ctypes.data would dangle
    buf = backing.ctypes.data
    assert lib.vk_sgemm(-1, 2, 2, buf, 2, buf, 2, None, buf, 2, 0, buf) == -1
    assert lib.vk_sgemm(2, 2, 4, buf, 3, buf, 2, None, buf, 2, 0, buf) == -2  # lda < K
    assert lib.vk_sgemm(2, 2, 2, buf, 2, buf, 2, None, buf, 2, 7, buf) == -3  # activation 7
    assert lib.vk_sgemm(2, 2, 2, buf, 2, buf, 2, None, buf, 2, 0, None) == -4  # no workspace
    assert lib.vk_depthwise_conv2d(1, 4, 4, 2, buf, 3, 3, buf, None, 0, 1, 1, 1, 0, 0, 2, 2, buf, 0) == -5
    assert lib.vk_packed_b_floats(5, 9) == 2 * 8 * 5
