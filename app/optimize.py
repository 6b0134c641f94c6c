"""Load-time graph passes: exact rewrites that make the hot loop cheaper.

* "same" pads -> explicit pads, resize scale -> size (when shapes are static);
* batch-norm -> ``scale_shift``; grouped conv with one channel per group -> depthwise;
* zero ``pad`` folded into the following conv's pads;
* ``scale_shift`` folded into the preceding conv / depthwise / dense / transposed conv (for
  ``conv2d`` as a per-channel ``scale`` input applied in the epilogue, so the loader's kernel is
  shared with the source graph instead of being copied scaled: a ResNet50 keeps one copy of its
  weights, not two);
* a parameterless activation fused into the preceding conv / dense / scale_shift / add;
* a ``scale_shift`` (+ ReLU) read only by a 1x1 conv moved into it as a prologue (DenseNet);
* chains of concats along the channels (DenseNet) sized to grow in one buffer (``capacity``).

A rewrite only fires when the intermediate tensor has no other reader and is not a graph output,
so results are unchanged up to float rounding. ``Graph.layer_outputs`` keeps every layer whose
tensor still exists (a folded batch-norm's name now points at the conv that absorbed it).
"""

from __future__ import annotations

import numpy as np

from .ir import Graph, Node, TensorSpec
from .kernels._util import resolve_pads
from .kernels.activations import FUSABLE_ACTIVATIONS
from .runtime import infer_shapes, probe_shapes

_LINEAR_OPS = ("conv2d", "depthwise_conv2d", "dense", "conv2d_transpose")
_PADDED_OPS = ("conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d")


def annotate_outputs(graph: Graph, shapes=None) -> Graph:
    """The graph with its output TensorSpecs carrying inferred shapes (batch dim None)."""
    shapes = infer_shapes(graph) if shapes is None else shapes
    if shapes is None:
        return graph
    outputs = [TensorSpec(t.name, shapes.get(t.name) or t.shape, t.dtype) for t in graph.outputs]
    return _rebuild(graph, graph.nodes, graph.weights, outputs=outputs)


def optimize(graph: Graph, shapes=None) -> Graph:
    """Return an equivalent, faster graph (see module docstring). ``shapes``: the graph's
    :func:`app.runtime.infer_shapes` result if the caller already has it."""
    shapes = infer_shapes(graph) if shapes is None else shapes
    static = shapes is not None
    work = _Work(graph, shapes if static else probe_shapes(graph))  # probes still give ranks
    if static:
        work.resolve_static_attrs()
    work.batch_norm_to_scale_shift()
    work.grouped_to_depthwise()
    work.merge_zero_pads()
    work.fold_scale_shift()
    work.fuse_activations()
    work.fuse_input_scale_shift()
    if static:
        work.size_concat_buffers()
    return work.result()


class _Work:
    def __init__(self, graph: Graph, shapes):
        self.graph = graph
        self.shapes = shapes or {}
        self.nodes: list[Node] = list(graph.nodes)
        self.weights: dict[str, np.ndarray] = dict(graph.weights)
        self.protected = {t.name for t in graph.outputs}

    # ---- helpers ------------------------------------------------------------------------------

    def _readers(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            for name in node.inputs:
                counts[name] = counts.get(name, 0) + 1
        return counts

    def _producers(self) -> dict[str, int]:
        return {out: i for i, node in enumerate(self.nodes) for out in node.outputs}

    def _new_weight(self, base: str, array: np.ndarray) -> str:
        name, k = base, 1
        while name in self.weights:
            k += 1
            name = f"{base}_{k}"
        self.weights[name] = np.ascontiguousarray(array, dtype=np.float32)
        return name

    def _is_const(self, name: str) -> bool:
        return name in self.weights

    def _merge_into_producer(self, make):
        """For each node whose first input comes from a producer that only it reads, ask
        ``make(producer, node)`` for one node replacing the pair (or None). One forward pass:
        the merged node takes the producer's slot, so chains (conv -> bn -> relu) collapse."""
        nodes: list[Node | None] = list(self.nodes)
        readers = self._readers()
        producers = self._producers()
        for index in range(len(nodes)):
            node = nodes[index]
            if node is None or not node.inputs:
                continue
            source = node.inputs[0]
            p = producers.get(source)
            if p is None or readers.get(source) != 1 or source in self.protected:
                continue
            producer = nodes[p]
            if producer is None or len(producer.outputs) != 1:
                continue
            merged = make(producer, node)
            if merged is None:
                continue
            nodes[p] = merged
            nodes[index] = None
            readers.pop(source, None)
            for name in merged.outputs:
                producers[name] = p
        self.nodes = [n for n in nodes if n is not None]

    # ---- passes -------------------------------------------------------------------------------

    def resolve_static_attrs(self):
        for i, node in enumerate(self.nodes):
            attrs = dict(node.attrs)
            shape = self.shapes.get(node.inputs[0]) if node.inputs else None
            if shape is None or len(shape) != 4:
                continue
            if node.op in _PADDED_OPS and isinstance(attrs.get("pads"), str):
                if node.op in ("conv2d", "depthwise_conv2d"):
                    kernel_hw = self.weights[node.inputs[1]].shape[:2]
                    attrs["pads"] = resolve_pads(attrs["pads"], shape[1], shape[2], kernel_hw, attrs["strides"],
                                                 attrs.get("dilations", (1, 1)))
                else:
                    attrs["pads"] = resolve_pads(attrs["pads"], shape[1], shape[2], attrs["pool"], attrs["strides"])
                self.nodes[i] = _replace(node, attrs=attrs)
            elif node.op == "resize" and attrs.get("size") is None and attrs.get("scale") is not None:
                attrs["size"] = (shape[1] * attrs["scale"][0], shape[2] * attrs["scale"][1])
                attrs.pop("scale")
                self.nodes[i] = _replace(node, attrs=attrs)

    def batch_norm_to_scale_shift(self):
        for i, node in enumerate(self.nodes):
            if node.op != "batch_norm" or not all(self._is_const(n) for n in node.inputs[1:]):
                continue
            rank = len(self.shapes.get(node.inputs[0], ())) if self.shapes else 0
            axis = node.attrs.get("axis", -1)
            if not (axis == -1 or (rank and axis == rank - 1)):
                continue
            gamma, beta, mean, variance = (self.weights[n].astype(np.float64) for n in node.inputs[1:])
            scale = gamma / np.sqrt(variance + node.attrs.get("epsilon", 1e-3))
            shift = beta - mean * scale
            self.nodes[i] = Node(node.name, "scale_shift",
                                 (node.inputs[0], self._new_weight(f"{node.name}/bn_scale", scale),
                                  self._new_weight(f"{node.name}/bn_shift", shift)), node.outputs, {})

    def grouped_to_depthwise(self):
        for i, node in enumerate(self.nodes):
            if node.op != "conv2d" or node.attrs.get("groups", 1) == 1:
                continue
            kernel = self.weights[node.inputs[1]]
            groups = node.attrs["groups"]
            if kernel.shape[2] != 1:
                continue
            kh, kw, _, cout = kernel.shape
            depthwise = kernel.reshape(kh, kw, groups, cout // groups)
            attrs = {k: v for k, v in node.attrs.items() if k != "groups"}
            inputs = (node.inputs[0], self._new_weight(f"{node.name}/depthwise_kernel", depthwise), *node.inputs[2:])
            self.nodes[i] = Node(node.name, "depthwise_conv2d", inputs, node.outputs, attrs)

    def merge_zero_pads(self):
        def make(producer: Node, node: Node):
            if producer.op != "pad" or node.op not in ("conv2d", "depthwise_conv2d"):
                return None
            attrs = producer.attrs
            pads = attrs["pads"]
            if attrs.get("mode", "constant") != "constant" or attrs.get("value", 0.0) != 0.0:
                return None
            if len(pads) != 4 or tuple(pads[0]) != (0, 0) or tuple(pads[3]) != (0, 0):
                return None
            own = node.attrs.get("pads")
            if isinstance(own, str):
                return None
            merged = (own[0] + pads[1][0], own[1] + pads[1][1], own[2] + pads[2][0], own[3] + pads[2][1])
            return Node(node.name, node.op, (producer.inputs[0], *node.inputs[1:]), node.outputs,
                        {**node.attrs, "pads": merged})

        self._merge_into_producer(make)

    def fold_scale_shift(self):
        def make(producer: Node, node: Node):
            if node.op != "scale_shift" or producer.op not in _LINEAR_OPS or node.attrs.get("activation", "linear") != "linear":
                return None
            if producer.attrs.get("activation", "linear") != "linear":
                return None
            if not (self._is_const(node.inputs[1]) and self._is_const(node.inputs[2])):
                return None
            kernel = self.weights[producer.inputs[1]]
            cout = _output_channels(producer.op, kernel)
            scale = self.weights[node.inputs[1]].astype(np.float64)
            shift = self.weights[node.inputs[2]].astype(np.float64)
            if scale.size not in (1, cout) or shift.size not in (1, cout):
                return None
            scale = np.broadcast_to(scale.reshape(-1), (cout,))
            shift = np.broadcast_to(shift.reshape(-1), (cout,))
            bias = self.weights[producer.inputs[2]].astype(np.float64) if len(producer.inputs) > 2 else np.zeros(cout)
            if producer.op == "conv2d":
                # act(conv * scale + bias): the kernel stays as loaded; an earlier epilogue scale s1
                # composes: (conv * s1 + b) * s + t = conv * (s1 * s) + (b * s + t)
                new_bias = bias * scale + shift
                if len(producer.inputs) > 3:
                    scale = scale * self.weights[producer.inputs[3]].astype(np.float64)
                inputs = (producer.inputs[0], producer.inputs[1],
                          self._new_weight(f"{producer.name}/folded_bias", new_bias),
                          self._new_weight(f"{producer.name}/bn_scale", scale))
                return Node(producer.name, producer.op, inputs, node.outputs, producer.attrs)
            new_kernel = _scale_kernel(producer.op, kernel.astype(np.float64), scale)
            inputs = (producer.inputs[0], self._new_weight(f"{producer.name}/folded_kernel", new_kernel),
                      self._new_weight(f"{producer.name}/folded_bias", bias * scale + shift))
            return Node(producer.name, producer.op, inputs, node.outputs, producer.attrs)

        self._merge_into_producer(make)

    def fuse_activations(self):
        def make(producer: Node, node: Node):
            if producer.op not in _LINEAR_OPS + ("scale_shift", "add") or producer.attrs.get("activation", "linear") != "linear":
                return None
            if node.op not in FUSABLE_ACTIVATIONS or len(node.inputs) != 1 or not _default_attrs(node):
                return None
            return Node(producer.name, producer.op, producer.inputs, node.outputs,
                        {**producer.attrs, "activation": node.op})

        self._merge_into_producer(make)

    def fuse_input_scale_shift(self):
        """A scale_shift (+ linear / relu / relu6) read only by a 1x1 conv moves into it as its
        prologue (``in_scale`` / ``in_shift`` / ``in_activation``): DenseNet's batch-norm + ReLU on
        the growing concatenation before each bottleneck, which the SIMD conv applies while it
        gathers its input rows instead of writing the whole normalised tensor first."""
        def make(producer: Node, node: Node):
            if producer.op != "scale_shift" or node.op != "conv2d" or node.attrs.get("groups", 1) != 1:
                return None
            if producer.attrs.get("activation", "linear") not in ("linear", "relu", "relu6") or len(node.inputs) > 4:
                return None
            if not all(self._is_const(n) for n in (*producer.inputs[1:], *node.inputs[1:])):
                return None
            kernel = self.weights[node.inputs[1]]
            if kernel.shape[:2] != (1, 1):
                return None
            cin, cout = kernel.shape[2], kernel.shape[3]
            scale, shift = (self.weights[n] for n in producer.inputs[1:])
            if scale.size not in (1, cin) or shift.size not in (1, cin):
                return None
            inputs = list(node.inputs)
            if len(inputs) < 3:  # no bias: an exact zero one (x + 0 == x)
                inputs.append(self._new_weight(f"{node.name}/zero_bias", np.zeros(cout)))
            if len(inputs) < 4:  # no epilogue scale: an exact one (x * 1 == x)
                inputs.append(self._new_weight(f"{node.name}/unit_scale", np.ones(cout)))
            inputs += [self._new_weight(f"{node.name}/in_scale", np.broadcast_to(scale.reshape(-1), (cin,))),
                       self._new_weight(f"{node.name}/in_shift", np.broadcast_to(shift.reshape(-1), (cin,)))]
            inputs[0] = producer.inputs[0]
            return Node(node.name, "conv2d", tuple(inputs), node.outputs,
                        {**node.attrs, "in_activation": producer.attrs.get("activation", "linear")})

        self._merge_into_producer(make)

    def size_concat_buffers(self):
        """A chain of concats along the last axis, each extending the previous one (DenseNet's
        dense blocks: x = concat(x, conv(x))), gets ``capacity`` = the last one's channels: the
        kernel then writes each concat's new channels behind the previous ones in one buffer
        instead of copying the whole growing tensor every time (see app.kernels.shape.concat)."""
        producers = self._producers()

        def on_last_axis(node: Node) -> bool:
            rank = len(self.shapes.get(node.outputs[0]) or ())
            axis = node.attrs.get("axis", -1)
            return node.op == "concat" and bool(node.inputs) and rank >= 1 and axis in (-1, rank - 1)

        extends: dict[int, int] = {}  # concat index -> the concat that extends its output
        for index, node in enumerate(self.nodes):
            if on_last_axis(node):
                source = producers.get(node.inputs[0])
                if source is not None and on_last_axis(self.nodes[source]) and source not in extends:
                    extends[source] = index
        extended = set(extends.values())
        for head in (i for i in extends if i not in extended):
            chain = [head]
            while chain[-1] in extends:
                chain.append(extends[chain[-1]])
            channels = (self.shapes.get(self.nodes[chain[-1]].outputs[0]) or (None,))[-1]
            if not isinstance(channels, int):
                continue
            for index in chain:
                self.nodes[index] = _replace(self.nodes[index], attrs={**self.nodes[index].attrs, "capacity": channels})

    def result(self) -> Graph:
        used = {name for node in self.nodes for name in node.inputs}
        weights = {k: v for k, v in self.weights.items() if k in used}
        return _rebuild(self.graph, self.nodes, weights)


def _default_attrs(node: Node) -> bool:
    attrs = dict(node.attrs)
    if node.op == "gelu":
        return not attrs.get("approximate", False)
    if node.op == "elu":
        return attrs.get("alpha", 1.0) == 1.0
    return not attrs


def _output_channels(op: str, kernel: np.ndarray) -> int:
    if op == "depthwise_conv2d":
        return kernel.shape[2] * kernel.shape[3]
    if op == "conv2d_transpose":
        return kernel.shape[2]
    return kernel.shape[-1]


def _scale_kernel(op: str, kernel: np.ndarray, scale: np.ndarray) -> np.ndarray:
    if op == "depthwise_conv2d":
        return kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    if op == "conv2d_transpose":
        return kernel * scale[:, None]
    return kernel * scale


def _replace(node: Node, **changes) -> Node:
    return Node(changes.get("name", node.name), changes.get("op", node.op), changes.get("inputs", node.inputs),
                changes.get("outputs", node.outputs), changes.get("attrs", node.attrs))


def _rebuild(graph: Graph, nodes, weights, outputs=None) -> Graph:
    alive = {spec.name for spec in graph.inputs} | {o for n in nodes for o in n.outputs} | set(weights)
    layer_outputs = {k: v for k, v in graph.layer_outputs.items() if all(t in alive for t in v)}
    return Graph(nodes=nodes, inputs=graph.inputs, outputs=outputs if outputs is not None else graph.outputs,
                 weights=weights, name=graph.name, layer_outputs=layer_outputs)
