"""Pooling over NHWC (TensorFlow semantics: padded cells never win a max and are not counted
in an average: https://www.tensorflow.org/api_docs/python/tf/nn/pool)."""

from __future__ import annotations

import numpy as np

from . import register
from ._util import output_size, pad_spatial, resolve_pads, tap


def _geometry(x, pool, strides, pads):
    n, h, w, c = x.shape
    pads = resolve_pads(pads, h, w, pool, strides)
    oh = output_size(h, pool[0], strides[0], 1, pads[0], pads[1])
    ow = output_size(w, pool[1], strides[1], 1, pads[2], pads[3])
    return pads, oh, ow


@register("max_pool2d")
def max_pool2d(x, *, pool=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0)):
    pads, oh, ow = _geometry(x, pool, strides, pads)
    xp = pad_spatial(x, pads, value=-np.inf)
    y = np.array(tap(xp, 0, 0, oh, ow, strides, (1, 1)), dtype=np.float32)
    for i in range(pool[0]):
        for j in range(pool[1]):
            if i or j:
                np.maximum(y, tap(xp, i, j, oh, ow, strides, (1, 1)), out=y)
    return y


@register("avg_pool2d")
def avg_pool2d(x, *, pool=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), count_include_pad=False):
    pads, oh, ow = _geometry(x, pool, strides, pads)
    xp = pad_spatial(x, pads)
    y = np.zeros((x.shape[0], oh, ow, x.shape[3]), dtype=np.float32)
    for i in range(pool[0]):
        for j in range(pool[1]):
            y += tap(xp, i, j, oh, ow, strides, (1, 1))
    if count_include_pad or pads == (0, 0, 0, 0):
        y *= np.float32(1.0 / (pool[0] * pool[1]))
        return y
    ones = pad_spatial(np.ones((1, x.shape[1], x.shape[2], 1), dtype=np.float32), pads)
    counts = np.zeros((1, oh, ow, 1), dtype=np.float32)
    for i in range(pool[0]):
        for j in range(pool[1]):
            counts += tap(ones, i, j, oh, ow, strides, (1, 1))
    y /= counts
    return y


@register("global_avg_pool")
def global_avg_pool(x, *, keepdims=False):
    return np.mean(x, axis=tuple(range(1, x.ndim - 1)), keepdims=keepdims, dtype=np.float32)


@register("global_max_pool")
def global_max_pool(x, *, keepdims=False):
    return np.max(x, axis=tuple(range(1, x.ndim - 1)), keepdims=keepdims)
