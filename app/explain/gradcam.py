"""Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391) on the numpy engine.

For an image batch, a class (default: each image's top class) and a convolutional layer
(default: the last layer whose output is spatial, rank 4 with H, W > 1):

* class score = the class's *logit*: the input of a final softmax / sigmoid, or the
  pre-activation of a final dense / conv that carries softmax / sigmoid (as in the Keras Grad-CAM
  example, https://keras.io/examples/vision/grad_cam/);
* alpha_k = spatial mean of d score / d A_k, A = the layer's output;
* map = ReLU(sum_k alpha_k A_k) / max (an all-zero map stays zero);
* upsampled bilinearly to the model's input size with TensorFlow 2's ``tf.image.resize``
  convention (half-pixel centers, no antialias), applied to the normalised map.

The backward pass runs over ``model.source_graph``, the graph exactly as the loader built it
(one node per original layer step), so every original layer name resolves, including layers that
batch-norm folding / activation fusion removed from the optimised graph, and the forward values are
those of the original layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ModelInputError, UnsupportedLayerError
from ..ir import Graph, Node
from ..kernels.resize import resize
from ..runtime import Plan, infer_shapes, probe_shapes
from .backward import node_vjp, supported_ops, unsupported_reason

_PROBABILITY_OPS = ("softmax", "sigmoid")
_PASS_THROUGH_OPS = ("identity", "linear")


@dataclass(frozen=True)
class GradCam:
    """Everything one Grad-CAM run produced.

    ``heatmap`` (N, H, W) float32 in [0, 1] at the model's input size (or the layer's size when
    computed with ``upsample=False``); ``layer_heatmap`` (N, h, w) at the layer's resolution;
    ``layer`` the target layer's name; ``class_index`` (N,) the explained class per image;
    ``logits`` (N, K) the class scores the gradients were taken of."""

    heatmap: np.ndarray
    layer_heatmap: np.ndarray
    layer: str
    class_index: np.ndarray
    logits: np.ndarray


def gradcam(model, x, class_index=None, layer: str | None = None, upsample: bool = True) -> np.ndarray:
    """Grad-CAM heatmaps, float32 (N, H, W) in [0, 1].

    ``model``: an :class:`app.model.Model` classifier (one output, (N, classes)). ``x``: the
    preprocessed float NHWC batch, as for ``model.predict``. ``class_index``: None (each image's
    top class), an int for every image, or a sequence of N ints. ``layer``: an original layer
    name (see :func:`spatial_layers`), default the last spatial one. ``upsample``: bilinear to the
    input size (TF ``tf.image.resize`` convention); False returns the layer-resolution map.

    Raises :class:`~app.errors.ModelInputError` for an unknown / non-spatial layer or a class out
    of range, :class:`~app.errors.UnsupportedLayerError` when a layer between the target and the
    class score has no gradient here."""
    result = compute_gradcam(model, x, class_index=class_index, layer=layer, upsample=upsample)
    return result.heatmap


def compute_gradcam(model, x, class_index=None, layer: str | None = None, upsample: bool = True) -> GradCam:
    """:func:`gradcam` with the details (layer used, classes, logits, layer-resolution map)."""
    source_graph_of(model)  # a model without a layer graph (int8 .tflite) is refused first, saying why
    feeds = model.check_input(x)  # the engine's own validation (count, dtype, shape, batch axis)
    head = _prepare(model, layer)
    env = Plan(head.graph).run(feeds, wanted=head.wanted)
    logits, classes, gradient = _backward(head, env, class_index)
    activations = np.asarray(env[head.target], dtype=np.float64)
    weights = gradient.mean(axis=(1, 2))  # alpha_k per image
    maps = np.maximum(np.einsum("nhwc,nc->nhw", activations, weights), 0.0)
    peaks = maps.max(axis=(1, 2), keepdims=True)
    maps = np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0).astype(np.float32)
    heatmap = upsample_heatmap(maps, feeds[0].shape[1:3]) if upsample else maps
    return GradCam(heatmap=heatmap, layer_heatmap=maps, layer=head.layer, class_index=classes,
                   logits=logits.astype(np.float32))


def layer_gradients(model, layer: str, value, class_index=None, x=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class logits, explained classes and d logit / d layer output when ``layer``'s output is
    ``value`` (N, h, w, C): only the layers after it run (``x`` is needed too when the head also
    reads the model input by another path). Grad-CAM's backward pass on its own, e.g. to check it
    against a framework's gradient at the framework's own activations."""
    head = _prepare(model, layer)
    value = np.ascontiguousarray(value, dtype=np.float32)
    feeds = model.check_input(x) if x is not None else []
    try:
        env = Plan(head.graph).run(feeds, wanted=head.wanted, given={head.target: value})
    except KeyError as exc:
        raise ModelInputError(f"the class scores also depend on the model input (tensor {exc.args[0]!r}) by a path "
                              f"that bypasses layer {head.layer!r}; pass x as well") from None
    logits, classes, gradient = _backward(head, env, class_index)
    return logits.astype(np.float32), classes, gradient


@dataclass(frozen=True)
class _Head:
    """What lies between the target layer and the class score, prepared once per call."""

    graph: Graph
    layer: str
    target: str                # tensor name of the layer's output
    score: str                 # tensor holding the class scores (logits, or a fused activation's output)
    stripped: Node | None      # node whose fused softmax/sigmoid the score skips
    nodes: tuple[Node, ...]    # head nodes in execution order
    wanted: tuple[str, ...]    # tensors the backward pass reads


def source_graph_of(model) -> Graph:
    """The layer graph Grad-CAM differentiates (``model.source_graph``); a model without one (a
    quantized ``.tflite`` on the TFLite interpreter) raises :class:`UnsupportedLayerError` saying why."""
    graph = getattr(model, "source_graph", None)
    if graph is not None:
        return graph
    name = getattr(model, "source", None) or getattr(model, "name", None) or type(model).__name__
    if getattr(model, "format", None) == "tflite":
        reason = getattr(model, "engine_reason", None)
        raise UnsupportedLayerError(
            f"{name}: Grad-CAM needs the model's layer graph, but this TFLite model runs on the TFLite interpreter"
            + (f" ({reason})" if reason else "")
            + ", which computes no gradients; a float32 / float16 .tflite or a TF.js layers-model can be explained")
    raise UnsupportedLayerError(f"{name}: Grad-CAM needs the model's layer graph (a TF.js layers-model or a float "
                                f".tflite); this {type(model).__name__} has none")


def _prepare(model, layer) -> _Head:
    graph: Graph = source_graph_of(model)
    if len(graph.outputs) != 1:
        raise ModelInputError(f"model {graph.name!r}: Grad-CAM needs a single-output classifier; this model "
                              f"has {len(graph.outputs)} outputs")
    producers = {out: node for node in graph.nodes for out in node.outputs}
    score_tensor, stripped = _class_score(graph, producers)
    ancestors = _ancestors(score_tensor, producers)
    shapes = _static_shapes(model, graph)
    score_shape = shapes.get(score_tensor) if shapes else None
    if score_shape is not None and len(score_shape) != 2:
        raise ModelInputError(f"model {graph.name!r}: Grad-CAM explains classifiers whose output is (N, classes); "
                              f"this model's class scores have shape {_fmt(score_shape)} (for a segmentation "
                              f"model use app.explain.segment)")
    layer_name, target = _resolve_layer(graph, layer, ancestors, shapes)
    nodes = _head_nodes(graph, target, ancestors)
    for node in nodes:
        reason = unsupported_reason(node)
        if reason is not None:
            raise UnsupportedLayerError(
                f"model {graph.name!r}: Grad-CAM cannot go back through layer {node.name!r} ({node.op}) between "
                f"{layer_name!r} and the class score: {reason}; the backward pass supports: "
                f"{', '.join(supported_ops())}")
    wanted = {target, score_tensor} | {t for n in nodes for t in (*n.inputs, *n.outputs) if t not in graph.weights}
    return _Head(graph, layer_name, target, score_tensor, stripped, tuple(nodes), tuple(sorted(wanted)))


def _backward(head: _Head, env, class_index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, classes, d score / d target) from a forward environment holding ``head.wanted``."""
    graph = head.graph
    logits = np.asarray(env[head.score], dtype=np.float64)
    if head.stripped is not None:
        logits = _pre_activation(head.stripped, env, graph.weights)
    if logits.ndim != 2:
        raise ModelInputError(f"model {graph.name!r}: Grad-CAM explains classifiers whose output is (N, classes); "
                              f"the class scores have shape {logits.shape}")
    classes = _class_indices(class_index, logits)
    seed = np.zeros_like(logits)
    seed[np.arange(len(classes)), classes] = 1.0
    grads: dict[str, np.ndarray] = {head.score: seed}
    reach = _descendants(graph, head.target)
    for node in reversed(head.nodes):
        grad = grads.pop(node.outputs[0], None)
        if grad is None:
            continue
        inputs = [env[name] if name in env else graph.weights[name] for name in node.inputs]
        needs = [name in reach for name in node.inputs]
        parts = node_vjp(node, grad, inputs, env[node.outputs[0]], needs, skip_activation=node is head.stripped)
        for name, part, need in zip(node.inputs, parts, needs):
            if need and part is not None:
                grads[name] = grads[name] + part if name in grads else np.array(part, dtype=np.float64)
    activations = env[head.target]
    return logits, classes, grads.get(head.target, np.zeros(np.shape(activations)))


def upsample_heatmap(maps: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(N, h, w) maps -> (N, H, W), bilinear with TF2 ``tf.image.resize`` half-pixel centers."""
    maps = np.asarray(maps, dtype=np.float32)
    if tuple(maps.shape[1:3]) == tuple(size):
        return maps
    resized = resize(maps[..., None], size=(int(size[0]), int(size[1])), method="bilinear", half_pixel_centers=True)
    return np.clip(resized[..., 0], 0.0, 1.0).astype(np.float32)


def spatial_layers(model) -> list[str]:
    """Names of the layers Grad-CAM can target: one output of rank 4 with H, W > 1 (unknown sizes
    count as spatial) on the path to the class score, in execution order."""
    graph: Graph = source_graph_of(model)
    producers = {out: node for node in graph.nodes for out in node.outputs}
    score_tensor, stripped = _class_score(graph, producers)
    return _spatial_candidates(graph, _ancestors(score_tensor, producers), _static_shapes(model, graph))


# ---- helpers ---------------------------------------------------------------------------------

def _class_score(graph: Graph, producers: dict[str, Node]) -> tuple[str, Node | None]:
    """(tensor holding the class logits, node whose fused softmax/sigmoid must be skipped)."""
    tensor = graph.outputs[0].name
    node = producers.get(tensor)
    while node is not None and node.op in _PASS_THROUGH_OPS and node.inputs:
        tensor = node.inputs[0]
        node = producers.get(tensor)
    if node is None:
        return tensor, None
    if node.op in _PROBABILITY_OPS:
        return node.inputs[0], None
    if node.attrs.get("activation") in _PROBABILITY_OPS:
        return tensor, node
    return tensor, None


def _pre_activation(node: Node, env, weights) -> np.ndarray:
    from ..kernels import KERNELS

    arrays = [env[name] if name in env else weights[name] for name in node.inputs]
    return np.asarray(KERNELS[node.op](*arrays, **{**node.attrs, "activation": "linear"}), dtype=np.float64)


def _ancestors(tensor: str, producers: dict[str, Node]) -> set[str]:
    seen = {tensor}
    stack = [tensor]
    while stack:
        node = producers.get(stack.pop())
        if node is None:
            continue
        for name in node.inputs:
            if name not in seen:
                seen.add(name)
                stack.append(name)
    return seen


def _descendants(graph: Graph, tensor: str) -> set[str]:
    reach = {tensor}
    for node in graph.nodes:
        if any(name in reach for name in node.inputs):
            reach.update(node.outputs)
    return reach


def _head_nodes(graph: Graph, target: str, ancestors: set[str]) -> list[Node]:
    """Nodes between the target tensor and the class score, in execution order."""
    reach = _descendants(graph, target)
    return [node for node in graph.nodes
            if any(name in reach for name in node.inputs) and any(o in ancestors for o in node.outputs)]


def _static_shapes(model, graph: Graph):
    shapes = getattr(model, "tensor_shapes", None)
    if shapes:
        return shapes
    return infer_shapes(graph) or probe_shapes(graph) or {}


def _is_spatial(shape) -> bool:
    return shape is not None and len(shape) == 4 and all(d is None or d > 1 for d in shape[1:3])


def _spatial_candidates(graph: Graph, ancestors: set[str], shapes) -> list[str]:
    return [name for name, tensors in graph.layer_outputs.items()
            if len(tensors) == 1 and tensors[0] in ancestors and tensors[0] not in (s.name for s in graph.inputs)
            and _is_spatial(shapes.get(tensors[0]))]


def _resolve_layer(graph: Graph, layer, ancestors: set[str], shapes) -> tuple[str, str]:
    candidates = _spatial_candidates(graph, ancestors, shapes)
    listing = _listing(candidates)
    if layer is None:
        if not candidates:
            raise ModelInputError(f"model {graph.name!r} has no layer with a spatial output (rank 4, H and W > 1) "
                                  f"before its class scores: Grad-CAM needs a convolutional layer")
        return candidates[-1], graph.layer_outputs[candidates[-1]][0]
    if not isinstance(layer, str):
        raise ModelInputError(f"layer must be a layer name (str), received {layer!r}")
    if layer not in graph.layer_outputs:
        raise ModelInputError(f"model {graph.name!r} has no layer {layer!r}; spatial layers: {listing}")
    tensors = graph.layer_outputs[layer]
    shape = shapes.get(tensors[0]) if len(tensors) == 1 else None
    if len(tensors) != 1 or not _is_spatial(shape):
        described = f"output shape {_fmt(shape)}" if shape is not None else f"{len(tensors)} outputs"
        raise ModelInputError(f"layer {layer!r} of model {graph.name!r} is not spatial ({described}; Grad-CAM "
                              f"needs rank 4 with H and W > 1); spatial layers: {listing}")
    if tensors[0] not in ancestors:
        raise ModelInputError(f"layer {layer!r} of model {graph.name!r} does not lead to the class scores; "
                              f"spatial layers: {listing}")
    return layer, tensors[0]


def _listing(names: list[str], limit: int = 12) -> str:
    if not names:
        return "none"
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[-limit:]) + f" (last {limit} of {len(names)})"


def _class_indices(class_index, logits: np.ndarray) -> np.ndarray:
    n, classes = logits.shape
    if class_index is None:
        return np.argmax(logits, axis=1)
    values = np.asarray(class_index)
    if values.ndim == 0:
        values = np.full(n, values)
    if values.shape != (n,) or values.dtype.kind not in "iu":
        raise ModelInputError(f"class_index must be None, an int or {n} ints (one per image), received {class_index!r}")
    bad = [int(v) for v in values if not 0 <= int(v) < classes]
    if bad:
        raise ModelInputError(f"class index {bad[0]} is out of range: the model has {classes} classes (0..{classes - 1})")
    return values.astype(np.int64)


def _fmt(shape) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")
