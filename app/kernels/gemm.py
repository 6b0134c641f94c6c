"""The one matrix multiply every FLOP-heavy kernel goes through (conv via im2col, dense,
transposed conv). A faster backend (e.g. a WebAssembly-SIMD GEMM in Pyodide) plugs in here with
:func:`set_gemm_backend`; nothing else needs to change."""

from __future__ import annotations

from typing import Callable

import numpy as np


def _numpy_gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.matmul(a, b, out=out)


_backend: Callable = _numpy_gemm
_backend_name = "numpy"


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Return ``a @ b`` for float32 C-contiguous ``a`` [M, K] and ``b`` [K, N] (into ``out`` if given)."""
    return _backend(a, b, out)


def set_gemm_backend(fn: Callable | None, name: str = "custom") -> None:
    """Route every GEMM through ``fn(a, b, out=None) -> array``; ``None`` restores numpy."""
    global _backend, _backend_name
    if fn is None:
        _backend, _backend_name = _numpy_gemm, "numpy"
    else:
        _backend, _backend_name = fn, name


def gemm_backend_name() -> str:
    """Name of the GEMM backend in use ("numpy" unless one was plugged in)."""
    return _backend_name
