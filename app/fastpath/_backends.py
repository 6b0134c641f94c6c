"""GEMM backends behind :mod:`app.fastpath`: the SIMD kernel library, OpenBLAS and numpy.

Every backend exposes the same call, ``sgemm(a, b, bias=None, activation="linear", out=None)``,
computing ``act(a @ b + bias)`` in float32 into ``out`` (allocated when ``None``) and returning it.
Arguments are checked once by :func:`check_gemm_args`; the backends then only compute.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VitrineError

#: Fused activations every backend supports, with their code in the C ABI (vitrine_kernels.h).
ACTIVATIONS = {"linear": 0, "relu": 1, "relu6": 2, "hard_swish": 3, "hard_silu": 3}

#: Must equal VK_ABI_VERSION in csrc/vitrine_kernels.h.
KERNEL_ABI_VERSION = 11

_F32 = np.dtype(np.float32)
_ITEM = _F32.itemsize


class FastpathError(VitrineError, ValueError):
    """Bad arguments to a fast kernel, or a kernel library that cannot be used (says why)."""


@dataclass(frozen=True)
class GemmArgs:
    """Validated GEMM operands: row-major views with unit column stride and their row strides
    (leading dimensions, in elements)."""

    a: np.ndarray
    b: np.ndarray
    bias: np.ndarray | None
    out: np.ndarray
    m: int
    n: int
    k: int
    lda: int
    ldb: int
    ldc: int
    activation: int


def _leading_dimension(arr: np.ndarray) -> int | None:
    """Row stride in elements if ``arr`` (2-D float32) is row-major with unit column stride."""
    rows, cols = arr.shape
    if arr.size == 0:
        return max(cols, 1)  # nothing is read or written
    if cols > 1 and arr.strides[1] != _ITEM:
        return None
    if rows <= 1:
        return max(cols, 1)  # the row stride of a single row is never used
    stride = arr.strides[0]
    if stride % _ITEM or stride // _ITEM < cols:
        return None
    return stride // _ITEM


def _as_rows(arr: np.ndarray) -> tuple[np.ndarray, int]:
    ld = _leading_dimension(arr)
    if ld is None:  # negative, overlapping or non-unit column strides: one contiguous copy
        arr = np.ascontiguousarray(arr)
        ld = max(arr.shape[1], 1)
    return arr, ld


def _describe(arr: object) -> str:
    if isinstance(arr, np.ndarray):
        return f"{arr.dtype} array of shape {arr.shape}"
    return type(arr).__name__


def check_gemm_args(a, b, bias=None, activation="linear", out=None) -> GemmArgs:
    """Validate GEMM operands once; raise :class:`FastpathError` naming the argument otherwise.

    ``a`` [M, K] and ``b`` [K, N] must be 2-D float32 arrays (any row stride; a copy is made only
    when the column stride is not 1). ``bias`` is None or float32 [N]. ``out`` is None or a
    writable float32 [M, N] array with unit column stride that does not overlap ``a``/``b``.
    """
    for name, arr in (("a", a), ("b", b)):
        if not isinstance(arr, np.ndarray) or arr.dtype != _F32 or arr.ndim != 2:
            raise FastpathError(f"sgemm: {name} must be a 2-D float32 array, got {_describe(arr)}")
    m, k = a.shape
    k_b, n = b.shape
    if k != k_b:
        raise FastpathError(f"sgemm: inner dimensions differ: a is {a.shape}, b is {b.shape} (expected a[M, K] @ b[K, N])")
    if activation not in ACTIVATIONS:
        raise FastpathError(f"sgemm: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if bias is not None:
        if not isinstance(bias, np.ndarray) or bias.dtype != _F32 or bias.shape != (n,):
            raise FastpathError(f"sgemm: bias must be a float32 array of shape ({n},), got {_describe(bias)}")
        bias = np.ascontiguousarray(bias)
    a, lda = _as_rows(a)
    b, ldb = _as_rows(b)
    if out is None:
        out = np.empty((m, n), dtype=_F32)
    else:
        if not isinstance(out, np.ndarray) or out.dtype != _F32 or out.shape != (m, n):
            raise FastpathError(f"sgemm: out must be a float32 array of shape ({m}, {n}), got {_describe(out)}")
        if not out.flags.writeable:
            raise FastpathError("sgemm: out is read-only")
        if np.may_share_memory(out, a) or np.may_share_memory(out, b):
            raise FastpathError("sgemm: out overlaps a or b; pass a separate output array")
    ldc = _leading_dimension(out)
    if ldc is None:
        raise FastpathError(f"sgemm: out must have unit column stride and row stride >= {n}, got strides {out.strides}")
    return GemmArgs(a, b, bias, out, m, n, k, lda, ldb, ldc, ACTIVATIONS[activation])


def _apply_bias_activation(args: GemmArgs) -> None:
    out = args.out
    if args.bias is not None:
        out += args.bias
    if args.activation == ACTIVATIONS["relu"]:
        np.maximum(out, 0.0, out=out)
    elif args.activation == ACTIVATIONS["relu6"]:
        np.maximum(out, 0.0, out=out)
        np.minimum(out, 6.0, out=out)
    elif args.activation == ACTIVATIONS["hard_swish"]:
        out *= np.clip(out + np.float32(3), 0, 6) * np.float32(1.0 / 6.0)


class NumpyBackend:
    """``numpy.matmul`` followed by in-place bias and activation; always available."""

    name = "numpy"

    def sgemm(self, a, b, bias=None, activation="linear", out=None):
        args = check_gemm_args(a, b, bias, activation, out)
        np.matmul(args.a, args.b, out=args.out)
        _apply_bias_activation(args)
        return args.out


_CBLAS_ROW_MAJOR = 101
_CBLAS_NO_TRANS = 111


class OpenBlasBackend:
    """``cblas_sgemm`` through ctypes: Pyodide's ``openblas`` package (32-bit ints) or the
    ILP64 ``scipy_openblas64_`` library bundled in numpy's CPython wheels (64-bit ints)."""

    def __init__(self, path: str | Path, symbol: str = "cblas_sgemm", int_type=ctypes.c_int32):
        self.path = str(path)
        self.name = f"openblas ({Path(self.path).name})"
        try:
            lib = ctypes.CDLL(self.path)
            fn = getattr(lib, symbol)
        except (OSError, AttributeError) as exc:
            raise FastpathError(f"OpenBLAS: cannot load {symbol} from {self.path}: {exc}") from exc
        i, p, f = int_type, ctypes.c_void_p, ctypes.c_float
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, f, p, i, p, i, f, p, i]
        fn.restype = None
        self._lib = lib  # keep the library alive as long as the function pointer
        self._sgemm = fn

    def sgemm(self, a, b, bias=None, activation="linear", out=None):
        args = check_gemm_args(a, b, bias, activation, out)
        if args.m and args.n:
            if args.k == 0:
                args.out[...] = 0.0
            else:
                self._sgemm(_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_NO_TRANS, args.m, args.n, args.k, 1.0,
                            args.a.ctypes.data, args.lda, args.b.ctypes.data, args.ldb, 0.0,
                            args.out.ctypes.data, args.ldc)
        _apply_bias_activation(args)
        return args.out


# pooling modes of vk_pool2d (VK_POOL_* in vitrine_kernels.h)
_POOL_MAX, _POOL_AVG, _POOL_AVG_INCLUDE_PAD = 0, 1, 2

_STATUS = {
    -1: "a dimension is negative (or a convolution dimension is zero)",
    -2: "a leading dimension is smaller than the row length",
    -3: "unknown activation code",
    -4: "a required pointer is NULL",
    -5: "a stride or dilation is < 1",
}


class SimdKernelBackend:
    """The SIMD kernels of ``csrc/vitrine_kernels.c`` loaded with ctypes (wasm side module in
    Pyodide, native shared library in CPython). Not safe to share one call's workspace between
    threads, so each thread gets its own packing workspace."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.name = f"simd ({Path(self.path).name})"
        try:
            lib = ctypes.CDLL(self.path)
        except OSError as exc:
            raise FastpathError(f"SIMD kernels: cannot load {self.path}: {exc}") from exc
        i, p = ctypes.c_int32, ctypes.c_void_p
        signatures = {
            "vk_abi_version": [],
            "vk_packed_b_floats": [i, i],
            "vk_pack_b": [i, i, p, i, p],
            "vk_sgemm_packed": [i, i, i, p, i, p, p, p, i, i],
            "vk_sgemm": [i, i, i, p, i, p, i, p, p, i, i, p],
            "vk_depthwise_conv2d": [i, i, i, i, p, i, i, p, p, i, i, i, i, i, i, i, i, p, i],
            "vk_conv2d": [i, i, i, p, i, i, i, i, i, i, i, i, i, i, i, i, p, i, i, p, p, i, i, p, p, p, p, p, i],
            "vk_conv2d_workspace_floats": [],
            "vk_conv2d_winograd3x3": [i, i, i, p, i, i, i, i, i, i, p, i, p, p, i, i, p, p],
            "vk_winograd3x3_filters": [i, i, p, i, p],
            "vk_winograd3x3_filter_floats": [i, i],
            "vk_winograd3x3_workspace_floats": [i, i],
            "vk_pool2d": [i, i, i, i, p, i, i, i, i, i, i, i, i, p, i],
            "vk_scale_shift": [i, i, p, i, p, p, p, i],
        }
        for symbol, argtypes in signatures.items():
            try:
                fn = getattr(lib, symbol)
            except AttributeError as exc:
                raise FastpathError(f"SIMD kernels: {self.path} does not export {symbol}") from exc
            fn.argtypes = argtypes
            fn.restype = ctypes.c_int32
        version = lib.vk_abi_version()
        if version != KERNEL_ABI_VERSION:
            raise FastpathError(
                f"SIMD kernels: {self.path} has ABI version {version}, this package expects {KERNEL_ABI_VERSION}; rebuild it"
            )
        self._lib = lib
        self._local = threading.local()
        self._conv_workspace_floats = int(lib.vk_conv2d_workspace_floats())
        self._winograd_cache: dict[int, tuple] = {}  # id(kernel) -> (weakref to it, its filters)

    def _workspace(self, floats: int) -> np.ndarray:
        buf = getattr(self._local, "workspace", None)
        if buf is None or buf.size < floats:
            buf = np.empty(max(floats, 1024), dtype=_F32)
            self._local.workspace = buf
            self._local.workspace_address = None
        return buf

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise FastpathError(f"SIMD kernels: {what} failed with status {status} ({_STATUS.get(status, 'unknown')})")

    def sgemm(self, a, b, bias=None, activation="linear", out=None):
        args = check_gemm_args(a, b, bias, activation, out)
        workspace = self._workspace(self._lib.vk_packed_b_floats(args.k, args.n))
        self._check(
            self._lib.vk_sgemm(args.m, args.n, args.k, args.a.ctypes.data, args.lda, args.b.ctypes.data, args.ldb,
                               None if args.bias is None else args.bias.ctypes.data, args.out.ctypes.data, args.ldc,
                               args.activation, workspace.ctypes.data),
            f"sgemm M={args.m} N={args.n} K={args.k}",
        )
        return args.out

    def pack_weights(self, b) -> "PackedWeights":
        """Pack ``b`` [K, N] once for repeated :meth:`sgemm_packed` calls (conv / dense weights)."""
        if not isinstance(b, np.ndarray) or b.dtype != _F32 or b.ndim != 2:
            raise FastpathError(f"pack_weights: b must be a 2-D float32 array, got {_describe(b)}")
        b, ldb = _as_rows(b)
        k, n = b.shape
        packed = np.empty(max(self._lib.vk_packed_b_floats(k, n), 1), dtype=_F32)
        self._check(self._lib.vk_pack_b(k, n, b.ctypes.data, ldb, packed.ctypes.data), f"pack_b K={k} N={n}")
        return PackedWeights(packed, k, n, self)

    def sgemm_packed(self, a, weights: "PackedWeights", bias=None, activation="linear", out=None):
        """``act(a @ b + bias)`` with ``b`` packed by :meth:`pack_weights` of this backend."""
        if not isinstance(weights, PackedWeights) or weights.owner is not self:
            raise FastpathError("sgemm_packed: weights must come from pack_weights() of the same backend")
        # Validate a/bias/out against a zero-strided stand-in of b's shape (no copy, no packing).
        stand_in = np.lib.stride_tricks.as_strided(np.zeros(1, _F32), (weights.k, weights.n), (0, _ITEM))
        args = check_gemm_args(a, stand_in, bias, activation, out)
        self._check(
            self._lib.vk_sgemm_packed(args.m, args.n, args.k, args.a.ctypes.data, args.lda, weights.data.ctypes.data,
                                      None if args.bias is None else args.bias.ctypes.data, args.out.ctypes.data,
                                      args.ldc, args.activation),
            f"sgemm_packed M={args.m} N={args.n} K={args.k}",
        )
        return args.out

    # ---- IR kernels ---------------------------------------------------------------------------
    # Each op validates its arguments and builds a _Recipe (the C calls with every argument that
    # does not depend on the input and output buffers); running a recipe only allocates y and
    # fills in the two buffer addresses. prepare() keeps the recipe for later calls with inputs of
    # the same shape (the engine's plan does this per node), which saves the validation and the
    # pointer look-ups: in Pyodide they cost more than the C call itself on small layers.

    def depthwise_conv2d(self, x, kernel, bias=None, *, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                         activation="linear"):
        """Depthwise conv with the IR's arguments (x NHWC, kernel [KH, KW, C, 1], explicit
        ``pads`` = (top, bottom, left, right)); channel multiplier 1 only."""
        x = _check_nhwc("depthwise_conv2d", x)
        return self._run(self._depthwise_recipe(x, kernel, bias, strides, dilations, pads, activation), x)

    def _depthwise_recipe(self, x, kernel, bias, strides, dilations, pads, activation):
        n, h, w, c = x.shape
        if (not isinstance(kernel, np.ndarray) or kernel.dtype != _F32 or kernel.ndim != 4
                or kernel.shape[2] != c or kernel.shape[3] != 1):
            raise FastpathError(
                f"depthwise_conv2d: kernel must be float32 [KH, KW, {c}, 1] (multiplier 1), got {_describe(kernel)}"
            )
        bias = _check_bias("depthwise_conv2d", bias, c)
        kh, kw = kernel.shape[:2]
        geometry = _conv_geometry("depthwise_conv2d", x.shape, (kh, kw), strides, dilations, pads, activation)
        (sh, sw), (dh, dw), (top, _, left, _), (oh, ow) = geometry
        taps = np.ascontiguousarray(kernel.reshape(kh, kw, c))
        args = [n, h, w, c, _X, kh, kw, taps.ctypes.data, _pointer(bias), sh, sw, dh, dw, top, left, oh, ow, _Y,
                ACTIVATIONS[activation]]
        return _Recipe(((self._lib.vk_depthwise_conv2d, args, f"depthwise_conv2d x={x.shape} kernel={kernel.shape}"),),
                       (n, oh, ow, c), 0, (taps, bias))

    def conv2d(self, x, kernel, bias=None, scale=None, in_scale=None, in_shift=None, *, strides=(1, 1),
               dilations=(1, 1), pads=(0, 0, 0, 0), groups=1, activation="linear", in_activation="linear"):
        """Convolution with the IR's arguments (x NHWC, kernel [KH, KW, Cin/groups, Cout], explicit
        ``pads`` = (top, bottom, left, right)), computed without an im2col buffer (or by Winograd
        for stride-1 3x3 where :func:`winograd_pays`); with ``scale`` [Cout],
        ``act(conv * scale + bias)`` (batch-norm in the epilogue); with ``in_scale`` / ``in_shift``
        [Cin], the convolution of ``in_activation(x * in_scale + in_shift)`` (a batch-norm + ReLU
        before it, groups=1). ``x`` may be the first channels of a wider buffer (pixels evenly
        spaced), read in place."""
        x = _check_nhwc("conv2d", x, strided=True)
        return self._run(self._conv2d_recipe(x, kernel, bias, scale, strides, dilations, pads, groups, activation,
                                             in_scale, in_shift, in_activation), x)

    def _conv2d_recipe(self, x, kernel, bias, scale, strides, dilations, pads, groups, activation,
                       in_scale=None, in_shift=None, in_activation="linear"):
        n, h, w, c = x.shape
        pixel_stride = _row_stride(x)
        if not isinstance(groups, int) or groups < 1 or c % groups:
            raise FastpathError(f"conv2d: groups must be a positive divisor of the {c} input channels, got {groups!r}")
        if not isinstance(kernel, np.ndarray) or kernel.dtype != _F32 or kernel.ndim != 4 or kernel.shape[2] != c // groups:
            raise FastpathError(f"conv2d: kernel must be float32 [KH, KW, {c // groups}, Cout], got {_describe(kernel)}")
        kh, kw, cin_g, cout = kernel.shape
        if cout % groups:
            raise FastpathError(f"conv2d: {cout} output channels are not divisible by groups={groups}")
        bias = _check_bias("conv2d", bias, cout)
        scale = _check_bias("conv2d", scale, cout, "scale")
        geometry = _conv_geometry("conv2d", x.shape, (kh, kw), strides, dilations, pads, activation)
        (sh, sw), (dh, dw), (top, _, left, _), (oh, ow) = geometry
        if (in_scale is None) != (in_shift is None):
            raise FastpathError("conv2d: in_scale and in_shift come together (the prologue's batch-norm)")
        if in_scale is not None:
            if groups != 1:
                raise FastpathError(f"conv2d: a prologue (in_scale / in_shift) needs groups=1, got {groups}")
            in_scale, in_shift = _check_bias("conv2d", in_scale, c, "in_scale"), _check_bias("conv2d", in_shift, c, "in_shift")
            if in_activation not in ACTIVATIONS:
                raise FastpathError(f"conv2d: in_activation must be one of {sorted(ACTIVATIONS)}, got {in_activation!r}")
        elif (groups == 1 and (kh, kw) == (3, 3) and (sh, sw, dh, dw) == (1, 1, 1, 1)
                and winograd_pays(c, cout, oh, ow)):
            return self._winograd_recipe(x, kernel, bias, scale, top, left, oh, ow, activation)
        zeros = np.zeros(max(cin_g, 1), dtype=_F32)
        cout_g = cout // groups
        # the C kernel reads the HWIO kernel as loaded (row-major [KH*KW*Cin_g, Cout], each group
        # at a column offset) and packs one cache-sized block of it at a time into the workspace
        kernel = np.ascontiguousarray(kernel)
        calls = []
        for g in range(groups):
            cin_offset, cout_offset = g * cin_g * _ITEM, g * cout_g * _ITEM
            args = [n, h, w, _Offset(_X, cin_offset), pixel_stride, cin_g, kh, kw, sh, sw, dh, dw, top, left, oh, ow,
                    kernel.ctypes.data + cout_offset, cout, cout_g, _pointer(bias, cout_offset),
                    _Offset(_Y, cout_offset), cout, ACTIVATIONS[activation], zeros.ctypes.data,
                    _pointer(scale, cout_offset), _WORKSPACE, _pointer(in_scale), _pointer(in_shift),
                    ACTIVATIONS[in_activation] if in_scale is not None else 0]
            calls.append((self._lib.vk_conv2d, args, f"conv2d x={x.shape} kernel={kernel.shape} group {g}"))
        return _Recipe(tuple(calls), (n, oh, ow, cout), self._conv_workspace_floats,
                       (kernel, bias, scale, zeros, in_scale, in_shift))

    def conv2d_winograd3x3(self, x, kernel, bias=None, scale=None, *, pads=(1, 1, 1, 1), activation="linear"):
        """A 3x3 convolution with stride 1 by Winograd F(2x2, 3x3), whatever :func:`winograd_pays`
        says (``conv2d`` picks it by itself where it is faster); arguments as for :meth:`conv2d`."""
        x = _check_nhwc("conv2d_winograd3x3", x, strided=True)
        c = x.shape[3]
        if not isinstance(kernel, np.ndarray) or kernel.dtype != _F32 or kernel.shape[:3] != (3, 3, c) or kernel.ndim != 4:
            raise FastpathError(f"conv2d_winograd3x3: kernel must be float32 [3, 3, {c}, Cout], got {_describe(kernel)}")
        cout = kernel.shape[3]
        bias = _check_bias("conv2d_winograd3x3", bias, cout)
        scale = _check_bias("conv2d_winograd3x3", scale, cout, "scale")
        geometry = _conv_geometry("conv2d_winograd3x3", x.shape, (3, 3), (1, 1), (1, 1), pads, activation)
        _, _, (top, _, left, _), (oh, ow) = geometry
        return self._run(self._winograd_recipe(x, kernel, bias, scale, top, left, oh, ow, activation), x)

    def winograd_filters(self, kernel) -> np.ndarray:
        """The Winograd transform of a float32 [3, 3, Cin, Cout] kernel, made once per kernel
        array and kept as long as that array lives (16/9 of its size): the weights of a loaded
        model are never modified, and transforming them on every call cost as much as the
        convolution itself on small images."""
        key = id(kernel)
        entry = self._winograd_cache.get(key)
        if entry is not None and entry[0]() is kernel:
            return entry[1]
        cin, cout = kernel.shape[2], kernel.shape[3]
        floats = self._lib.vk_winograd3x3_filter_floats(cin, cout)
        if floats < 0 or self._lib.vk_winograd3x3_workspace_floats(cin, cout) < 0:
            raise FastpathError(f"conv2d_winograd3x3: {cin} x {cout} channels need buffers beyond 2**31 floats")
        source = np.ascontiguousarray(kernel)
        filters = np.empty(floats, dtype=_F32)
        self._check(self._lib.vk_winograd3x3_filters(cin, cout, source.ctypes.data, cout, filters.ctypes.data),
                    f"winograd3x3_filters kernel={kernel.shape}")
        try:
            ref = weakref.ref(kernel, lambda _, key=key: self._winograd_cache.pop(key, None))
        except TypeError:  # not weak-referenceable: transform it on every call rather than keep it
            return filters
        self._winograd_cache[key] = (ref, filters)
        return filters

    def _winograd_recipe(self, x, kernel, bias, scale, top, left, oh, ow, activation):
        n, h, w, c = x.shape
        cout = kernel.shape[3]
        filters = self.winograd_filters(kernel)
        args = [n, h, w, _X, _row_stride(x), c, top, left, oh, ow, filters.ctypes.data, cout, _pointer(bias), _Y, cout,
                ACTIVATIONS[activation], _pointer(scale), _WORKSPACE]
        return _Recipe(((self._lib.vk_conv2d_winograd3x3, args, f"conv2d_winograd3x3 x={x.shape} kernel={kernel.shape}"),),
                       (n, oh, ow, cout), self._lib.vk_winograd3x3_workspace_floats(c, cout), (filters, bias, scale))

    def max_pool2d(self, x, *, pool=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0)):
        """Max pooling with the IR's arguments (explicit ``pads``): padded cells never win, NaN
        propagates; the same values as the engine's numpy kernel."""
        x = _check_nhwc("max_pool2d", x)
        return self._run(self._pool_recipe("max_pool2d", x, pool, strides, pads, _POOL_MAX), x)

    def avg_pool2d(self, x, *, pool=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), count_include_pad=False):
        """Average pooling with the IR's arguments; padded cells are not counted unless
        ``count_include_pad``. Rounds like the engine's numpy kernel (the same sum order, then
        a multiply by 1 / (PH * PW) without padding, a division by the cell count with it)."""
        x = _check_nhwc("avg_pool2d", x)
        return self._run(self._avg_pool_recipe(x, pool, strides, pads, count_include_pad), x)

    def _avg_pool_recipe(self, x, pool, strides, pads, count_include_pad):
        mode = _POOL_AVG_INCLUDE_PAD if count_include_pad or tuple(pads) == (0, 0, 0, 0) else _POOL_AVG
        return self._pool_recipe("avg_pool2d", x, pool, strides, pads, mode)

    def _pool_recipe(self, op, x, pool, strides, pads, mode):
        n, h, w, c = x.shape
        pool = tuple(pool)
        if len(pool) != 2 or min(pool) < 1:
            raise FastpathError(f"{op}: pool must be two sizes >= 1, got {pool!r}")
        geometry = _conv_geometry(op, x.shape, pool, strides, (1, 1), pads, "linear")
        (sh, sw), _, (top, _, left, _), (oh, ow) = geometry
        args = [n, h, w, c, _X, pool[0], pool[1], sh, sw, top, left, oh, ow, _Y, mode]
        return _Recipe(((self._lib.vk_pool2d, args, f"{op} x={x.shape} pool={pool}"),), (n, oh, ow, c), 0, ())

    def scale_shift(self, x, scale, shift, *, activation="linear"):
        """``act(x * scale + shift)`` on the last axis: x float32 of any rank >= 1, scale / shift
        float32 of shape (C,) or size 1 (broadcast), e.g. a folded batch-norm before a ReLU."""
        if not isinstance(x, np.ndarray) or x.dtype != _F32 or x.ndim < 1:
            raise FastpathError(f"scale_shift: x must be a float32 array with a channel axis, got {_describe(x)}")
        if _row_stride(x) is None:
            x = np.ascontiguousarray(x)
        return self._run(self._scale_shift_recipe(x, scale, shift, activation), x)

    def _scale_shift_recipe(self, x, scale, shift, activation):
        channels = x.shape[-1]
        row_stride = _row_stride(x)
        if row_stride is None:
            raise FastpathError(f"scale_shift: x must be rows of channels with one row stride, got strides {x.strides}")
        params = []
        for name, value in (("scale", scale), ("shift", shift)):
            if not isinstance(value, np.ndarray) or value.dtype != _F32 or value.size not in (1, channels) or (
                    value.size == channels and value.ndim > 1 and value.shape[-1] != channels):
                raise FastpathError(
                    f"scale_shift: {name} must be float32 with {channels} values on the last axis (or one value), "
                    f"got {_describe(value)}"
                )
            params.append(np.ascontiguousarray(np.broadcast_to(value.reshape(-1), (channels,))))
        if activation not in ACTIVATIONS:
            raise FastpathError(f"scale_shift: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        rows = x.size // channels if channels else 0
        args = [rows, channels, _X, row_stride, params[0].ctypes.data, params[1].ctypes.data, _Y,
                ACTIVATIONS[activation]]
        return _Recipe(((self._lib.vk_scale_shift, args, f"scale_shift x={x.shape}"),), x.shape, 0, tuple(params))

    _RECIPES = {
        "conv2d": lambda self, x, kernel, bias=None, scale=None, in_scale=None, in_shift=None, *, strides=(1, 1),
        dilations=(1, 1), pads=(0, 0, 0, 0), groups=1, activation="linear", in_activation="linear":
            self._conv2d_recipe(x, kernel, bias, scale, strides, dilations, pads, groups, activation, in_scale,
                                in_shift, in_activation),
        "depthwise_conv2d": lambda self, x, kernel, bias=None, *, strides=(1, 1), dilations=(1, 1),
        pads=(0, 0, 0, 0), activation="linear":
            self._depthwise_recipe(x, kernel, bias, strides, dilations, pads, activation),
        "max_pool2d": lambda self, x, *, pool=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0):
            self._pool_recipe("max_pool2d", x, pool, strides, pads, _POOL_MAX),
        "avg_pool2d": lambda self, x, *, pool=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), count_include_pad=False:
            self._avg_pool_recipe(x, pool, strides, pads, count_include_pad),
        "scale_shift": lambda self, x, scale, shift, *, activation="linear":
            self._scale_shift_recipe(x, scale, shift, activation),
    }

    def prepare(self, op, *inputs, **attrs):
        """A function computing ``getattr(self, op)(*inputs, **attrs)`` faster for later inputs of
        the same shape and the same weights (every input but the first): the arguments are
        validated and the C calls laid out once, here. Inputs it was not prepared for go through
        the full method instead. Raises :class:`FastpathError` like the method would."""
        x = inputs[0]
        if op == "scale_shift":
            if not isinstance(x, np.ndarray) or x.dtype != _F32 or x.ndim < 1:
                raise FastpathError(f"scale_shift: x must be a float32 array with a channel axis, got {_describe(x)}")
            if _row_stride(x) is None:
                x = np.ascontiguousarray(x)
        else:
            x = _check_nhwc(op, x, strided=op == "conv2d")
        recipe = self._RECIPES[op](self, x, *inputs[1:], **attrs)
        # the recipe is for inputs laid out like this one (for NHWC ops: C-contiguous, checked
        # above; scale_shift also takes rows spaced wider than the channels)
        shape, strides, constants, method = x.shape, x.strides, inputs[1:], getattr(self, op)
        run = self._run

        def prepared(*args):
            x = args[0]
            if (x.__class__ is np.ndarray and x.dtype == _F32 and x.shape == shape and x.strides == strides
                    and len(args) == len(constants) + 1 and all(a is b for a, b in zip(args[1:], constants))):
                return run(recipe, x)
            return method(*args, **attrs)

        return prepared

    def _run(self, recipe: "_Recipe", x: np.ndarray) -> np.ndarray:
        y = np.empty(recipe.y_shape, dtype=_F32)
        bases = (_address(x), _address(y),
                 self._workspace_address(recipe.workspace_floats) if recipe.workspace_floats else 0)
        for function, template, slots, what in recipe.compiled:
            args = template.copy()
            for index, base, offset in slots:
                args[index] = bases[base] + offset
            status = function(*args)
            if status:
                self._check(status, what)
        return y

    def _workspace_address(self, floats: int) -> int:
        cached = getattr(self._local, "workspace_address", None)
        if cached is None or cached[0] < floats:
            buffer = self._workspace(floats)
            cached = (buffer.size, buffer.ctypes.data, buffer)
            self._local.workspace_address = cached
        return cached[1]


# Placeholders in a recipe's argument lists: the input's / output's address and the workspace's,
# filled in when the recipe runs; _Offset(placeholder, bytes) is that address plus an offset.
_X, _Y, _WORKSPACE = object(), object(), object()


@dataclass(frozen=True)
class _Offset:
    base: object
    offset: int


_BASES = {_X: 0, _Y: 1, _WORKSPACE: 2}


@dataclass(frozen=True)
class _Recipe:
    """The C calls of one op: (function, arguments with placeholders, description for errors)."""

    calls: tuple
    y_shape: tuple
    workspace_floats: int
    keep: tuple  # arrays whose addresses are in the arguments: alive as long as the recipe
    compiled: tuple = ()  # per call: (function, argument list, ((index, base, offset), ...), what)

    def __post_init__(self):
        compiled = []
        for function, arguments, what in self.calls:
            template, slots = list(arguments), []
            for index, argument in enumerate(arguments):
                if argument.__class__ is _Offset:
                    slots.append((index, _BASES[argument.base], argument.offset))
                elif argument is _X or argument is _Y or argument is _WORKSPACE:
                    slots.append((index, _BASES[argument], 0))
            compiled.append((function, template, tuple(slots), what))
        object.__setattr__(self, "compiled", tuple(compiled))


_addressof = ctypes.addressof
_char_at = ctypes.c_char.from_buffer


def _address(arr: np.ndarray) -> int:
    """Address of a C-contiguous array's first byte; ctypes.addressof(c_char.from_buffer(a)) is
    half the cost of ``a.ctypes.data`` in Pyodide, but needs a writable, non-empty buffer."""
    try:
        return _addressof(_char_at(arr))
    except (TypeError, ValueError, BufferError):
        return arr.ctypes.data


def _row_stride(x: np.ndarray) -> int | None:
    """Elements between rows of channels (the last axis) if ``x`` is such rows spaced evenly with
    contiguous channels (C-contiguous, or a last-axis slice of a wider buffer); else None."""
    if x.flags.c_contiguous:
        return max(x.shape[-1], 1)
    rows = x.view()
    try:
        rows.shape = (-1, x.shape[-1])  # raises instead of copying when the rows are not evenly spaced
    except AttributeError:
        return None
    if x.shape[-1] > 1 and rows.strides[1] != _ITEM:
        return None
    if rows.shape[0] <= 1:
        return max(x.shape[-1], 1)
    stride, remainder = divmod(rows.strides[0], _ITEM)
    return stride if remainder == 0 and stride >= x.shape[-1] else None


def _pointer(arr, offset: int = 0):
    return None if arr is None else arr.ctypes.data + offset


#: Winograd F(2x2, 3x3) is used from this many output pixels up: in Pyodide it took 0.48-0.69 of
#: the direct kernel's time from 14x14 up and 0.69-0.89 at 7x7 (docs/fastpath.md), where the
#: transformed filters (16/9 of the kernel, kept per layer) are the largest for the least gain.
WINOGRAD_MIN_PIXELS = 14 * 14
#: ... and up to this many floats of transformed filters per layer (16 x Cin x Cout: 4 MB, e.g.
#: 256 -> 256 channels), which bounds the memory the transforms add to a model.
WINOGRAD_MAX_FILTER_FLOATS = 16 * 256 * 256


def winograd_pays(cin: int, cout: int, oh: int, ow: int) -> bool:
    """Whether :meth:`SimdKernelBackend.conv2d` runs a stride-1 3x3 convolution by Winograd
    F(2x2, 3x3) rather than directly."""
    return oh * ow >= WINOGRAD_MIN_PIXELS and 16 * cin * (-(-cout // 8) * 8) <= WINOGRAD_MAX_FILTER_FLOATS


def _check_nhwc(op: str, x, strided: bool = False) -> np.ndarray:
    """x as a 4-D float32 NHWC array the C kernels can read: C-contiguous (a copy if needed), or
    with ``strided`` also evenly spaced pixels of contiguous channels (read in place)."""
    if not isinstance(x, np.ndarray) or x.dtype != _F32 or x.ndim != 4:
        raise FastpathError(f"{op}: x must be a 4-D float32 NHWC array, got {_describe(x)}")
    if strided and _row_stride(x) is not None:
        return x
    return np.ascontiguousarray(x)


def _check_bias(op: str, bias, channels: int, what: str = "bias"):
    if bias is None:
        return None
    if not isinstance(bias, np.ndarray) or bias.dtype != _F32 or bias.shape != (channels,):
        raise FastpathError(f"{op}: {what} must be a float32 array of shape ({channels},), got {_describe(bias)}")
    return np.ascontiguousarray(bias)


def _conv_geometry(op, x_shape, kernel_hw, strides, dilations, pads, activation):
    """Validate strides / dilations / explicit pads / activation; return them with (OH, OW)."""
    if activation not in ACTIVATIONS:
        raise FastpathError(f"{op}: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if isinstance(pads, str) or len(pads) != 4:
        raise FastpathError(f"{op}: pads must be explicit (top, bottom, left, right), got {pads!r}")
    (sh, sw), (dh, dw) = tuple(strides), tuple(dilations)
    top, bottom, left, right = pads
    if min(sh, sw, dh, dw) < 1 or min(top, bottom, left, right) < 0:
        raise FastpathError(f"{op}: strides/dilations must be >= 1 and pads >= 0, got strides={strides}, "
                            f"dilations={dilations}, pads={pads}")
    _, h, w, _ = x_shape
    kh, kw = kernel_hw
    oh = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    if oh < 1 or ow < 1:
        raise FastpathError(f"{op}: kernel {kh}x{kw} with pads {tuple(pads)} does not fit input {h}x{w}")
    return (sh, sw), (dh, dw), (top, bottom, left, right), (oh, ow)


@dataclass(frozen=True, eq=False)
class PackedWeights:
    """A [K, N] weight matrix packed by :meth:`SimdKernelBackend.pack_weights`."""

    data: np.ndarray
    k: int
    n: int
    owner: SimdKernelBackend
