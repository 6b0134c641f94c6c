"""Shape and data-movement kernels. Target shapes exclude the batch axis; the batch size is read
from the input at run time so the same graph serves any batch (including the empty batch used
for shape inference)."""

from __future__ import annotations

import math
import weakref

import numpy as np

from . import register


def _with_batch(x, shape):
    shape = list(shape)
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        shape[shape.index(-1)] = math.prod(x.shape[1:]) // known if known else 0
    return (x.shape[0], *shape)


@register("reshape")
def reshape(x, *, shape):
    return x.reshape(_with_batch(x, shape))


@register("flatten")
def flatten(x):
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


@register("transpose")
def transpose(x, *, perm):
    return np.ascontiguousarray(np.transpose(x, perm))


@register("concat")
def concat(*xs, axis=-1, capacity=None):
    """np.concatenate; with ``capacity`` (set by :mod:`app.optimize` on a chain of concats along
    the last axis, DenseNet's dense blocks) the result is a view ``buffer[..., :C]`` on a buffer of
    ``capacity`` channels, and a later concat whose first input is that view (still the buffer's
    filled part) only copies the new channels behind it, instead of the whole growing tensor."""
    if capacity is None or not xs or xs[0].ndim == 0 or axis not in (-1, xs[0].ndim - 1):
        return np.concatenate(xs, axis=axis)
    first = xs[0]
    lead, total = first.shape[:-1], sum(x.shape[-1] for x in xs)
    if total > capacity or any(x.shape[:-1] != lead or x.dtype != first.dtype for x in xs):
        return np.concatenate(xs, axis=axis)
    buffer, filled = _growable(first)
    if buffer is None or buffer.shape[:-1] != lead or buffer.shape[-1] < total:
        buffer = np.empty((*lead, capacity), dtype=first.dtype)
        buffer[..., :first.shape[-1]] = first
        filled = first.shape[-1]
    end = filled
    for x in xs[1:]:
        buffer[..., end:end + x.shape[-1]] = x
        end += x.shape[-1]
    _FILLED[id(buffer)] = (weakref.ref(buffer, lambda _, key=id(buffer): _FILLED.pop(key, None)), end)
    return buffer[..., :end]


# id(buffer) -> (weakref to the buffer, channels filled so far) for concat's growing buffers
_FILLED: dict[int, tuple] = {}


def _growable(view):
    """(buffer, filled) when ``view`` is exactly the filled channels of a concat buffer, so the
    channels after it are free; else (None, 0). A second concat onto the same view finds the
    buffer filled further and copies instead of overwriting the first one's channels."""
    buffer = view.base
    entry = _FILLED.get(id(buffer)) if isinstance(buffer, np.ndarray) else None
    if entry is None or entry[0]() is not buffer:
        return None, 0
    filled = entry[1]
    if (view.shape[-1] != filled or view.strides != buffer.strides
            or view.__array_interface__["data"][0] != buffer.__array_interface__["data"][0]):
        return None, 0
    return buffer, filled


@register("pad")
def pad(x, *, pads, mode="constant", value=0.0):
    if mode == "constant":
        return np.pad(x, pads, mode="constant", constant_values=value)
    return np.pad(x, pads, mode=mode)


@register("crop")
def crop(x, *, begin, end):
    """Keep x[begin[i] : x.shape[i] - end[i]] on every axis (end = amount cropped at the end)."""
    index = tuple(slice(b, x.shape[i] - e) for i, (b, e) in enumerate(zip(begin, end)))
    return np.ascontiguousarray(x[index])


@register("squeeze")
def squeeze(x, *, axes):
    return np.squeeze(x, axis=tuple(axes))


@register("expand_dims")
def expand_dims(x, *, axis):
    return np.expand_dims(x, axis)


@register("slice")
def slice_(x, *, begin, size):
    index = tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))
    return np.ascontiguousarray(x[index])


@register("strided_slice")
def strided_slice(x, *, begin, end, strides):
    """Python-slice semantics per axis (None = open end); masks are resolved by the loader."""
    index = tuple(slice(b, e, s) for b, e, s in zip(begin, end, strides))
    return np.ascontiguousarray(x[index])


@register("split")
def split(x, *, axis, sizes):
    bounds = np.cumsum(sizes)[:-1]
    return tuple(np.ascontiguousarray(part) for part in np.split(x, bounds, axis=axis))


@register("gather")
def gather(x, indices, *, axis=0):
    return np.take(x, indices.astype(np.int64), axis=axis)


@register("cast")
def cast(x, *, dtype):
    return x.astype(dtype)


@register("tile")
def tile(x, *, reps):
    return np.tile(x, reps)


@register("getitem")
def getitem(x, *, index):
    """numpy basic indexing; ``index`` items: ("slice", start, stop, step), an int, "ellipsis" or
    "newaxis" (Keras 2 SlicingOpLambda, i.e. ``x[..., :2]``)."""
    key = []
    for item in index:
        if item == "ellipsis":
            key.append(Ellipsis)
        elif item == "newaxis":
            key.append(None)
        elif isinstance(item, int):
            key.append(item)
        else:
            key.append(slice(item[1], item[2], item[3]))
    return np.ascontiguousarray(x[tuple(key)])
