"""TF.js layers-model loader: ``model.json`` + weight shards -> :class:`app.ir.Graph`.

A layers-model topology is Keras ``get_config()`` (Keras 2.x or Keras 3), so Keras argument names
are the schema. Every Keras class maps to one builder in :data:`LAYER_BUILDERS`; a builder turns
one layer call into IR nodes. Weights are decoded once (float32 / float16 / affine-quantised
uint8 / uint16, https://github.com/tensorflow/tfjs/blob/master/tfjs-core/src/io/io_utils.ts) and
reshaped into the IR's canonical layouts here, so kernels never see the format.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ModelFormatError, UnsupportedFormatError, UnsupportedLayerError
from ..ir import Graph, Node, TensorSpec

# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------

_STORED_BYTES = {"float32": 4, "int32": 4, "float16": 2, "uint8": 1, "uint16": 2, "bool": 1, "int8": 1}
_NUMPY_DTYPES = {"float32": "<f4", "int32": "<i4", "float16": "<f2", "uint8": "u1", "uint16": "<u2",
                 "bool": "u1", "int8": "i1"}


def decode_weights(manifest: Any, files: Mapping[str, bytes], base_dir: str,
                   model_file: str) -> list[tuple[str, np.ndarray]]:
    """Decode every weight of a ``weightsManifest`` into float32 arrays, in manifest order.

    Shards of a group are concatenated in order and split per weight; the total must match the
    manifest exactly (a missing or short shard is reported with the file name)."""
    if not isinstance(manifest, list):
        raise ModelFormatError(f"{model_file}: 'weightsManifest' must be a list of groups, got {type(manifest).__name__}")
    decoded: list[tuple[str, np.ndarray]] = []
    for group_index, group in enumerate(manifest):
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) or not isinstance(group.get("weights"), list):
            raise ModelFormatError(f"{model_file}: weightsManifest[{group_index}] must have 'paths' and 'weights' lists")
        shards = []
        for shard_path in group["paths"]:
            key = posixpath.normpath(posixpath.join(base_dir, shard_path)) if base_dir else posixpath.normpath(shard_path)
            if key not in files:
                raise ModelFormatError(f"{model_file}: weight shard {shard_path!r} (group {group_index}) is missing; "
                                       f"expected a file {key!r} next to model.json")
            shards.append((shard_path, files[key]))
        layout = []
        needed = 0
        for spec in group["weights"]:
            name, shape, stored, quantization = _weight_spec(spec, model_file)
            count = math.prod(shape)
            layout.append((name, shape, stored, quantization, needed, count))
            needed += count * _STORED_BYTES[stored]
        have = sum(len(data) for _, data in shards)
        if have != needed:
            raise ModelFormatError(_shard_size_message(model_file, group_index, shards, have, needed))
        # The group is the shards concatenated; a weight inside one shard is a view on that
        # shard's bytes, only one straddling a shard boundary is copied. Joining the shards
        # first would hold a second copy of every weight at load time (the worker's peak memory).
        starts = list(itertools.accumulate((len(data) for _, data in shards), initial=0))
        for name, shape, stored, quantization, offset, count in layout:
            size = count * _STORED_BYTES[stored]
            first = bisect.bisect_right(starts, offset) - 1  # the (non-empty) shard holding the first byte
            if size == 0:
                source, start = b"", 0
            elif offset + size <= starts[first + 1]:
                source, start = shards[first][1], offset - starts[first]
            else:
                last = bisect.bisect_left(starts, offset + size) - 1
                source = b"".join(memoryview(shards[i][1])[max(offset - starts[i], 0):offset + size - starts[i]]
                                  for i in range(first, last + 1))
                start = 0
            raw = np.frombuffer(source, dtype=_NUMPY_DTYPES[stored], count=count, offset=start)
            array = _dequantize(raw, stored, quantization).reshape(shape)
            finite = np.isfinite(array)
            if not finite.all():
                bad = int(array.size - np.count_nonzero(finite))
                raise ModelFormatError(f"{model_file}: weight {name!r} has {bad} NaN or infinite value(s) out of "
                                       f"{array.size}; every prediction would be NaN (damaged or badly trained model)")
            decoded.append((name, array))
    return decoded


def _weight_spec(spec, model_file):
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("shape"), list):
        raise ModelFormatError(f"{model_file}: weight entry {spec!r} needs a 'name' and a 'shape'")
    shape = tuple(spec["shape"])
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ModelFormatError(f"{model_file}: weight {spec['name']!r} has an invalid shape {list(shape)}")
    dtype = spec.get("dtype", "float32")
    quantization = spec.get("quantization")
    if quantization is not None:
        stored = quantization.get("dtype") if isinstance(quantization, dict) else None
        if stored not in ("uint8", "uint16", "float16"):
            raise ModelFormatError(f"{model_file}: weight {spec['name']!r} has unknown quantization dtype {stored!r} "
                                   "(supported: uint8, uint16, float16)")
        if stored != "float16" and not ("min" in quantization and "scale" in quantization):
            raise ModelFormatError(f"{model_file}: weight {spec['name']!r} is {stored}-quantised but lacks 'min'/'scale'")
    else:
        stored = dtype
        if stored not in _STORED_BYTES:
            raise ModelFormatError(f"{model_file}: weight {spec['name']!r} has unsupported dtype {dtype!r}")
    return spec["name"], shape, stored, quantization


def _dequantize(raw, stored, quantization):
    if quantization is None and raw.dtype == np.float32 and raw.ctypes.data % 4 == 0:
        # a read-only view on the shard bytes: no second copy of the weights in browser memory
        return raw.view(np.float32)
    if quantization is None or stored == "float16":
        return raw.astype(np.float32)
    # tfjs-core io_utils: value = q * scale + min (computed in double, stored as float32)
    return (raw.astype(np.float64) * float(quantization["scale"]) + float(quantization["min"])).astype(np.float32)


def _shard_size_message(model_file, group_index, shards, have, needed):
    sizes = ", ".join(f"{path} = {len(data)} bytes" for path, data in shards)
    message = (f"{model_file}: weight group {group_index} needs {needed} bytes but its shards hold {have} "
               f"({sizes})")
    if have < needed:
        # the converter writes equal shards and a last one no larger: a smaller middle shard is the culprit
        full = max(len(data) for _, data in shards)
        short = [path for path, data in shards[:-1] if len(data) < full]
        culprit = short[0] if short else shards[-1][0]
        message += f"; shard {culprit!r} looks short or truncated"
    else:
        message += "; the shards are longer than the manifest describes"
    return message


# ----------------------------------------------------------------------------------------------
# Graph building
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    """A non-tensor call argument (a Python number / list in the topology)."""

    value: Any


class _GraphBuilder:
    def __init__(self):
        self.nodes: list[Node] = []
        self.weights: dict[str, np.ndarray] = {}
        self.layer_outputs: dict[str, tuple[str, ...]] = {}
        self.layer_order: list[str] = []
        self._names: set[str] = set()

    def fresh(self, base: str) -> str:
        name, suffix = base, 1
        while name in self._names:
            suffix += 1
            name = f"{base}_{suffix}"
        self._names.add(name)
        return name

    def weight(self, name: str, array: np.ndarray) -> str:
        array = np.ascontiguousarray(array, dtype=np.float32)
        existing = self.weights.get(name)
        if existing is not None and (existing is array or (existing.shape == array.shape and np.array_equal(existing, array))):
            return name
        name = self.fresh(name) if name in self._names else name
        self._names.add(name)
        self.weights[name] = array
        return name

    def node(self, name: str, op: str, inputs, attrs=None, outputs: int = 1, out_base: str | None = None) -> list[str]:
        base = out_base or name
        outs = [self.fresh(base if i == 0 else f"{base}:{i}") for i in range(outputs)]
        self.nodes.append(Node(name=name, op=op, inputs=tuple(inputs), outputs=tuple(outs), attrs=attrs or {}))
        return outs

    def record_layer(self, key: str, outputs) -> None:
        if key not in self.layer_outputs:
            self.layer_outputs[key] = tuple(outputs)
            self.layer_order.append(key)


@dataclass
class LayerCall:
    """What a builder sees: one call of one layer."""

    loader: "TfjsLoader"
    class_name: str
    name: str            # display name (nested models prefix it: "densenet121/conv1/conv")
    config: dict
    inputs: list[str]    # tensor names of the call's tensor arguments, flattened, in order
    args: list[Any]      # positional call arguments: tensor names (str) or Const
    kwargs: dict         # keyword call arguments: tensor names (str) or Const
    call_index: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def builder(self) -> _GraphBuilder:
        return self.loader.builder

    def emit(self, op: str, inputs, attrs=None, outputs: int = 1) -> list[str]:
        base = self.name if self.call_index == 0 else f"{self.name}@{self.call_index}"
        return self.builder.node(self.name, op, inputs, attrs, outputs, out_base=base)

    def weights(self, names: list[str]) -> list[np.ndarray]:
        return self.loader.layer_weights(self, names)

    def weight(self, suffix: str, array: np.ndarray) -> str:
        return self.builder.weight(f"{self.name}/{suffix}", array)

    def const(self, value, suffix="const") -> str:
        return self.weight(suffix, np.asarray(value, dtype=np.float32))

    def fail(self, message: str, error=ModelFormatError):
        raise error(f"{self.loader.model_file}: layer {self.name!r} ({self.class_name}): {message}")

    def single_input(self) -> str:
        if len(self.inputs) != 1:
            self.fail(f"expected 1 input tensor, got {len(self.inputs)}")
        return self.inputs[0]


# ---- config helpers ---------------------------------------------------------------------------


def _pair(value, what, call: LayerCall, minimum: int = 1) -> tuple[int, int]:
    """A Keras int-or-pair argument as a pair of ints >= ``minimum``."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool):
        pair = (value, value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        call.fail(f"{what} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        call.fail(f"{what} must be >= {minimum}, got {value!r}")
    return pair


def _channels_last(call: LayerCall):
    fmt = call.config.get("data_format") or "channels_last"
    if fmt != "channels_last":
        call.fail(f"data_format={fmt!r} is not supported (only channels_last)", UnsupportedLayerError)


def _padding_attr(call: LayerCall):
    padding = call.config.get("padding", "valid")
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        return "same"
    call.fail(f"padding={padding!r} is not supported (valid, same)", UnsupportedLayerError)


def _check_shape(call: LayerCall, array: np.ndarray, expected: tuple, what: str):
    if len(array.shape) != len(expected) or any(e is not None and e != a for e, a in zip(expected, array.shape)):
        shown = "(" + ", ".join("?" if e is None else str(e) for e in expected) + ("," if len(expected) == 1 else "") + ")"
        call.fail(f"weight {what} has shape {tuple(array.shape)}, expected {shown} from the layer config")


def activation_spec(value, keras_major: int, call: LayerCall) -> tuple[str, dict]:
    """Keras activation identifier -> (IR op, attrs)."""
    if value is None:
        return "linear", {}
    if isinstance(value, dict):  # Keras 3 may serialise {"class_name": "function", "config": "relu"}
        inner = value.get("config")
        value = inner if isinstance(inner, str) else value.get("class_name")
    if not isinstance(value, str):
        call.fail(f"activation {value!r} is not understood", UnsupportedLayerError)
    name = value.split(">")[-1].split(".")[-1]  # "keras.activations.relu" -> "relu"
    simple = {"linear": "linear", "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh",
              "swish": "swish", "silu": "swish", "selu": "selu", "softplus": "softplus", "softsign": "softsign",
              "exponential": "exponential", "hard_swish": "hard_swish", "hard_silu": "hard_swish", "mish": "mish",
              "elu": "elu"}
    if name in simple:
        return simple[name], {}
    if name == "gelu":
        return "gelu", {"approximate": False}
    if name == "hard_sigmoid":
        return "hard_sigmoid", {"variant": "keras2" if keras_major < 3 else "keras3"}
    if name == "softmax":
        return "softmax", {"axis": -1}
    if name == "log_softmax":
        return "log_softmax", {"axis": -1}
    if name == "leaky_relu":
        return "leaky_relu", {"alpha": 0.2}
    call.fail(f"activation {value!r} is not supported; supported: {sorted(simple) + ['gelu', 'hard_sigmoid', 'softmax', 'log_softmax', 'leaky_relu']}",
              UnsupportedLayerError)


def _with_activation(call: LayerCall, op: str, inputs: list[str], attrs: dict) -> list[str]:
    """Emit ``op`` then the layer's ``activation`` as a separate node (fused later by optimize)."""
    act, act_attrs = activation_spec(call.config.get("activation"), call.loader.keras_major, call)
    out = call.emit(op, inputs, {**attrs, "activation": "linear"})
    if act == "linear":
        return out
    return call.emit(act, out, act_attrs)


# ---- builders ---------------------------------------------------------------------------------


def build_conv2d(call: LayerCall):
    _channels_last(call)
    cfg = call.config
    kh, kw = _pair(cfg["kernel_size"], "kernel_size", call)
    filters = cfg["filters"]
    groups = cfg.get("groups", 1) or 1
    use_bias = cfg.get("use_bias", True)
    arrays = call.weights(["kernel", "bias"] if use_bias else ["kernel"])
    _check_shape(call, arrays[0], (kh, kw, None, filters), "kernel")
    inputs = [call.single_input(), call.weight("kernel", arrays[0])]
    if use_bias:
        _check_shape(call, arrays[1], (filters,), "bias")
        inputs.append(call.weight("bias", arrays[1]))
    attrs = {"strides": _pair(cfg.get("strides", 1), "strides", call),
             "dilations": _pair(cfg.get("dilation_rate", 1), "dilation_rate", call),
             "pads": _padding_attr(call), "groups": int(groups)}
    return _with_activation(call, "conv2d", inputs, attrs)


def build_depthwise_conv2d(call: LayerCall):
    _channels_last(call)
    cfg = call.config
    kh, kw = _pair(cfg["kernel_size"], "kernel_size", call)
    multiplier = cfg.get("depth_multiplier", 1)
    use_bias = cfg.get("use_bias", True)
    arrays = call.weights(["depthwise_kernel", "bias"] if use_bias else ["depthwise_kernel"])
    _check_shape(call, arrays[0], (kh, kw, None, multiplier), "depthwise_kernel")
    inputs = [call.single_input(), call.weight("depthwise_kernel", arrays[0])]
    if use_bias:
        inputs.append(call.weight("bias", arrays[1]))
    attrs = {"strides": _pair(cfg.get("strides", 1), "strides", call),
             "dilations": _pair(cfg.get("dilation_rate", 1), "dilation_rate", call), "pads": _padding_attr(call)}
    return _with_activation(call, "depthwise_conv2d", inputs, attrs)


def build_separable_conv2d(call: LayerCall):
    _channels_last(call)
    cfg = call.config
    kh, kw = _pair(cfg["kernel_size"], "kernel_size", call)
    multiplier = cfg.get("depth_multiplier", 1)
    filters = cfg["filters"]
    use_bias = cfg.get("use_bias", True)
    names = ["depthwise_kernel", "pointwise_kernel"] + (["bias"] if use_bias else [])
    arrays = call.weights(names)
    _check_shape(call, arrays[0], (kh, kw, None, multiplier), "depthwise_kernel")
    _check_shape(call, arrays[1], (1, 1, arrays[0].shape[2] * multiplier, filters), "pointwise_kernel")
    depthwise = call.emit("depthwise_conv2d", [call.single_input(), call.weight("depthwise_kernel", arrays[0])],
                          {"strides": _pair(cfg.get("strides", 1), "strides", call),
                           "dilations": _pair(cfg.get("dilation_rate", 1), "dilation_rate", call),
                           "pads": _padding_attr(call), "activation": "linear"})
    inputs = depthwise + [call.weight("pointwise_kernel", arrays[1])]
    if use_bias:
        inputs.append(call.weight("bias", arrays[2]))
    return _with_activation(call, "conv2d", inputs, {"strides": (1, 1), "dilations": (1, 1), "pads": (0, 0, 0, 0), "groups": 1})


def build_conv2d_transpose(call: LayerCall):
    _channels_last(call)
    cfg = call.config
    kh, kw = _pair(cfg["kernel_size"], "kernel_size", call)
    strides = _pair(cfg.get("strides", 1), "strides", call)
    dilations = _pair(cfg.get("dilation_rate", 1), "dilation_rate", call)
    output_padding = cfg.get("output_padding")
    output_padding = None if output_padding is None else _pair(output_padding, "output_padding", call)
    padding = cfg.get("padding", "valid")
    if padding not in ("valid", "same"):
        call.fail(f"padding={padding!r} is not supported (valid, same)", UnsupportedLayerError)
    pads = []
    for axis, k in enumerate((kh, kw)):
        k_eff = (k - 1) * dilations[axis] + 1
        s = strides[axis]
        # Output length L and TF's backprop-input padding, both independent of the input size
        # (see keras conv_utils.deconv_output_length and tf conv_grad_input).
        op = None if output_padding is None else output_padding[axis]
        if padding == "same":
            total = max(k_eff - s, 0) if op is None else max(2 * (k_eff // 2) - op, 0)
            before = total // 2
            after = (k_eff - s - before) if op is None else (2 * (k_eff // 2) - op - before)
        else:
            before = 0
            after = (k_eff - s - max(k_eff - s, 0)) if op is None else -op
        pads.extend([before, after])
    use_bias = cfg.get("use_bias", True)
    arrays = call.weights(["kernel", "bias"] if use_bias else ["kernel"])
    _check_shape(call, arrays[0], (kh, kw, cfg["filters"], None), "kernel")
    inputs = [call.single_input(), call.weight("kernel", arrays[0])]
    if use_bias:
        inputs.append(call.weight("bias", arrays[1]))
    attrs = {"strides": strides, "dilations": dilations, "pads": tuple(pads), "output_padding": (0, 0)}
    return _with_activation(call, "conv2d_transpose", inputs, attrs)


def build_dense(call: LayerCall):
    cfg = call.config
    units = cfg["units"]
    use_bias = cfg.get("use_bias", True)
    arrays = call.weights(["kernel", "bias"] if use_bias else ["kernel"])
    _check_shape(call, arrays[0], (None, units), "kernel")
    inputs = [call.single_input(), call.weight("kernel", arrays[0])]
    if use_bias:
        _check_shape(call, arrays[1], (units,), "bias")
        inputs.append(call.weight("bias", arrays[1]))
    return _with_activation(call, "dense", inputs, {})


def _single_axis(call: LayerCall, default=-1) -> int:
    axis = call.config.get("axis", default)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            call.fail(f"axis={axis!r}: only a single axis is supported", UnsupportedLayerError)
        axis = axis[0]
    return int(axis)


def build_batch_norm(call: LayerCall):
    cfg = call.config
    names = (["gamma"] if cfg.get("scale", True) else []) + (["beta"] if cfg.get("center", True) else []) \
        + ["moving_mean", "moving_variance"]
    arrays = dict(zip(names, call.weights(names)))
    channels = arrays["moving_mean"].shape
    gamma = arrays.get("gamma", np.ones(channels, np.float32))
    beta = arrays.get("beta", np.zeros(channels, np.float32))
    for key, array in (("gamma", gamma), ("beta", beta), ("moving_variance", arrays["moving_variance"])):
        _check_shape(call, array, channels, key)
    inputs = [call.single_input(), call.weight("gamma", gamma), call.weight("beta", beta),
              call.weight("moving_mean", arrays["moving_mean"]), call.weight("moving_variance", arrays["moving_variance"])]
    return call.emit("batch_norm", inputs, {"epsilon": float(cfg.get("epsilon", 1e-3)), "axis": _single_axis(call)})


def build_layer_norm(call: LayerCall):
    cfg = call.config
    axis = cfg.get("axis", -1)
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    if cfg.get("rms_scaling"):
        call.fail("rms_scaling=True is not supported", UnsupportedLayerError)
    names = (["gamma"] if cfg.get("scale", True) else []) + (["beta"] if cfg.get("center", True) else [])
    arrays = dict(zip(names, call.weights(names)))
    inputs = [call.single_input()]
    if "gamma" not in arrays and "beta" in arrays:
        arrays["gamma"] = np.ones_like(arrays["beta"])
    for key in ("gamma", "beta"):
        if key in arrays:
            inputs.append(call.weight(key, arrays[key]))
    return call.emit("layer_norm", inputs, {"axes": axes, "epsilon": float(cfg.get("epsilon", 1e-3))})


def build_activation(call: LayerCall):
    op, attrs = activation_spec(call.config.get("activation"), call.loader.keras_major, call)
    if op == "linear":
        return [call.single_input()]
    return call.emit(op, [call.single_input()], attrs)


def build_relu(call: LayerCall):
    cfg = call.config
    max_value = cfg.get("max_value")
    slope = float(cfg.get("negative_slope", 0.0) or 0.0)
    threshold = float(cfg.get("threshold", 0.0) or 0.0)
    x = call.single_input()
    if slope == 0.0 and threshold == 0.0:
        if max_value is None:
            return call.emit("relu", [x])
        if float(max_value) == 6.0:
            return call.emit("relu6", [x])
    return call.emit("relu_ex", [x], {"max_value": None if max_value is None else float(max_value),
                                      "threshold": threshold, "negative_slope": slope})


def build_leaky_relu(call: LayerCall):
    cfg = call.config
    alpha = cfg.get("negative_slope", cfg.get("alpha", 0.3))
    return call.emit("leaky_relu", [call.single_input()], {"alpha": float(alpha)})


def build_elu(call: LayerCall):
    return call.emit("elu", [call.single_input()], {"alpha": float(call.config.get("alpha", 1.0))})


def build_prelu(call: LayerCall):
    (alpha,) = call.weights(["alpha"])
    return call.emit("prelu", [call.single_input(), call.weight("alpha", alpha)])


def build_softmax(call: LayerCall):
    axis = call.config.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            call.fail(f"axis={axis!r}: only one axis is supported", UnsupportedLayerError)
        axis = axis[0]
    return call.emit("softmax", [call.single_input()], {"axis": int(axis)})


def _merge(op):
    def build(call: LayerCall):
        if len(call.inputs) < 2 and op != "concat":
            call.fail(f"needs at least 2 inputs, got {len(call.inputs)}")
        if op == "sub" and len(call.inputs) != 2:
            call.fail(f"needs exactly 2 inputs, got {len(call.inputs)}")
        attrs = {"axis": int(call.config.get("axis", -1))} if op == "concat" else {}
        return call.emit(op, call.inputs, attrs)

    return build


def _pads2d(value, call: LayerCall, what: str):
    if isinstance(value, (list, tuple)) and len(value) == 2 and not all(isinstance(v, int) for v in value):
        return _pair(value[0], what, call, minimum=0), _pair(value[1], what, call, minimum=0)
    rows, cols = _pair(value, what, call, minimum=0)
    return (rows, rows), (cols, cols)


def build_zero_padding2d(call: LayerCall):
    _channels_last(call)
    (top, bottom), (left, right) = _pads2d(call.config.get("padding", 1), call, "padding")
    return call.emit("pad", [call.single_input()], {"pads": ((0, 0), (top, bottom), (left, right), (0, 0)),
                                                    "mode": "constant", "value": 0.0})


def build_cropping2d(call: LayerCall):
    _channels_last(call)
    (top, bottom), (left, right) = _pads2d(call.config.get("cropping", 0), call, "cropping")
    return call.emit("crop", [call.single_input()], {"begin": (0, top, left, 0), "end": (0, bottom, right, 0)})


def _pool(op):
    def build(call: LayerCall):
        _channels_last(call)
        cfg = call.config
        pool = _pair(cfg.get("pool_size", 2), "pool_size", call)
        strides = cfg.get("strides")
        strides = pool if strides is None else _pair(strides, "strides", call)
        attrs = {"pool": pool, "strides": strides, "pads": _padding_attr(call)}
        if op == "avg_pool2d":
            attrs["count_include_pad"] = False
        return call.emit(op, [call.single_input()], attrs)

    return build


def _global_pool(op):
    def build(call: LayerCall):
        _channels_last(call)
        return call.emit(op, [call.single_input()], {"keepdims": bool(call.config.get("keepdims", False))})

    return build


def build_flatten(call: LayerCall):
    _channels_last(call)
    return call.emit("flatten", [call.single_input()])


def build_reshape(call: LayerCall):
    target = call.config.get("target_shape")
    if not isinstance(target, (list, tuple)):
        call.fail(f"target_shape={target!r} is not a list")
    return call.emit("reshape", [call.single_input()], {"shape": tuple(-1 if d is None else int(d) for d in target)})


def build_permute(call: LayerCall):
    dims = call.config.get("dims")
    return call.emit("transpose", [call.single_input()], {"perm": (0, *(int(d) for d in dims))})


def build_upsampling2d(call: LayerCall):
    _channels_last(call)
    size = _pair(call.config.get("size", 2), "size", call)
    method = call.config.get("interpolation", "nearest")
    if method not in ("nearest", "bilinear"):
        call.fail(f"interpolation={method!r} is not supported (nearest, bilinear)", UnsupportedLayerError)
    return call.emit("resize", [call.single_input()], {"scale": size, "method": method, "align_corners": False,
                                                       "half_pixel_centers": method == "bilinear"})


def build_rescaling(call: LayerCall):
    cfg = call.config
    scale = np.asarray(cfg.get("scale", 1.0), dtype=np.float32)
    offset = np.asarray(cfg.get("offset", 0.0), dtype=np.float32)
    if scale.ndim > 1 or offset.ndim > 1:
        call.fail("scale/offset must be scalars or one value per channel", UnsupportedLayerError)
    return call.emit("scale_shift", [call.single_input(), call.weight("scale", scale), call.weight("shift", offset)])


def build_normalization(call: LayerCall):
    cfg = call.config
    if cfg.get("mean") is not None and cfg.get("variance") is not None:
        mean = np.asarray(cfg["mean"], dtype=np.float32)
        variance = np.asarray(cfg["variance"], dtype=np.float32)
    else:
        arrays = call.loader.assigned_weights(call)
        names = [n for n, _ in arrays]
        if "mean" in names and "variance" in names:
            mean, variance = arrays[names.index("mean")][1], arrays[names.index("variance")][1]
        elif len(arrays) in (2, 3):  # order: mean, variance[, count]
            mean, variance = arrays[0][1], arrays[1][1]
        else:
            call.fail(f"expects weights mean, variance[, count] but the manifest has {names}")
    axis = cfg.get("axis", -1)
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    if mean.size > 1 and axis not in ((-1,), (3,)):
        if not (mean.ndim >= 1 and mean.size == mean.shape[-1] and axis[-1] in (-1, len(axis))):
            call.fail(f"axis={axis!r}: only the last axis is supported", UnsupportedLayerError)
    mean = mean.reshape(-1) if mean.size > 1 else mean.reshape(())
    variance = variance.reshape(-1) if variance.size > 1 else variance.reshape(())
    # Keras: (x - mean) / max(sqrt(variance), epsilon) with epsilon = 1e-7
    std = np.maximum(np.sqrt(variance.astype(np.float64)), 1e-7)
    if cfg.get("invert"):
        scale, shift = std, mean.astype(np.float64)
    else:
        scale, shift = 1.0 / std, -mean.astype(np.float64) / std
    return call.emit("scale_shift", [call.single_input(), call.weight("scale", scale.astype(np.float32)),
                                     call.weight("shift", shift.astype(np.float32))])


def build_identity(call: LayerCall):
    if len(call.inputs) != 1:
        return list(call.inputs)
    return [call.inputs[0]]


def build_custom_scale(call: LayerCall):
    """InceptionResNetV2's CustomScaleLayer: inputs[0] + inputs[1] * scale."""
    if len(call.inputs) != 2:
        call.fail(f"expects 2 inputs, got {len(call.inputs)}")
    scaled = call.builder.node(call.name, "mul", [call.inputs[1], call.const(float(call.config["scale"]), "scale")],
                               out_base=f"{call.name}/scaled")
    return call.emit("add", [call.inputs[0], scaled[0]])


def build_layer_scale(call: LayerCall):
    """ConvNeXt's LayerScale: x * gamma (one weight, whatever its stored name)."""
    arrays = call.loader.assigned_weights(call)
    if len(arrays) != 1:
        call.fail(f"expects exactly one weight (gamma), the manifest has {[n for n, _ in arrays]}")
    gamma = arrays[0][1]
    return call.emit("mul", [call.single_input(), call.weight("gamma", gamma)])


def build_lambda(call: LayerCall):
    call.fail("Lambda layers hold serialized Python bytecode, which cannot be run safely (or at all) outside "
              "the exact Python/TensorFlow that wrote it; re-export the model with the Lambda replaced by "
              "built-in layers", UnsupportedLayerError)


# ---- TFOpLambda (Keras 2 records raw TF calls on Keras tensors as layers) ----------------------

_TF_BINARY = {
    "__operators__.add": "add", "math.add": "add", "__operators__.radd": "add", "math.add_n": "add",
    "math.subtract": "sub", "__operators__.sub": "sub",
    "math.multiply": "mul", "__operators__.mul": "mul",
    "math.truediv": "div", "__operators__.truediv": "div", "math.divide": "div",
    "math.maximum": "maximum", "math.minimum": "minimum", "math.pow": "pow", "__operators__.pow": "pow",
}
_TF_UNARY = {
    "nn.relu": "relu", "nn.relu6": "relu6", "math.sigmoid": "sigmoid", "nn.sigmoid": "sigmoid",
    "math.tanh": "tanh", "nn.tanh": "tanh", "nn.silu": "swish", "nn.swish": "swish", "math.exp": "exponential",
    "math.negative": "neg", "__operators__.neg": "neg", "math.sqrt": "sqrt", "math.square": "square",
    "math.abs": "abs", "nn.softplus": "softplus", "nn.gelu": "gelu", "nn.elu": "elu", "nn.selu": "selu",
    "math.softplus": "softplus",
}
_TF_REDUCE = {"math.reduce_mean": "mean", "math.reduce_sum": "sum", "math.reduce_max": "reduce_max",
              "math.reduce_min": "reduce_min"}


def _operand(call: LayerCall, value, suffix: str) -> str:
    if isinstance(value, Const):
        return call.const(value.value, suffix)
    return value


def build_tf_op_lambda(call: LayerCall):
    function = call.config.get("function")
    first = call.args[0] if call.args else call.kwargs.get("x", call.kwargs.get("input"))
    if function in _TF_BINARY:
        second = call.args[1] if len(call.args) > 1 else call.kwargs.get("y")
        if first is None or second is None:
            call.fail(f"{function}: expected two operands (x, y), got args={call.args!r} kwargs={call.kwargs!r}")
        return call.emit(_TF_BINARY[function], [_operand(call, first, "x"), _operand(call, second, "y")])
    if function in _TF_UNARY:
        op = _TF_UNARY[function]
        attrs = {"approximate": bool(_const_kwarg(call, "approximate", False))} if op == "gelu" else {}
        return call.emit(op, [_operand(call, first, "x")], attrs)
    if function == "nn.softmax":
        return call.emit("softmax", [_operand(call, first, "x")], {"axis": int(_const_kwarg(call, "axis", -1))})
    if function in _TF_REDUCE:
        axis = _const_kwarg(call, "axis", None)
        if axis is None:
            call.fail(f"{function} without an axis is not supported", UnsupportedLayerError)
        axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
        keepdims = bool(_const_kwarg(call, "keepdims", False))
        return call.emit(_TF_REDUCE[function], [_operand(call, first, "x")], {"axes": axes, "keepdims": keepdims})
    if function == "concat":
        values = first if isinstance(first, list) else call.inputs
        return call.emit("concat", [_operand(call, v, f"v{i}") for i, v in enumerate(values)],
                         {"axis": int(_const_kwarg(call, "axis", -1))})
    if function == "reshape":
        shape = _const_kwarg(call, "shape", None)
        if shape is None:
            call.fail("reshape without a constant shape is not supported", UnsupportedLayerError)
        return call.emit("reshape", [_operand(call, first, "x")], {"shape": tuple(int(d) for d in shape[1:])})
    if function in ("clip_by_value", "clip"):
        return call.emit("clip", [_operand(call, first, "x")],
                         {"min": float(_const_kwarg(call, "clip_value_min", None)),
                          "max": float(_const_kwarg(call, "clip_value_max", None))})
    if function == "expand_dims":
        return call.emit("expand_dims", [_operand(call, first, "x")], {"axis": int(_const_kwarg(call, "axis", -1))})
    if function == "compat.v1.transpose" or function == "transpose":
        perm = _const_kwarg(call, "perm", None)
        return call.emit("transpose", [_operand(call, first, "x")], {"perm": tuple(perm)})
    supported = sorted(set(_TF_BINARY) | set(_TF_UNARY) | set(_TF_REDUCE) |
                       {"nn.softmax", "concat", "reshape", "clip_by_value", "expand_dims", "transpose"})
    call.fail(f"TF operation {function!r} is not supported; supported TFOpLambda functions: {supported}",
              UnsupportedLayerError)


def build_slicing_op_lambda(call: LayerCall):
    """Keras 2 ``x[...]`` on a Keras tensor: ``slice_spec`` of slices / ints / ellipsis / None."""
    spec = _const_kwarg(call, "slice_spec", None)
    if spec is None:
        call.fail("SlicingOpLambda without a constant slice_spec is not supported", UnsupportedLayerError)
    items = spec if isinstance(spec, list) else [spec]
    index = []
    for item in items:
        if isinstance(item, dict) and item.get("class_name") == "__ellipsis__":
            index.append("ellipsis")
        elif isinstance(item, dict) and set(item) <= {"start", "stop", "step"}:
            parts = [item.get("start"), item.get("stop"), item.get("step")]
            if not all(p is None or isinstance(p, int) for p in parts):
                call.fail(f"slice {item!r} with tensor bounds is not supported", UnsupportedLayerError)
            index.append(("slice", *parts))
        elif item is None:
            index.append("newaxis")
        elif isinstance(item, int) and not isinstance(item, bool):
            index.append(int(item))
        else:
            call.fail(f"slice item {item!r} is not supported", UnsupportedLayerError)
    first = call.args[0] if call.args else None
    if not isinstance(first, str):
        call.fail("SlicingOpLambda must slice a tensor")
    return call.emit("getitem", [first], {"index": tuple(index)})


def _const_kwarg(call: LayerCall, key: str, default):
    value = call.kwargs.get(key)
    if value is None:
        positional = {"axis": 1, "shape": 1, "perm": 1, "clip_value_min": 1, "clip_value_max": 2}.get(key)
        if positional is not None and len(call.args) > positional and isinstance(call.args[positional], Const):
            return call.args[positional].value
        return default
    if not isinstance(value, Const):
        call.fail(f"argument {key!r} must be a constant, got a tensor", UnsupportedLayerError)
    return value.value


# ---- Keras 3 operations (keras.ops.* called on symbolic tensors, serialised like layers) -----

_KERAS3_BINARY = {"Add": "add", "Subtract": "sub", "Multiply": "mul", "Divide": "div", "TrueDivide": "div",
                  "Maximum": "maximum", "Minimum": "minimum", "Power": "pow"}
_KERAS3_UNARY = {"Relu": "relu", "Relu6": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh", "Silu": "swish",
                 "Swish": "swish", "HardSilu": "hard_swish", "HardSwish": "hard_swish", "Exp": "exponential",
                 "Negative": "neg", "Sqrt": "sqrt", "Square": "square", "Absolute": "abs", "Abs": "abs",
                 "Softplus": "softplus", "Softsign": "softsign", "Selu": "selu", "Mish": "mish"}
_KERAS3_REDUCE = {"Mean": "mean", "Sum": "sum", "Max": "reduce_max", "Min": "reduce_min"}
KERAS3_OPS = frozenset(_KERAS3_BINARY) | frozenset(_KERAS3_UNARY) | frozenset(_KERAS3_REDUCE) | {
    "HardSigmoid", "Gelu", "Softmax", "Elu", "LeakyRelu"}


def _looks_like_keras3_op(raw: dict) -> bool:
    config = raw.get("config") or {}
    return str(raw.get("module", "")).startswith("keras.src.ops") or (
        raw.get("class_name") in KERAS3_OPS and "trainable" not in config and "dtype" not in config)


def is_keras3_op_call(raw: dict, args: list) -> bool:
    """A Keras 3 operation node (module keras.src.ops.*; the converter may strip ``module``, but
    ops never carry the ``trainable`` / ``dtype`` keys every layer config has, and a binary op
    takes its operands as separate positional arguments, a merge layer as one list)."""
    if str(raw.get("module", "")).startswith("keras.src.ops"):
        return True
    config = raw.get("config") or {}
    if raw.get("class_name") not in KERAS3_OPS or "trainable" in config or "dtype" in config:
        return False
    return not (len(args) == 1 and isinstance(args[0], list))


def build_keras3_op(call: LayerCall):
    cls = call.class_name
    cfg = call.config

    def arg(index, key):
        if len(call.args) > index:
            return call.args[index]
        return call.kwargs.get(key)

    def param(key, default):
        if key in cfg:
            return cfg[key]
        value = call.kwargs.get(key)
        return value.value if isinstance(value, Const) else default

    if cls in _KERAS3_BINARY:
        first, second = arg(0, "x1"), arg(1, "x2")
        if first is None or second is None:
            call.fail(f"operation {cls} needs two operands, got args={call.args!r}")
        return call.emit(_KERAS3_BINARY[cls], [_operand(call, first, "x1"), _operand(call, second, "x2")])
    x = arg(0, "x")
    if x is None:
        call.fail(f"operation {cls} has no input")
    x = _operand(call, x, "x")
    if cls in _KERAS3_UNARY:
        return call.emit(_KERAS3_UNARY[cls], [x])
    if cls == "HardSigmoid":
        return call.emit("hard_sigmoid", [x], {"variant": "keras3"})
    if cls == "Gelu":
        return call.emit("gelu", [x], {"approximate": bool(param("approximate", True))})
    if cls == "Softmax":
        axis = param("axis", -1)
        return call.emit("softmax", [x], {"axis": int(axis[0] if isinstance(axis, (list, tuple)) else axis)})
    if cls == "Elu":
        return call.emit("elu", [x], {"alpha": float(param("alpha", 1.0))})
    if cls == "LeakyRelu":
        return call.emit("leaky_relu", [x], {"alpha": float(param("negative_slope", 0.2))})
    axis = param("axis", None)
    if axis is None:
        call.fail(f"operation {cls} over all axes is not supported", UnsupportedLayerError)
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    return call.emit(_KERAS3_REDUCE[cls], [x], {"axes": axes, "keepdims": bool(param("keepdims", False))})


# Keras class name -> builder. The one table the loader dispatches on.
LAYER_BUILDERS: dict[str, Callable[[LayerCall], list[str]]] = {
    "Conv2D": build_conv2d, "Convolution2D": build_conv2d,
    "DepthwiseConv2D": build_depthwise_conv2d,
    "SeparableConv2D": build_separable_conv2d, "SeparableConvolution2D": build_separable_conv2d,
    "Conv2DTranspose": build_conv2d_transpose, "Convolution2DTranspose": build_conv2d_transpose,
    "Dense": build_dense,
    "BatchNormalization": build_batch_norm, "LayerNormalization": build_layer_norm,
    "Activation": build_activation, "ReLU": build_relu, "LeakyReLU": build_leaky_relu, "PReLU": build_prelu,
    "ELU": build_elu, "Softmax": build_softmax,
    "Add": _merge("add"), "Subtract": _merge("sub"), "Multiply": _merge("mul"), "Average": _merge("average"),
    "Maximum": _merge("maximum"), "Minimum": _merge("minimum"), "Concatenate": _merge("concat"),
    "ZeroPadding2D": build_zero_padding2d, "Cropping2D": build_cropping2d,
    "MaxPooling2D": _pool("max_pool2d"), "MaxPool2D": _pool("max_pool2d"),
    "AveragePooling2D": _pool("avg_pool2d"), "AvgPool2D": _pool("avg_pool2d"),
    "GlobalAveragePooling2D": _global_pool("global_avg_pool"), "GlobalAvgPool2D": _global_pool("global_avg_pool"),
    "GlobalMaxPooling2D": _global_pool("global_max_pool"), "GlobalMaxPool2D": _global_pool("global_max_pool"),
    "GlobalAveragePooling1D": _global_pool("global_avg_pool"), "GlobalMaxPooling1D": _global_pool("global_max_pool"),
    "Flatten": build_flatten, "Reshape": build_reshape, "Permute": build_permute,
    "UpSampling2D": build_upsampling2d,
    "Rescaling": build_rescaling, "Normalization": build_normalization,
    "Dropout": build_identity, "SpatialDropout1D": build_identity, "SpatialDropout2D": build_identity,
    "SpatialDropout3D": build_identity, "GaussianNoise": build_identity, "GaussianDropout": build_identity,
    "AlphaDropout": build_identity, "ActivityRegularization": build_identity, "Identity": build_identity,
    "StochasticDepth": build_identity,
    "TFOpLambda": build_tf_op_lambda, "SlicingOpLambda": build_slicing_op_lambda,
    "CustomScaleLayer": build_custom_scale, "LayerScale": build_layer_scale,
    "Lambda": build_lambda,
}
_MODEL_CLASSES = ("Functional", "Model", "Sequential")


# ----------------------------------------------------------------------------------------------
# Topology walking
# ----------------------------------------------------------------------------------------------


@dataclass
class _LayerInfo:
    path: str
    class_name: str
    config: dict
    raw: dict


class TfjsLoader:
    """Turns one parsed model.json (+ decoded weights) into a Graph."""

    def __init__(self, model_json: dict, weights: list[tuple[str, np.ndarray]], model_file: str):
        self.model_file = model_file
        topology = model_json["modelTopology"]
        self.topology = topology
        version = str(topology.get("keras_version") or "")
        root = topology.get("model_config", topology)
        if not version and isinstance(root, dict):
            version = "3" if "module" in root else "2"
        self.keras_major = 3 if version.startswith("3") else 2
        self.root = root
        self.builder = _GraphBuilder()
        self._layers: dict[str, _LayerInfo] = {}
        self._auto_paths: dict[str, str] = {}
        self._collect(root, "")
        self._assigned = self._assign_weights(weights)
        self._used_weights: set[str] = set()

    # ---- weights ------------------------------------------------------------------------------

    def _collect(self, model: dict, prefix: str, auto_prefix: str = ""):
        # Keras 3 names weights by object-tracking path, not layer name: "layers/<snake_case class>
        # [_n]/vars/<i>", counted per class within each container (keras saving_lib).
        used: dict[str, int] = {}
        for raw in _model_layers(model, self.model_file):
            name = _layer_name(raw, self.model_file)
            path = f"{prefix}{name}"
            info = _LayerInfo(path, _registered_class(raw.get("class_name", "")), raw.get("config") or {}, raw)
            if path in self._layers:
                continue
            self._layers[path] = info
            if _looks_like_keras3_op(raw):
                continue  # operations are not tracked as layers, so they take no path
            snake = _snake_case(info.class_name)
            if snake in used:
                used[snake] += 1
                snake = f"{snake}_{used[snake]}"
            else:
                used[snake] = 0
            auto = f"{auto_prefix}layers/{snake}"
            self._auto_paths[auto] = path
            if info.class_name in _MODEL_CLASSES:
                self._collect(raw, f"{path}/", f"{auto}/")

    def _assign_weights(self, weights):
        lookup: dict[str, str | None] = {}
        for path in self._layers:
            lookup[path] = path
        # bare names of nested layers as aliases when unambiguous
        for path in self._layers:
            parts = path.split("/")
            for start in range(1, len(parts)):
                alias = "/".join(parts[start:])
                if alias in self._layers:
                    continue
                if alias in lookup and lookup[alias] != path:
                    lookup[alias] = None  # ambiguous
                else:
                    lookup.setdefault(alias, path)
        for auto, path in self._auto_paths.items():
            lookup.setdefault(auto, path)
        assigned: dict[str, list[tuple[str, np.ndarray]]] = {}
        unmatched = []
        for full_name, array in weights:
            name = full_name[:-2] if full_name.endswith(":0") else full_name
            parts = name.split("/")
            target = None
            for k in range(len(parts) - 1, 0, -1):
                for start in range(0, k):
                    candidate = lookup.get("/".join(parts[start:k]))
                    if candidate:
                        target = (candidate, "/".join(parts[k:]))
                        break
                if target:
                    break
            if target is None:
                unmatched.append(full_name)
                continue
            path, short = target
            assigned.setdefault(path, []).append((short.split("/")[-1], array))
        for path, items in assigned.items():
            if all(short.isdigit() for short, _ in items):  # Keras 3 "vars/<i>": creation order
                items.sort(key=lambda item: int(item[0]))
        if unmatched:
            # Some Keras 2 layers (e.g. an adapted Normalization) save weights without their layer
            # name; they can only belong to the one weighted layer that got nothing.
            waiting = [p for p, info in self._layers.items()
                       if info.class_name in _WEIGHTED_CLASSES and p not in assigned]
            if len(waiting) != 1:
                raise ModelFormatError(f"{self.model_file}: weights {unmatched[:5]} in the manifest match no layer of "
                                       f"the topology (layers without weights: {waiting[:8]})")
            by_name = dict(weights)
            assigned[waiting[0]] = [(n[:-2] if n.endswith(":0") else n, by_name[n]) for n in unmatched]
        return assigned

    def assigned_weights(self, call: LayerCall) -> list[tuple[str, np.ndarray]]:
        path = call.extra["path"]
        self._used_weights.add(path)
        return self._assigned.get(path, [])

    def layer_weights(self, call: LayerCall, names: list[str]) -> list[np.ndarray]:
        have = self.assigned_weights(call)
        by_name = {short: array for short, array in have}
        if len(have) == len(names) and all(n in by_name for n in names):
            return [by_name[n] for n in names]
        if len(have) == len(names):  # names differ (e.g. tf.Variable "Variable"): Keras weight order
            return [array for _, array in have]
        missing = [n for n in names if n not in by_name]
        call.fail(f"expects weights {names} but the manifest has {[s for s, _ in have] or 'none'}"
                  + (f" (missing {missing})" if missing else ""))

    # ---- graph --------------------------------------------------------------------------------

    def build(self) -> Graph:
        name = self.root.get("config", {}).get("name", "model") if isinstance(self.root.get("config"), dict) else "model"
        inputs: list[TensorSpec] = []
        outputs = self._expand(self.root, prefix="", outer_inputs=None, graph_inputs=inputs, call_index=0)
        out_specs = [TensorSpec(name=t, shape=()) for t in outputs]
        seen = set()
        for spec in out_specs:
            if spec.name in seen:
                raise ModelFormatError(f"{self.model_file}: the same tensor {spec.name!r} is listed twice as an output")
            seen.add(spec.name)
        unused = [p for p in self._assigned if p not in self._used_weights]
        if unused:
            raise ModelFormatError(f"{self.model_file}: the manifest has weights for layers {unused[:5]} that the "
                                   "topology never uses")
        b = self.builder
        return Graph(nodes=b.nodes, inputs=inputs, outputs=out_specs, weights=b.weights, name=name,
                     layer_outputs=b.layer_outputs)

    def _expand(self, model: dict, prefix: str, outer_inputs, graph_inputs, call_index) -> list[str]:
        class_name = model.get("class_name")
        if class_name == "Sequential":
            return self._expand_sequential(model, prefix, outer_inputs, graph_inputs, call_index)
        if class_name in ("Functional", "Model") or "layers" in (model.get("config") or {}):
            return self._expand_functional(model, prefix, outer_inputs, graph_inputs, call_index)
        raise ModelFormatError(f"{self.model_file}: model_config class {class_name!r} is not a Keras model "
                               "(expected Functional, Model or Sequential)")

    def _new_input(self, raw: dict, graph_inputs, prefix: str) -> str:
        config = raw.get("config") or {}
        shape = config.get("batch_input_shape") or config.get("batch_shape")
        if shape is None and config.get("input_shape") is not None:
            shape = [None, *config["input_shape"]]
        if not isinstance(shape, (list, tuple)) or not shape:
            raise ModelFormatError(f"{self.model_file}: input layer {_layer_name(raw, self.model_file)!r} has no "
                                   "batch_input_shape / batch_shape")
        name = self.builder.fresh(prefix + _layer_name(raw, self.model_file))
        graph_inputs.append(TensorSpec(name=name, shape=(None, *shape[1:]), dtype=str(_dtype_name(config.get("dtype")))))
        return name

    def _expand_sequential(self, model, prefix, outer_inputs, graph_inputs, call_index):
        layers = _model_layers(model, self.model_file)
        if not layers:
            raise ModelFormatError(f"{self.model_file}: Sequential model {prefix or 'root'!r} has no layers")
        current = None
        start = 0
        if outer_inputs is not None:
            if len(outer_inputs) != 1:
                raise ModelFormatError(f"{self.model_file}: Sequential model {prefix!r} called with {len(outer_inputs)} inputs")
            current = outer_inputs[0]
        if layers[0].get("class_name") == "InputLayer":
            if current is None:
                current = self._new_input(layers[0], graph_inputs, prefix)
            self.builder.record_layer(prefix + _layer_name(layers[0], self.model_file), [current])
            start = 1
        elif current is None:
            current = self._new_input(layers[0], graph_inputs, prefix)
        for raw in layers[start:]:
            outs = self._call_layer(raw, prefix, [current], [current], {}, call_index=0, graph_inputs=graph_inputs)
            if len(outs) != 1:
                raise ModelFormatError(f"{self.model_file}: layer {_layer_name(raw, self.model_file)!r} in a Sequential "
                                       f"model produced {len(outs)} outputs")
            current = outs[0]
        return [current]

    def _expand_functional(self, model, prefix, outer_inputs, graph_inputs, call_index):
        config = model.get("config") or {}
        layers = _model_layers(model, self.model_file)
        by_name = {_layer_name(raw, self.model_file): raw for raw in layers}
        input_refs = _tensor_refs(config.get("input_layers"), self.model_file, "input_layers")
        output_refs = _tensor_refs(config.get("output_layers"), self.model_file, "output_layers")
        produced: dict[tuple[str, int], list[str]] = {}
        if outer_inputs is not None and len(outer_inputs) != len(input_refs):
            raise ModelFormatError(f"{self.model_file}: nested model {prefix[:-1]!r} has {len(input_refs)} inputs but is "
                                   f"called with {len(outer_inputs)}")
        for index, (layer_name, node_index, _tensor_index) in enumerate(input_refs):
            if layer_name not in by_name:
                raise ModelFormatError(f"{self.model_file}: input layer {layer_name!r} is not among the layers")
            tensor = outer_inputs[index] if outer_inputs is not None else self._new_input(by_name[layer_name], graph_inputs, prefix)
            produced[(layer_name, node_index)] = [tensor]
            self.builder.record_layer(prefix + layer_name, [tensor])
        pending = []
        for raw in layers:
            if raw.get("class_name") == "InputLayer":
                continue
            for k, node_data in enumerate(raw.get("inbound_nodes") or []):
                pending.append((raw, k, node_data))
        while pending:
            still = []
            for raw, k, node_data in pending:
                parsed = self._parse_node(node_data, produced, raw)
                if parsed is None:
                    still.append((raw, k, node_data))
                    continue
                args, kwargs, tensors = parsed
                outs = self._call_layer(raw, prefix, tensors, args, kwargs, call_index=k, graph_inputs=graph_inputs)
                produced[(_layer_name(raw, self.model_file), k + self._node_offset(raw))] = outs
            if len(still) == len(pending):
                raw, k, node_data = still[0]
                missing = self._missing_refs(node_data, produced)
                raise ModelFormatError(f"{self.model_file}: layer {_layer_name(raw, self.model_file)!r} (call {k}) reads "
                                       f"{missing}, which no layer produces (unknown layer or cycle)")
            pending = still
        outputs = []
        for layer_name, node_index, tensor_index in output_refs:
            outs = produced.get((layer_name, node_index))
            if outs is None or tensor_index >= len(outs):
                raise ModelFormatError(f"{self.model_file}: output {[layer_name, node_index, tensor_index]} is not produced "
                                       "by any layer")
            outputs.append(outs[tensor_index])
        return outputs

    def _node_offset(self, raw) -> int:
        """Keras 2 numbers the calls of a nested model built on an Input from 1: its node 0 is the
        one linking its own Input to its outputs, which the config leaves out
        (keras functional._should_skip_first_node)."""
        if self.keras_major >= 3 or raw.get("class_name") not in _MODEL_CLASSES:
            return 0
        inner = _model_layers(raw, self.model_file)
        return 1 if inner and inner[0].get("class_name") == "InputLayer" else 0

    def _call_layer(self, raw, prefix, tensors, args, kwargs, call_index, graph_inputs) -> list[str]:
        name = _layer_name(raw, self.model_file)
        path = prefix + name
        class_name = _registered_class(raw.get("class_name"))
        if class_name in _MODEL_CLASSES:
            outs = self._expand(raw, f"{path}/", outer_inputs=tensors, graph_inputs=graph_inputs, call_index=call_index)
        elif class_name == "InputLayer":
            raise ModelFormatError(f"{self.model_file}: input layer {name!r} cannot be called on tensors")
        else:
            builder = build_keras3_op if is_keras3_op_call(raw, args) else LAYER_BUILDERS.get(class_name)
            if builder is None:
                raise UnsupportedLayerError(
                    f"{self.model_file}: layer {path!r} has class {class_name!r}, which Vitrine does not support. "
                    f"Supported layer classes: {', '.join(sorted(set(LAYER_BUILDERS) - {'Lambda'}) + list(_MODEL_CLASSES))}")
            call = LayerCall(self, class_name, path, raw.get("config") or {}, list(tensors), list(args), dict(kwargs),
                             call_index=call_index, extra={"path": path})
            try:
                outs = builder(call)
            except _CONFIG_ERRORS as exc:
                # a config value of the wrong type / missing key: name the layer, keep the cause
                raise ModelFormatError(f"{self.model_file}: layer {path!r} ({class_name}) has a malformed config: "
                                       f"{type(exc).__name__}: {exc}") from exc
        key = path if call_index == 0 else f"{path}@{call_index}"
        self.builder.record_layer(key, outs)
        if prefix and call_index == 0:
            self.builder.record_layer(name, outs)  # bare alias for nested layers (first wins)
        return list(outs)

    # ---- inbound node parsing (Keras 2 nested lists and Keras 3 dicts) -------------------------

    def _parse_node(self, node_data, produced, raw):
        """-> (args, kwargs, flat tensors) or None when an input is not produced yet."""
        try:
            if isinstance(node_data, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
                args = [self._k3_value(a, produced) for a in node_data.get("args", [])]
                kwargs = {k: self._k3_value(v, produced) for k, v in (node_data.get("kwargs") or {}).items()}
                flat = _flatten_tensors(args)
                if not flat:
                    flat = _flatten_tensors(list(kwargs.values()))
                return args, kwargs, flat
            if not isinstance(node_data, list):
                raise ModelFormatError(f"{self.model_file}: layer {_layer_name(raw, self.model_file)!r} has a malformed "
                                       f"inbound node {node_data!r}")
            # TFOpLambda keeps its call structure: a single entry is not wrapped in a list
            entries = [node_data] if node_data and isinstance(node_data[0], str) else node_data
            tensors, kwargs = [], {}
            for entry in entries:
                if not isinstance(entry, list) or len(entry) not in (3, 4):
                    raise ModelFormatError(f"{self.model_file}: layer {_layer_name(raw, self.model_file)!r} has a malformed "
                                           f"inbound entry {entry!r}")
                if len(entry) == 4 and isinstance(entry[3], dict):
                    kwargs = {k: self._k2_value(v, produced) for k, v in entry[3].items()}
                if entry[0] == "_CONSTANT_VALUE":
                    tensors.append(Const(entry[2]))
                    continue
                tensors.append(self._lookup(entry[0], entry[1], entry[2], produced))
            flat = [t for t in tensors if isinstance(t, str)]
            first = tensors[0] if len(tensors) == 1 else tensors
            if not flat:  # e.g. 1.0 - x: the constant came first, the tensor is the y kwarg
                flat = [v for v in kwargs.values() if isinstance(v, str)]
            return [first], kwargs, flat
        except _NotYet:
            return None

    def _lookup(self, layer_name, node_index, tensor_index, produced) -> str:
        outs = produced.get((layer_name, int(node_index)))
        if outs is None:
            raise _NotYet((layer_name, node_index, tensor_index))
        if int(tensor_index) >= len(outs):
            raise ModelFormatError(f"{self.model_file}: reference {[layer_name, node_index, tensor_index]} asks for output "
                                   f"{tensor_index} but layer {layer_name!r} has {len(outs)}")
        return outs[int(tensor_index)]

    def _k2_value(self, value, produced):
        if (isinstance(value, list) and len(value) in (3, 4) and isinstance(value[0], str)
                and isinstance(value[1], int) and isinstance(value[2], int)
                and (len(value) == 3 or isinstance(value[3], dict))):
            return self._lookup(value[0], value[1], value[2], produced)
        if value is None:
            return None
        return Const(value)

    def _k3_value(self, value, produced):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            history = (value.get("config") or {}).get("keras_history")
            if not isinstance(history, list) or len(history) != 3:
                raise ModelFormatError(f"{self.model_file}: malformed keras tensor {value!r}")
            return self._lookup(history[0], history[1], history[2], produced)
        if isinstance(value, list):
            return [self._k3_value(v, produced) for v in value]
        if value is None:
            return None
        return Const(value)

    def _missing_refs(self, node_data, produced):
        missing = []

        def visit(value):
            if isinstance(value, dict):
                if value.get("class_name") == "__keras_tensor__":
                    history = (value.get("config") or {}).get("keras_history") or []
                    if len(history) == 3 and (history[0], history[1]) not in produced:
                        missing.append(history[0])
                    return
                for v in value.values():
                    visit(v)
            elif isinstance(value, list):
                if len(value) in (3, 4) and isinstance(value[0], str) and isinstance(value[1], int):
                    if value[0] != "_CONSTANT_VALUE" and (value[0], value[1]) not in produced:
                        missing.append(value[0])
                    if len(value) == 4:
                        visit(value[3])
                    return
                for v in value:
                    visit(v)

        visit(node_data)
        return missing


class _NotYet(Exception):
    """An inbound tensor is not produced yet (the walker retries the node later)."""


_WEIGHTED_CLASSES = frozenset({
    "Conv2D", "Convolution2D", "DepthwiseConv2D", "SeparableConv2D", "SeparableConvolution2D", "Conv2DTranspose",
    "Convolution2DTranspose", "Dense", "BatchNormalization", "LayerNormalization", "PReLU", "Normalization",
    "LayerScale"})


# Keras Applications' own custom layers, as a model serialises them when they were registered
# with @register_keras_serializable(package=...): "Custom>CustomScaleLayer" (tf_keras
# InceptionResNetV2). Only these names lose their package prefix; any other "Package>Class" stays
# unknown, because a same-named class from another package may compute something else.
_APPLICATION_CUSTOM_LAYERS = frozenset({"CustomScaleLayer", "LayerScale", "StochasticDepth"})


def _registered_class(class_name):
    if isinstance(class_name, str) and ">" in class_name:
        package, _, bare = class_name.rpartition(">")
        if bare in _APPLICATION_CUSTOM_LAYERS and package in ("Custom", "keras", "keras.src"):
            return bare
    return class_name


def _snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _flatten_tensors(values) -> list[str]:
    flat = []
    for value in values:
        if isinstance(value, str):
            flat.append(value)
        elif isinstance(value, list):
            flat.extend(_flatten_tensors(value))
    return flat


def _model_layers(model: dict, model_file: str) -> list[dict]:
    config = model.get("config")
    layers = config if isinstance(config, list) else (config or {}).get("layers")
    if not isinstance(layers, list):
        raise ModelFormatError(f"{model_file}: model {model.get('name') or (config or {}).get('name')!r} has no 'layers' list")
    for raw in layers:
        if not isinstance(raw, dict) or "class_name" not in raw:
            raise ModelFormatError(f"{model_file}: layer entry {str(raw)[:80]!r} has no 'class_name'")
    return layers


def _layer_name(raw: dict, model_file: str) -> str:
    name = raw.get("name") or (raw.get("config") or {}).get("name")
    if not isinstance(name, str):
        raise ModelFormatError(f"{model_file}: a {raw.get('class_name')} layer has no name")
    return name


def _tensor_refs(value, model_file, what) -> list[tuple[str, int, int]]:
    if isinstance(value, dict):  # Keras 3 dict-structured inputs/outputs
        value = list(value.values())
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ModelFormatError(f"{model_file}: model config {what} is missing or empty")
    refs = []
    for ref in value:
        if not (isinstance(ref, list) and len(ref) >= 3 and isinstance(ref[0], str)):
            raise ModelFormatError(f"{model_file}: malformed {what} entry {ref!r}")
        refs.append((ref[0], int(ref[1]), int(ref[2])))
    return refs


def _dtype_name(value) -> str:
    if isinstance(value, dict):  # Keras 3 DTypePolicy
        value = (value.get("config") or {}).get("name", "float32")
    return value if isinstance(value, str) else "float32"


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def parse_model_json(data: bytes, model_file: str) -> dict:
    """Parse and sanity-check model.json; reject graph-models."""
    try:
        model_json = json.loads(bytes(data).decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{model_file}: not valid JSON ({exc}); expected a TF.js model.json") from None
    if not isinstance(model_json, dict):
        raise ModelFormatError(f"{model_file}: expected a JSON object with 'modelTopology', got {type(model_json).__name__}")
    topology = model_json.get("modelTopology")
    if model_json.get("format") == "graph-model" or (isinstance(topology, dict) and "node" in topology):
        raise UnsupportedFormatError(f"{model_file}: this is a TF.js graph-model; graph-models are not supported yet "
                                     "(export a Keras layers-model instead)")
    if not isinstance(topology, dict):
        raise ModelFormatError(f"{model_file}: missing 'modelTopology' object (is this a TF.js layers-model model.json?)")
    if "weightsManifest" not in model_json:
        raise ModelFormatError(f"{model_file}: missing 'weightsManifest'")
    return model_json


def load_graph(files: Mapping[str, bytes], model_json_path: str, origin: str | None = None) -> Graph:
    """Build the IR graph of the TF.js layers-model whose model.json is ``files[model_json_path]``
    (weight shard paths resolve relative to its folder)."""
    model_file = origin or model_json_path
    model_json = parse_model_json(files[model_json_path], model_file)
    base_dir = posixpath.dirname(model_json_path)
    try:
        weights = decode_weights(model_json["weightsManifest"], files, base_dir, model_file)
        return TfjsLoader(model_json, weights, model_file).build()
    except _CONFIG_ERRORS as exc:
        # model.json is untrusted input: a wrong type anywhere in it is a format error, not a crash
        raise ModelFormatError(f"{model_file}: malformed model.json ({type(exc).__name__}: {exc})") from exc


# What malformed JSON values make Python raise while we read them.
_CONFIG_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError)
