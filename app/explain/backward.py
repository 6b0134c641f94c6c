"""Vector-Jacobian products of IR ops, for Grad-CAM's backward pass through a model's head.

One function per op family, found through a registry keyed by IR op name exactly like the
forward kernels (:mod:`app.kernels`). A VJP has the signature::

    vjp(grad, inputs, output, needs, **attrs) -> list[array | None]

``grad`` is d score / d output, ``inputs`` the node's forward input arrays (weights included),
``output`` its forward output, ``needs[i]`` says whether input ``i`` wants a gradient (weights and
tensors that do not depend on the target layer do not); the result holds one gradient (or None)
per input. Maths is done in float64: heads are small and Grad-CAM normalises by a maximum, so
rounding in a long chain would show up against TensorFlow's reference.

Fused activations (``activation`` attribute of conv / dense / scale_shift / add) are handled by
:func:`node_vjp`: it recomputes the pre-activation with the forward kernel and applies the
activation's VJP first.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..errors import UnsupportedLayerError
from ..ir import Node
from ..kernels import KERNELS
from ..kernels._util import output_size, resolve_pads

VJPS: dict[str, Callable] = {}
_SELU_ALPHA = 1.6732632423543772  # app.kernels.activations.selu
_SELU_SCALE = 1.0507009873554805
ACTIVATION_VJPS: dict[str, Callable] = {}
_SELU_ALPHA = 1.6732632423543772  # app.kernels.activations.selu
_SELU_SCALE = 1.0507009873554805


def register(*ops: str):
    """Decorator registering a VJP under one or more IR op names."""

    def decorate(fn):
        for op in ops:
            if op in VJPS:
                raise RuntimeError(f"VJP for op {op!r} registered twice")
            VJPS[op] = fn
        return fn

    return decorate


def _activation(*names: str):
    """Register ``fn(grad, x, y, **attrs) -> grad_x`` as the VJP of a unary activation, usable both
    as a node and as a fused ``activation`` attribute."""

    def decorate(fn):
        for name in names:
            ACTIVATION_VJPS[name] = fn

            def node_vjp_fn(grad, inputs, output, needs, _fn=fn, **attrs):
                return [_fn(grad, _f64(inputs[0]), _f64(output), **attrs)]

            register(name)(node_vjp_fn)
        return fn

    return decorate


def _f64(array) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` down to ``shape`` (the inverse of numpy broadcasting)."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


# ---- activations (TensorFlow's gradient conventions at the kinks: relu'(0) = 0) ---------------

@_activation("linear", "identity")
def _identity(grad, x, y):
    return grad


@_activation("relu")
def _relu(grad, x, y):
    return grad * (x > 0)


@_activation("relu6")
def _relu6(grad, x, y):
    return grad * ((x > 0) & (x < 6))


@_activation("sigmoid")
def _sigmoid(grad, x, y):
    return grad * y * (1.0 - y)


@_activation("tanh")
def _tanh(grad, x, y):
    return grad * (1.0 - y * y)


@_activation("swish", "silu")
def _swish(grad, x, y):
    s = 1.0 / (1.0 + np.exp(-x))
    return grad * (s + x * s * (1.0 - s))


@_activation("elu")
def _elu(grad, x, y, alpha=1.0):
    return grad * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0)))


@_activation("leaky_relu")
def _leaky_relu(grad, x, y, alpha=0.3):
    return grad * np.where(x > 0, 1.0, alpha)


@_activation("selu")
def _selu(grad, x, y):
    return grad * np.where(x > 0, _SELU_SCALE, _SELU_SCALE * _SELU_ALPHA * np.exp(np.minimum(x, 0)))


@_activation("hard_sigmoid")
def _hard_sigmoid(grad, x, y, variant="keras3"):
    # Keras 2: clip(0.2 x + 0.5, 0, 1); Keras 3: relu6(x + 3) / 6 (app.kernels.activations)
    if variant == "keras2":
        return grad * 0.2 * ((x > -2.5) & (x < 2.5))
    return grad * ((x > -3) & (x < 3)) / 6.0


@_activation("hard_swish", "hard_silu")
def _hard_swish(grad, x, y):
    # x * relu6(x + 3) / 6: TF differentiates the product, relu6'(z) = 1 on 0 < z < 6
    return grad * (np.clip(x + 3, 0, 6) / 6.0 + x * ((x > -3) & (x < 3)) / 6.0)


@_activation("softsign")
def _softsign(grad, x, y):
    return grad / np.square(1.0 + np.abs(x))


@_activation("exponential")
def _exponential(grad, x, y):
    return grad * y


@_activation("mish")
def _mish(grad, x, y):
    softplus = np.logaddexp(0.0, x)
    tanh = np.tanh(softplus)
    return grad * (tanh + x * (1.0 - tanh * tanh) / (1.0 + np.exp(-x)))


@_activation("relu_ex")
def _relu_ex(grad, x, y, max_value=None, threshold=0.0, negative_slope=0.0):
    slope = np.where(x >= threshold, 1.0, negative_slope)
    if max_value is not None:
        slope = np.where(x >= max_value, 0.0, slope)
    return grad * slope


@_activation("clip")
def _clip(grad, x, y, min=None, max=None):  # noqa: A002 - IR attribute names
    inside = np.ones_like(x, dtype=bool)
    if min is not None:
        inside &= x > min
    if max is not None:
        inside &= x < max
    return grad * inside


@_activation("softplus")
def _softplus(grad, x, y):
    return grad / (1.0 + np.exp(-x))


@_activation("gelu")
def _gelu(grad, x, y, approximate=False):
    if approximate:
        c = math.sqrt(2.0 / math.pi)
        inner = c * (x + 0.044715 * x ** 3)
        t = np.tanh(inner)
        return grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x))
    cdf = 0.5 * (1.0 + np.vectorize(math.erf, otypes=[np.float64])(x / math.sqrt(2.0)))
    return grad * (cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi))


def _softmax_vjp(grad, x, y, axis=-1):
    return y * (grad - np.sum(grad * y, axis=axis, keepdims=True))


ACTIVATION_VJPS["softmax"] = _softmax_vjp  # also a fused activation (a Dense carrying softmax)


@register("softmax")
def _softmax(grad, inputs, output, needs, axis=-1):
    return [_softmax_vjp(grad, None, _f64(output), axis)]


@register("log_softmax")
def _log_softmax(grad, inputs, output, needs, axis=-1):
    return [grad - np.exp(_f64(output)) * grad.sum(axis=axis, keepdims=True)]


@register("prelu")
def _prelu(grad, inputs, output, needs):
    x, alpha = _f64(inputs[0]), _f64(inputs[1])
    return [grad * np.where(x >= 0, 1.0, alpha) if needs[0] else None, None]


# ---- linear layers ---------------------------------------------------------------------------

@register("dense")
def _dense(grad, inputs, output, needs, activation="linear"):
    kernel = _f64(inputs[1])
    return [grad @ kernel.T if needs[0] else None] + [None] * (len(inputs) - 1)


@register("conv2d")
def _conv2d(grad, inputs, output, needs, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1,
            activation="linear"):
    x, kernel = inputs[0], _f64(inputs[1])
    n, h, w, c = x.shape
    kh, kw, cin_g, cout = kernel.shape
    pads = resolve_pads(pads, h, w, (kh, kw), strides, dilations)
    cout_g = cout // groups
    gx = np.empty((n, h, w, c))
    for g in range(groups):
        gx[..., g * cin_g:(g + 1) * cin_g] = _conv_input_grad(
            grad[..., g * cout_g:(g + 1) * cout_g], kernel[..., g * cout_g:(g + 1) * cout_g], (h, w), strides,
            dilations, pads)
    return [gx] + [None] * (len(inputs) - 1)


def _conv_input_grad(grad, kernel, hw, strides, dilations, pads):
    """d conv / d x: scatter each kernel tap's contribution ``grad @ W[i, j].T`` back onto the
    padded input, then crop the padding (rows the strided conv never read get zero)."""
    n, oh, ow, _ = grad.shape
    kh, kw, cin, _ = kernel.shape
    top, bottom, left, right = pads
    h, w = hw
    sh, sw = strides
    dh, dw = dilations
    canvas = np.zeros((n, h + top + bottom, w + left + right, cin))
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            canvas[:, r0:r0 + sh * (oh - 1) + 1:sh, c0:c0 + sw * (ow - 1) + 1:sw, :] += grad @ kernel[i, j].T
    return canvas[:, top:top + h, left:left + w, :]


@register("depthwise_conv2d")
def _depthwise_conv2d(grad, inputs, output, needs, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                      activation="linear"):
    x, kernel = inputs[0], _f64(inputs[1])
    n, h, w, c = x.shape
    kh, kw, _, multiplier = kernel.shape
    pads = resolve_pads(pads, h, w, (kh, kw), strides, dilations)
    top, bottom, left, right = pads
    oh, ow = grad.shape[1:3]
    sh, sw = strides
    taps = kernel.reshape(kh, kw, c * multiplier)
    canvas = np.zeros((n, h + top + bottom, w + left + right, c * multiplier))
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilations[0], j * dilations[1]
            canvas[:, r0:r0 + sh * (oh - 1) + 1:sh, c0:c0 + sw * (ow - 1) + 1:sw, :] += grad * taps[i, j]
    # output channel c*m + k reads input channel c
    gx = canvas[:, top:top + h, left:left + w, :].reshape(n, h, w, c, multiplier).sum(axis=-1)
    return [gx] + [None] * (len(inputs) - 1)


@register("conv2d_transpose")
def _conv2d_transpose(grad, inputs, output, needs, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                      output_padding=(0, 0), activation="linear"):
    """The forward pass scatters ``x @ kernel[i, j].T`` taps onto a canvas and crops ``pads``
    (app.kernels.conv.conv2d_transpose): put ``grad`` back on the canvas and gather each tap, i.e.
    a strided convolution of the gradient (rows beyond the canvas, from negative pads or
    ``output_padding``, were zeros and pass nothing back)."""
    x, kernel = inputs[0], _f64(inputs[1])
    n, h, w, cin = x.shape
    kh, kw, cout, _ = kernel.shape
    sh, sw = strides
    dh, dw = dilations
    top, _bottom, left, _right = pads
    full_h = (h - 1) * sh + (kh - 1) * dh + 1
    full_w = (w - 1) * sw + (kw - 1) * dw + 1
    out_h, out_w = grad.shape[1:3]
    canvas = np.zeros((n, max(full_h, top + out_h), max(full_w, left + out_w), cout))
    canvas[:, top:top + out_h, left:left + out_w] = grad
    gx = np.zeros((n, h, w, cin))
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            gx += canvas[:, r0:r0 + sh * (h - 1) + 1:sh, c0:c0 + sw * (w - 1) + 1:sw, :] @ kernel[i, j]
    return [gx] + [None] * (len(inputs) - 1)


@register("scale_shift")
def _scale_shift(grad, inputs, output, needs, activation="linear"):
    x, scale = inputs[0], _f64(inputs[1])
    return [_unbroadcast(grad * scale, x.shape) if needs[0] else None, None, None]


@register("batch_norm")
def _batch_norm(grad, inputs, output, needs, epsilon=1e-3, axis=-1):
    x, gamma, _, _, variance = inputs
    shape = [1] * x.ndim
    shape[axis] = -1
    inv = _f64(gamma) / np.sqrt(_f64(variance) + epsilon)
    return [grad * inv.reshape(shape), None, None, None, None]


@register("layer_norm")
def _layer_norm(grad, inputs, output, needs, axes=(-1,), epsilon=1e-3):
    """y = (x - mean) / sqrt(var + eps) * gamma + beta over ``axes`` (app.kernels.norm.layer_norm):
    dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps) with g = grad * gamma."""
    x = _f64(inputs[0])
    axes = tuple(a % x.ndim for a in axes)
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    inv_std = 1.0 / np.sqrt(np.square(centered).mean(axis=axes, keepdims=True) + epsilon)
    x_hat = centered * inv_std
    g = grad * _f64(inputs[1]) if len(inputs) > 1 else grad
    gx = (g - g.mean(axis=axes, keepdims=True) - x_hat * (g * x_hat).mean(axis=axes, keepdims=True)) * inv_std
    return [gx] + [None] * (len(inputs) - 1)


# ---- elementwise -----------------------------------------------------------------------------

@register("add")
def _add(grad, inputs, output, needs, activation="linear"):
    return [_unbroadcast(grad, np.shape(x)) if need else None for x, need in zip(inputs, needs)]


@register("average")
def _average(grad, inputs, output, needs):
    return [_unbroadcast(grad / len(inputs), np.shape(x)) if need else None for x, need in zip(inputs, needs)]


@register("sub")
def _sub(grad, inputs, output, needs):
    return [_unbroadcast(grad, np.shape(inputs[0])) if needs[0] else None,
            _unbroadcast(-grad, np.shape(inputs[1])) if needs[1] else None]


@register("mul")
def _mul(grad, inputs, output, needs):
    grads = []
    for index, (x, need) in enumerate(zip(inputs, needs)):
        if not need:
            grads.append(None)
            continue
        partial = grad
        for other, y in enumerate(inputs):
            if other != index:
                partial = partial * _f64(y)
        grads.append(_unbroadcast(partial, np.shape(x)))
    return grads


@register("div")
def _div(grad, inputs, output, needs):
    a, b = _f64(inputs[0]), _f64(inputs[1])
    return [_unbroadcast(grad / b, a.shape) if needs[0] else None,
            _unbroadcast(-grad * a / (b * b), b.shape) if needs[1] else None]


def _select_first(grad, inputs, output, needs):
    """maximum / minimum: each element's gradient goes to the first input holding the result (the
    forward folds pairwise and TF's Maximum/Minimum gradients send ties to the left operand)."""
    output = _f64(output)
    free = np.ones(output.shape, dtype=bool)
    grads = []
    for x, need in zip(inputs, needs):
        hit = free & (np.broadcast_to(_f64(x), output.shape) == output)
        free &= ~hit
        grads.append(_unbroadcast(grad * hit, np.shape(x)) if need else None)
    return grads


register("maximum", "minimum")(_select_first)


@register("pow")
def _pow(grad, inputs, output, needs):
    a, b = _f64(inputs[0]), _f64(inputs[1])
    ga = _unbroadcast(grad * b * np.power(a, b - 1.0), a.shape) if needs[0] else None
    gb = _unbroadcast(grad * _f64(output) * np.log(np.where(a > 0, a, 1.0)), b.shape) if needs[1] else None
    return [ga, gb]


@register("neg")
def _neg(grad, inputs, output, needs):
    return [-grad]


@register("sqrt")
def _sqrt(grad, inputs, output, needs):
    return [grad * 0.5 / _f64(output)]


@register("square")
def _square(grad, inputs, output, needs):
    return [grad * 2.0 * _f64(inputs[0])]


@register("abs")
def _abs(grad, inputs, output, needs):
    return [grad * np.sign(_f64(inputs[0]))]


@register("concat")
def _concat(grad, inputs, output, needs, axis=-1):
    sizes = np.cumsum([np.shape(x)[axis] for x in inputs])[:-1]
    return [part if need else None for part, need in zip(np.split(grad, sizes, axis=axis), needs)]


# ---- pooling and reductions ------------------------------------------------------------------

@register("global_avg_pool")
def _global_avg_pool(grad, inputs, output, needs, keepdims=False):
    x = inputs[0]
    spatial = tuple(range(1, x.ndim - 1))
    if not keepdims:
        grad = np.expand_dims(grad, spatial)
    count = int(np.prod([x.shape[a] for a in spatial]))
    return [np.broadcast_to(grad / count, x.shape)]


@register("global_max_pool")
def _global_max_pool(grad, inputs, output, needs, keepdims=False):
    # TensorFlow's reduce_max gradient splits equally between tied maxima
    x = inputs[0]
    spatial = tuple(range(1, x.ndim - 1))
    peak = np.max(x, axis=spatial, keepdims=True)
    hits = (x == peak).astype(np.float64)
    hits /= hits.sum(axis=spatial, keepdims=True)
    if not keepdims:
        grad = np.expand_dims(grad, spatial)
    return [hits * grad]


def _reduce_back(grad, x, axes, keepdims, scale_by_count):
    axes = tuple(a % x.ndim for a in axes)
    if not keepdims:
        grad = np.expand_dims(grad, axes)
    count = int(np.prod([x.shape[a] for a in axes]))
    return np.broadcast_to(grad / count if scale_by_count else grad, x.shape)


@register("mean")
def _mean(grad, inputs, output, needs, axes, keepdims=False):
    return [_reduce_back(grad, inputs[0], axes, keepdims, True)]


@register("sum")
def _sum(grad, inputs, output, needs, axes, keepdims=False):
    return [_reduce_back(grad, inputs[0], axes, keepdims, False)]


@register("reduce_max", "reduce_min")
def _reduce_extreme(grad, inputs, output, needs, axes, keepdims=False):
    # TensorFlow's reduce_max / reduce_min gradient splits equally between tied extremes
    x = _f64(inputs[0])
    axes = tuple(a % x.ndim for a in axes)
    extreme = _f64(output) if keepdims else np.expand_dims(_f64(output), axes)
    hits = (x == extreme).astype(np.float64)
    hits /= hits.sum(axis=axes, keepdims=True)
    return [hits * (grad if keepdims else np.expand_dims(grad, axes))]


def _pool_geometry(x, pool, strides, pads):
    n, h, w, c = x.shape
    pads = resolve_pads(pads, h, w, pool, strides)
    oh = output_size(h, pool[0], strides[0], 1, pads[0], pads[1])
    ow = output_size(w, pool[1], strides[1], 1, pads[2], pads[3])
    return pads, oh, ow


@register("max_pool2d")
def _max_pool2d(grad, inputs, output, needs, pool=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0)):
    # TensorFlow's MaxPoolGrad sends each window's gradient to its first maximum (row-major)
    x = inputs[0]
    n, h, w, c = x.shape
    (top, bottom, left, right), oh, ow = _pool_geometry(x, pool, strides, pads)
    xp = np.full((n, h + top + bottom, w + left + right, c), -np.inf)
    xp[:, top:top + h, left:left + w] = x
    y = _f64(output)
    canvas = np.zeros_like(xp)
    taken = np.zeros(grad.shape, dtype=bool)
    sh, sw = strides
    for i in range(pool[0]):
        for j in range(pool[1]):
            window = (slice(None), slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))
            first = (xp[window] == y) & ~taken
            canvas[window] += grad * first
            taken |= first
    return [canvas[:, top:top + h, left:left + w]]


@register("avg_pool2d")
def _avg_pool2d(grad, inputs, output, needs, pool=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0),
                count_include_pad=False):
    x = inputs[0]
    n, h, w, c = x.shape
    (top, bottom, left, right), oh, ow = _pool_geometry(x, pool, strides, pads)
    sh, sw = strides
    windows = [(slice(None), slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))
               for i in range(pool[0]) for j in range(pool[1])]
    if count_include_pad:
        counts = np.full((1, oh, ow, 1), float(pool[0] * pool[1]))
    else:
        ones = np.zeros((1, h + top + bottom, w + left + right, 1))
        ones[:, top:top + h, left:left + w] = 1.0
        counts = sum(ones[window] for window in windows)
    share = grad / counts
    canvas = np.zeros((n, h + top + bottom, w + left + right, c))
    for window in windows:
        canvas[window] += share
    return [canvas[:, top:top + h, left:left + w]]


# ---- shape ------------------------------------------------------------------------------------

@register("flatten", "reshape", "squeeze", "expand_dims")
def _reshape_back(grad, inputs, output, needs, **attrs):
    return [grad.reshape(np.shape(inputs[0]))]


@register("transpose")
def _transpose(grad, inputs, output, needs, perm):
    return [np.transpose(grad, np.argsort(perm))]


_COPYING_PAD_MODES = ("reflect", "symmetric", "edge", "wrap")  # pads made of copies of input values


@register("pad")
def _pad(grad, inputs, output, needs, pads, mode="constant", value=0.0):
    shape = np.shape(inputs[0])
    if mode == "constant":
        index = tuple(slice(before, before + size) for (before, _), size in zip(pads, shape))
        return [grad[index]]
    if mode not in _COPYING_PAD_MODES:
        raise UnsupportedLayerError(f"pad mode {mode!r} has no gradient in app.explain; supported: 'constant', "
                                    f"{', '.join(repr(m) for m in _COPYING_PAD_MODES)}")
    # every output element is a copy of one input element: pad the element numbers the same way
    # and add each output's gradient to the element it copies (MIRROR_PAD, ReflectionPadding2D)
    count = int(np.prod(shape))
    source = np.pad(np.arange(count, dtype=np.intp).reshape(shape), pads, mode=mode)
    return [np.bincount(source.ravel(), weights=grad.ravel(), minlength=count).reshape(shape)]


@register("crop")
def _crop(grad, inputs, output, needs, begin, end):
    gx = np.zeros(np.shape(inputs[0]))
    gx[tuple(slice(b, b + s) for b, s in zip(begin, grad.shape))] = grad
    return [gx]


@register("slice")
def _slice(grad, inputs, output, needs, begin, size):
    gx = np.zeros(np.shape(inputs[0]))
    gx[tuple(slice(b, None if n == -1 else b + n) for b, n in zip(begin, size))] = grad
    return [gx]


@register("strided_slice")
def _strided_slice(grad, inputs, output, needs, begin, end, strides):
    gx = np.zeros(np.shape(inputs[0]))
    gx[tuple(slice(b, e, s) for b, e, s in zip(begin, end, strides))] = grad
    return [gx]


@register("getitem")
def _getitem(grad, inputs, output, needs, index):
    key = []
    for item in index:  # app.kernels.shape.getitem's index items
        if item == "ellipsis":
            key.append(Ellipsis)
        elif item == "newaxis":
            key.append(None)
        elif isinstance(item, int):
            key.append(item)
        else:
            key.append(slice(item[1], item[2], item[3]))
    gx = np.zeros(np.shape(inputs[0]))
    gx[tuple(key)] = grad
    return [gx]


@register("tile")
def _tile(grad, inputs, output, needs, reps):
    shape = np.shape(inputs[0])
    reps = (1,) * (len(shape) - len(reps)) + tuple(reps)
    split = [d for r, n in zip(reps, shape) for d in (r, n)]
    return [grad.reshape(split).sum(axis=tuple(range(0, 2 * len(shape), 2)))]


@register("gather")
def _gather(grad, inputs, output, needs, axis=0):
    x, indices = inputs[0], np.asarray(inputs[1]).astype(np.intp)
    gx = np.zeros(np.shape(x))
    axis %= gx.ndim
    moved = np.moveaxis(gx, axis, 0)  # a view: add.at writes through to gx
    np.add.at(moved, indices, np.moveaxis(grad, list(range(axis, axis + indices.ndim)),
                                          list(range(indices.ndim))))
    return [gx, None]


@register("cast")
def _cast(grad, inputs, output, needs, dtype):
    return [grad if np.issubdtype(np.dtype(dtype), np.floating) else np.zeros(np.shape(inputs[0]))]


def _resize_matrix(out_size, in_size, method, align_corners, half_pixel_centers, repeat) -> np.ndarray:
    """(out, in) interpolation weights of one axis, exactly as app.kernels.resize computes them
    (``repeat``: its integer up-sampling shortcut, taken when both axes are whole multiples)."""
    from ..kernels.resize import _linear_weights, _nearest_index

    matrix = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    if method == "nearest":
        index = rows // (out_size // in_size) if repeat else \
            _nearest_index(out_size, in_size, align_corners, half_pixel_centers)
        matrix[rows, index] = 1.0
        return matrix
    lo, hi, frac = _linear_weights(out_size, in_size, align_corners, half_pixel_centers)
    frac = frac.astype(np.float64)
    np.add.at(matrix, (rows, lo), 1.0 - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix


@register("resize")
def _resize(grad, inputs, output, needs, size=None, scale=None, method="nearest", align_corners=False,
            half_pixel_centers=False):
    """Resize is linear per axis, y = R x C^T over H and W: the gradient is R^T grad C."""
    if method not in ("nearest", "bilinear"):
        raise UnsupportedLayerError(f"resize method {method!r} has no gradient in app.explain")
    h, w = np.shape(inputs[0])[1:3]
    out_h, out_w = grad.shape[1:3]
    repeat = method == "nearest" and not align_corners and out_h % h == 0 and out_w % w == 0
    rows = _resize_matrix(out_h, h, method, align_corners, half_pixel_centers, repeat)
    cols = _resize_matrix(out_w, w, method, align_corners, half_pixel_centers, repeat)
    return [np.einsum("oh,nopc,pw->nhwc", rows, grad, cols)]


# ---- dispatch -------------------------------------------------------------------------------

def unsupported_reason(node: Node) -> str | None:
    """Why ``node`` cannot be differentiated (None when it can)."""
    if node.op not in VJPS:
        return f"op {node.op!r} has no gradient"
    activation = node.attrs.get("activation", "linear")
    if node.op in ("softmax", "sigmoid") or activation in ("linear", None) or activation in ACTIVATION_VJPS:
        if node.op == "pad" and node.attrs.get("mode", "constant") not in ("constant", *_COPYING_PAD_MODES):
            return f"pad mode {node.attrs['mode']!r} has no gradient"
        if node.op == "resize" and node.attrs.get("method", "nearest") not in ("nearest", "bilinear"):
            return f"resize method {node.attrs['method']!r} has no gradient"
        if len(node.outputs) != 1:
            return f"op {node.op!r} with {len(node.outputs)} outputs has no gradient"
        return None
    return f"fused activation {activation!r} has no gradient"


def supported_ops() -> list[str]:
    """IR ops the backward pass can go through."""
    return sorted(VJPS)


def node_vjp(node: Node, grad: np.ndarray, inputs: Sequence[np.ndarray], output: np.ndarray,
             needs: Sequence[bool], *, skip_activation: bool = False) -> list[np.ndarray | None]:
    """Gradients w.r.t. ``node``'s inputs given ``grad`` = d score / d output.

    ``skip_activation`` treats ``grad`` as the gradient w.r.t. the pre-activation of a fused
    ``activation`` (Grad-CAM's class logit under a Dense that carries softmax)."""
    reason = unsupported_reason(node)
    if reason is not None:
        raise UnsupportedLayerError(f"layer {node.name!r} ({node.op}): {reason}; "
                                    f"the backward pass supports: {', '.join(supported_ops())}")
    attrs = dict(node.attrs)
    activation = attrs.get("activation", "linear")
    if activation not in ("linear", None) and "activation" in attrs:
        if not skip_activation:
            pre = KERNELS[node.op](*inputs, **{**attrs, "activation": "linear"})
            grad = ACTIVATION_VJPS[activation](grad, _f64(pre), _f64(output))
        output = None  # the linear part's VJPs never read the post-activation output
    return VJPS[node.op](_f64(grad), list(inputs), output, tuple(needs), **attrs)
