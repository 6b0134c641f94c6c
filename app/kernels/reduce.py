"""Reductions (axes include the batch axis, as in Keras / TF)."""

from __future__ import annotations

import numpy as np

from . import register


@register("mean")
def mean(x, *, axes, keepdims=False):
    return np.mean(x, axis=tuple(axes), keepdims=keepdims, dtype=np.float32)


@register("sum")
def total(x, *, axes, keepdims=False):
    return np.sum(x, axis=tuple(axes), keepdims=keepdims, dtype=np.float32)


@register("reduce_max")
def reduce_max(x, *, axes, keepdims=False):
    return np.max(x, axis=tuple(axes), keepdims=keepdims)


@register("reduce_min")
def reduce_min(x, *, axes, keepdims=False):
    return np.min(x, axis=tuple(axes), keepdims=keepdims)


@register("argmax")
def argmax(x, *, axis=-1):
    return np.argmax(x, axis=axis)
