"""The object ``app.load_model`` returns: predict, debug trace, run-up-to-layer, summary."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .errors import ModelFormatError, ModelInputError
from .ir import Graph
from .optimize import annotate_outputs, optimize as optimize_graph
from .runtime import Plan, TraceRow, infer_shapes, probe_shapes


class Model:
    """A runnable model.

    ``graph`` is the optimised IR that ``predict`` runs; ``source_graph`` is the graph exactly as
    the loader built it (one node per original layer step), used by :meth:`trace` and
    :meth:`run_until` so every original layer is observable.

    Shapes: ``input_shape`` / ``output_shape`` are tuples with ``None`` for the batch dim when the
    model has one input / output, and lists of such tuples when it has several.
    """

    def __init__(self, graph: Graph, *, card: Any = None, source: str = "", format: str = "tfjs-layers",
                 optimize: bool = True):
        self.source = source
        self.format = format
        self.card = card
        try:
            static_shapes = infer_shapes(graph)
            self._shapes = static_shapes or probe_shapes(graph)
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            # the layers do not fit together (e.g. a kernel expecting other channels than it gets)
            notes = "; ".join(getattr(exc, "__notes__", []))
            raise ModelFormatError(f"{source or graph.name}: the model's layers do not fit its input shape: "
                                   f"{exc} ({notes})") from exc
        self.source_graph = annotate_outputs(graph, self._shapes)
        self.graph = optimize_graph(self.source_graph, static_shapes) if optimize else self.source_graph
        self._plan = Plan(self.graph)
        self._source_plan: Plan | None = None

    # ---- shapes -------------------------------------------------------------------------------

    @property
    def input_shapes(self) -> list[tuple]:
        return [tuple(spec.shape) for spec in self.graph.inputs]

    @property
    def output_shapes(self) -> list[tuple]:
        return [tuple(spec.shape) for spec in self.graph.outputs]

    @property
    def input_shape(self):
        shapes = self.input_shapes
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = self.output_shapes
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def layer_names(self) -> list[str]:
        """Addressable layer names in execution order (for :meth:`run_until`, Grad-CAM)."""
        return list(self.source_graph.layer_outputs)

    # ---- running ------------------------------------------------------------------------------

    def check_input(self, x) -> list[np.ndarray]:
        """Validate ``x`` as :meth:`predict` does (count, dtype, shape, batch) and return one
        C-contiguous float32 array per graph input; raises :class:`ModelInputError`."""
        return self._feeds(x)

    def _feeds(self, x) -> list[np.ndarray]:
        arrays = list(x) if isinstance(x, (list, tuple)) else [x]
        specs = self.graph.inputs
        if len(arrays) != len(specs):
            raise ModelInputError(f"model {self.graph.name!r} expects {len(specs)} input array(s), received {len(arrays)}")
        feeds = []
        batch = None
        for spec, array in zip(specs, arrays):
            array = np.asarray(array)
            if array.dtype.kind != "f":
                raise ModelInputError(f"input {spec.name!r}: expected a float array (float32), received dtype "
                                      f"{array.dtype}; convert and preprocess the image first")
            expected = tuple(spec.shape)
            if array.ndim != len(expected) or any(e is not None and e != r for e, r in zip(expected[1:], array.shape[1:])):
                hint = " (add a batch axis: x[None])" if array.ndim == len(expected) - 1 else ""
                raise ModelInputError(f"input {spec.name!r}: expected shape {_fmt(expected)}, received "
                                      f"{tuple(array.shape)}{hint}")
            if batch is not None and array.shape[0] != batch:
                raise ModelInputError(f"input {spec.name!r}: batch size {array.shape[0]} differs from the first input's {batch}")
            batch = array.shape[0]
            feeds.append(np.ascontiguousarray(array, dtype=np.float32))
        return feeds

    def predict(self, x, *, trace: bool = False, batch_size: int | None = None):
        """Run the model on a float NHWC batch (a list of arrays for several inputs).

        Returns float32: an array for one output, a list for several. ``batch_size`` runs the
        batch in chunks of that many images (bounds peak memory; results are concatenated).
        With ``trace=True`` returns ``(outputs, rows)`` where ``rows`` is :meth:`trace`'s table."""
        if batch_size is not None and not trace:
            if not isinstance(batch_size, int) or batch_size < 1:
                raise ModelInputError(f"batch_size must be a positive int, received {batch_size!r}")
            feeds = self._feeds(x)
            total = feeds[0].shape[0]
            if total > batch_size:
                chunks = [self.predict([f[i:i + batch_size] for f in feeds]) for i in range(0, total, batch_size)]
                if isinstance(chunks[0], list):
                    return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]
                return np.concatenate(chunks)
        if trace:
            rows: list[TraceRow] = []
            feeds = self._feeds(x)
            env = self._get_source_plan().run(feeds, trace=rows)
            return self._pack([env[t.name] for t in self.source_graph.outputs]), rows
        feeds = self._feeds(x)
        try:
            env = self._plan.run(feeds)
        except ValueError as exc:
            if self._shapes is not None and infer_shapes(self.graph) is not None:
                raise  # static shapes were validated: this is a bug, not bad input
            notes = "; ".join(getattr(exc, "__notes__", []))
            raise ModelInputError(f"model {self.graph.name!r} cannot run on input shape(s) "
                                  f"{[tuple(f.shape) for f in feeds]}: {exc} ({notes})") from exc
        return self._pack([env[t.name] for t in self.graph.outputs])

    def trace(self, x) -> list[TraceRow]:
        """Per-layer debug rows (layer, op, output shape, min/max/mean) over the unoptimised graph."""
        rows: list[TraceRow] = []
        self._get_source_plan().run(self._feeds(x), trace=rows)
        return rows

    @property
    def tensor_shapes(self) -> dict[str, tuple] | None:
        """Shape of every tensor of :attr:`source_graph` (batch dim ``None``), or ``None`` when
        the model's shapes depend on its input size."""
        return dict(self._shapes) if self._shapes else None

    def gradcam(self, x, class_index=None, layer=None, upsample=True):
        """Grad-CAM heatmaps ``(N, H, W)`` float32 in [0, 1]; see :func:`app.explain.gradcam`."""
        from .explain import gradcam

        return gradcam(self, x, class_index=class_index, layer=layer, upsample=upsample)

    def run_until(self, x, layer: str | int):
        """Output of one original layer (by name or index in :attr:`layer_names`), computing only
        what it needs. An array, or a list when the layer has several outputs."""
        layer = self._layer_name(layer)
        tensors = self.source_graph.layer_outputs[layer]
        feeds = self._feeds(x)
        env = self._get_source_plan().run(feeds, wanted=tensors)
        values = [np.asarray(env[t], dtype=np.float32) for t in tensors]
        return values[0] if len(values) == 1 else values

    def run_from(self, layer: str | int, value, x=None):
        """Model outputs when ``layer``'s output is replaced by ``value`` (e.g. a masked feature
        map for Score-CAM or occlusion); only the layers after it run. ``x`` is needed too when
        some output also depends on the input by another path. Returns like :meth:`predict`."""
        name = self._layer_name(layer)
        tensors = self.source_graph.layer_outputs[name]
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(values) != len(tensors):
            raise ModelInputError(f"layer {name!r} has {len(tensors)} output(s), received {len(values)} array(s)")
        given = {}
        for tensor, array in zip(tensors, values):
            array = np.ascontiguousarray(array, dtype=np.float32)
            expected = self._shapes.get(tensor) if self._shapes else None
            if expected is not None and (array.ndim != len(expected) or any(
                    e is not None and e != r for e, r in zip(expected[1:], array.shape[1:]))):
                raise ModelInputError(f"layer {name!r}: expected shape {_fmt(expected)}, received {tuple(array.shape)}")
            given[tensor] = array
        feeds = self._feeds(x) if x is not None else []
        try:
            env = self._get_source_plan().run(feeds, given=given)
        except KeyError as exc:
            raise ModelInputError(f"the outputs also depend on the model input (tensor {exc.args[0]!r}) by a path "
                                  f"that bypasses layer {name!r}; pass x as well") from None
        return self._pack([env[t.name] for t in self.source_graph.outputs])

    def _layer_name(self, layer: str | int) -> str:
        names = self.layer_names
        if isinstance(layer, (int, np.integer)):
            if not -len(names) <= int(layer) < len(names):
                raise ModelInputError(f"layer index {layer} is out of range (model has {len(names)} layers)")
            return names[int(layer)]
        if layer not in self.source_graph.layer_outputs:
            close = [n for n in names if str(layer).lower() in n.lower()][:5]
            raise ModelInputError(f"model {self.graph.name!r} has no layer {layer!r}"
                                  + (f"; did you mean {close}?" if close else ""))
        return layer

    def _get_source_plan(self) -> Plan:
        if self._source_plan is None:
            self._source_plan = Plan(self.source_graph)
        return self._source_plan

    @staticmethod
    def _pack(values: Sequence[np.ndarray]):
        values = [np.asarray(v, dtype=np.float32) for v in values]
        return values[0] if len(values) == 1 else values

    # ---- description --------------------------------------------------------------------------

    @property
    def param_count(self) -> int:
        """Stored weight values of the source graph (manifest weights plus constants taken from
        layer configs, e.g. Rescaling's scale and offset)."""
        return int(sum(w.size for w in self.source_graph.weights.values()))

    def summary(self) -> str:
        """Readable description: one line per original layer step (op, output shape, params)."""
        g = self.source_graph
        lines = [f"Model {g.name!r} ({self.format}{', ' + self.source if self.source else ''})",
                 f"inputs:  " + ", ".join(f"{s.name} {_fmt(s.shape)}" for s in g.inputs),
                 f"outputs: " + ", ".join(f"{s.name} {_fmt(s.shape)}" for s in g.outputs),
                 f"{'layer':<44} {'op':<18} {'output shape':<22} {'params':>10}",
                 "-" * 97]
        for node in g.nodes:
            params = sum(g.weights[n].size for n in node.inputs if n in g.weights)
            shape = self._shapes.get(node.outputs[0]) if self._shapes else None
            lines.append(f"{node.name:<44.44} {node.op:<18} {_fmt(shape) if shape is not None else '?':<22} {params:>10,}")
        lines.append("-" * 97)
        lines.append(f"{len(g.nodes)} nodes ({len(self.graph.nodes)} after folding/fusion), "
                     f"{self.param_count:,} parameters")
        return "\n".join(lines)

    def __repr__(self):
        return f"<Model {self.graph.name!r} {self.format} in={self.input_shape} out={self.output_shape}>"


def _fmt(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")
