"""Elementwise n-ary ops with numpy broadcasting (Keras merge layers, TF math ops)."""

from __future__ import annotations

from functools import reduce as _fold

import numpy as np

from . import register
from .activations import apply_activation


@register("add")
def add(*xs, activation="linear"):
    """Sum with numpy broadcasting, then an optional fused activation (ResNet's Add -> ReLU)."""
    y = xs[0] + xs[1] if len(xs) == 2 else _fold(np.add, xs)
    return y if activation == "linear" else apply_activation(y, activation)


@register("sub")
def sub(a, b):
    return a - b


@register("mul")
def mul(*xs):
    if len(xs) == 2:
        return xs[0] * xs[1]
    return _fold(np.multiply, xs)


@register("div")
def div(a, b):
    return a / b


@register("maximum")
def maximum(*xs):
    return _fold(np.maximum, xs)


@register("minimum")
def minimum(*xs):
    return _fold(np.minimum, xs)


@register("average")
def average(*xs):
    return _fold(np.add, xs) * np.float32(1.0 / len(xs))


@register("pow")
def power(a, b):
    return np.power(a, b)


@register("neg")
def neg(x):
    return -x


@register("sqrt")
def sqrt(x):
    return np.sqrt(x)


@register("square")
def square(x):
    return np.square(x)


@register("abs")
def absolute(x):
    return np.abs(x)
