"""Fast GEMM for the engine: pick the quickest working backend at start-up and plug it in.

Backends, fastest first (measured in Pyodide, see docs/fastpath.md):

``simd``      the SIMD kernels from ``csrc/`` (wasm side module in Pyodide, native .so in CPython),
              loaded with ctypes; ~30 GFLOP/s single-threaded in Pyodide on conv-shaped GEMMs.
``openblas``  ``cblas_sgemm`` through ctypes (Pyodide's ``openblas`` package, or the OpenBLAS
              bundled in numpy's CPython wheels); ~6-7 GFLOP/s in Pyodide.
``numpy``     ``numpy.matmul``; always works; ~1.5 GFLOP/s in Pyodide.

Typical start-up (worker or CLI)::

    from app import fastpath
    fastpath.select_backend()     # or select_backend(kernel_bytes=fetched_wasm_bytes)
    fastpath.install()            # routes app.kernels.gemm.gemm through the chosen backend
    fastpath.backend_report()     # {"backend": ..., "skipped": [...], "fallbacks": {...}} for the UI

A backend that cannot be used is skipped with a reason (missing file, ABI mismatch, failed
self-test); the reasons are kept in :func:`backend_report`, never dropped.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np

from ._backends import (
    ACTIVATIONS,
    KERNEL_ABI_VERSION,
    FastpathError,
    NumpyBackend,
    OpenBlasBackend,
    PackedWeights,
    SimdKernelBackend,
    check_gemm_args,
)

IN_PYODIDE = sys.platform == "emscripten"

#: File names written by tools/build_kernels.py.
WASM_LIBRARY = "vitrine_kernels.wasm.so"
NATIVE_LIBRARY = "vitrine_kernels.native.so"
#: Environment variable naming a kernel library to load instead of the default search.
LIBRARY_ENV = "VITRINE_KERNELS"
#: Default order of :func:`select_backend`.
BACKEND_ORDER = ("simd", "openblas", "numpy")

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_CACHE = _PACKAGE_DIR.parent.parent / ".cache" / "kernels"

_lock = threading.Lock()
_selected = None
_skipped: list[str] = []
_fallbacks: Counter = Counter()


def library_candidates() -> list[Path]:
    """Where :func:`select_backend` looks for the kernel library, in order: ``$VITRINE_KERNELS``,
    next to this package (shipped as package data), then the repo's ``.cache/kernels/`` build."""
    name = WASM_LIBRARY if IN_PYODIDE else NATIVE_LIBRARY
    candidates = [Path(os.environ[LIBRARY_ENV])] if os.environ.get(LIBRARY_ENV) else []
    candidates += [_PACKAGE_DIR / name, _REPO_CACHE / name]
    return candidates


def _write_library_bytes(data: bytes) -> Path:
    # emscripten's dlopen reads from the in-memory filesystem; a content-named file means a second
    # worker start with the same bytes reuses it, and different bytes never shadow each other.
    if IN_PYODIDE and not data.startswith(b"\0asm"):
        raise FastpathError(f"SIMD kernels: the {len(data)} bytes given are not a wasm module (no \\0asm magic)")
    path = Path("/tmp") / f"vitrine_kernels.{hashlib.sha256(data).hexdigest()[:16]}.so"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


def _make_simd(kernel_path, kernel_bytes) -> SimdKernelBackend:
    if kernel_bytes is not None:
        return SimdKernelBackend(_write_library_bytes(bytes(kernel_bytes)))
    if kernel_path is not None:
        if not Path(kernel_path).is_file():
            raise FastpathError(f"SIMD kernels: {kernel_path} does not exist")
        return SimdKernelBackend(kernel_path)
    candidates = library_candidates()
    for path in candidates:
        if path.is_file():
            return SimdKernelBackend(path)
    hint = "build it with `python tools/build_kernels.py --target native`" if not IN_PYODIDE else "ship it with the app"
    raise FastpathError(f"SIMD kernels: no library found (looked in {', '.join(map(str, candidates))}); {hint}")


def _make_openblas() -> OpenBlasBackend:
    import ctypes

    if IN_PYODIDE:
        path = Path("/usr/lib/libopenblas.so")  # installed by Pyodide's `openblas` package
        if not path.is_file():
            raise FastpathError(f"OpenBLAS: {path} not found (load the Pyodide package 'openblas' first)")
        return OpenBlasBackend(path, "cblas_sgemm", ctypes.c_int32)
    libs = sorted((Path(np.__file__).resolve().parent.parent / "numpy.libs").glob("libscipy_openblas64_*.so"))
    if not libs:
        raise FastpathError("OpenBLAS: numpy does not bundle libscipy_openblas64_ (numpy.libs/) here")
    return OpenBlasBackend(libs[0], "scipy_cblas_sgemm64_", ctypes.c_int64)


def _self_test(backend) -> None:
    """Run one small GEMM with bias and relu6 against a float64 reference; raise if it disagrees."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((5, 13)).astype(np.float32)
    b = rng.standard_normal((13, 11)).astype(np.float32)
    bias = rng.standard_normal(11).astype(np.float32)
    expected = np.clip(a.astype(np.float64) @ b + bias, 0.0, 6.0)
    got = backend.sgemm(a, b, bias, "relu6")
    error = float(np.max(np.abs(got - expected)))
    if not error <= 1e-4:
        raise FastpathError(f"{backend.name}: self-test max |error| {error:g} > 1e-4")


def select_backend(order=BACKEND_ORDER, *, kernel_path=None, kernel_bytes=None):
    """Choose the first backend of ``order`` that loads and passes a self-test, and make it current.

    ``kernel_path`` / ``kernel_bytes`` give the SIMD library explicitly (in Pyodide, bytes are
    written to ``/tmp`` first because ``ctypes.CDLL`` loads from the in-memory filesystem);
    otherwise :func:`library_candidates` are searched. Returns the backend; the reasons other
    backends were skipped are in :func:`backend_report`. Raises :class:`FastpathError` if no
    backend in ``order`` works (impossible when ``order`` contains "numpy")."""
    global _selected
    unknown = [kind for kind in order if kind not in BACKEND_ORDER]
    if unknown or not order:
        raise FastpathError(f"select_backend: order must be a non-empty subset of {BACKEND_ORDER}, got {tuple(order)}")
    skipped = []
    chosen = None
    for kind in order:
        try:
            if kind == "simd":
                backend = _make_simd(kernel_path, kernel_bytes)
            elif kind == "openblas":
                backend = _make_openblas()
            else:
                backend = NumpyBackend()
            _self_test(backend)
        except FastpathError as exc:
            skipped.append(f"{kind}: {exc}")
            continue
        chosen = backend
        break
    with _lock:
        _skipped[:] = skipped
        _fallbacks.clear()
        _selected = chosen
    if chosen is None:
        raise FastpathError("select_backend: no usable backend; " + "; ".join(skipped))
    return chosen


def current_backend():
    """The selected backend (selecting with the defaults on first use)."""
    return _selected if _selected is not None else select_backend()


def backend_name() -> str:
    """Name of the selected backend, e.g. ``"simd (vitrine_kernels.wasm.so)"``."""
    return current_backend().name


def backend_report() -> dict:
    """What was chosen and why: ``{"backend", "skipped": [reason, ...], "fallbacks": {reason: count}}``
    (``fallbacks`` counts engine GEMM calls the backend could not take and numpy computed)."""
    backend = current_backend()
    with _lock:
        return {"backend": backend.name, "skipped": list(_skipped), "fallbacks": dict(_fallbacks)}


def sgemm(a, b, bias=None, activation="linear", out=None) -> np.ndarray:
    """``act(a @ b + bias)`` for float32 ``a`` [M, K], ``b`` [K, N] on the selected backend.

    ``activation`` is one of ``"linear"``, ``"relu"``, ``"relu6"``; ``out`` (float32 [M, N], unit
    column stride, not overlapping the inputs) receives the result if given. Raises
    :class:`FastpathError` on bad arguments."""
    return current_backend().sgemm(a, b, bias, activation, out)


def engine_gemm(a, b, out=None) -> np.ndarray:
    """The ``gemm(a, b, out=None)`` contract of :mod:`app.kernels.gemm` on the selected backend.

    Operands the backend cannot take (not float32, not 2-D, overlapping ``out``) are computed by
    ``numpy.matmul`` instead and the reason is counted in ``backend_report()["fallbacks"]``."""
    backend = current_backend()
    try:
        return backend.sgemm(a, b, None, "linear", out)
    except FastpathError as exc:
        with _lock:
            _fallbacks[str(exc)] += 1
        return np.matmul(a, b, out=out)


#: IR ops with a SIMD kernel that :func:`conv_kernels` can wrap.
SIMD_OPS = ("conv2d", "depthwise_conv2d", "scale_shift", "max_pool2d", "avg_pool2d")
_POOL_OPS = ("max_pool2d", "avg_pool2d")


def conv_kernels(fallbacks) -> dict:
    """IR kernels running on the SIMD library, for each op of :data:`SIMD_OPS` in ``fallbacks``.

    ``fallbacks`` maps op names to the engine's own kernels (e.g. ``app.kernels.KERNELS``); the
    returned functions have the IR signature (``kernel(*inputs, **attrs)``). When the selected
    backend is not ``simd`` or the arguments are outside what the C kernels take (not float32,
    depthwise multiplier > 1, a fused activation other than linear/relu/relu6, ...), they call the
    fallback and count the reason in ``backend_report()["fallbacks"]``. Convolution
    ``pads="same"/"valid"`` are resolved first. Registering them is the engine's decision
    (``app.kernels.install_fastpath_kernels``); this function only builds them."""
    from ..kernels._util import resolve_pads

    def explicit_pads(op, inputs, attrs):
        if not isinstance(attrs.get("pads"), str):
            return attrs
        x = inputs[0]
        window = attrs.get("pool", (2, 2)) if op in _POOL_OPS else inputs[1].shape[:2]
        default_strides = (2, 2) if op in _POOL_OPS else (1, 1)
        return dict(attrs, pads=resolve_pads(attrs["pads"], x.shape[1], x.shape[2], window,
                                             attrs.get("strides", default_strides), attrs.get("dilations", (1, 1))))

    def wrap(op):
        fallback = fallbacks[op]

        def kernel(*inputs, **attrs):
            backend = current_backend()
            if not isinstance(backend, SimdKernelBackend):
                return fallback(*inputs, **attrs)
            try:
                return getattr(backend, op)(*inputs, **explicit_pads(op, inputs, attrs))
            except FastpathError as exc:
                with _lock:
                    _fallbacks[str(exc)] += 1
                return fallback(*inputs, **attrs)

        def prepare(*inputs, **attrs):
            """``kernel`` specialised to inputs of this shape and these weights (see
            :meth:`SimdKernelBackend.prepare`), or None where it would fall back anyway."""
            backend = current_backend()
            if not isinstance(backend, SimdKernelBackend):
                return None
            try:
                fast = backend.prepare(op, *inputs, **explicit_pads(op, inputs, attrs))
            except FastpathError:
                return None

            def prepared(*args):
                # a backend chosen since (e.g. numpy) takes over, as it does for kernel(); inputs
                # the C kernels refuse go to the fallback, counted, as they do there
                if current_backend() is backend:
                    try:
                        return fast(*args)
                    except FastpathError:
                        pass
                return kernel(*args, **attrs)

            return prepared

        kernel.__name__ = kernel.__qualname__ = f"simd_{op}"
        kernel.__doc__ = f"IR ``{op}`` on the SIMD kernels, falling back to {getattr(fallback, '__name__', fallback)!s}."
        kernel.prepare = prepare
        return kernel

    return {op: wrap(op) for op in SIMD_OPS if op in fallbacks}


def install():
    """Select a backend if none is selected and route :func:`app.kernels.gemm.gemm` through it.

    Returns the backend. Call :func:`uninstall` to restore numpy."""
    from ..kernels.gemm import set_gemm_backend

    backend = current_backend()
    set_gemm_backend(engine_gemm, backend.name)
    return backend


def uninstall() -> None:
    """Restore the engine's own numpy GEMM."""
    from ..kernels.gemm import set_gemm_backend

    set_gemm_backend(None)


__all__ = [
    "ACTIVATIONS",
    "BACKEND_ORDER",
    "KERNEL_ABI_VERSION",
    "FastpathError",
    "NATIVE_LIBRARY",
    "NumpyBackend",
    "OpenBlasBackend",
    "PackedWeights",
    "SIMD_OPS",
    "SimdKernelBackend",
    "WASM_LIBRARY",
    "backend_name",
    "backend_report",
    "check_gemm_args",
    "conv_kernels",
    "current_backend",
    "engine_gemm",
    "install",
    "library_candidates",
    "select_backend",
    "sgemm",
    "uninstall",
]
