"""Per-operator execution for the TFLite interpreter: one handler per builtin, found through
``HANDLERS`` (no if/elif chain on op names). A handler receives a :class:`Call` and returns the
operator's output arrays. Handlers pick the float, integer (full-int8/uint8) or hybrid path from
the tensor types, like TFLite's own kernels do; maths lives in ``float_ops`` and ``quantized``.

Integer paths marked ``exact`` follow TFLite's reference integer kernels; the rest run the float
kernel on dequantized values and requantize (within one quantization step, see docs/tflite.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from app.errors import ModelFormatError
from app.tflite import float_ops as F
from app.tflite import quantized as Q
from app.tflite.loader import OperatorInfo, TensorInfo

QUANT_TYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))

# Fused activations the engine's kernels (app.kernels) apply themselves.
_ENGINE_ACTIVATIONS = {"linear", "relu", "relu6", "tanh"}
_ENGINE = {}


def engine_kernels():
    """The engine's float kernel registry (``app.kernels.KERNELS``), or None when this build has
    none; float CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED use it (its GEMM is the fast one)."""
    if "kernels" not in _ENGINE:
        try:
            from app.kernels import KERNELS
        except ImportError:
            KERNELS = None
        _ENGINE["kernels"] = KERNELS
    return _ENGINE["kernels"]


def _cached_weight(call: Call, index: int, convert):
    """Layout-converted weight, cached per operator when the weight tensor is constant."""
    t = call.in_t[index]
    if t is None or t.data is None:
        return convert(call.inputs[index])
    key = ("weight", index)
    if key not in call.cache:
        call.cache[key] = np.ascontiguousarray(convert(call.inputs[index]), dtype=np.float32)
    return call.cache[key]


def _float_conv(call: Call, x, w, b):
    kernels = engine_kernels()
    o = call.o
    cout, kh, kw, cin = w.shape
    if kernels is None or o["activation"] not in _ENGINE_ACTIVATIONS or x.shape[3] % cin:
        return F.conv2d(x, w, b, o)
    hwio = _cached_weight(call, 1, lambda a: a.transpose(1, 2, 3, 0))
    return kernels["conv2d"](np.ascontiguousarray(x, dtype=np.float32), hwio, b,
                             strides=(o["stride_h"], o["stride_w"]),
                             dilations=(o["dilation_h"], o["dilation_w"]),
                             pads=F.conv_pads(x.shape, kh, kw, o), groups=x.shape[3] // cin,
                             activation=o["activation"])


def _float_depthwise(call: Call, x, w, b):
    kernels = engine_kernels()
    o = call.o
    _, kh, kw, cm = w.shape
    c = x.shape[3]
    if kernels is None or o["activation"] not in _ENGINE_ACTIVATIONS or cm % c:
        return F.depthwise_conv2d(x, w, b, o)
    hwcm = _cached_weight(call, 1, lambda a: a.reshape(kh, kw, c, cm // c))
    return kernels["depthwise_conv2d"](np.ascontiguousarray(x, dtype=np.float32), hwcm, b,
                                       strides=(o["stride_h"], o["stride_w"]),
                                       dilations=(o["dilation_h"], o["dilation_w"]),
                                       pads=F.conv_pads(x.shape, kh, kw, o),
                                       activation=o["activation"])


def _float_dense(call: Call, x, w, b):
    kernels = engine_kernels()
    o = call.o
    if kernels is None or o["activation"] not in _ENGINE_ACTIVATIONS:
        return F.fully_connected(x, w, b, o)
    units, depth = w.shape
    io = _cached_weight(call, 1, lambda a: a.T)
    out = kernels["dense"](np.ascontiguousarray(x, dtype=np.float32).reshape(-1, depth), io, b,
                           activation=o["activation"])
    return out.reshape(x.shape[:-1] + (units,)) if o.get("keep_num_dims") else out


@dataclass
class Call:
    op: OperatorInfo
    inputs: list                      # np.ndarray or None per operator input
    in_t: list                        # TensorInfo or None
    out_t: list                       # TensorInfo
    cache: dict = field(default_factory=dict)

    @property
    def o(self) -> dict:
        return self.op.options

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.op.label}: {what}")


def is_quantized(t: TensorInfo | None) -> bool:
    return t is not None and t.dtype in QUANT_TYPES and t.quantization is not None


def scale_zp(t: TensorInfo) -> tuple[float, int]:
    q = t.quantization
    return float(q.scales[0]), int(q.zero_points[0])


def _dequant_tensor(x: np.ndarray, t: TensorInfo) -> np.ndarray:
    q = t.quantization
    axis = q.quantized_dimension if q.per_channel else None
    return Q.dequantize(x, q.scales, q.zero_points, axis)


def _quant_output(y: np.ndarray, t: TensorInfo) -> np.ndarray:
    s, zp = scale_zp(t)
    return Q.quantize_float(y, s, zp, t.dtype)


# ------------------------------------------------------------------ generic wrappers

def via_float(fn: Callable[[Call], list]) -> Callable[[Call], list]:
    """Run a float handler on quantized tensors: dequantize in, requantize out (not bit-exact)."""
    def handler(call: Call) -> list:
        if not any(is_quantized(t) for t in call.in_t if t is not None):
            return fn(call)
        floats = [None if x is None else (_dequant_tensor(x, t) if is_quantized(t) else x)
                  for x, t in zip(call.inputs, call.in_t)]
        outs = fn(Call(call.op, floats, call.in_t, call.out_t, call.cache))
        return [_quant_output(y, t) if is_quantized(t) else y for y, t in zip(outs, call.out_t)]
    handler.__name__ = fn.__name__
    return handler


def _requantize_like(x: np.ndarray, src: TensorInfo, dst: TensorInfo) -> np.ndarray:
    """Move integers from src's quantization to dst's, as reference ``Requantize`` does."""
    if not (is_quantized(src) and is_quantized(dst)):
        return x
    s_in, zp_in = scale_zp(src)
    s_out, zp_out = scale_zp(dst)
    if s_in == s_out and zp_in == zp_out and src.dtype == dst.dtype:
        return x
    mult, shift = Q.quantize_multiplier(float(np.float64(s_in) / np.float64(s_out)))
    info = np.iinfo(dst.dtype)
    out = Q.multiply_by_quantized_multiplier(x.astype(np.int64) - zp_in, mult, shift) + zp_out
    return np.clip(out, info.min, info.max).astype(dst.dtype)


def passthrough(fn: Callable[..., np.ndarray]) -> Callable[[Call], list]:
    """Data-movement ops (reshape, slice, ...): run on any dtype; exact for integers."""
    def handler(call: Call) -> list:
        outs = fn(call)
        if isinstance(outs, np.ndarray):
            outs = [outs]
        return [_requantize_like(y, call.in_t[_data_input(call)], t) if is_quantized(t) else y
                for y, t in zip(outs, call.out_t)]
    handler.__name__ = fn.__name__
    return handler


def _data_input(call: Call) -> int:
    return 1 if call.op.name == "SPLIT" else 0


def _act_range(call: Call, t: TensorInfo) -> tuple[int, int]:
    s, zp = scale_zp(t)
    act = call.o.get("activation", "linear")
    try:
        return Q.activation_range(act, s, zp, t.dtype)
    except ValueError:
        raise call.fail(f"fused activation {act} is not supported on quantized tensors") from None


# ------------------------------------------------------------------ convolution family

def _channel_multipliers(call: Call, x_t, w_t, y_t, channels: int):
    key = "multipliers"
    if key not in call.cache:
        s_in, _ = scale_zp(x_t)
        s_out, _ = scale_zp(y_t)
        scales = w_t.quantization.scales
        if scales.size not in (1, channels):
            raise call.fail(f"weights have {scales.size} scales for {channels} output channels")
        scales = np.broadcast_to(scales, (channels,))
        mults, shifts = [], []
        for ws in scales:
            if x_t.dtype == np.uint8 and w_t.quantization.scales.size == 1:
                # Legacy uint8 path multiplies the two float scales before widening.
                real = float(np.float64(np.float32(s_in) * np.float32(ws)) / np.float64(s_out))
            else:
                real = float(np.float64(s_in) * np.float64(ws) / np.float64(s_out))
            m, sh = Q.quantize_multiplier(real)
            mults.append(m)
            shifts.append(sh)
        call.cache[key] = (np.array(mults, np.int64), np.array(shifts, np.int64))
    return call.cache[key]


def _weight_zero_points(w_t: TensorInfo, channels: int) -> np.ndarray:
    zps = w_t.quantization.zero_points
    return np.broadcast_to(zps, (channels,)).astype(np.int64)


def _int_bias(b):
    return None if b is None else b.astype(np.int64)


def _finish_int(call, acc, x_t, w_t, y_t, b, channels, single_rounding=False):
    if b is not None:
        acc = acc + _int_bias(b)
    mults, shifts = _channel_multipliers(call, x_t, w_t, y_t, channels)
    lo, hi = _act_range(call, y_t)
    return Q.requantize(acc, mults, shifts, scale_zp(y_t)[1], lo, hi, y_t.dtype, single_rounding)


def conv_2d(call: Call) -> list:
    x, w, b = (call.inputs + [None])[:3]
    x_t, w_t, _ = (call.in_t + [None])[:3]
    y_t = call.out_t[0]
    o = call.o
    cout, kh, kw, cin = w.shape
    if x.shape[3] != cin:
        if is_quantized(x_t) or is_quantized(w_t):
            raise call.fail(f"grouped quantized convolution (input has {x.shape[3]} channels, "
                            f"filter {cin}) is not supported")
        return [F.conv2d(x, w, b, o)]
    if is_quantized(x_t):                                           # exact integer path
        zx = scale_zp(x_t)[1]
        cols = F.patches(x.astype(np.int64) - zx, kh, kw, o["stride_h"], o["stride_w"],
                         o["dilation_h"], o["dilation_w"], F.conv_pads(x.shape, kh, kw, o))
        n, oh, ow = cols.shape[:3]
        wz = w.astype(np.int64) - _weight_zero_points(w_t, cout)[:, None, None, None]
        acc = Q.exact_int_matmul(cols.reshape(n * oh * ow, -1), wz.reshape(cout, -1).T)
        out = _finish_int(call, acc, x_t, w_t, y_t, b, cout)
        return [out.reshape(n, oh, ow, cout)]
    if w.dtype == np.int8 and is_quantized(w_t):                    # hybrid (dynamic range)
        return [_hybrid_conv(call, x, w, b, w_t)]
    return [_float_conv(call, x, w, b)]


def _hybrid_conv(call, x, w, b, w_t):
    """Reference HybridConvPerChannel: per-image asymmetric int8 input, float rescale."""
    o = call.o
    cout, kh, kw, cin = w.shape
    n = x.shape[0]
    q, factors, offsets = Q.asymmetric_quantize_rows(x.reshape(n, -1))
    q = q.reshape(x.shape).astype(np.int64) - offsets[:, None, None, None]
    cols = F.patches(q, kh, kw, o["stride_h"], o["stride_w"], o["dilation_h"], o["dilation_w"],
                     F.conv_pads(x.shape, kh, kw, o))
    _, oh, ow = cols.shape[:3]
    acc = Q.exact_int_matmul(cols.reshape(n * oh * ow, -1), w.reshape(cout, -1).T.astype(np.int64))
    acc = acc.reshape(n, oh, ow, cout).astype(np.float32)
    scales = np.broadcast_to(w_t.quantization.scales, (cout,)).astype(np.float32)
    out = (acc * scales) * factors[:, None, None, None]
    if b is not None:
        out = out + b
    return F.activate(out.astype(np.float32), o["activation"])


def depthwise_conv_2d(call: Call) -> list:
    x, w, b = (call.inputs + [None])[:3]
    x_t, w_t, _ = (call.in_t + [None])[:3]
    y_t = call.out_t[0]
    o = call.o
    _, kh, kw, cm = w.shape
    c = x.shape[3]
    m = cm // c
    pads = F.conv_pads(x.shape, kh, kw, o)
    if is_quantized(x_t):                                           # exact integer path
        zx = scale_zp(x_t)[1]
        cols = F.patches(x.astype(np.int64) - zx, kh, kw, o["stride_h"], o["stride_w"],
                         o["dilation_h"], o["dilation_w"], pads)
        n, oh, ow = cols.shape[:3]
        wz = w.astype(np.int64) - _weight_zero_points(w_t, cm)
        acc = np.einsum("nhwijc,ijcm->nhwcm", cols.astype(np.float64),
                        wz.reshape(kh, kw, c, m).astype(np.float64), optimize=True)
        acc = np.rint(acc).astype(np.int64).reshape(n, oh, ow, cm)
        return [_finish_int(call, acc, x_t, w_t, y_t, b, cm)]
    if w.dtype == np.int8 and is_quantized(w_t):                    # hybrid
        n = x.shape[0]
        q, factors, offsets = Q.asymmetric_quantize_rows(x.reshape(n, -1))
        q = q.reshape(x.shape).astype(np.int64) - offsets[:, None, None, None]
        cols = F.patches(q, kh, kw, o["stride_h"], o["stride_w"], o["dilation_h"], o["dilation_w"], pads)
        _, oh, ow = cols.shape[:3]
        acc = np.einsum("nhwijc,ijcm->nhwcm", cols.astype(np.float64),
                        w.reshape(kh, kw, c, m).astype(np.float64), optimize=True)
        acc = np.rint(acc).reshape(n, oh, ow, cm).astype(np.float32)
        scales = np.broadcast_to(w_t.quantization.scales, (cm,)).astype(np.float32)
        out = acc * (scales[None, :] * factors[:, None])[:, None, None, :]
        if b is not None:
            out = out + b
        return [F.activate(out.astype(np.float32), o["activation"])]
    return [_float_depthwise(call, x, w, b)]


def transpose_conv(call: Call) -> list:
    output_shape, w, x = call.inputs[:3]
    b = call.inputs[3] if len(call.inputs) > 3 else None
    w_t, x_t = call.in_t[1], call.in_t[2]
    y_t = call.out_t[0]
    o = call.o
    shape = list(map(int, output_shape))
    shape[0] = x.shape[0]
    if is_quantized(x_t):                                           # exact integer path
        cout = w.shape[0]
        zx = scale_zp(x_t)[1]
        wz = w.astype(np.int64) - _weight_zero_points(w_t, cout)[:, None, None, None]
        acc = F.scatter_transpose_conv((x.astype(np.int64) - zx).astype(np.float64),
                                       wz.astype(np.float64), shape, o, np.float64)
        acc = np.rint(acc).astype(np.int64)
        return [_finish_int(call, acc, x_t, w_t, y_t, b, cout)]
    if is_quantized(w_t) and w.dtype == np.int8:                    # hybrid
        # Per-image asymmetric int8 input (like hybrid CONV_2D), integer scatter, float rescale.
        n = x.shape[0]
        q, factors, offsets = Q.asymmetric_quantize_rows(x.reshape(n, -1).astype(np.float32))
        q = q.reshape(x.shape).astype(np.int64) - offsets[:, None, None, None]
        acc = F.scatter_transpose_conv(q.astype(np.float64), w.astype(np.float64), shape, o, np.float64)
        cout = w.shape[0]
        scales = np.broadcast_to(w_t.quantization.scales, (cout,)).astype(np.float32)
        out = (np.rint(acc).astype(np.float32) * scales) * factors[:, None, None, None]
        if b is not None:
            out = out + b
        return [F.activate(out.astype(np.float32), o.get("activation", "linear"))]
    return [F.transpose_conv(shape, w, x, b, o)]


def fully_connected(call: Call) -> list:
    x, w = call.inputs[:2]
    b = call.inputs[2] if len(call.inputs) > 2 else None
    x_t, w_t = call.in_t[:2]
    y_t = call.out_t[0]
    o = call.o
    units, depth = w.shape
    if x.size % depth:
        raise call.fail(f"input of {x.size} values does not split into rows of {depth}")
    out_shape = x.shape[:-1] + (units,) if o.get("keep_num_dims") else (-1, units)
    if is_quantized(x_t):                                           # exact integer path
        zx = scale_zp(x_t)[1]
        wz = w.astype(np.int64) - _weight_zero_points(w_t, units)[:, None]
        acc = Q.exact_int_matmul(x.reshape(-1, depth).astype(np.int64) - zx, wz.T)
        return [_finish_int(call, acc, x_t, w_t, y_t, b, units,
                            single_rounding=True).reshape(out_shape)]
    if w.dtype == np.int8 and is_quantized(w_t):                    # hybrid
        return [_hybrid_fc(call, x.reshape(-1, depth), w, b, w_t).reshape(out_shape)]
    return [_float_dense(call, x, w, b)]


def _hybrid_fc(call, flat, w, b, w_t):
    """Reference hybrid FULLY_CONNECTED: per-row input quantization, int dot, float rescale."""
    if call.o.get("asymmetric_quantize_inputs"):
        q, factors, offsets = Q.asymmetric_quantize_rows(flat)
    else:
        q, factors = Q.symmetric_quantize_rows(flat)
        offsets = np.zeros(flat.shape[0], np.int64)
    dot = Q.exact_int_matmul(q, w.T)
    dot = dot - w.astype(np.int64).sum(axis=1)[None, :] * offsets[:, None]
    scales = w_t.quantization.scales.astype(np.float32)
    if scales.size == 1:
        row_scale = (factors * scales[0]).astype(np.float32)[:, None]
    else:
        row_scale = (factors[:, None] * scales[None, :]).astype(np.float32)
    out = (dot.astype(np.float32) * row_scale).astype(np.float32)
    if b is not None:
        out = (b[None, :] + out).astype(np.float32)
    return F.activate(out, call.o["activation"])


# ------------------------------------------------------------------ element-wise arithmetic

_FLOAT_BINARY = {
    "ADD": np.add, "SUB": np.subtract, "MUL": np.multiply, "DIV": np.divide,
    "MAXIMUM": np.maximum, "MINIMUM": np.minimum,
    "SQUARED_DIFFERENCE": lambda a, b: (a - b) * (a - b),
    "POW": np.power, "FLOOR_DIV": np.floor_divide, "FLOOR_MOD": np.mod,
}


def _float_binary(call: Call) -> list:
    a, b = call.inputs[:2]
    F.guard(np.broadcast_shapes(a.shape, b.shape), "broadcast result")
    fn = _FLOAT_BINARY[call.op.name]
    out = fn(a, b)
    if out.dtype.kind == "f":
        out = F.activate(out.astype(a.dtype), call.o.get("activation", "linear"))
    return [out]


def add_sub(call: Call) -> list:
    """ADD/SUB; int8/uint8 exact (reference AddElementwise with left_shift 20)."""
    a_t, b_t = call.in_t[:2]
    y_t = call.out_t[0]
    if not (is_quantized(a_t) and y_t.dtype in (np.int8, np.uint8)):
        if is_quantized(a_t):
            return via_float(_float_binary)(call)
        return _float_binary(call)
    if "add" not in call.cache:
        s1, z1 = scale_zp(a_t)
        s2, z2 = scale_zp(b_t)
        so, zo = scale_zp(y_t)
        left_shift = 20
        twice_max = 2.0 * float(max(np.float32(s1), np.float32(s2)))
        m1 = Q.quantize_multiplier(float(s1) / twice_max)
        m2 = Q.quantize_multiplier(float(s2) / twice_max)
        mo = Q.quantize_multiplier(twice_max / float(np.float32((1 << left_shift) * np.float32(so))))
        call.cache["add"] = (z1, z2, zo, left_shift, m1, m2, mo)
    z1, z2, zo, left_shift, m1, m2, mo = call.cache["add"]
    a, b = call.inputs[:2]
    F.guard(np.broadcast_shapes(a.shape, b.shape), "broadcast result")
    x1 = (a.astype(np.int64) - z1) * (1 << left_shift)
    x2 = (b.astype(np.int64) - z2) * (1 << left_shift)
    x1 = Q.multiply_by_quantized_multiplier(x1, *m1)
    x2 = Q.multiply_by_quantized_multiplier(x2, *m2)
    raw = x1 + x2 if call.op.name == "ADD" else x1 - x2
    out = Q.multiply_by_quantized_multiplier(raw, *mo) + zo
    lo, hi = _act_range(call, y_t)
    return [np.clip(out, lo, hi).astype(y_t.dtype)]


def mul(call: Call) -> list:
    """MUL; int8/uint8 exact (reference MulElementwise)."""
    a_t, b_t = call.in_t[:2]
    y_t = call.out_t[0]
    if not is_quantized(a_t):
        return _float_binary(call)
    if "mul" not in call.cache:
        s1, z1 = scale_zp(a_t)
        s2, z2 = scale_zp(b_t)
        so, zo = scale_zp(y_t)
        real = float(np.float64(s1) * np.float64(s2) / np.float64(so))
        call.cache["mul"] = (z1, z2, zo, Q.quantize_multiplier(real))
    z1, z2, zo, m = call.cache["mul"]
    a, b = call.inputs[:2]
    F.guard(np.broadcast_shapes(a.shape, b.shape), "broadcast result")
    prod = (a.astype(np.int64) - z1) * (b.astype(np.int64) - z2)
    out = Q.multiply_by_quantized_multiplier(prod, *m) + zo
    lo, hi = _act_range(call, y_t)
    return [np.clip(out, lo, hi).astype(y_t.dtype)]


def max_min(call: Call) -> list:
    a_t, b_t = call.in_t[:2]
    y_t = call.out_t[0]
    if is_quantized(a_t) and scale_zp(a_t) == scale_zp(b_t) == scale_zp(y_t):
        return [_FLOAT_BINARY[call.op.name](*call.inputs[:2]).astype(y_t.dtype)]
    return via_float(_float_binary)(call)


# ------------------------------------------------------------------ pooling / reductions

def pool(call: Call) -> list:
    x = call.inputs[0]
    x_t, y_t = call.in_t[0], call.out_t[0]
    o = call.o
    kind = "max" if call.op.name == "MAX_POOL_2D" else "avg"
    if not is_quantized(x_t):
        return [F.pool(x, o, kind)]
    lo, hi = _act_range(call, y_t)
    kh, kw = o["filter_h"], o["filter_w"]
    top, bottom, _ = F.same_or_valid_pads(x.shape[1], kh, o["stride_h"], 1, o["padding"])
    left, right, _ = F.same_or_valid_pads(x.shape[2], kw, o["stride_w"], 1, o["padding"])
    pads = (top, bottom, left, right)
    if kind == "max":                                               # exact
        cols = F.patches(x.astype(np.int64), kh, kw, o["stride_h"], o["stride_w"], 1, 1, pads,
                         pad_value=np.iinfo(np.int64).min)
        out = cols.max(axis=(3, 4))
    else:                                                           # exact: rounded int division
        cols = F.patches(x.astype(np.int64), kh, kw, o["stride_h"], o["stride_w"], 1, 1, pads)
        ones = F.patches(np.ones((1,) + x.shape[1:3] + (1,), np.int64), kh, kw,
                         o["stride_h"], o["stride_w"], 1, 1, pads)
        acc = cols.sum(axis=(3, 4))
        count = ones.sum(axis=(3, 4))
        out = np.where(acc > 0, (acc + count // 2) // count, -((-acc + count // 2) // count))
    return [np.clip(out, lo, hi).astype(y_t.dtype)]


def _axes(call: Call, ndim: int) -> tuple[int, ...]:
    axes = np.atleast_1d(call.inputs[1]).astype(np.int64)
    return tuple(sorted({int(a) % ndim for a in axes}))


def _float_reduce(call: Call) -> list:
    x = call.inputs[0]
    axes = _axes(call, x.ndim)
    keep = call.o.get("keep_dims", False)
    fn = {"MEAN": np.mean, "SUM": np.sum, "REDUCE_MAX": np.max, "REDUCE_MIN": np.min,
          "REDUCE_PROD": np.prod}[call.op.name]
    return [fn(x, axis=axes, keepdims=keep).astype(x.dtype)]


def mean(call: Call) -> list:
    x = call.inputs[0]
    x_t, y_t = call.in_t[0], call.out_t[0]
    if not is_quantized(x_t):
        return _float_reduce(call)
    axes = _axes(call, x.ndim)
    keep = call.o.get("keep_dims", False)
    s_in, z_in = scale_zp(x_t)
    s_out, z_out = scale_zp(y_t)
    count = int(np.prod([x.shape[a] for a in axes]))
    # Reference QuantizedMeanOrSum: integer sum, one multiplier folding scale ratio and 1/count.
    acc = (x.astype(np.int64) - z_in).sum(axis=axes, keepdims=keep)
    real = float(np.float64(s_in) / (np.float64(s_out) * count))
    mult, shift = Q.quantize_multiplier(real)
    out = Q.multiply_by_quantized_multiplier(acc, mult, shift) + z_out
    info = np.iinfo(y_t.dtype)
    return [np.clip(out, info.min, info.max).astype(y_t.dtype)]


# ------------------------------------------------------------------ activations

def _float_unary(fn):
    def handler(call: Call) -> list:
        return [fn(call.inputs[0], call).astype(np.float32)]
    return handler


def relu_family(call: Call) -> list:
    x = call.inputs[0]
    x_t, y_t = call.in_t[0], call.out_t[0]
    act = {"RELU": "relu", "RELU6": "relu6", "RELU_N1_TO_1": "relu_n1_to_1"}[call.op.name]
    if not is_quantized(x_t):
        return [F.activate(x, act)]
    s_out, z_out = scale_zp(y_t)
    lo, hi = Q.activation_range(act, s_out, z_out, y_t.dtype)
    out = _requantize_like(x, x_t, y_t).astype(np.int64)           # exact (QuantizedReluX)
    return [np.clip(out, lo, hi).astype(y_t.dtype)]


def l2_normalization(call: Call) -> list:
    """L2_NORMALIZATION over the last axis: float ``x / max(||x||, 1e-6)``; 8-bit by the
    reference integer kernel (output scale 1/128). Like LiteRT's Prepare, refuses a fused
    activation and an 8-bit output whose scale / zero point the kernel does not produce."""
    x = call.inputs[0]
    x_t, y_t = call.in_t[0], call.out_t[0]
    if call.o.get("activation", "linear") != "linear":
        raise call.fail(f"fused activation {call.o['activation']} is not supported (LiteRT's kernel "
                        f"refuses any but NONE)")
    if not is_quantized(x_t):
        return [F.l2_normalize(x)]
    s_out, z_out = scale_zp(y_t) if is_quantized(y_t) else (None, None)
    want_zp = 0 if y_t.dtype == np.int8 else 128
    if y_t.dtype != x_t.dtype or np.float32(s_out) != np.float32(1.0 / 128.0) or z_out != want_zp:
        raise call.fail(f"8-bit output {y_t.name!r} must be {x_t.dtype} with scale 1/128 and zero point "
                        f"{want_zp}, got {y_t.dtype} scale {s_out} zero point {z_out}")
    return [Q.l2_normalize_quantized(x, scale_zp(x_t)[1], y_t.dtype)]


def sqrt(call: Call) -> list:
    """SQRT; int8 / uint8 as LiteRT 2.3's elementwise kernel: float32 sqrt of the dequantized
    value, divided by the output scale and *truncated* toward zero, plus the output zero point
    (measured on acts_int8: rounding instead is off by one step in 161 of 288 values)."""
    x, x_t, y_t = call.inputs[0], call.in_t[0], call.out_t[0]
    if not (is_quantized(x_t) and is_quantized(y_t)):
        return via_float(_float_unary(lambda v, c: np.sqrt(v)))(call)
    s_in, z_in = scale_zp(x_t)
    s_out, z_out = scale_zp(y_t)
    real = np.sqrt((np.float32(s_in) * (x.astype(np.int64) - z_in).astype(np.float32)).astype(np.float32))
    steps = np.trunc((real / np.float32(s_out)).astype(np.float32)).astype(np.int64) + z_out
    info = np.iinfo(y_t.dtype)
    return [np.clip(steps, info.min, info.max).astype(y_t.dtype)]


def quantize(call: Call) -> list:
    x = call.inputs[0]
    x_t, y_t = call.in_t[0], call.out_t[0]
    if is_quantized(x_t):
        return [_requantize_like(x, x_t, y_t)]
    q = y_t.quantization
    axis = q.quantized_dimension if q.per_channel else None
    return [Q.quantize_float(x, q.scales, q.zero_points, y_t.dtype, axis)]


def dequantize(call: Call) -> list:
    x, x_t = call.inputs[0], call.in_t[0]
    if x.dtype == np.float16:
        return [x.astype(np.float32)]
    if not is_quantized(x_t):
        return [x.astype(np.float32)]
    return [_dequant_tensor(x, x_t)]


# ------------------------------------------------------------------ shape / data movement

def _reshape(call):
    x = call.inputs[0]
    if len(call.inputs) > 1 and call.inputs[1] is not None and call.inputs[1].size > 16:
        raise ValueError(f"reshape target has {call.inputs[1].size} dimensions")
    shape = None
    if len(call.inputs) > 1 and call.inputs[1] is not None and call.inputs[1].size:
        shape = [int(v) for v in call.inputs[1].reshape(-1)]
    elif call.o.get("new_shape"):
        shape = list(call.o["new_shape"])
    if shape is None:
        shape = list(call.out_t[0].shape)
    try:
        return x.reshape(shape)
    except ValueError:
        raise call.fail(f"cannot reshape {x.shape} to {tuple(shape)}") from None


def _squeeze(call):
    x = call.inputs[0]
    dims = call.o.get("squeeze_dims") or tuple(i for i, d in enumerate(x.shape) if d == 1)
    return np.squeeze(x, axis=tuple(int(d) % x.ndim for d in dims))


def _pad_value(call):
    x_t, y_t = call.in_t[0], call.out_t[0]
    if len(call.inputs) > 2 and call.inputs[2] is not None:
        return call.inputs[2].reshape(-1)[0]
    return scale_zp(y_t)[1] if is_quantized(x_t) else 0


def _pad(call):
    x = call.inputs[0]
    pads = call.inputs[1].astype(np.int64).reshape(-1, 2)
    if pads.shape[0] != x.ndim:
        raise ValueError(f"paddings for {pads.shape[0]} axes, input has {x.ndim}")
    F.guard([d + int(p.sum()) for d, p in zip(x.shape, pads)], "padded tensor")
    if (pads < 0).any():
        raise ValueError(f"negative paddings {pads.tolist()}")
    if call.op.name == "MIRROR_PAD":
        return np.pad(x, pads, mode=call.o.get("mode", "reflect"))
    return np.pad(x, pads, constant_values=_pad_value(call))


def _concat(call):
    y_t = call.out_t[0]
    parts = [_requantize_like(x, t, y_t) if is_quantized(y_t) else x
             for x, t in zip(call.inputs, call.in_t)]
    out = np.concatenate(parts, axis=call.o["axis"])
    if is_quantized(y_t):
        lo, hi = _act_range(call, y_t)
        return np.clip(out, lo, hi).astype(y_t.dtype)
    return F.activate(out, call.o.get("activation", "linear"))


def _pack(call):
    y_t = call.out_t[0]
    parts = [_requantize_like(x, t, y_t) if is_quantized(y_t) else x
             for x, t in zip(call.inputs, call.in_t)]
    return np.stack(parts, axis=call.o["axis"])


def _unpack(call):
    x = call.inputs[0]
    axis = call.o["axis"] % x.ndim
    return [np.take(x, i, axis=axis) for i in range(x.shape[axis])]


def _split(call):
    axis = int(call.inputs[0].reshape(-1)[0])
    x = call.inputs[1]
    return np.split(x, call.o["num_splits"], axis=axis)


def _split_v(call):
    x, sizes, axis = call.inputs[:3]
    axis = int(axis.reshape(-1)[0]) % x.ndim
    sizes = [int(s) for s in sizes.reshape(-1)]
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def _slice(call):
    x, begin, size = call.inputs[:3]
    index = tuple(slice(int(b), None if int(s) == -1 else int(b) + int(s))
                  for b, s in zip(begin.reshape(-1), size.reshape(-1)))
    return x[index]


def _strided(call):
    x, begin, end = call.inputs[:3]
    strides = call.inputs[3] if len(call.inputs) > 3 else np.ones_like(begin)
    return np.array(F.strided_slice(x, begin, end, strides, call.o))


def _gather(call):
    x, idx = call.inputs[:2]
    if call.o.get("batch_dims", 0):
        raise call.fail("GATHER with batch_dims is not supported")
    return np.take(x, idx.astype(np.intp), axis=call.o.get("axis", 0))


def _resize(call):
    x, size = call.inputs[:2]
    if call.op.name == "RESIZE_NEAREST_NEIGHBOR":
        return F.resize_nearest(x, size, call.o["align_corners"], call.o["half_pixel_centers"])
    return F.resize_bilinear(x, size, call.o["align_corners"], call.o["half_pixel_centers"])


def _expand_dims(call):
    x = call.inputs[0]
    axis = int(call.inputs[1].reshape(-1)[0])
    return np.expand_dims(x, axis if axis >= 0 else axis + x.ndim + 1)


def _shape(call):
    return np.array(call.inputs[0].shape, dtype=call.out_t[0].dtype or np.int32)


def _cast(call):
    return call.inputs[0].astype(call.out_t[0].dtype)


def _arg_max(call):
    x = call.inputs[0]
    axis = int(call.inputs[1].reshape(-1)[0])
    return np.argmax(x, axis=axis).astype(call.out_t[0].dtype)


def _float_softmax(call):
    return [F.softmax(call.inputs[0], call.o.get("beta", 1.0))]


def _prelu(call):
    x, alpha = call.inputs[:2]
    return [np.where(x >= 0, x, x * alpha).astype(np.float32)]


def _leaky(call):
    x = call.inputs[0]
    return [np.where(x > 0, x, x * np.float32(call.o["alpha"])).astype(x.dtype)]


def _float_resize_bilinear(call):
    return [_resize(call)]


def _resize_axis_integer(out_size, in_size, align_corners, half_pixel):
    """ComputeInterpolationValuesInteger: 10-bit fixed-point source coordinate and neighbours."""
    if align_corners and out_size > 1:
        scale_10 = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        scale_10 = ((1 << 10) * in_size + out_size // 2) // out_size
    idx = np.arange(out_size, dtype=np.int64)
    scaled = idx * scale_10 + (scale_10 // 2 - (1 << 9) if half_pixel else 0)
    lower = np.maximum(np.where(scaled >= 0, scaled >> 10, -((-scaled) >> 10)), 0)
    upper = np.minimum((scaled + (1 << 10) - 1) // (1 << 10), in_size - 1)
    return scaled, lower, upper


def resize_bilinear(call: Call) -> list:
    """RESIZE_BILINEAR; int8/uint8 exact (reference ResizeBilinearInteger, 10-bit weights)."""
    x_t = call.in_t[0]
    if not is_quantized(x_t):
        return _float_resize_bilinear(call)
    x, size = call.inputs[:2]
    o = call.o
    ys, y0, y1 = _resize_axis_integer(int(size[0]), x.shape[1], o["align_corners"], o["half_pixel_centers"])
    xs, x0, x1 = _resize_axis_integer(int(size[1]), x.shape[2], o["align_corners"], o["half_pixel_centers"])
    v = x.astype(np.int64)
    wy1 = (ys - (y0 << 10))[None, :, None, None]
    wy0 = (1 << 10) - wy1
    wx1 = (xs - (x0 << 10))[None, None, :, None]
    wx0 = (1 << 10) - wx1
    total = (v[:, y0][:, :, x0] * wy0 * wx0 + v[:, y1][:, :, x0] * wy1 * wx0
             + v[:, y0][:, :, x1] * wy0 * wx1 + v[:, y1][:, :, x1] * wy1 * wx1)
    rounded = np.where(total > 0, total + (1 << 19), total - (1 << 19))
    out = np.where(rounded >= 0, rounded >> 20, -((-rounded) >> 20))
    return [out.astype(call.out_t[0].dtype)]


def leaky_relu(call: Call) -> list:
    """LEAKY_RELU; int8/uint8 exact (reference QuantizeLeakyRelu: two multipliers)."""
    x_t, y_t = call.in_t[0], call.out_t[0]
    if not is_quantized(x_t):
        return _leaky(call)
    if "leaky" not in call.cache:
        s_in, z_in = scale_zp(x_t)
        s_out, z_out = scale_zp(y_t)
        alpha = np.float32(call.o["alpha"])
        alpha_real = float(np.float32(np.float32(s_in) * alpha) / np.float32(s_out))
        identity_real = float(np.float64(s_in) / np.float64(s_out))
        call.cache["leaky"] = (z_in, z_out, Q.quantize_multiplier(identity_real),
                               Q.quantize_multiplier(alpha_real))
    z_in, z_out, ident, alpha_m = call.cache["leaky"]
    v = call.inputs[0].astype(np.int64) - z_in
    out = np.where(v >= 0, Q.multiply_by_quantized_multiplier(v, *ident),
                   Q.multiply_by_quantized_multiplier(v, *alpha_m)) + z_out
    info = np.iinfo(y_t.dtype)
    return [np.clip(out, info.min, info.max).astype(y_t.dtype)]


def _float_div(call):
    a, b = call.inputs[:2]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = F.activate((a / b).astype(a.dtype), call.o.get("activation", "linear"))
    return [out]


def div(call: Call) -> list:
    """DIV; int8/uint8 exact (reference DivElementwise: Newton-Raphson reciprocal of the
    denominator, headroom-normalised numerator, one output multiplier)."""
    a_t, b_t = call.in_t[:2]
    y_t = call.out_t[0]
    if not (is_quantized(a_t) and is_quantized(b_t) and is_quantized(y_t)
            and y_t.dtype in (np.int8, np.uint8)):
        return via_float(_float_div)(call)
    if "div" not in call.cache:
        s1, z1 = scale_zp(a_t)
        s2, z2 = scale_zp(b_t)
        so, zo = scale_zp(y_t)
        # div.cc: input1 scale / (input2 scale * output scale), the product taken in float.
        real = float(np.float32(s1) / np.float32(np.float32(s2) * np.float32(so)))
        call.cache["div"] = (z1, z2, zo, Q.quantize_multiplier(real))
    z1, z2, zo, (mult, shift) = call.cache["div"]
    a, b = call.inputs[:2]
    F.guard(np.broadcast_shapes(a.shape, b.shape), "broadcast result")
    denominator = b.astype(np.int64) - z2
    if np.any(denominator == 0):
        raise call.fail("division by zero: the quantized denominator equals its zero point "
                        f"({z2}) in {int((denominator == 0).sum())} element(s)")
    out = Q.divide_quantized(a.astype(np.int64) - z1, denominator, mult, shift) + zo
    lo, hi = _act_range(call, y_t)
    return [np.clip(out, lo, hi).astype(y_t.dtype)]


def sum_reduce(call: Call) -> list:
    """SUM; int8/uint8 as LiteRT 2.3's builtin kernel computes it (``QuantizedMeanOrSum`` with
    compute_sum): integer sum of the raw values, then in float32
    ``round(sum * (s_in / s_out) - z_in * (s_in / s_out) * count) + z_out``, clamped.
    (Its BUILTIN_REF int8 SUM returns values unrelated to the sums; see docs/tflite.md.)"""
    x = call.inputs[0]
    x_t, y_t = call.in_t[0], call.out_t[0]
    if not (is_quantized(x_t) and is_quantized(y_t) and y_t.dtype in (np.int8, np.uint8)):
        return via_float(_float_reduce)(call)
    axes = _axes(call, x.ndim)
    keep = call.o.get("keep_dims", False)
    s_in, z_in = scale_zp(x_t)
    s_out, z_out = scale_zp(y_t)
    count = int(np.prod([x.shape[a] for a in axes]))
    scale = np.float32(np.float32(s_in) / np.float32(s_out))
    bias = np.float32(np.float32(np.float32(-z_in) * scale) * np.float32(count))
    total = x.astype(np.int64).sum(axis=axes, keepdims=keep)
    value = (total.astype(np.float32) * scale + bias).astype(np.float32)
    out = Q.round_half_away(value.astype(np.float64)).astype(np.int64) + z_out
    info = np.iinfo(y_t.dtype)
    return [np.clip(out, info.min, info.max).astype(y_t.dtype)]


HANDLERS: dict[str, Callable[[Call], list]] = {
    "CONV_2D": conv_2d,
    "DEPTHWISE_CONV_2D": depthwise_conv_2d,
    "TRANSPOSE_CONV": transpose_conv,
    "FULLY_CONNECTED": fully_connected,
    "ADD": add_sub, "SUB": add_sub, "MUL": mul,
    "DIV": div,
    "SQUARED_DIFFERENCE": via_float(_float_binary),
    "MAXIMUM": max_min, "MINIMUM": max_min,
    "MAX_POOL_2D": pool, "AVERAGE_POOL_2D": pool,
    "MEAN": mean,
    "SUM": sum_reduce,
    "REDUCE_MAX": via_float(_float_reduce),
    "L2_NORMALIZATION": l2_normalization,
    "SOFTMAX": via_float(_float_softmax),
    "LOGISTIC": via_float(_float_unary(lambda x, c: F.sigmoid(x))),
    "TANH": via_float(_float_unary(lambda x, c: np.tanh(x))),
    "HARD_SWISH": via_float(_float_unary(lambda x, c: F.hard_swish(x))),
    "RSQRT": via_float(_float_unary(lambda x, c: 1.0 / np.sqrt(x))),
    "SQRT": sqrt,
    "EXP": via_float(_float_unary(lambda x, c: np.exp(x))),
    "NEG": via_float(_float_unary(lambda x, c: -x)),
    "ABS": via_float(_float_unary(lambda x, c: np.abs(x))),
    "RELU": relu_family, "RELU6": relu_family, "RELU_N1_TO_1": relu_family,
    "LEAKY_RELU": leaky_relu,
    "PRELU": via_float(_prelu),
    "QUANTIZE": quantize,
    "DEQUANTIZE": dequantize,
    "RESHAPE": passthrough(_reshape),
    "SQUEEZE": passthrough(_squeeze),
    "EXPAND_DIMS": passthrough(_expand_dims),
    "CONCATENATION": lambda call: [_concat(call)],
    "PACK": passthrough(_pack),
    "UNPACK": passthrough(_unpack),
    "PAD": passthrough(_pad), "PADV2": passthrough(_pad), "MIRROR_PAD": passthrough(_pad),
    "TRANSPOSE": passthrough(lambda c: np.ascontiguousarray(
        np.transpose(c.inputs[0], [int(p) for p in c.inputs[1].reshape(-1)]))),
    "RESIZE_NEAREST_NEIGHBOR": passthrough(_resize),
    "RESIZE_BILINEAR": resize_bilinear,
    "STRIDED_SLICE": passthrough(_strided),
    "SLICE": passthrough(_slice),
    "SPLIT": passthrough(_split),
    "SPLIT_V": passthrough(_split_v),
    "GATHER": passthrough(_gather),
    "ARG_MAX": lambda call: [_arg_max(call)],
    "SHAPE": lambda call: [_shape(call)],
    "CAST": lambda call: [_cast(call)],
}

SUPPORTED_OPS = tuple(sorted(HANDLERS))
