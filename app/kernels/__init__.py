"""Numpy kernels, one module per op family, found through an explicit registry keyed by IR op name.

A kernel is a pure function ``kernel(*input_arrays, **attrs) -> array | tuple[array, ...]`` whose
keyword names are the attribute names of :mod:`app.ir`. Kernels never see a model format; they
trust their inputs (the loader and :mod:`app.optimize` validated and prepared them once), so the
hot loop does no re-validation.
"""

from __future__ import annotations

from typing import Callable

KERNELS: dict[str, Callable] = {}


def register(*ops: str):
    """Decorator registering a kernel under one or more IR op names."""

    def decorate(fn):
        for op in ops:
            if op in KERNELS:
                raise RuntimeError(f"kernel for op {op!r} registered twice")
            KERNELS[op] = fn
        return fn

    return decorate


# Importing the families fills KERNELS (order does not matter).
from . import activations, conv, dense, elementwise, norm, pool, reduce, resize, shape  # noqa: E402,F401

__all__ = ["KERNELS", "register"]
