"""Numpy kernels, one module per op family, found through an explicit registry keyed by IR op name.

A kernel is a pure function ``kernel(*input_arrays, **attrs) -> array | tuple[array, ...]`` whose
keyword names are the attribute names of :mod:`app.ir`. Kernels never see a model format; they
trust their inputs (the loader and :mod:`app.optimize` validated and prepared them once), so the
hot loop does no re-validation.

A kernel may also have ``kernel.prepare(*inputs, **attrs) -> callable | None``: a function of the
inputs alone giving the same result faster for inputs of the same shape and the same weights
(it handles any other inputs itself, by calling the kernel). :class:`app.runtime.Plan` keeps one
per node and input shape; the SIMD kernels use it to validate and lay out their C calls once.
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


def install_fastpath_kernels(ops=None) -> list[str]:
    """Route ``ops`` (default: every op :mod:`app.fastpath` offers SIMD kernels for, e.g.
    conv2d, depthwise_conv2d, scale_shift, max_pool2d, avg_pool2d) through it, with the numpy kernels as their fallback.
    Call after ``fastpath.select_backend()``; returns the ops replaced. Undo with
    :func:`restore_kernels`."""
    from .. import fastpath

    offered = getattr(fastpath, "SIMD_OPS", ("conv2d", "depthwise_conv2d"))
    originals = {op: _ORIGINAL_KERNELS.get(op, KERNELS[op]) for op in offered if op in KERNELS}
    fast = fastpath.conv_kernels(originals)
    ops = sorted(fast) if ops is None else list(ops)
    unknown = sorted(set(ops) - set(fast))
    if unknown:
        raise KeyError(f"app.fastpath has no kernels for {unknown}; it has {sorted(fast)}")
    supported = set(getattr(fastpath, "ACTIVATIONS", ("linear", "relu", "relu6")))
    for op in ops:
        replace_kernel(op, _split_activation(fast[op], supported))
    return sorted(ops)


def _split_activation(fast: Callable, supported: set) -> Callable:
    """Run a fused activation the fast kernel lacks (swish, gelu, ...) as a separate numpy step
    instead of letting the whole op fall back to numpy."""
    from .activations import apply_activation

    def kernel(*inputs, **attrs):
        # attributes pass through untouched (pooling has no activation at all)
        activation = attrs.get("activation", "linear")
        if activation in supported:
            return fast(*inputs, **attrs)
        return apply_activation(fast(*inputs, **{**attrs, "activation": "linear"}), activation)

    def prepare(*inputs, **attrs):
        fast_prepare = getattr(fast, "prepare", None)
        if fast_prepare is None or attrs.get("activation", "linear") not in supported:
            return None
        return fast_prepare(*inputs, **attrs)

    kernel.__name__ = getattr(fast, "__name__", "fast_kernel")
    kernel.__doc__ = getattr(fast, "__doc__", None)
    kernel.prepare = prepare
    return kernel


def restore_kernels() -> None:
    """Put every replaced kernel back to the numpy implementation."""
    for op in list(_ORIGINAL_KERNELS):
        replace_kernel(op, None)


# Importing the families fills KERNELS (order does not matter).
from . import activations, conv, dense, elementwise, norm, pool, reduce, resize, shape  # noqa: E402,F401

__all__ = ["KERNELS", "register", "replace_kernel", "install_fastpath_kernels", "restore_kernels"]
