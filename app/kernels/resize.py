"""Image resize over NHWC (TensorFlow ``tf.image.resize`` / ``tf.compat.v1.image.resize_*``
coordinate conventions)."""

from __future__ import annotations

import numpy as np

from . import register


def _source_coords(out_size, in_size, align_corners, half_pixel_centers):
    dst = np.arange(out_size, dtype=np.float64)
    if align_corners and out_size > 1:
        return dst * ((in_size - 1) / (out_size - 1))
    scale = in_size / out_size
    if half_pixel_centers:
        return (dst + 0.5) * scale - 0.5
    return dst * scale


def _nearest_index(out_size, in_size, align_corners, half_pixel_centers):
    dst = np.arange(out_size, dtype=np.float64)
    if align_corners and out_size > 1:
        src = np.round(dst * ((in_size - 1) / (out_size - 1)))
    elif half_pixel_centers:
        src = np.floor((dst + 0.5) * (in_size / out_size))
    else:
        src = np.floor(dst * (in_size / out_size))
    return np.clip(src.astype(np.int64), 0, in_size - 1)


def _linear_weights(out_size, in_size, align_corners, half_pixel_centers):
    src = _source_coords(out_size, in_size, align_corners, half_pixel_centers)
    src = np.clip(src, 0, None) if half_pixel_centers else src
    lo = np.floor(src).astype(np.int64)
    frac = (src - lo).astype(np.float32)
    lo = np.clip(lo, 0, in_size - 1)
    hi = np.clip(lo + 1, 0, in_size - 1)
    return lo, hi, frac


@register("resize")
def resize(x, *, size=None, scale=None, method="nearest", align_corners=False, half_pixel_centers=False):
    """Resize H, W to ``size`` or, when the input size is only known at run time, ``scale`` x."""
    n, h, w, c = x.shape
    out_h, out_w = size if size is not None else (h * scale[0], w * scale[1])
    if method == "nearest":
        if not align_corners and out_h % h == 0 and out_w % w == 0:
            # integer up-sampling: both TF conventions reduce to repetition
            return np.repeat(np.repeat(x, out_h // h, axis=1), out_w // w, axis=2)
        rows = _nearest_index(out_h, h, align_corners, half_pixel_centers)
        cols = _nearest_index(out_w, w, align_corners, half_pixel_centers)
        return np.ascontiguousarray(x[:, rows][:, :, cols])
    if method != "bilinear":
        raise ValueError(f"resize: unknown method {method!r}")
    r_lo, r_hi, r_frac = _linear_weights(out_h, h, align_corners, half_pixel_centers)
    c_lo, c_hi, c_frac = _linear_weights(out_w, w, align_corners, half_pixel_centers)
    r_frac = r_frac[None, :, None, None]
    c_frac = c_frac[None, None, :, None]
    top = x[:, r_lo]
    bottom = x[:, r_hi]
    rows = top + (bottom - top) * r_frac
    left = rows[:, :, c_lo]
    right = rows[:, :, c_hi]
    return (left + (right - left) * c_frac).astype(np.float32, copy=False)
