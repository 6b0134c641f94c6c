"""Private float32 kernels for TFLite operators (NHWC, TFLite weight layouts).

These exist because ``app.kernels`` (the engine's shared registry) was not available when the
TFLite interpreter was written; they are plain numpy functions with no format knowledge, so the
lead can move them into ``app.kernels`` (see docs/tflite.md, "Float kernels").
"""

from __future__ import annotations

import numpy as np

# Largest array any operator may allocate (elements). Real image models stay far below (a
# 512x512x64 activation is 16.8M); a corrupt pad, resize size or kernel extent would otherwise
# ask for gigabytes before numpy notices.
MAX_TENSOR_ELEMENTS = 1 << 28


def guard(shape, what: str) -> None:
    """Raise ValueError (reported as ModelFormatError) before allocating an absurd array."""
    count = 1
    for d in shape:
        d = int(d)
        if d < 0:
            raise ValueError(f"{what} would have a negative dimension ({tuple(shape)})")
        count *= d
    if count > MAX_TENSOR_ELEMENTS:
        raise ValueError(f"{what} would hold {count} values (shape {tuple(int(d) for d in shape)}), "
                         f"more than the limit of {MAX_TENSOR_ELEMENTS}")


def same_or_valid_pads(size: int, kernel: int, stride: int, dilation: int, padding: str
                       ) -> tuple[int, int, int]:
    """TFLite ``ComputePaddingHeightWidth``: (pad_before, pad_after, output_size)."""
    effective = (kernel - 1) * dilation + 1
    if padding == "SAME":
        out = (size + stride - 1) // stride
    else:
        out = (size - effective + stride) // stride
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2, out


def patches(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int,
            pads: tuple[int, int, int, int], pad_value=0) -> np.ndarray:
    """im2col: (N, OH, OW, KH, KW, C) windows of the padded input."""
    top, bottom, left, right = pads
    n, h, w, c = x.shape
    hp, wp = h + top + bottom, w + left + right
    oh = (hp - ((kh - 1) * dh + 1)) // sh + 1
    ow = (wp - ((kw - 1) * dw + 1)) // sw + 1
    if oh <= 0 or ow <= 0 or sh <= 0 or sw <= 0 or dh <= 0 or dw <= 0:
        raise ValueError(f"window {kh}x{kw} (stride {sh}x{sw}, dilation {dh}x{dw}) does not fit "
                         f"the {h}x{w} input padded by {pads}")
    guard((n, hp, wp, c), "padded input")
    guard((n, oh, ow, kh, kw, c), "im2col buffer")
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=pad_value)
    cols = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh,
                                        j * dw: j * dw + (ow - 1) * sw + 1: sw, :]
    return cols


def conv_pads(x_shape, kh, kw, o: dict) -> tuple[int, int, int, int]:
    top, bottom, _ = same_or_valid_pads(x_shape[1], kh, o["stride_h"], o.get("dilation_h", 1), o["padding"])
    left, right, _ = same_or_valid_pads(x_shape[2], kw, o["stride_w"], o.get("dilation_w", 1), o["padding"])
    return top, bottom, left, right


def activate(x: np.ndarray, activation: str) -> np.ndarray:
    if activation == "linear":
        return x
    if activation == "relu":
        return np.maximum(x, np.float32(0))
    if activation == "relu6":
        return np.clip(x, np.float32(0), np.float32(6))
    if activation == "relu_n1_to_1":
        return np.clip(x, np.float32(-1), np.float32(1))
    if activation == "tanh":
        return np.tanh(x)
    if activation == "sign_bit":
        return np.signbit(x).astype(x.dtype)
    raise ValueError(f"unknown fused activation {activation!r}")


def conv2d(x, w, b, o):
    """CONV_2D: w is [Cout, KH, KW, Cin]."""
    cout, kh, kw, cin = w.shape
    if x.shape[3] != cin:
        groups = x.shape[3] // cin
        return _grouped_conv(x, w, b, o, groups)
    cols = patches(x, kh, kw, o["stride_h"], o["stride_w"], o["dilation_h"], o["dilation_w"],
                   conv_pads(x.shape, kh, kw, o))
    n, oh, ow = cols.shape[:3]
    out = cols.reshape(n * oh * ow, -1) @ w.reshape(cout, -1).T
    if b is not None:
        out = out + b
    return activate(out.reshape(n, oh, ow, cout).astype(np.float32), o["activation"])


def _grouped_conv(x, w, b, o, groups):
    cout, cin = w.shape[0], w.shape[3]
    per = cout // groups
    parts = [conv2d(x[..., g * cin:(g + 1) * cin], w[g * per:(g + 1) * per], None,
                    {**o, "activation": "linear"}) for g in range(groups)]
    out = np.concatenate(parts, axis=-1)
    if b is not None:
        out = out + b
    return activate(out.astype(np.float32), o["activation"])


def depthwise_conv2d(x, w, b, o):
    """DEPTHWISE_CONV_2D: w is [1, KH, KW, C*multiplier]."""
    _, kh, kw, cm = w.shape
    c = x.shape[3]
    m = cm // c
    cols = patches(x, kh, kw, o["stride_h"], o["stride_w"], o["dilation_h"], o["dilation_w"],
                   conv_pads(x.shape, kh, kw, o))
    n, oh, ow = cols.shape[:3]
    wk = w.reshape(kh, kw, c, m)
    out = np.einsum("nhwijc,ijcm->nhwcm", cols, wk, optimize=True).reshape(n, oh, ow, cm)
    if b is not None:
        out = out + b
    return activate(out.astype(np.float32), o["activation"])


def transpose_conv_geometry(x_shape, w_shape, output_shape, o):
    _, kh, kw, _ = w_shape
    out_h, out_w = int(output_shape[1]), int(output_shape[2])
    top, _, _ = same_or_valid_pads(out_h, kh, o["stride_h"], 1, o["padding"])
    left, _, _ = same_or_valid_pads(out_w, kw, o["stride_w"], 1, o["padding"])
    return out_h, out_w, top, left


def scatter_transpose_conv(x, w, output_shape, o, acc_dtype):
    """Sum over input pixels of x * w placed at iy*stride - pad + ky (reference TransposeConv)."""
    n, h, wd, cin = x.shape
    cout, kh, kw, _ = w.shape
    out_h, out_w, top, left = transpose_conv_geometry(x.shape, w.shape, output_shape, o)
    sh, sw = o["stride_h"], o["stride_w"]
    if sh <= 0 or sw <= 0 or top < 0 or left < 0:
        raise ValueError(f"invalid transposed-convolution geometry (strides {sh}x{sw})")
    full_h = max((h - 1) * sh + kh, top + out_h)
    full_w = max((wd - 1) * sw + kw, left + out_w)
    guard((n, full_h, full_w, cout), "transposed-convolution output")
    full = np.zeros((n, full_h, full_w, cout), acc_dtype)
    flat = x.reshape(-1, cin)
    for i in range(kh):
        for j in range(kw):
            contrib = (flat @ w[:, i, j, :].T).reshape(n, h, wd, cout)
            full[:, i: i + (h - 1) * sh + 1: sh, j: j + (wd - 1) * sw + 1: sw, :] += contrib
    return full[:, top: top + out_h, left: left + out_w, :]


def transpose_conv(output_shape, w, x, b, o):
    out = scatter_transpose_conv(x.astype(np.float32), w.astype(np.float32), output_shape, o, np.float32)
    if b is not None:
        out = out + b
    return activate(out.astype(np.float32), o.get("activation", "linear"))


def fully_connected(x, w, b, o):
    """FULLY_CONNECTED: w is [units, in]; input flattened to (-1, in) unless keep_num_dims."""
    units, depth = w.shape
    flat = x.reshape(-1, depth)
    out = flat @ w.T
    if b is not None:
        out = out + b
    out = activate(out.astype(np.float32), o["activation"])
    if o.get("keep_num_dims"):
        return out.reshape(x.shape[:-1] + (units,))
    return out


def pool(x, o, kind: str):
    kh, kw = o["filter_h"], o["filter_w"]
    top, bottom, _ = same_or_valid_pads(x.shape[1], kh, o["stride_h"], 1, o["padding"])
    left, right, _ = same_or_valid_pads(x.shape[2], kw, o["stride_w"], 1, o["padding"])
    pads = (top, bottom, left, right)
    if kind == "max":
        cols = patches(x, kh, kw, o["stride_h"], o["stride_w"], 1, 1, pads, pad_value=-np.inf)
        return activate(cols.max(axis=(3, 4)).astype(np.float32), o["activation"])
    cols = patches(x, kh, kw, o["stride_h"], o["stride_w"], 1, 1, pads)
    ones = patches(np.ones((1,) + x.shape[1:3] + (1,), np.float32), kh, kw, o["stride_h"],
                   o["stride_w"], 1, 1, pads)
    counts = ones.sum(axis=(3, 4))
    return activate((cols.sum(axis=(3, 4)) / counts).astype(np.float32), o["activation"])


def resize_source_coords(out_size: int, in_size: int, align_corners: bool, half_pixel: bool):
    if align_corners and out_size > 1:
        scale = (in_size - 1) / (out_size - 1)
    else:
        scale = in_size / out_size
    scale = np.float32(scale)
    idx = np.arange(out_size, dtype=np.float32)
    if half_pixel:
        return (idx + np.float32(0.5)) * scale - np.float32(0.5)
    return idx * scale


def resize_bilinear(x, size, align_corners=False, half_pixel_centers=False):
    n, h, w, c = x.shape
    oh, ow = int(size[0]), int(size[1])
    guard((n, oh, ow, c), "resized image")
    ys = resize_source_coords(oh, h, align_corners, half_pixel_centers)
    xs = resize_source_coords(ow, w, align_corners, half_pixel_centers)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    dy = (ys - y0).astype(np.float32)
    dx = (xs - x0).astype(np.float32)
    y0c, y1c = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    x0c, x1c = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    top = x[:, y0c][:, :, x0c] * (1 - dx)[None, None, :, None] + x[:, y0c][:, :, x1c] * dx[None, None, :, None]
    bot = x[:, y1c][:, :, x0c] * (1 - dx)[None, None, :, None] + x[:, y1c][:, :, x1c] * dx[None, None, :, None]
    return (top * (1 - dy)[None, :, None, None] + bot * dy[None, :, None, None]).astype(x.dtype)


def resize_nearest_indices(out_size: int, in_size: int, align_corners: bool, half_pixel: bool):
    if align_corners and out_size > 1:
        scale = np.float32((in_size - 1) / (out_size - 1))
    else:
        scale = np.float32(in_size / out_size)
    idx = np.arange(out_size, dtype=np.float32)
    offset = np.float32(0.5) if half_pixel else np.float32(0)
    src = (idx + offset) * scale
    src = np.round(src) if align_corners else np.floor(src)
    return np.clip(src.astype(np.int64), 0, in_size - 1)


def resize_nearest(x, size, align_corners=False, half_pixel_centers=False):
    guard((x.shape[0], int(size[0]), int(size[1]), x.shape[3]), "resized image")
    ys = resize_nearest_indices(int(size[0]), x.shape[1], align_corners, half_pixel_centers)
    xs = resize_nearest_indices(int(size[1]), x.shape[2], align_corners, half_pixel_centers)
    return x[:, ys][:, :, xs]


def softmax(x, beta=1.0):
    z = (x - x.max(axis=-1, keepdims=True)) * np.float32(beta)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def hard_swish(x):
    return (x * np.clip(x + np.float32(3), 0, 6) / np.float32(6)).astype(np.float32)


def sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def l2_normalize(x):
    """L2_NORMALIZATION over the last axis; reference l2normalization.h clamps the norm (not its
    square) at epsilon 1e-6."""
    norm = np.sqrt(np.sum(x.astype(np.float32) ** 2, axis=-1, keepdims=True, dtype=np.float32))
    return (x / np.maximum(norm, np.float32(1e-6))).astype(np.float32)


def strided_slice(x, begin, end, strides, o):
    """TFLite STRIDED_SLICE with begin/end/ellipsis/new_axis/shrink masks."""
    begin, end, strides = list(map(int, begin)), list(map(int, end)), list(map(int, strides))
    if o.get("offset"):
        end = [b + e for b, e in zip(begin, end)]
    index = []
    dims = len(begin)
    ellipsis = o.get("ellipsis_mask", 0)
    new_axis = o.get("new_axis_mask", 0)
    shrink = o.get("shrink_axis_mask", 0)
    for i in range(dims):
        bit = 1 << i
        if ellipsis & bit:
            index.append(Ellipsis)
        elif new_axis & bit:
            index.append(None)
        elif shrink & bit:
            index.append(begin[i])
        else:
            b = None if o.get("begin_mask", 0) & bit else begin[i]
            e = None if o.get("end_mask", 0) & bit else end[i]
            index.append(slice(b, e, strides[i]))
    return x[tuple(index)]
