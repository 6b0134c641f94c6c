"""Float TFLite subgraph -> :class:`app.ir.Graph` (canonical ops of app/ir.py), so float models run
on the engine (its optimiser, GEMM fast path, trace / run_until / Grad-CAM by layer name).

Format knowledge only: weights are converted once from TFLite layouts (conv OHWI -> HWIO,
depthwise [1,KH,KW,C*M] -> [KH,KW,C,M], fully connected [units,in] -> [in,units], transposed conv
[Cout,KH,KW,Cin] -> [KH,KW,Cout,Cin]) and "SAME" padding is resolved from the static shapes.
:func:`to_graph` returns ``None`` with a reason when the model needs something the IR cannot say
(quantized tensors, shape arithmetic such as SHAPE -> PACK, an op without IR equivalent); the
caller then runs the model on the TFLite interpreter instead, which supports all of it.
"""

from __future__ import annotations

import numpy as np

from app.errors import ModelFormatError
from app.ir import Graph, Node, TensorSpec
from app.tflite import float_ops as F
from app.tflite.loader import ModelInfo, OperatorInfo, TensorInfo

_FUSABLE = {"linear", "relu", "relu6", "tanh"}
_UNARY = {"LOGISTIC": "sigmoid", "TANH": "tanh", "RELU": "relu", "RELU6": "relu6",
          "HARD_SWISH": "hard_swish"}
_BINARY = {"ADD": "add", "SUB": "sub", "MUL": "mul", "DIV": "div", "MAXIMUM": "maximum",
           "MINIMUM": "minimum"}


class NotConvertible(Exception):
    """Internal: the subgraph cannot be expressed in the IR (message says why)."""


def to_graph(model: ModelInfo) -> tuple[Graph | None, str]:
    """(graph, "") for an all-float subgraph 0, else (None, reason)."""
    try:
        return _Converter(model).run(), ""
    except NotConvertible as exc:
        return None, str(exc)


class _Converter:
    def __init__(self, model: ModelInfo):
        self.model = model
        self.sub = model.subgraphs[0]
        self.nodes: list[Node] = []
        self.weights: dict[str, np.ndarray] = {}
        self.constants: dict[int, np.ndarray] = {}
        self.layer_outputs: dict[str, tuple[str, ...]] = {}

    # ---- helpers ------------------------------------------------------------------------------
    def tensor(self, index: int) -> TensorInfo:
        return self.sub.tensors[index]

    def const(self, index: int) -> np.ndarray | None:
        if index < 0:
            return None
        if index in self.constants:
            return self.constants[index]
        t = self.tensor(index)
        if t.data is None:
            return None
        if t.quantization is not None and t.dtype != np.float32:
            raise NotConvertible(f"tensor {t.name!r} is quantized")
        return t.data

    def name(self, index: int) -> str:
        return f"t{index}"

    def ref(self, index: int) -> str:
        """IR name of a tensor, registering constants as weights."""
        value = self.const(index)
        if value is not None:
            key = self.name(index)
            self.weights[key] = np.asarray(value, dtype=np.float32) if value.dtype.kind == "f" else value
        return self.name(index)

    def static_shape(self, index: int) -> tuple[int, ...]:
        return tuple(self.tensor(index).shape)

    def emit(self, op: OperatorInfo, ir_op: str, inputs, attrs=None, activation="linear"):
        out = self.name(op.outputs[0])
        layer = self.tensor(op.outputs[0]).name
        if activation in ("linear", None):
            self.nodes.append(Node(layer, ir_op, tuple(inputs), (out,), attrs or {}))
        else:
            mid = out + "_pre_activation"
            self.nodes.append(Node(layer, ir_op, tuple(inputs), (mid,), attrs or {}))
            self.activation_node(layer + "/activation", mid, out, activation)
        self.layer_outputs[layer] = (out,)

    def activation_node(self, layer, src, out, activation):
        if activation == "relu_n1_to_1":
            self.nodes.append(Node(layer, "clip", (src,), (out,), {"min": -1.0, "max": 1.0}))
        elif activation in ("relu", "relu6", "tanh"):
            self.nodes.append(Node(layer, activation, (src,), (out,), {}))
        else:
            raise NotConvertible(f"fused activation {activation}")

    def linear(self, op: OperatorInfo, ir_op: str, inputs, attrs):
        act = op.options.get("activation", "linear")
        fused = act if act in _FUSABLE else "linear"
        self.emit(op, ir_op, inputs, {**attrs, "activation": fused},
                  activation="linear" if act in _FUSABLE else act)

    def const_ints(self, op: OperatorInfo, position: int, what: str) -> list[int]:
        value = self.const(op.inputs[position]) if position < len(op.inputs) else None
        if value is None:
            raise NotConvertible(f"{op.label}: {what} is computed at run time")
        return [int(v) for v in np.asarray(value).reshape(-1)]

    def axes_in_range(self, op: OperatorInfo, axes, rank: int, what: str, extra: int = 0) -> list[int]:
        """``axes`` made non-negative; ModelFormatError when one is outside [-rank - extra, rank + extra)
        (``extra`` = 1 for EXPAND_DIMS, which may add a trailing axis)."""
        out = []
        for axis in axes:
            if not -(rank + extra) <= axis < rank + extra:
                raise ModelFormatError(
                    f"{self.model.source}: {op.label}: {what} {axis} is out of range for a rank-{rank} input "
                    f"(expected {-(rank + extra)} to {rank + extra - 1})")
            out.append(axis % (rank + extra))
        return out

    def one_int(self, op: OperatorInfo, position: int, what: str) -> int:
        values = self.const_ints(op, position, what)
        if len(values) != 1:
            raise ModelFormatError(f"{self.model.source}: {op.label}: {what} must hold 1 value, got {len(values)}")
        return values[0]

    # ---- conversion ---------------------------------------------------------------------------
    def run(self) -> Graph:
        sub = self.sub
        for index in list(sub.inputs) + list(sub.outputs):
            if self.tensor(index).dtype != np.float32:
                raise NotConvertible(f"model input/output {self.tensor(index).name!r} is "
                                     f"{self.tensor(index).type_name}")
        for op in sub.operators:
            handler = getattr(self, "op_" + op.name.lower(), None)
            if handler is None:
                if op.name in _UNARY:
                    self.emit(op, _UNARY[op.name], [self.ref(op.inputs[0])])
                    continue
                if op.name in _BINARY:
                    self.emit(op, _BINARY[op.name], [self.ref(i) for i in op.inputs[:2]],
                              activation=op.options.get("activation", "linear"))
                    continue
                raise NotConvertible(f"{op.label} has no IR equivalent")
            for i in op.inputs:
                t = self.tensor(i) if i >= 0 else None
                if t is not None and t.quantization is not None and op.name != "DEQUANTIZE":
                    raise NotConvertible(f"{op.label} reads quantized tensor {t.name!r}")
            handler(op)
        inputs = [TensorSpec(self.name(i), (None,) + self.static_shape(i)[1:]) for i in sub.inputs]
        outputs = [TensorSpec(self.name(i), (None,) + self.static_shape(i)[1:]) for i in sub.outputs]
        return Graph(nodes=self.nodes, inputs=inputs, outputs=outputs, weights=self.weights,
                     name=self.model.source, layer_outputs=self.layer_outputs)

    def op_dequantize(self, op):
        t = self.tensor(op.inputs[0])
        if t.data is None:
            raise NotConvertible(f"{op.label} dequantizes a run-time tensor")
        if t.dtype == np.float16:
            value = t.data.astype(np.float32)
        else:
            q = t.quantization
            axis = q.quantized_dimension if q.per_channel else None
            from app.tflite.quantized import dequantize
            value = dequantize(t.data, q.scales, q.zero_points, axis)
        self.constants[op.outputs[0]] = value

    def _weight(self, index: int, convert) -> str:
        value = self.const(index)
        if value is None:
            raise NotConvertible(f"weights {self.tensor(index).name!r} are computed at run time")
        key = self.name(index) + "_ir"
        self.weights[key] = np.ascontiguousarray(convert(np.asarray(value, np.float32)))
        return key

    def _bias(self, op, position: int) -> list[str]:
        if len(op.inputs) > position and op.inputs[position] >= 0:
            return [self.ref(op.inputs[position])]
        return []

    def op_conv_2d(self, op):
        o = op.options
        x_shape = self.static_shape(op.inputs[0])
        w = self.const(op.inputs[1])
        if w is None:
            raise NotConvertible(f"{op.label}: run-time weights")
        cout, kh, kw, cin = w.shape
        kernel = self._weight(op.inputs[1], lambda a: a.transpose(1, 2, 3, 0))
        self.linear(op, "conv2d", [self.ref(op.inputs[0]), kernel] + self._bias(op, 2),
                    {"strides": (o["stride_h"], o["stride_w"]),
                     "dilations": (o["dilation_h"], o["dilation_w"]),
                     "pads": F.conv_pads(x_shape, kh, kw, o), "groups": x_shape[3] // cin})

    def op_depthwise_conv_2d(self, op):
        o = op.options
        x_shape = self.static_shape(op.inputs[0])
        w = self.const(op.inputs[1])
        if w is None:
            raise NotConvertible(f"{op.label}: run-time weights")
        _, kh, kw, cm = w.shape
        c = x_shape[3]
        kernel = self._weight(op.inputs[1], lambda a: a.reshape(kh, kw, c, cm // c))
        self.linear(op, "depthwise_conv2d", [self.ref(op.inputs[0]), kernel] + self._bias(op, 2),
                    {"strides": (o["stride_h"], o["stride_w"]),
                     "dilations": (o["dilation_h"], o["dilation_w"]),
                     "pads": F.conv_pads(x_shape, kh, kw, o)})

    def op_fully_connected(self, op):
        x_shape = self.static_shape(op.inputs[0])
        w = self.const(op.inputs[1])
        if w is None:
            raise NotConvertible(f"{op.label}: run-time weights")
        units, depth = w.shape
        src = self.ref(op.inputs[0])
        if len(x_shape) > 2 and not op.options.get("keep_num_dims"):
            if int(np.prod(x_shape[1:])) != depth:
                raise NotConvertible(f"{op.label}: flattens across the batch dimension")
            flat = self.name(op.outputs[0]) + "_flat"
            self.nodes.append(Node(self.tensor(op.outputs[0]).name + "/flatten", "reshape",
                                   (src,), (flat,), {"shape": (depth,)}))
            src = flat
        kernel = self._weight(op.inputs[1], lambda a: a.T)
        self.linear(op, "dense", [src, kernel] + self._bias(op, 2), {})

    def op_transpose_conv(self, op):
        o = op.options
        out_shape = self.const_ints(op, 0, "output shape")
        x_shape = self.static_shape(op.inputs[2])
        w = self.const(op.inputs[1])
        if w is None:
            raise NotConvertible(f"{op.label}: run-time weights")
        cout, kh, kw, cin = w.shape
        out_h, out_w, top, left = F.transpose_conv_geometry(x_shape, w.shape, out_shape, o)
        full_h = (x_shape[1] - 1) * o["stride_h"] + kh
        full_w = (x_shape[2] - 1) * o["stride_w"] + kw
        kernel = self._weight(op.inputs[1], lambda a: a.transpose(1, 2, 0, 3))
        self.linear(op, "conv2d_transpose", [self.ref(op.inputs[2]), kernel] + self._bias(op, 3),
                    {"strides": (o["stride_h"], o["stride_w"]),
                     "pads": (top, full_h - top - out_h, left, full_w - left - out_w)})

    def _pool(self, op, ir_op, extra):
        o = op.options
        x_shape = self.static_shape(op.inputs[0])
        top, bottom, _ = F.same_or_valid_pads(x_shape[1], o["filter_h"], o["stride_h"], 1, o["padding"])
        left, right, _ = F.same_or_valid_pads(x_shape[2], o["filter_w"], o["stride_w"], 1, o["padding"])
        self.emit(op, ir_op, [self.ref(op.inputs[0])],
                  {"pool": (o["filter_h"], o["filter_w"]), "strides": (o["stride_h"], o["stride_w"]),
                   "pads": (top, bottom, left, right), **extra}, activation=o["activation"])

    def op_max_pool_2d(self, op):
        self._pool(op, "max_pool2d", {})

    def op_average_pool_2d(self, op):
        self._pool(op, "avg_pool2d", {"count_include_pad": False})

    def _reduce(self, op, ir_op):
        rank = len(self.static_shape(op.inputs[0]))
        axes = tuple(sorted(set(self.axes_in_range(op, self.const_ints(op, 1, "reduction axes"), rank,
                                                   "reduction axis"))))
        if 0 in axes:
            raise NotConvertible(f"{op.label} reduces over the batch dimension")
        self.emit(op, ir_op, [self.ref(op.inputs[0])],
                  {"axes": axes, "keepdims": op.options.get("keep_dims", False)})

    def op_mean(self, op):
        self._reduce(op, "mean")

    def op_sum(self, op):
        self._reduce(op, "sum")

    def op_pad(self, op):
        pads = self.const_ints(op, 1, "paddings")
        value = 0.0
        if op.name == "PADV2" and len(op.inputs) > 2:
            value = float(np.asarray(self.const(op.inputs[2])).reshape(-1)[0])
        mode = op.options.get("mode", "constant") if op.name == "MIRROR_PAD" else "constant"
        pairs = tuple((pads[i], pads[i + 1]) for i in range(0, len(pads), 2))
        if pairs and pairs[0] != (0, 0):
            raise NotConvertible(f"{op.label} pads the batch dimension")
        self.emit(op, "pad", [self.ref(op.inputs[0])], {"pads": pairs, "mode": mode, "value": value})

    op_padv2 = op_pad
    op_mirror_pad = op_pad

    def op_reshape(self, op):
        if len(op.inputs) > 1 and op.inputs[1] >= 0:
            shape = self.const_ints(op, 1, "target shape")
        else:
            shape = list(op.options.get("new_shape") or ())
        if not shape or shape[0] not in (1, -1) or (shape[0] == -1 and -1 in shape[1:]):
            raise NotConvertible(f"{op.label}: target shape {shape} does not keep the batch first")
        self.emit(op, "reshape", [self.ref(op.inputs[0])], {"shape": tuple(shape[1:])})

    def op_squeeze(self, op):
        shape = self.static_shape(op.inputs[0])
        dims = op.options.get("squeeze_dims") or tuple(i for i, d in enumerate(shape) if d == 1 and i)
        dims = tuple(sorted(self.axes_in_range(op, dims, len(shape), "squeeze dimension")))
        if 0 in dims:
            raise NotConvertible(f"{op.label} squeezes the batch dimension")
        self.emit(op, "squeeze", [self.ref(op.inputs[0])], {"axes": dims})

    def op_expand_dims(self, op):
        rank = len(self.static_shape(op.inputs[0]))
        axis = self.axes_in_range(op, [self.one_int(op, 1, "axis")], rank, "axis", extra=1)[0]
        if axis == 0:
            raise NotConvertible(f"{op.label} inserts a dimension before the batch")
        self.emit(op, "expand_dims", [self.ref(op.inputs[0])], {"axis": axis})

    def op_concatenation(self, op):
        axis = self.axes_in_range(op, [op.options["axis"]], len(self.static_shape(op.inputs[0])), "axis")[0]
        if axis == 0:
            raise NotConvertible(f"{op.label} concatenates along the batch dimension")
        self.emit(op, "concat", [self.ref(i) for i in op.inputs], {"axis": axis},
                  activation=op.options.get("activation", "linear"))

    def op_softmax(self, op):
        if op.options.get("beta", 1.0) != 1.0:
            raise NotConvertible(f"{op.label} has beta {op.options['beta']}")
        self.emit(op, "softmax", [self.ref(op.inputs[0])], {"axis": -1})

    def op_relu_n1_to_1(self, op):
        self.emit(op, "clip", [self.ref(op.inputs[0])], {"min": -1.0, "max": 1.0})

    def op_leaky_relu(self, op):
        self.emit(op, "leaky_relu", [self.ref(op.inputs[0])], {"alpha": float(op.options["alpha"])})

    def op_prelu(self, op):
        if self.const(op.inputs[1]) is None:
            raise NotConvertible(f"{op.label}: run-time alpha")
        self.emit(op, "prelu", [self.ref(op.inputs[0]), self.ref(op.inputs[1])])

    def op_transpose(self, op):
        perm = self.const_ints(op, 1, "permutation")
        rank = len(self.static_shape(op.inputs[0]))
        if sorted(perm) != list(range(rank)):
            raise ModelFormatError(f"{self.model.source}: {op.label}: permutation {perm} is not a permutation of "
                                   f"the {rank} axes of its input")
        if perm[0] != 0:
            raise NotConvertible(f"{op.label} moves the batch dimension")
        self.emit(op, "transpose", [self.ref(op.inputs[0])], {"perm": tuple(perm)})

    def _resize(self, op, method):
        size = self.const_ints(op, 1, "size")
        self.emit(op, "resize", [self.ref(op.inputs[0])],
                  {"size": tuple(size), "method": method,
                   "align_corners": op.options["align_corners"],
                   "half_pixel_centers": op.options["half_pixel_centers"]})

    def op_resize_bilinear(self, op):
        self._resize(op, "bilinear")

    def op_resize_nearest_neighbor(self, op):
        self._resize(op, "nearest")
