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


_ORIGINAL_KERNELS: dict[str, Callable] = {}


def replace_kernel(op: str, fn: Callable | None) -> Callable:
    """Swap in a faster implementation of ``op`` with the same signature (e.g. a SIMD depthwise
    convolution from :mod:`app.fastpath`); ``fn=None`` restores the numpy kernel. Returns the
    kernel that was active. Plans look kernels up at run time, so loaded models pick it up."""
    if op not in KERNELS:
        raise KeyError(f"no kernel registered for op {op!r}")
    previous = KERNELS[op]
    _ORIGINAL_KERNELS.setdefault(op, previous)
    KERNELS[op] = _ORIGINAL_KERNELS[op] if fn is None else fn
    return previous


# Importing the families fills KERNELS (order does not matter).
from . import activations, conv, dense, elementwise, norm, pool, reduce, resize, shape  # noqa: E402,F401

__all__ = ["KERNELS", "register", "replace_kernel"]
