"""OpenCV-compatible ``cv2.resize`` in pure numpy (no OpenCV in the browser).

AUCMEDI resizes with albumentations ``Resize(interpolation=k)``, which calls
``cv2.resize(img, (W, H), interpolation=k)`` on the image *in its loaded dtype* (uint8 for
Pillow-loaded images). To give a model exactly what it saw in training we reproduce OpenCV's
``resizeGeneric`` / ``resizeArea`` / ``resizeNN`` arithmetic (OpenCV 4.x,
``modules/imgproc/src/resize.cpp``):

* coordinates: ``src = (dst + 0.5) * scale - 0.5`` with ``scale = 1 / (dst_size / src_size)``
  computed in double, the fraction rounded to float32 as OpenCV does;
* uint8 linear / cubic / Lanczos use OpenCV's 11-bit fixed-point coefficients
  (``INTER_RESIZE_COEF_BITS``) and its integer rounding; other dtypes compute in float32
  (float64 for float64 input) and round half to even like ``saturate_cast``;
* INTER_AREA has three paths like OpenCV: integer-factor down-scaling (block mean),
  non-integer down-scaling (exact pixel-area weights) and up-scaling (bilinear variant);
  INTER_LINEAR with an exact factor-2 reduction is done as INTER_AREA, as OpenCV does;
* borders replicate the edge pixel (``BORDER_REPLICATE``).

Parity with ``opencv-python-headless`` is tested in ``tests/imaging/test_resize_opencv.py``.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import PreprocessError

INTER_NEAREST, INTER_LINEAR, INTER_CUBIC, INTER_AREA, INTER_LANCZOS4 = 0, 1, 2, 3, 4
INTERPOLATION_NAMES = {
    INTER_NEAREST: "nearest",
    INTER_LINEAR: "linear",
    INTER_CUBIC: "cubic",
    INTER_AREA: "area",
    INTER_LANCZOS4: "lanczos4",
}
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)

_COEF_BITS = 11  # OpenCV INTER_RESIZE_COEF_BITS
_COEF_SCALE = 1 << _COEF_BITS
_DBL_EPSILON = np.finfo(np.float64).eps


def resize(image: np.ndarray, size: tuple[int, int], interpolation: int = INTER_LINEAR) -> np.ndarray:
    """Resize ``image`` (H x W or H x W x C) to ``size`` = (height, width) like ``cv2.resize``.

    ``interpolation`` is the OpenCV code: 0 nearest, 1 linear, 2 cubic, 3 area, 4 Lanczos-4.
    The result has the input's dtype and channel layout.
    """
    if interpolation not in INTERPOLATION_NAMES:
        raise PreprocessError(
            f"resize: interpolation must be an OpenCV code 0-4 ({INTERPOLATION_NAMES}), got {interpolation!r}"
        )
    array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise PreprocessError(f"resize: expected an H x W or H x W x C image, got shape {array.shape}")
    if array.dtype.type not in SUPPORTED_DTYPES:
        raise PreprocessError(
            f"resize: dtype {array.dtype} is not supported (uint8, uint16, int16, float32, float64)"
        )
    dst_h, dst_w = (int(v) for v in size)
    src_h, src_w = array.shape[:2]
    if dst_h <= 0 or dst_w <= 0:
        raise PreprocessError(f"resize: target size must be positive, got {size!r}")
    if src_h <= 0 or src_w <= 0:
        raise PreprocessError(f"resize: cannot resize an empty image of shape {array.shape}")
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    squeeze = array.ndim == 2
    if squeeze:
        array = array[:, :, None]
    if (dst_h, dst_w) == (src_h, src_w):
        out = array.copy()
    else:
        out = _resize_hwc(array, dst_h, dst_w, interpolation)
    return out[:, :, 0] if squeeze else out


# ----------------------------------------------------------------------------------------------
# dispatch (mirrors cv::hal::resize)


def _resize_hwc(src: np.ndarray, dst_h: int, dst_w: int, interpolation: int) -> np.ndarray:
    src_h, src_w = src.shape[:2]
    inv_scale_x = dst_w / src_w
    inv_scale_y = dst_h / src_h
    scale_x = 1.0 / inv_scale_x
    scale_y = 1.0 / inv_scale_y

    if interpolation == INTER_NEAREST:
        xs = np.minimum(np.floor(np.arange(dst_w) * scale_x).astype(np.int64), src_w - 1)
        ys = np.minimum(np.floor(np.arange(dst_h) * scale_y).astype(np.int64), src_h - 1)
        return src[ys][:, xs]

    iscale_x = _saturate_int(scale_x)
    iscale_y = _saturate_int(scale_y)
    is_area_fast = abs(scale_x - iscale_x) < _DBL_EPSILON and abs(scale_y - iscale_y) < _DBL_EPSILON
    if interpolation == INTER_LINEAR and is_area_fast and iscale_x == 2 and iscale_y == 2:
        interpolation = INTER_AREA

    if interpolation == INTER_AREA and scale_x >= 1 and scale_y >= 1:
        if is_area_fast:
            return _resize_area_fast(src, dst_h, dst_w, iscale_x, iscale_y)
        return _resize_area(src, dst_h, dst_w, scale_x, scale_y)

    # separable kernels: linear, cubic, Lanczos-4, and "area" used for up-scaling
    area_mode = interpolation == INTER_AREA
    x_index, x_weight = _kernel_taps(src_w, dst_w, scale_x, inv_scale_x, interpolation, area_mode, clamp=True)
    y_index, y_weight = _kernel_taps(src_h, dst_h, scale_y, inv_scale_y, interpolation, area_mode, clamp=False)
    # only the source rows some output row reads need a horizontal pass (a big saving when shrinking)
    needed_rows, y_local = np.unique(y_index, return_inverse=True)
    src = src[needed_rows]
    y_index = y_local.reshape(y_index.shape).astype(np.intp)
    if src.dtype == np.uint8:
        return _separable_fixed_point_u8(src, x_index, x_weight, y_index, y_weight, interpolation)
    return _separable_float(src, x_index, x_weight, y_index, y_weight)


def _saturate_int(value: float) -> int:
    # cv::saturate_cast<int>(double) rounds half to even
    return int(np.rint(value))


# ----------------------------------------------------------------------------------------------
# coefficient tables


def _cubic_coefficients(fx: np.ndarray) -> np.ndarray:
    """OpenCV ``interpolateCubic`` (A = -0.75) in float32 arithmetic; fx has shape (n,)."""
    x = fx.astype(np.float32)
    a = np.float32(-0.75)
    one = np.float32(1)
    xp1 = x + one
    c0 = ((a * xp1 - np.float32(-3.75)) * xp1 + np.float32(-6.0)) * xp1 - np.float32(-3.0)
    c1 = ((np.float32(1.25) * x - np.float32(2.25)) * x) * x + one
    omx = one - x
    c2 = ((np.float32(1.25) * omx - np.float32(2.25)) * omx) * omx + one
    c3 = ((one - c0) - c1) - c2
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.float32)


_S45 = 0.70710678118654752440084436210485
_LANCZOS_CS = np.array(
    [[1, 0], [-_S45, -_S45], [0, 1], [_S45, -_S45], [-1, 0], [_S45, _S45], [0, -1], [-_S45, _S45]],
    dtype=np.float64,
)


def _lanczos4_coefficients(fx: np.ndarray) -> np.ndarray:
    """OpenCV 4.x ``interpolateLanczos4``: float32 weights normalised to sum 1."""
    x = fx.astype(np.float32)
    y0 = -(x + np.float32(3)).astype(np.float64) * math.pi * 0.25
    s0, c0 = np.sin(y0), np.cos(y0)
    coeffs = np.empty((x.shape[0], 8), dtype=np.float32)
    total = np.zeros(x.shape[0], dtype=np.float32)
    for i in range(8):
        y0_i = x + np.float32(3 - i)  # float arithmetic as in OpenCV
        y = -y0_i.astype(np.float64) * math.pi * 0.25
        near_zero = np.abs(y0_i) < np.float32(1e-6)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = ((_LANCZOS_CS[i, 0] * s0 + _LANCZOS_CS[i, 1] * c0) / (y * y)).astype(np.float32)
        value = np.where(near_zero, np.float32(1e30), value)
        coeffs[:, i] = value
        total = total + value
    inv_total = np.float32(1) / total
    return (coeffs * inv_total[:, None]).astype(np.float32)


def _kernel_taps(src_len, dst_len, scale, inv_scale, interpolation, area_mode, clamp):
    """Source indices (dst_len, K) and float32 weights (dst_len, K) for one axis.

    ``clamp`` reproduces the x-axis special case of linear/area (an out-of-range start snaps to
    the edge with weight 1); along y OpenCV instead clamps the row indices only.
    """
    d = np.arange(dst_len, dtype=np.float64)
    if area_mode:
        start = np.floor(d * scale).astype(np.int64)
        frac = ((d + 1) - (start + 1) * inv_scale).astype(np.float32)
        frac = np.where(frac <= 0, np.float32(0), frac - np.floor(frac)).astype(np.float32)
    else:
        pos = ((d + 0.5) * scale - 0.5).astype(np.float32)
        start = np.floor(pos).astype(np.int64)
        frac = (pos - start.astype(np.float32)).astype(np.float32)

    if interpolation == INTER_CUBIC:
        weights, first = _cubic_coefficients(frac), -1
    elif interpolation == INTER_LANCZOS4:
        weights, first = _lanczos4_coefficients(frac), -3
    else:  # linear, and area up-scaling
        if clamp:
            low = start < 0
            high = start >= src_len - 1
            frac = np.where(low | high, np.float32(0), frac)
            start = np.where(low, 0, np.where(high, src_len - 1, start))
        weights = np.stack([np.float32(1) - frac, frac], axis=1).astype(np.float32)
        first = 0
    taps = weights.shape[1]
    index = start[:, None] + first + np.arange(taps)[None, :]
    # np.intp: wasm32 numpy (Pyodide) refuses int64 indices in np.take
    return np.clip(index, 0, src_len - 1).astype(np.intp), weights


def _fixed_point(weights: np.ndarray) -> np.ndarray:
    # saturate_cast<short>(float * INTER_RESIZE_COEF_SCALE): round half to even in float32
    scaled = np.rint(weights.astype(np.float32) * np.float32(_COEF_SCALE))
    return np.clip(scaled, -32768, 32767).astype(np.int32)


# ----------------------------------------------------------------------------------------------
# separable passes


def _separable_fixed_point_u8(src, x_index, x_weight, y_index, y_weight, interpolation):
    ax = _fixed_point(x_weight)
    by = _fixed_point(y_weight)
    # horizontal: exact integer sums  sum_k S[x_k] * alpha_k  (values < 2**19 per tap)
    horiz = np.zeros((src.shape[0], x_index.shape[0], src.shape[2]), dtype=np.int32)
    for k in range(x_index.shape[1]):
        horiz += np.take(src, x_index[:, k], axis=1).astype(np.int32) * ax[None, :, k, None]
    rows = [horiz[y_index[:, k]] for k in range(y_index.shape[1])]
    if interpolation in (INTER_LINEAR, INTER_AREA):
        # VResizeLinearVec_32s8u: 16-bit multiply-high on (S >> 4), then (sum + 2) >> 2
        b0 = by[:, 0][:, None, None]
        b1 = by[:, 1][:, None, None]
        acc = ((b0 * (rows[0] >> 4)) >> 16) + ((b1 * (rows[1] >> 4)) >> 16)
        out = (acc + 2) >> 2
    elif interpolation == INTER_CUBIC:
        # VResizeCubicVec_32s8u: float32 sum of S * (beta / 2**22), rounded half to even
        scale = np.float32(1.0 / (_COEF_SCALE * _COEF_SCALE))
        acc = rows[0].astype(np.float32) * (by[:, 0].astype(np.float32) * scale)[:, None, None]
        for k in range(1, 4):
            acc = acc + rows[k].astype(np.float32) * (by[:, k].astype(np.float32) * scale)[:, None, None]
        out = np.rint(acc)
    else:
        # FixedPtCast<int, uchar, 22>: (sum + 2**21) >> 22
        acc = np.zeros_like(rows[0], dtype=np.int64)
        for k, row in enumerate(rows):
            acc += row.astype(np.int64) * by[:, k][:, None, None]
        out = (acc + (1 << (2 * _COEF_BITS - 1))) >> (2 * _COEF_BITS)
    return np.clip(out, 0, 255).astype(np.uint8)


def _work_dtype(dtype: np.dtype) -> type:
    return np.float64 if dtype == np.float64 else np.float32


def _cast_result(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def _separable_float(src, x_index, x_weight, y_index, y_weight):
    work = _work_dtype(src.dtype)
    xw = x_weight.astype(work)
    yw = y_weight.astype(work)
    horiz = np.take(src, x_index[:, 0], axis=1).astype(work) * xw[None, :, 0, None]
    for k in range(1, x_index.shape[1]):
        horiz = horiz + np.take(src, x_index[:, k], axis=1).astype(work) * xw[None, :, k, None]
    out = horiz[y_index[:, 0]] * yw[:, 0, None, None]
    for k in range(1, y_index.shape[1]):
        out = out + horiz[y_index[:, k]] * yw[:, k, None, None]
    return _cast_result(out, src.dtype)


# ----------------------------------------------------------------------------------------------
# INTER_AREA down-scaling


def _resize_area_fast(src, dst_h, dst_w, iscale_x, iscale_y):
    """Integer factors: mean of each iscale_y x iscale_x block (resizeAreaFast_)."""
    c = src.shape[2]
    block = src[: dst_h * iscale_y, : dst_w * iscale_x].reshape(dst_h, iscale_y, dst_w, iscale_x, c)
    area = iscale_x * iscale_y
    if src.dtype == np.uint8 or np.issubdtype(src.dtype, np.integer):
        total = block.astype(np.int64).sum(axis=(1, 3))
        if iscale_x == 2 and iscale_y == 2:
            out = (total + 2) >> 2  # ResizeAreaFastVec_SIMD_*: (a + b + c + d + 2) >> 2
        else:
            out = np.rint(total.astype(np.float32) * np.float32(1.0 / area))
        info = np.iinfo(src.dtype)
        return np.clip(out, info.min, info.max).astype(src.dtype)
    work = _work_dtype(src.dtype)
    total = np.zeros((dst_h, dst_w, c), dtype=work)
    for sy in range(iscale_y):  # OpenCV sums the block row by row, left to right
        for sx in range(iscale_x):
            total = total + block[:, sy, :, sx, :].astype(work)
    return (total * work(1.0 / area)).astype(src.dtype)


def _area_table(src_len: int, dst_len: int, scale: float):
    """computeResizeAreaTab: for each output cell the covered source pixels and their weights."""
    indices, weights = [], []
    for d in range(dst_len):
        fs1 = d * scale
        fs2 = fs1 + scale
        cell = min(scale, src_len - fs1)
        s1 = math.ceil(fs1)
        s2 = min(math.floor(fs2), src_len - 1)
        s1 = min(s1, s2)
        idx, w = [], []
        if s1 - fs1 > 1e-3:
            idx.append(s1 - 1)
            w.append(np.float32((s1 - fs1) / cell))
        for s in range(s1, s2):
            idx.append(s)
            w.append(np.float32(1.0 / cell))
        if fs2 - s2 > 1e-3:
            idx.append(s2)
            w.append(np.float32(min(min(fs2 - s2, 1.0), cell) / cell))
        indices.append(idx)
        weights.append(w)
    taps = max(len(i) for i in indices)
    index = np.zeros((dst_len, taps), dtype=np.intp)
    weight = np.zeros((dst_len, taps), dtype=np.float32)
    for d, (idx, w) in enumerate(zip(indices, weights)):
        index[d, : len(idx)] = idx
        weight[d, : len(w)] = w
    return index, weight


def _resize_area(src, dst_h, dst_w, scale_x, scale_y):
    """Non-integer down-scaling: exact pixel-area weights (resizeArea_), float accumulation."""
    x_index, x_weight = _area_table(src.shape[1], dst_w, scale_x)
    y_index, y_weight = _area_table(src.shape[0], dst_h, scale_y)
    work = _work_dtype(src.dtype)
    xw = x_weight.astype(work)
    yw = y_weight.astype(work)
    # zero-weight padding taps add +0.0, which leaves the running float sums unchanged
    horiz = np.zeros((src.shape[0], dst_w, src.shape[2]), dtype=work)
    for k in range(x_index.shape[1]):
        horiz += np.take(src, x_index[:, k], axis=1).astype(work) * xw[None, :, k, None]
    out = yw[:, 0, None, None] * horiz[y_index[:, 0]]
    for k in range(1, y_index.shape[1]):
        out = out + yw[:, k, None, None] * horiz[y_index[:, k]]
    return _cast_result(out, src.dtype)
