"""Fixed-point primitives against naive scalar Python written from the C++ definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.errors import ModelInputError
from app.tflite import quantized as Q

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def naive_srdhm(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    total = ab + nudge
    return int(total / (1 << 31)) if abs(total) < 2**53 else (abs(total) >> 31) * (1 if total >= 0 else -1)


def naive_rdbpot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def naive_quantize_multiplier(m: float) -> tuple[int, int]:
    if m == 0:
        return 0, 0
    frac, shift = math.frexp(m)
    q = int(math.floor(abs(frac * 2**31) + 0.5)) * (1 if frac >= 0 else -1)
    if q == 2**31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


@pytest.fixture()
def rng():
    return np.random.default_rng(42)


def test_saturating_rounding_doubling_high_mul(rng):
    a = rng.integers(INT32_MIN, INT32_MAX, 2000, dtype=np.int64)
    b = rng.integers(INT32_MIN, INT32_MAX, 2000, dtype=np.int64)
    a[:3] = [INT32_MIN, INT32_MIN, 0]
    b[:3] = [INT32_MIN, 5, 7]
    got = Q.saturating_rounding_doubling_high_mul(a, b)
    want = [naive_srdhm(int(x), int(y)) for x, y in zip(a, b)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("exponent", [0, 1, 5, 13, 31])
def test_rounding_divide_by_pot(rng, exponent):
    x = rng.integers(INT32_MIN, INT32_MAX, 1000, dtype=np.int64)
    x[:4] = [-3, 3, -(1 << exponent) // 2 if exponent else -1, (1 << exponent) // 2]
    want = [naive_rdbpot(int(v), exponent) for v in x]
    np.testing.assert_array_equal(Q.rounding_divide_by_pot(x, exponent), want)


@pytest.mark.parametrize("m", [1e-9, 0.0001234, 0.25, 0.5, 0.7499999, 0.999999999, 1.0, 3.7, 1234.5])
def test_quantize_multiplier(m):
    q, shift = Q.quantize_multiplier(m)
    assert (q, shift) == naive_quantize_multiplier(m)
    assert q * 2.0 ** (shift - 31) == pytest.approx(m, rel=1e-9)


def test_multiply_by_quantized_multiplier_both_roundings(rng):
    x = rng.integers(-(2**20), 2**20, 500, dtype=np.int64)
    for m in (0.0123, 0.49, 0.75):
        q, shift = Q.quantize_multiplier(m)
        double = [naive_rdbpot(naive_srdhm(int(v) * (1 << max(shift, 0)), q), max(-shift, 0)) for v in x]
        single = [(int(v) * q + (1 << (30 - shift))) >> (31 - shift) for v in x]
        np.testing.assert_array_equal(Q.multiply_by_quantized_multiplier(x, q, shift), double)
        np.testing.assert_array_equal(Q.multiply_by_quantized_multiplier_single_rounding(x, q, shift), single)


def test_activation_range():
    assert Q.activation_range("linear", 0.1, 3, np.int8) == (-128, 127)
    assert Q.activation_range("relu", 0.1, -10, np.int8) == (-10, 127)
    assert Q.activation_range("relu6", 0.05, -128, np.int8) == (-128, -8)
    assert Q.activation_range("relu_n1_to_1", 0.01, 0, np.int8) == (-100, 100)
    with pytest.raises(ValueError, match="has no quantized form"):
        Q.activation_range("tanh", 0.1, 0, np.int8)


def test_quantize_float_rounds_half_away_and_saturates():
    x = np.array([0.25, -0.25, 0.75, 1e9, -np.inf, np.nan], np.float32)
    got = Q.quantize_float(x, 0.5, 0, np.int8)
    np.testing.assert_array_equal(got, [1, -1, 2, 127, -128, 0])


def test_symmetric_and_asymmetric_row_quantization():
    x = np.array([[0.0, 0.0, 0.0], [-1.0, 0.5, 2.0]], np.float32)
    q, factors = Q.symmetric_quantize_rows(x)
    np.testing.assert_array_equal(q[0], [0, 0, 0])
    assert factors[0] == 1.0 and factors[1] == np.float32(2.0 / 127)
    np.testing.assert_array_equal(q[1], [-64, 32, 127])  # round(-63.5) away from zero
    q, factors, offsets = Q.asymmetric_quantize_rows(x)
    assert offsets[0] == 0 and factors[0] == 1.0
    scale = 3.0 / 255.0
    assert factors[1] == np.float32(scale)
    # Reconstruction error is at most half a step.
    recon = (q[1].astype(np.float32) - offsets[1]) * factors[1]
    assert np.abs(recon - x[1]).max() <= scale / 2 + 1e-7


def test_predict_input_errors():
    from pathlib import Path
    from app.tflite import load
    data = (Path(__file__).resolve().parents[1] / "fixtures" / "tflite" / "cnn_int8" / "model.tflite").read_bytes()
    model = load(data, name="q.tflite")
    with pytest.raises(ModelInputError, match=r"q.tflite: expected input of shape \(batch, 16, 16, 3\), received \(2, 8, 8, 3\)"):
        model.predict(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ModelInputError, match="pass float .* or int8, received int32"):
        model.predict(np.zeros((1, 16, 16, 3), np.int32))


# ---------------------------------------------------------------- integer division helpers

def naive_clsb(x: int) -> int:
    """Redundant sign bits of an int32, counted bit by bit."""
    bits = [(x >> i) & 1 for i in range(31, -1, -1)]
    count = 0
    for bit in bits[1:]:
        if bit != bits[0]:
            break
        count += 1
    return count


@pytest.mark.parametrize("x", [0, 1, -1, 2, -2, 127, -128, 255, 2**30, -(2**30), 2**31 - 1, -(2**31), 12345, -99999])
def test_count_leading_sign_bits(x):
    assert int(Q.count_leading_sign_bits32(np.array([x]))[0]) == naive_clsb(x)


@pytest.mark.parametrize("x", [1, 2, 3, 5, 7, 100, 127, 128, 200, 255, 256, 1000, 65535, 2**30 + 7])
def test_get_reciprocal_is_one_over_x(x):
    raw, bits_over_unit = Q.get_reciprocal(np.array([x]))
    approx = int(raw[0]) * 2.0**-31 * 2.0 ** -int(bits_over_unit[0])
    assert 0 < int(raw[0]) <= 2**31 - 1
    assert abs(approx * x - 1.0) < 1e-8


def test_divide_quantized_is_within_one_of_the_real_quotient():
    rng = np.random.default_rng(0)
    numerators = rng.integers(-255, 256, 4000)
    denominators = rng.integers(1, 256, 4000) * rng.choice([-1, 1], 4000)
    for real in (0.013, 0.5, 0.9, 3.7, 41.0):
        mult, shift = Q.quantize_multiplier(real)
        got = Q.divide_quantized(numerators, denominators, mult, shift)
        want = numerators / denominators * real
        assert np.abs(got - want).max() <= 0.5 + 1e-6 + abs(want).max() * 2e-8, real
        assert np.all(got[numerators == 0] == 0)


def naive_saturating_shift_left(x: int, exponent: int) -> int:
    threshold = (1 << (31 - exponent)) - 1
    return INT32_MAX if x > threshold else INT32_MIN if x < -threshold else x << exponent


def naive_inv_sqrt(value: int) -> tuple[int, int]:
    """GetInvSqrtQuantizedMultiplierExp (reverse_shift -1) line by line on Python ints."""
    if value <= 1:
        return INT32_MAX, 0
    shift = 11
    while value >= (1 << 29):
        value //= 4
        shift += 1
    leading_zeros = 32 - value.bit_length()
    pairs = (leading_zeros - 1) // 2 - 1
    shift -= pairs
    value <<= 2 * pairs
    assert (1 << 27) <= value < (1 << 29)
    half_input = naive_rdbpot(value >> 1, 1)
    x = 1 << 28
    for _ in range(5):
        x3 = naive_saturating_shift_left(naive_srdhm(naive_srdhm(x, x), x), 6)
        x = naive_saturating_shift_left(naive_srdhm(3 << 27, x) - naive_srdhm(half_input, x3), 3)
    x = naive_srdhm(x, 1518500250)
    if shift < 0:
        x <<= -shift
        shift = 0
    return x, -shift


@pytest.mark.parametrize("value", [0, 1, 2, 3, 4, 17, 255, 4096, 65025, 123457, (1 << 27) + 5, (1 << 29) + 3, 2**31 - 1])
def test_inv_sqrt_multiplier_matches_naive_and_is_one_over_sqrt(value):
    multiplier, shift = Q.inv_sqrt_quantized_multiplier_exp(np.array([value]))
    assert (int(multiplier[0]), int(shift[0])) == naive_inv_sqrt(value)
    if value > 1:
        real = int(multiplier[0]) * 2.0 ** (int(shift[0]) - 31)
        assert real == pytest.approx(1 / math.sqrt(value), rel=1e-5)   # 5 Newton steps from 1


def test_l2_normalize_quantized_is_within_one_step_of_the_real_unit_vector(rng):
    q = rng.integers(-128, 128, (50, 12)).astype(np.int8)
    out = Q.l2_normalize_quantized(q, -3, np.int8)
    real = (q.astype(np.float64) + 3) / np.linalg.norm(q.astype(np.float64) + 3, axis=-1, keepdims=True)
    assert np.abs(out.astype(np.float64) - np.clip(real * 128, -128, 127)).max() <= 1
    as_uint8 = Q.l2_normalize_quantized((q.astype(np.int16) + 128).astype(np.uint8), 125, np.uint8)
    assert np.abs(as_uint8.astype(np.float64) - np.clip(128 + real * 128, 0, 255)).max() <= 1
