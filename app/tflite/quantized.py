"""Integer reference arithmetic of TFLite (``tensorflow/lite/kernels/internal/common.h`` and
``reference/integer_ops/*``), vectorised with numpy int64 so results match LiteRT's reference
kernels bit for bit.

Only pure maths lives here: callers pass numpy arrays and already-decoded quantization
parameters; nothing knows about flatbuffers or tensors.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: real = q * 2^(shift-31), q in [2^30, 2^31)."""
    if real_multiplier == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real_multiplier)
    q = _round_half_away(fraction * (1 << 31))
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:  # single-rounding builds clamp the exponent (quantization_util.cc)
        return (1 << 31) - 1, 30
    return int(q), int(shift)


def _round_half_away(value: float) -> int:
    """C ``std::round``: halves round away from zero (Python's round() is banker's)."""
    return int(math.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)


def round_half_away(values: np.ndarray) -> np.ndarray:
    """Vectorised ``TfLiteRound`` / ``std::round`` on floats."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 values held in int64."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    total = ab + nudge
    # C++ integer division truncates toward zero.
    quotient = np.where(total >= 0, total >> 31, -((-total) >> 31))
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, quotient)


def rounding_divide_by_pot(x: np.ndarray, exponent) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: divide by 2^exponent, rounding half away from zero."""
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier_single_rounding(x: np.ndarray, multiplier, shift) -> np.ndarray:
    """Single-rounding multiply: ``(x * q + 2^(30-shift)) >> (31-shift)``, saturated to int32.
    Measured against LiteRT 2.3 BUILTIN_REF: its int8 FULLY_CONNECTED rounds this way (ruy
    style), while conv / depthwise / mul / mean / requantize use the double-rounding form."""
    shift = np.asarray(shift, np.int64)
    total_shift = 31 - shift
    rounding = np.int64(1) << (total_shift - 1)
    result = (np.asarray(x, np.int64) * np.asarray(multiplier, np.int64) + rounding) >> total_shift
    return np.clip(result, INT32_MIN, INT32_MAX)


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier, shift) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier`` (reference, double rounding): gemmlowp
    SaturatingRoundingDoublingHighMul then RoundingDivideByPOT."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = np.asarray(x, np.int64) * (np.int64(1) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), right)


def activation_range(activation: str, scale: float, zero_point: int, dtype) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized``: the integer clamp a fused activation implies."""
    info = np.iinfo(dtype)
    qmin, qmax = int(info.min), int(info.max)

    def quantize(value: float) -> int:
        return int(zero_point) + _round_half_away(float(np.float32(value) / np.float32(scale)))

    if activation == "linear":
        return qmin, qmax
    if activation == "relu":
        return max(qmin, quantize(0.0)), qmax
    if activation == "relu6":
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if activation == "relu_n1_to_1":
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    raise ValueError(f"fused activation {activation!r} has no quantized form")


def requantize(acc: np.ndarray, multiplier, shift, zero_point: int, lo: int, hi: int, dtype,
               single_rounding: bool = False) -> np.ndarray:
    """int32 accumulator -> output integers (scale, add zero point, clamp)."""
    multiply = (multiply_by_quantized_multiplier_single_rounding if single_rounding
                else multiply_by_quantized_multiplier)
    out = multiply(acc, multiplier, shift) + int(zero_point)
    return np.clip(out, lo, hi).astype(dtype)


def quantize_float(x: np.ndarray, scale, zero_point, dtype, axis: int | None = None) -> np.ndarray:
    """Reference QUANTIZE of floats: ``zp + round(x / scale)`` clamped to the type range."""
    info = np.iinfo(dtype)
    scale = np.asarray(scale, np.float32)
    zero_point = np.asarray(zero_point, np.int64)
    if axis is not None and scale.size > 1:
        bshape = [1] * x.ndim
        bshape[axis] = -1
        scale = scale.reshape(bshape)
        zero_point = zero_point.reshape(bshape)
    # Clip in float first so inf (e.g. x/0 upstream) saturates instead of wrapping on cast.
    q = round_half_away(np.asarray(x, np.float32) / scale)
    q = np.nan_to_num(q, nan=0.0, posinf=float(info.max), neginf=float(info.min))
    q = np.clip(q, float(info.min) - 1e6, float(info.max) + 1e6).astype(np.int64) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale, zero_point, axis: int | None = None) -> np.ndarray:
    """``scale * (q - zero_point)`` in float32 (per channel along ``axis`` when given)."""
    scale = np.asarray(scale, np.float32)
    zero_point = np.asarray(zero_point, np.int64)
    if axis is not None and scale.size > 1:
        bshape = [1] * q.ndim
        bshape[axis] = -1
        scale = scale.reshape(bshape)
        zero_point = zero_point.reshape(bshape)
    # Reference Dequantize multiplies in double before narrowing to float.
    return ((q.astype(np.int64) - zero_point) * scale.astype(np.float64)).astype(np.float32)


def exact_int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matmul via float64 BLAS: exact while every partial sum stays below 2^53, which
    holds for 8-bit operands up to ~2^37 terms; much faster than numpy's integer matmul."""
    return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def symmetric_quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``SymmetricQuantizeFloats`` per row: int8 values and float32 scaling factors."""
    rng = np.maximum(np.abs(x.min(axis=1)), np.abs(x.max(axis=1))).astype(np.float32)
    safe = np.where(rng == 0, np.float32(1), rng)
    factors = np.where(rng == 0, np.float32(1), (rng / np.float32(127)).astype(np.float32))
    inv = (np.float32(127) / safe).astype(np.float32)
    q = round_half_away((x * inv[:, None]).astype(np.float32))
    q = np.where((rng == 0)[:, None], 0, np.clip(q, -127, 127))
    return q.astype(np.int8), factors.astype(np.float32)


def asymmetric_quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``AsymmetricQuantizeFloats`` per row: int8 values, float32 scales, int32 offsets."""
    rows = x.shape[0]
    q = np.zeros(x.shape, np.int8)
    factors = np.ones(rows, np.float32)
    offsets = np.zeros(rows, np.int64)
    qmin, qmax = -128.0, 127.0
    for r in range(rows):
        values = x[r].astype(np.float32)
        rmin = float(min(np.float32(0), values.min()))
        rmax = float(max(np.float32(0), values.max()))
        if rmin == rmax:
            continue
        scale = (rmax - rmin) / (qmax - qmin)
        zp_from_min = qmin - rmin / scale
        zp_from_max = qmax - rmax / scale
        err_min = abs(qmin) + abs(rmin / scale)
        err_max = abs(qmax) + abs(rmax / scale)
        zp = zp_from_min if err_min < err_max else zp_from_max
        if zp <= qmin:
            nudged = -128
        elif zp >= qmax:
            nudged = 127
        else:
            nudged = _round_half_away(zp)
        factors[r] = np.float32(scale)
        offsets[r] = nudged
        inv = np.float32(1.0) / factors[r]
        vals = round_half_away((np.float32(nudged) + values * inv).astype(np.float32))
        q[r] = np.clip(vals, -128, 127).astype(np.int8)
    return q, factors, offsets


# ---------------------------------------------------------------- division (reference DivElementwise)

def _wrap_int32(x: np.ndarray) -> np.ndarray:
    """Two's-complement int32 wrap-around of int64 values (gemmlowp's raw fixed-point adds)."""
    return ((np.asarray(x, np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def count_leading_zeros32(x: np.ndarray) -> np.ndarray:
    """``CountLeadingZeros`` of non-negative values below 2^32 (32 for zero)."""
    x = np.asarray(x, np.int64)
    bits = np.zeros(x.shape, np.int64)
    rest = x.copy()
    for step in (16, 8, 4, 2, 1):
        big = rest >= (np.int64(1) << step)
        bits += np.where(big, step, 0)
        rest = np.where(big, rest >> step, rest)
    return np.where(x == 0, 32, 31 - bits)


def count_leading_sign_bits32(x: np.ndarray) -> np.ndarray:
    """``CountLeadingSignBits`` of int32 values: redundant sign bits (31 for zero, 0 for INT32_MIN)."""
    x = np.asarray(x, np.int64)
    positive = count_leading_zeros32(np.maximum(x, 0)) - 1
    negative = count_leading_zeros32(np.where(x < 0, 2 * -x - 1, 0))
    return np.where(x >= 0, positive, np.where(x == INT32_MIN, 0, negative))


def _saturating_shift_left(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent>`` for exponent > 0."""
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << exponent))


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """gemmlowp's Newton-Raphson 1 / (1 + a) for Q0.31 ``a`` in [0, 1): Q0.31 raw result."""
    a = np.asarray(a, np.int64)
    total = a + INT32_MAX                                      # RoundingHalfSum(a, F0::One())
    half_denominator = np.where(total >= 0, (total + 1) // 2, -((-total + 1) // 2))
    # Q2.29 constants 48/17 and -32/17; F0 * F2 products are doubling high multiplies.
    x = _wrap_int32(1515870810 + saturating_rounding_doubling_high_mul(half_denominator, -1010580540))
    for _ in range(3):
        half_denominator_times_x = saturating_rounding_doubling_high_mul(half_denominator, x)
        one_minus = _wrap_int32((1 << 29) - half_denominator_times_x)
        x = _wrap_int32(x + _saturating_shift_left(saturating_rounding_doubling_high_mul(x, one_minus), 2))
    return _saturating_shift_left(x, 1)                        # Rescale<0>(ExactMulByPot<-1>(x))


def get_reciprocal(x: np.ndarray, integer_digits: int = 31) -> tuple[np.ndarray, np.ndarray]:
    """TFLite ``GetReciprocal`` for positive int32 ``x``: (Q0.31 reciprocal of the normalised
    value, num_bits_over_unit), i.e. 1/x = raw * 2^-31 * 2^-num_bits_over_unit."""
    x = np.asarray(x, np.int64)
    headroom_plus_one = count_leading_zeros32(x)
    shifted_sum_minus_one = ((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31)
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), integer_digits - headroom_plus_one


def divide_quantized(numerator: np.ndarray, denominator: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """Reference int8/uint8 ``DivElementwise`` on zero-point-free int32 values: the quotient
    rescaled by (multiplier, shift), before the output zero point and clamp. A zero
    denominator is the caller's to refuse (TFLite only DCHECKs it)."""
    numerator = np.asarray(numerator, np.int64)
    denominator = np.asarray(denominator, np.int64)
    numerator, denominator = np.broadcast_arrays(numerator, denominator)
    flip = denominator < 0
    numerator = np.where(flip, -numerator, numerator)
    denominator = np.where(flip, -denominator, denominator)
    inverse, recip_shift = get_reciprocal(denominator, 31)
    headroom = count_leading_sign_bits32(numerator)
    # MultiplyByQuantizedMultiplierGreaterThanOne(numerator, inverse, headroom)
    unscaled = saturating_rounding_doubling_high_mul(_wrap_int32(numerator << headroom), inverse)
    total_shift = shift - recip_shift - headroom
    # MultiplyByQuantizedMultiplierSmallerThanOneExp: total_shift <= 0 for any non-zero
    # numerator; a zero numerator gives 0 whatever the shift.
    right = np.clip(-total_shift, 0, 62)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(unscaled, multiplier), right)


# ---------------------------------------------------------------- L2 normalization (reference integer kernel)

def inv_sqrt_quantized_multiplier_exp(acc: np.ndarray, reverse_shift: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """TFLite ``GetInvSqrtQuantizedMultiplierExp`` for non-negative int32 ``acc``: 1 / sqrt(acc)
    as (Q0.31 multiplier, shift) by gemmlowp's five Newton-Raphson steps in Q3.28; acc <= 1
    gives (INT32_MAX, 0), as the reference does for 0 and 1."""
    acc = np.asarray(acc, np.int64)
    small = acc <= 1
    value = np.where(small, 4, acc)
    shift = np.full(acc.shape, 11, np.int64)
    while True:
        big = value >= (1 << 29)
        if not big.any():
            break
        value = np.where(big, value // 4, value)
        shift += big
    pairs = (count_leading_zeros32(value) - 1) // 2 - 1
    shift -= pairs
    value = value << (2 * pairs)                              # now in [2^27, 2^29)
    half_input = rounding_divide_by_pot(value >> 1, 1)        # F3 input, times 1/2
    half_three = (1 << 28) + (1 << 27)                        # 1.5 in Q3.28
    srdhm = saturating_rounding_doubling_high_mul
    x = np.full(acc.shape, 1 << 28, np.int64)                 # F3::One()
    for _ in range(5):
        x3 = _saturating_shift_left(srdhm(srdhm(x, x), x), 6)          # Rescale<3>(x * x * x)
        x = _saturating_shift_left(_wrap_int32(srdhm(half_three, x) - srdhm(half_input, x3)), 3)
    x = srdhm(x, 1518500250)                                  # times sqrt(2) / 2 (Q0.31)
    x = np.where(shift < 0, _wrap_int32(x << np.maximum(-shift, 0)), x)
    shift = np.maximum(shift, 0)
    return np.where(small, INT32_MAX, x), np.where(small, 0, shift) * reverse_shift


def l2_normalize_quantized(q: np.ndarray, zero_point: int, dtype) -> np.ndarray:
    """Reference int8 / uint8 ``L2Normalization`` over the last axis; the output's scale is
    1/128 and its zero point 0 (int8) or 128 (uint8), as the kernel's Prepare requires."""
    diff = np.asarray(q, np.int64) - int(zero_point)
    acc = _wrap_int32((diff * diff).sum(axis=-1, keepdims=True))
    multiplier, shift = inv_sqrt_quantized_multiplier_exp(acc)
    if np.dtype(dtype) == np.int8:
        out = multiply_by_quantized_multiplier(diff, multiplier, shift + 7)
        return np.clip(out, -128, 127).astype(np.int8)
    # uint8: MultiplyByQuantizedMultiplierSmallerThanOneExp(128 * diff, multiplier, shift)
    out = 128 + rounding_divide_by_pot(saturating_rounding_doubling_high_mul(128 * diff, multiplier), -shift)
    return np.clip(out, 0, 255).astype(np.uint8)
