"""Shape and data-movement kernels. Target shapes exclude the batch axis; the batch size is read
from the input at run time so the same graph serves any batch (including the empty batch used
for shape inference)."""

from __future__ import annotations

import math

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
def concat(*xs, axis=-1):
    return np.concatenate(xs, axis=axis)


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
