"""Shared helpers for the convolution / pooling kernels."""

from __future__ import annotations

import numpy as np


def same_pads_1d(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding for one spatial axis: (before, after), extra pixel after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def resolve_pads(pads, height: int, width: int, kernel_hw, strides, dilations=(1, 1)):
    """Explicit (top, bottom, left, right) from an explicit tuple or "same" / "valid"."""
    if isinstance(pads, str):
        if pads == "valid":
            return (0, 0, 0, 0)
        top, bottom = same_pads_1d(height, kernel_hw[0], strides[0], dilations[0])
        left, right = same_pads_1d(width, kernel_hw[1], strides[1], dilations[1])
        return (top, bottom, left, right)
    return tuple(pads)


def output_size(size: int, kernel: int, stride: int, dilation: int, before: int, after: int) -> int:
    return (size + before + after - (kernel - 1) * dilation - 1) // stride + 1


def pad_spatial(x: np.ndarray, pads, value=0.0) -> np.ndarray:
    """Pad the H, W axes of an NHWC array (no copy when there is nothing to pad)."""
    top, bottom, left, right = pads
    if not (top or bottom or left or right):
        return x
    n, h, w, c = x.shape
    out = np.empty((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
    if value == 0.0:
        out[:, :top] = 0
        out[:, h + top:] = 0
        out[:, top:h + top, :left] = 0
        out[:, top:h + top, w + left:] = 0
    else:
        out[:, :top] = value
        out[:, h + top:] = value
        out[:, top:h + top, :left] = value
        out[:, top:h + top, w + left:] = value
    out[:, top:h + top, left:w + left] = x
    return out


def tap(xp: np.ndarray, i: int, j: int, out_h: int, out_w: int, strides, dilations) -> np.ndarray:
    """The strided view of a padded input seen by kernel tap (i, j)."""
    sh, sw = strides
    r0 = i * dilations[0]
    c0 = j * dilations[1]
    return xp[:, r0:r0 + sh * (out_h - 1) + 1:sh, c0:c0 + sw * (out_w - 1) + 1:sw, :]
