"""Convolutions over NHWC float32 (TensorFlow semantics: https://www.tensorflow.org/api_docs/python/tf/nn/convolution).

Standard convolution is im2col + one GEMM (:func:`app.kernels.gemm.gemm`), so the pluggable GEMM
is where the FLOPs are; 1x1 convolutions skip im2col. Depthwise convolution is a short loop over
the KH*KW taps, each tap a vectorised multiply-add over the whole batch.
"""

from __future__ import annotations

import numpy as np

from . import register
from ._util import output_size, pad_spatial, resolve_pads, tap
from .activations import apply_activation
from .gemm import gemm

# Upper bound on an im2col buffer (float32 elements); larger problems are done in row blocks so a
# 224x224 batch does not allocate gigabytes.
_IM2COL_MAX_ELEMENTS = 8 * 1024 * 1024
# Stride-1 convs with Cin >= ratio * Cout use the tap-GEMM path (measured faster for DenseNet).
_TAP_GEMM_MIN_RATIO = 2


def _finish(y, bias, activation, scale=None):
    if scale is not None:
        y *= scale
    if bias is not None:
        y += bias
    return apply_activation(y, activation)


@register("conv2d")
def conv2d(x, kernel, bias=None, scale=None, in_scale=None, in_shift=None, *, strides=(1, 1), dilations=(1, 1),
           pads=(0, 0, 0, 0), groups=1, activation="linear", in_activation="linear"):
    """act(conv(x, kernel) * scale + bias); ``scale`` [Cout] is a batch-norm that
    :mod:`app.optimize` moved into the convolution without a scaled copy of the kernel;
    ``in_scale`` / ``in_shift`` [Cin] one it moved in from before (the convolution then reads
    ``in_activation(x * in_scale + in_shift)``, computed here by the scale_shift kernel)."""
    if in_scale is not None:
        from .norm import scale_shift

        x = scale_shift(x, in_scale, in_shift, activation=in_activation)
    n, h, w, c = x.shape
    kh, kw, cin_g, cout = kernel.shape
    # checked here, not only when a batch fails: shape inference runs an empty batch, on which a
    # mismatch would otherwise pass silently and fail the first real image instead
    if not isinstance(groups, int) or groups < 1 or cout % groups or cin_g * groups != c:
        raise ValueError(f"conv2d: kernel {tuple(kernel.shape)} with groups={groups!r} expects {cin_g} x {groups!r} "
                         f"input channels, the input has {c}")
    pads = resolve_pads(pads, h, w, (kh, kw), strides, dilations)
    oh = output_size(h, kh, strides[0], dilations[0], pads[0], pads[1])
    ow = output_size(w, kw, strides[1], dilations[1], pads[2], pads[3])
    if groups == 1 and kh == 1 and kw == 1 and pads == (0, 0, 0, 0):
        xs = x if strides == (1, 1) else x[:, ::strides[0], ::strides[1], :][:, :oh, :ow]
        a = np.ascontiguousarray(xs).reshape(-1, c)
        y = gemm(a, kernel.reshape(c, cout))
        return _finish(y, bias, activation, scale).reshape(n, oh, ow, cout)
    if groups == 1 and strides == (1, 1) and _TAP_GEMM_MIN_RATIO * cout <= c:
        # Few output channels (DenseNet's 128 -> 32): one wide GEMM x @ W[C, KH*KW*Cout] on the
        # unpadded input, then KH*KW shifted adds of Cout-wide slices, beats copying KH*KW*C
        # input columns for im2col.
        y = _tap_gemm(x, kernel, pads, dilations, oh, ow)
        return _finish(y, bias, activation, scale)
    xp = pad_spatial(x, pads)
    y = np.empty((n, oh, ow, cout), dtype=np.float32)
    if groups == 1:
        _im2col_gemm(xp, kernel.reshape(-1, cout), y, (kh, kw), strides, dilations)
    else:
        cout_g = cout // groups
        for g in range(groups):
            xg = xp[..., g * cin_g:(g + 1) * cin_g]
            wg = np.ascontiguousarray(kernel[..., g * cout_g:(g + 1) * cout_g]).reshape(-1, cout_g)
            yg = np.empty((n, oh, ow, cout_g), dtype=np.float32)
            _im2col_gemm(xg, wg, yg, (kh, kw), strides, dilations)
            y[..., g * cout_g:(g + 1) * cout_g] = yg
    return _finish(y, bias, activation, scale)


def _tap_gemm(x, kernel, pads, dilations, oh, ow):
    """Stride-1 convolution as x @ W_all then shifted accumulation of each tap's slice."""
    n, h, w, c = x.shape
    kh, kw, _, cout = kernel.shape
    top, _, left, _ = pads
    dh, dw = dilations
    w_all = np.ascontiguousarray(kernel.transpose(2, 0, 1, 3)).reshape(c, kh * kw * cout)
    y = np.zeros((n, oh, ow, cout), dtype=np.float32)
    for image in range(n):
        taps = gemm(np.ascontiguousarray(x[image]).reshape(-1, c), w_all).reshape(h, w, kh, kw, cout)
        for a in range(kh):
            shift_r = a * dh - top  # out[i] reads input row i + shift_r
            r0, r1 = max(0, -shift_r), min(oh, h - shift_r)
            if r0 >= r1:
                continue
            for b in range(kw):
                shift_c = b * dw - left
                c0, c1 = max(0, -shift_c), min(ow, w - shift_c)
                if c0 >= c1:
                    continue
                y[image, r0:r1, c0:c1] += taps[r0 + shift_r:r1 + shift_r, c0 + shift_c:c1 + shift_c, a, b]
    return y


def _im2col_gemm(xp, w2d, y, kernel_hw, strides, dilations):
    """y[n, oh, ow, :] = im2col(xp) @ w2d, in row blocks bounded by _IM2COL_MAX_ELEMENTS."""
    n, oh, ow, cout = y.shape
    kh, kw = kernel_hw
    c = xp.shape[3]
    patch = kh * kw * c
    rows_per_block = max(1, min(oh, _IM2COL_MAX_ELEMENTS // max(1, ow * patch)))
    images_per_block = max(1, min(n, _IM2COL_MAX_ELEMENTS // max(1, oh * ow * patch))) if rows_per_block == oh else 1
    sh, sw = strides
    dh, dw = dilations
    buffer = None
    for n0 in range(0, n, images_per_block):
        n1 = min(n, n0 + images_per_block)
        for r0 in range(0, oh, rows_per_block):
            r1 = min(oh, r0 + rows_per_block)
            shape = (n1 - n0, r1 - r0, ow, kh, kw, c)
            size = int(np.prod(shape))
            if buffer is None or buffer.size < size:
                buffer = np.empty(size, dtype=np.float32)
            cols = buffer[:size].reshape(shape)
            for i in range(kh):
                row_start = r0 * sh + i * dh
                for j in range(kw):
                    col_start = j * dw
                    cols[:, :, :, i, j, :] = xp[n0:n1, row_start:row_start + sh * (r1 - r0 - 1) + 1:sh,
                                                col_start:col_start + sw * (ow - 1) + 1:sw, :]
            # blocks are whole images or rows of one image, so this is a view (setting .shape
            # raises instead of silently copying if that ever stops being true)
            out = y[n0:n1, r0:r1].view()
            out.shape = (-1, cout)
            gemm(cols.reshape(-1, patch), w2d, out=out)


@register("depthwise_conv2d")
def depthwise_conv2d(x, kernel, bias=None, *, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                     activation="linear"):
    n, h, w, c = x.shape
    kh, kw, kernel_channels, multiplier = kernel.shape
    if kernel_channels != c:
        raise ValueError(f"depthwise_conv2d: kernel {tuple(kernel.shape)} expects {kernel_channels} input channels, "
                         f"the input has {c}")
    pads = resolve_pads(pads, h, w, (kh, kw), strides, dilations)
    oh = output_size(h, kh, strides[0], dilations[0], pads[0], pads[1])
    ow = output_size(w, kw, strides[1], dilations[1], pads[2], pads[3])
    xp = pad_spatial(x, pads)
    if multiplier > 1:
        # output channel c*m + j reads input channel c (Keras / TF layout)
        xp = np.repeat(xp, multiplier, axis=3)
    taps = kernel.reshape(kh, kw, c * multiplier)
    y = np.empty((n, oh, ow, c * multiplier), dtype=np.float32)
    scratch = np.empty_like(y)
    first = True
    for i in range(kh):
        for j in range(kw):
            view = tap(xp, i, j, oh, ow, strides, dilations)
            if first:
                np.multiply(view, taps[i, j], out=y)
                first = False
            else:
                np.multiply(view, taps[i, j], out=scratch)
                y += scratch
    return _finish(y, bias, activation)


@register("conv2d_transpose")
def conv2d_transpose(x, kernel, bias=None, *, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                     output_padding=(0, 0), activation="linear"):
    """Transposed convolution: scatter-add of (x @ kernel) taps, then crop ``pads`` from the full
    output. A negative bottom/right pad extends the output with zeros (Keras "valid" when the
    kernel is smaller than the stride); ``output_padding`` adds rows/cols at the bottom/right."""
    n, h, w, cin = x.shape
    kh, kw, cout, _ = kernel.shape
    sh, sw = strides
    dh, dw = dilations
    top, bottom, left, right = pads
    full_h = (h - 1) * sh + (kh - 1) * dh + 1
    full_w = (w - 1) * sw + (kw - 1) * dw + 1
    out_h = full_h - top - bottom + output_padding[0]
    out_w = full_w - left - right + output_padding[1]
    w2d = np.ascontiguousarray(kernel.transpose(3, 0, 1, 2)).reshape(cin, kh * kw * cout)
    cols = gemm(np.ascontiguousarray(x).reshape(-1, cin), w2d).reshape(n, h, w, kh, kw, cout)
    canvas_h = max(full_h, top + out_h)
    canvas_w = max(full_w, left + out_w)
    canvas = np.zeros((n, canvas_h, canvas_w, cout), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            canvas[:, r0:r0 + sh * (h - 1) + 1:sh, c0:c0 + sw * (w - 1) + 1:sw, :] += cols[:, :, :, i, j, :]
    y = np.ascontiguousarray(canvas[:, top:top + out_h, left:left + out_w, :])
    return _finish(y, bias, activation)
