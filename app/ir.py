"""One small graph IR shared by every model format.

Loaders (TF.js layers-model, TFLite) turn a format into a :class:`Graph`; kernels never see the
format. Canonical layout is NHWC, float32. Weights live in ``Graph.weights`` and are referenced
by name from ``Node.inputs`` exactly like activations (ONNX "initializers"), so a kernel receives
plain numpy arrays positionally and its attributes as keyword arguments.

Canonical ops (kernel signature: ``kernel(*input_arrays, **attrs) -> array | tuple[array, ...]``).
Attribute names below are the contract between loaders and kernels.

Convolution family (x is NHWC; ``pads`` = (top, bottom, left, right), explicit, resolved at load
time; ``activation`` is a fused activation name from the activation list, default "linear"):
  conv2d(x, kernel[KH,KW,Cin/groups,Cout], bias?, scale?, in_scale?, in_shift?)  strides=(1,1), dilations=(1,1),
      pads, groups=1, activation, in_activation="linear"
      (scale [Cout]: act(conv * scale + bias), a batch-norm after it; in_scale / in_shift [Cin]: the
      conv of in_activation(x * in_scale + in_shift), one before it; both set by app.optimize)
  depthwise_conv2d(x, kernel[KH,KW,C,multiplier], bias?)  strides, dilations, pads, activation
  conv2d_transpose(x, kernel[KH,KW,Cout,Cin], bias?)  strides, pads, output_padding=(0,0), activation
      (pads here are *cropped* from the full transposed output: Keras "valid" -> (0,0,0,0);
      a negative bottom/right pad extends the output with zeros, e.g. kernel smaller than stride)
  A loader may also give ``pads="same"`` / ``"valid"`` (conv, depthwise, pools) when the spatial
  size is not static; kernels resolve it per call and app.optimize makes it explicit when shapes
  are known.
  dense(x, kernel[In,Out], bias?)  activation         (contracts the last axis; any leading rank)

Normalisation / affine:
  scale_shift(x, scale, shift)   x * scale + shift, broadcast on the last axis (folded BN,
                                 Rescaling, Normalization); activation="linear" (fused, as conv)
  layer_norm(x, gamma?, beta?)   axes=(-1,), epsilon
  batch_norm(x, gamma, beta, mean, variance) epsilon, axis=-1 (only when it cannot be folded)

Activations (unary, elementwise unless noted):
  linear, relu, relu6, sigmoid, tanh, elu(alpha), selu, gelu(approximate=False), swish (=silu),
  hard_sigmoid (Keras: clip(0.2x+0.5) in Keras 2, relu6(x+3)/6 in Keras 3 -> attr variant),
  hard_swish, softplus, softsign, exponential, mish, log_softmax(axis),
  softmax(axis=-1), leaky_relu(alpha), relu_ex(max_value=None, threshold=0.0, negative_slope=0.0),
  clip(min, max), prelu(x, alpha)  (alpha broadcast; shared axes already expanded by the loader)

Elementwise n-ary with numpy broadcasting: add, sub, mul, div, maximum, minimum, average, pow
  (add also takes a fused activation="linear", as conv)
Elementwise unary (TF ops recorded by Keras 2 TFOpLambda): neg, sqrt, square, abs
Reductions: mean(axes, keepdims), sum(axes, keepdims), reduce_max(axes, keepdims),
  reduce_min(axes, keepdims), argmax(axis)
Pooling: max_pool2d(pool=(h,w), strides, pads), avg_pool2d(pool, strides, pads,
  count_include_pad=False), global_avg_pool(keepdims=False), global_max_pool(keepdims=False)
Shape: reshape(shape)   (target shape WITHOUT batch; -1 allowed), flatten, transpose(perm)
  (perm over all axes incl. batch), concat(axis, capacity=None: channels of the buffer a chain of
  last-axis concats grows in, set by app.optimize), pad(pads=((b0,a0),...) all axes, mode=
  "constant"|"reflect"|"symmetric", value=0.0), crop(begin, end) all axes, squeeze(axes),
  expand_dims(axis), slice(begin, size), strided_slice(begin, end, strides, masks...), split(axis,
  sizes) -> tuple, gather(axis) (x, indices), cast(dtype), tile(reps), identity,
  getitem(index) (numpy basic indexing; items ("slice", start, stop, step) | int | "ellipsis" |
  "newaxis"; Keras 2 SlicingOpLambda)
Resize: resize(size=(H,W), method="nearest"|"bilinear", align_corners=False,
  half_pixel_centers=False)  (UpSampling2D -> nearest/bilinear with scale folded into size;
  ``scale=(sh, sw)`` instead of ``size`` when the input size is not static)

A format with something outside this list adds the op here and a kernel in ``app.kernels``
rather than special-casing it in the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np


def _freeze(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Node:
    """One operation. ``name`` is the original layer / operator name (used in errors, the debug
    trace and to address layers, e.g. Grad-CAM's target layer); ``op`` is a canonical op name."""

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "attrs", _freeze(self.attrs))


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: its tensor name and shape with ``None`` for unknown dims
    (the batch dimension is always ``None``)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class Graph:
    """A whole model: nodes in a valid execution order, graph inputs/outputs and named weights.

    ``layer_outputs`` maps an original layer name to the tensor name(s) it produced, so callers can
    address layers of the source model even after folding/fusion renamed or removed nodes."""

    nodes: tuple[Node, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    weights: Mapping[str, np.ndarray]
    name: str = "model"
    layer_outputs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "weights", _freeze(self.weights))
        object.__setattr__(self, "layer_outputs", _freeze(self.layer_outputs))
