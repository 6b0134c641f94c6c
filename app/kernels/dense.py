"""Fully connected layer (Keras ``Dense``: contracts the last axis, any leading rank)."""

from __future__ import annotations

import numpy as np

from . import register
from .activations import apply_activation
from .gemm import gemm


@register("dense")
def dense(x, kernel, bias=None, *, activation="linear"):
    units = kernel.shape[1]
    lead = x.shape[:-1]
    y = gemm(np.ascontiguousarray(x).reshape(-1, x.shape[-1]), kernel)
    if bias is not None:
        y += bias
    return apply_activation(y, activation).reshape(*lead, units)
