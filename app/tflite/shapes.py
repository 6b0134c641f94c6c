"""Shape planning at ``allocate_tensors()``: each operator's output shapes from its input shapes
and constant operands, in execution order, as LiteRT's ``Prepare`` steps compute them.

LiteRT prepares operators in order and stops at the first one whose output is *dynamic* (its
shape depends on a non-constant operand: a RESHAPE of a computed shape, a TRANSPOSE_CONV with a
computed output shape, a SLICE of an input with an unknown (-1) dimension, ...); every
later operator keeps the shapes it had until ``invoke``. :func:`plan_shapes` does the same, and
leaves unplanned the outputs of an operator whose shape it cannot tell (no rule below, or a rule
that fails on these shapes): those keep today's behaviour (file shape, or last invoke's).

Only shapes are computed, never values: planning costs nothing next to an inference.
"""

from __future__ import annotations

import numpy as np

from app.tflite.float_ops import same_or_valid_pads, strided_slice
from app.tflite.loader import OperatorInfo, SubGraphInfo, TensorInfo

Shape = tuple[int, ...]

_SAME_SHAPE = {"LOGISTIC", "TANH", "HARD_SWISH", "RSQRT", "SQRT", "EXP", "NEG", "ABS", "RELU", "RELU6",
               "RELU_N1_TO_1", "LEAKY_RELU", "QUANTIZE", "DEQUANTIZE", "CAST", "SOFTMAX",
               "L2_NORMALIZATION"}
_BROADCAST = {"ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "POW",
              "FLOOR_DIV", "FLOOR_MOD", "PRELU"}
#: Operator -> positions of the operands whose *values* decide the output shape: when one of them
#: is not a constant of the file, LiteRT marks the output dynamic and stops preparing there.
_SHAPE_OPERANDS = {"RESHAPE": (1,), "PAD": (1,), "PADV2": (1,), "MIRROR_PAD": (1,), "TRANSPOSE": (1,),
                   "MEAN": (1,), "SUM": (1,), "REDUCE_MAX": (1,), "EXPAND_DIMS": (1,), "SPLIT": (0,),
                   "SPLIT_V": (1, 2), "RESIZE_BILINEAR": (1,), "RESIZE_NEAREST_NEIGHBOR": (1,),
                   "TRANSPOSE_CONV": (0,), "STRIDED_SLICE": (1, 2, 3), "SLICE": (1, 2), "ARG_MAX": (1,)}


def _const(sub: SubGraphInfo, index: int) -> np.ndarray | None:
    return sub.tensors[index].data if 0 <= index < len(sub.tensors) else None


def is_dynamic(op: OperatorInfo, sub: SubGraphInfo) -> bool:
    """Whether LiteRT's Prepare leaves this operator's output dynamic (shape known at Eval only)."""
    for position in _SHAPE_OPERANDS.get(op.name, ()):
        if position < len(op.inputs) and op.inputs[position] >= 0 and _const(sub, op.inputs[position]) is None:
            return True
    if op.name == "SLICE":
        # LiteRT also postpones SLICE when its input has an unknown (-1) dimension in the file,
        # even with constant begin / size ("HasUnspecifiedDimension"; fixtures ops_*: operator 8,
        # the outputs after it keep their old shapes until invoke).
        return -1 in sub.tensors[op.inputs[0]].shape_signature
    return False


def _ints(a: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(a).reshape(-1)]


def _view(shape: Shape) -> np.ndarray:
    """A zero-stride array of ``shape``: slicing it gives the sliced shape for free."""
    return np.broadcast_to(np.zeros((), np.int8), shape)


def _conv_like(x: Shape, kh: int, kw: int, channels: int, o: dict, dilation: bool) -> Shape:
    _, _, oh = same_or_valid_pads(x[1], kh, o["stride_h"], o.get("dilation_h", 1) if dilation else 1,
                                  o["padding"])
    _, _, ow = same_or_valid_pads(x[2], kw, o["stride_w"], o.get("dilation_w", 1) if dilation else 1,
                                  o["padding"])
    if oh <= 0 or ow <= 0:
        raise ValueError("window does not fit")
    return (x[0], oh, ow, channels)


def _reduce(x: Shape, axes, keep: bool) -> Shape:
    axes = {a % len(x) for a in axes}
    return tuple(1 if i in axes else d for i, d in enumerate(x) if keep or i not in axes)


def _reshape(op: OperatorInfo, sub: SubGraphInfo, x: Shape) -> Shape:
    target = None
    if len(op.inputs) > 1 and op.inputs[1] >= 0 and _const(sub, op.inputs[1]).size:
        target = _ints(_const(sub, op.inputs[1]))
    elif op.options.get("new_shape"):
        target = list(op.options["new_shape"])
    if target is None or len(target) > 16:
        raise ValueError("no reshape target")
    return _resolve(x, target)


def _resolve(x: Shape, target: list[int]) -> Shape:
    count = int(np.prod(x, dtype=np.int64))
    if target.count(-1) > 1 or any(d < -1 for d in target):
        raise ValueError("bad reshape target")
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
        if known == 0 or count % known:
            raise ValueError("reshape does not divide")
        target = [count // known if d == -1 else d for d in target]
    if int(np.prod(target, dtype=np.int64)) != count:
        raise ValueError("reshape changes the element count")
    return tuple(target)


def _output_shapes(op: OperatorInfo, sub: SubGraphInfo, shapes: list) -> list[Shape] | None:
    """Output shapes of ``op`` given its input shapes (None for an omitted input); None when
    Vitrine has no rule for it. Raises on inconsistent shapes (the caller leaves them unplanned)."""
    name, o = op.name, op.options
    x = shapes[0] if shapes else None
    const = [(_const(sub, i) if i >= 0 else None) for i in op.inputs]
    if name in _SAME_SHAPE:
        return [x]
    if name in _BROADCAST:
        return [tuple(np.broadcast_shapes(shapes[0], shapes[1]))]
    if name == "CONV_2D":
        cout, kh, kw, _ = shapes[1]
        return [_conv_like(x, kh, kw, cout, o, True)]
    if name == "DEPTHWISE_CONV_2D":
        _, kh, kw, cout = shapes[1]
        return [_conv_like(x, kh, kw, cout, o, True)]
    if name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        return [_conv_like(x, o["filter_h"], o["filter_w"], x[3], o, False)]
    if name == "TRANSPOSE_CONV":
        out, x = tuple(_ints(const[0])), shapes[2]
        if len(out) != 4 or out[0] != x[0]:
            return None
        return [out]
    if name == "FULLY_CONNECTED":
        if len(op.outputs) != 1:
            return None
        units, depth = shapes[1]
        count = int(np.prod(x, dtype=np.int64))
        if depth <= 0 or count % depth:
            raise ValueError("input does not split into rows")
        return [tuple(x[:-1]) + (units,) if o.get("keep_num_dims") else (count // depth, units)]
    if name in ("MEAN", "SUM", "REDUCE_MAX"):
        return [_reduce(x, _ints(const[1]), bool(o.get("keep_dims", False)))]
    if name == "ARG_MAX":
        return [_reduce(x, _ints(const[1])[:1], False)]
    if name == "RESHAPE":
        return [_reshape(op, sub, x)]
    if name == "SQUEEZE":
        dims = o.get("squeeze_dims") or [i for i, d in enumerate(x) if d == 1]
        return [tuple(np.squeeze(_view(x), axis=tuple(int(d) % len(x) for d in dims)).shape)]
    if name == "EXPAND_DIMS":
        axis = _ints(const[1])[0]
        return [tuple(np.expand_dims(_view(x), axis if axis >= 0 else axis + len(x) + 1).shape)]
    if name == "CONCATENATION":
        axis = o["axis"] % len(x)
        if any(len(s) != len(x) or s[:axis] + s[axis + 1:] != x[:axis] + x[axis + 1:] for s in shapes):
            raise ValueError("concatenated shapes differ")
        return [x[:axis] + (sum(s[axis] for s in shapes),) + x[axis + 1:]]
    if name == "PACK":
        if any(s != x for s in shapes):
            raise ValueError("packed shapes differ")
        axis = o["axis"] % (len(x) + 1)
        return [x[:axis] + (len(shapes),) + x[axis:]]
    if name == "UNPACK":
        axis = o["axis"] % len(x)
        if x[axis] != len(op.outputs):
            raise ValueError("unpack count differs")
        return [x[:axis] + x[axis + 1:]] * len(op.outputs)
    if name in ("PAD", "PADV2", "MIRROR_PAD"):
        pads = np.asarray(const[1]).astype(np.int64).reshape(-1, 2)
        if pads.shape[0] != len(x) or (pads < 0).any():
            raise ValueError("bad paddings")
        return [tuple(d + int(p.sum()) for d, p in zip(x, pads))]
    if name == "TRANSPOSE":
        perm = _ints(const[1])
        if sorted(p % len(x) for p in perm) != list(range(len(x))):
            raise ValueError("bad permutation")
        return [tuple(x[p] for p in perm)]
    if name in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
        size = _ints(const[1])
        if len(x) != 4 or len(size) != 2 or min(size) <= 0:
            raise ValueError("bad resize")
        return [(x[0], size[0], size[1], x[3])]
    if name == "STRIDED_SLICE":
        strides = const[3] if len(const) > 3 and const[3] is not None else np.ones_like(const[1])
        return [tuple(np.asarray(strided_slice(_view(x), const[1].reshape(-1), const[2].reshape(-1),
                                               strides.reshape(-1), o)).shape)]
    if name == "SLICE":
        index = tuple(slice(b, None if s == -1 else b + s)
                      for b, s in zip(_ints(const[1]), _ints(const[2])))
        return [tuple(_view(x)[index].shape)]
    if name == "SPLIT":
        axis, x = _ints(const[0])[0], shapes[1]
        return [tuple(p.shape) for p in np.split(_view(x), o["num_splits"], axis=axis)]
    if name == "SPLIT_V":
        axis = _ints(const[2])[0] % len(x)
        sizes = _ints(const[1])
        if -1 in sizes:
            sizes[sizes.index(-1)] = x[axis] - (sum(sizes) + 1)
        return [tuple(p.shape) for p in np.split(_view(x), np.cumsum(sizes)[:-1], axis=axis)]
    if name == "GATHER":
        if o.get("batch_dims", 0):
            return None
        axis = o.get("axis", 0) % len(x)
        return [x[:axis] + tuple(shapes[1]) + x[axis + 1:]]
    if name == "SHAPE":
        return [(len(x),)]
    return None


def plan_shapes(sub: SubGraphInfo, input_shapes: dict[int, Shape]) -> dict[int, Shape]:
    """Shapes of operator outputs after ``allocate_tensors()`` with these input shapes: planned
    in order up to the first operator LiteRT leaves dynamic; outputs of operators whose shape
    cannot be told here (or that read such an output) are left out."""
    tensors: list[TensorInfo] = sub.tensors
    known: dict[int, Shape] = dict(input_shapes)
    planned: dict[int, Shape] = {}
    for op in sub.operators:
        if is_dynamic(op, sub):
            break
        shapes = []
        for i in op.inputs:
            if i < 0:
                shapes.append(None)
            elif tensors[i].data is not None:
                shapes.append(tuple(tensors[i].data.shape))
            elif i in known:
                shapes.append(known[i])
            else:
                shapes = None
                break
        outs = None
        if shapes is not None and op.inputs:
            try:
                outs = _output_shapes(op, sub, shapes)
            except (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError, OverflowError,
                    AttributeError):
                outs = None
        if outs is None or len(outs) != len(op.outputs) or any(
                len(s) > 16 or any(d < 0 for d in s) for s in outs):
            for i in op.outputs:
                known.pop(i, None)
            continue
        for i, s in zip(op.outputs, outs):
            s = tuple(int(d) for d in s)
            known[i] = s
            planned[i] = s
    return planned
