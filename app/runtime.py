"""Executes a :class:`app.ir.Graph` with the kernels of :mod:`app.kernels`.

Planning (once per graph): check every node has a kernel, freeze its attributes into keyword
arguments and compute when each intermediate tensor can be released. Running: a flat loop
``outputs = kernel(*inputs, **attrs)``; no validation, no dispatch on op names. A kernel with a
``prepare`` method (see :mod:`app.kernels`) is prepared on its first run for that node and input
shape, and later runs call the prepared function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .errors import ModelFormatError, UnsupportedLayerError
from .ir import Graph, Node, TensorSpec
from .kernels import KERNELS


@dataclass(frozen=True)
class _Step:
    node: Node
    kwargs: dict
    release: tuple[str, ...]  # tensors whose last reader is this step


@dataclass(frozen=True)
class TraceRow:
    """One line of the debug trace: which node ran, what it produced."""

    index: int
    layer: str
    op: str
    output: str
    shape: tuple[int, ...]
    min: float
    max: float
    mean: float

    def __str__(self):
        return (f"{self.index:4d} {self.layer:<40.40} {self.op:<18} {str(self.shape):<22} "
                f"min={self.min:.5g} max={self.max:.5g} mean={self.mean:.5g}")


class Plan:
    """A graph prepared for repeated execution."""

    def __init__(self, graph: Graph):
        self.graph = graph
        missing = sorted({n.op for n in graph.nodes if n.op not in KERNELS})
        if missing:
            offenders = [f"{n.name} ({n.op})" for n in graph.nodes if n.op in missing][:5]
            raise UnsupportedLayerError(
                f"model {graph.name!r}: no kernel for op(s) {missing} (nodes: {', '.join(offenders)}); "
                f"kernels exist for: {', '.join(sorted(KERNELS))}")
        available = {spec.name for spec in graph.inputs} | set(graph.weights)
        for node in graph.nodes:
            dangling = [name for name in node.inputs if name not in available]
            if dangling:
                raise ModelFormatError(f"model {graph.name!r}: node {node.name!r} ({node.op}) reads {dangling}, which no "
                                       "earlier layer, graph input or weight provides (a broken layer connection)")
            available.update(node.outputs)
        keep = {t.name for t in graph.outputs} | set(graph.weights)
        last_reader: dict[str, int] = {}
        for index, node in enumerate(graph.nodes):
            for name in node.inputs:
                last_reader[name] = index
        releases: dict[int, list[str]] = {}
        for name, index in last_reader.items():
            if name not in keep:
                releases.setdefault(index, []).append(name)
        self.steps = [
            _Step(node, dict(node.attrs), tuple(releases.get(i, ())))
            for i, node in enumerate(graph.nodes)
        ]
        self.producer = {out: i for i, node in enumerate(graph.nodes) for out in node.outputs}
        # per step: (kernel, first input's shape, kernel.prepare(...)'s function or None)
        self._prepared: list[tuple | None] = [None] * len(self.steps)

    def run(self, inputs: list[np.ndarray], *, wanted: Iterable[str] | None = None,
            trace: list | None = None, release: bool = True,
            given: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Run the graph on ``inputs`` (one array per graph input, already validated).

        Returns the environment restricted to ``wanted`` tensor names (default: graph outputs).
        Stops as soon as every wanted tensor exists. With ``trace`` a list, appends a
        :class:`TraceRow` per node output. ``given`` pins intermediate tensors to the arrays
        passed: only nodes the wanted tensors still depend on run (``inputs`` may then be
        empty when nothing needs them)."""
        graph = self.graph
        wanted = tuple(wanted) if wanted is not None else tuple(t.name for t in graph.outputs)
        env: dict[str, np.ndarray] = dict(graph.weights)
        for spec, array in zip(graph.inputs, inputs):
            env[spec.name] = array
        needed = None
        if given:
            env.update(given)
            needed = self._needed(wanted, set(given) | set(env))
        last = max((self.producer.get(name, -1) for name in wanted), default=-1)
        protected = set(wanted)
        for index in range(last + 1):
            if needed is not None and index not in needed:
                continue
            step = self.steps[index]
            node = step.node
            try:
                # looked up per run (one dict access) so app.kernels.replace_kernel applies at once
                kernel = KERNELS[node.op]
                args = [env[name] for name in node.inputs]
                prepared = self._prepared[index]
                shape = getattr(args[0], "shape", None) if args else None
                if prepared is not None and prepared[0] is kernel and prepared[1] == shape:
                    result = prepared[2](*args) if prepared[2] is not None else kernel(*args, **step.kwargs)
                else:
                    result = kernel(*args, **step.kwargs)
                    prepare = getattr(kernel, "prepare", None)
                    if prepare is not None and shape is not None:
                        self._prepared[index] = (kernel, shape, prepare(*args, **step.kwargs))
            except Exception as exc:
                exc.add_note(f"while running node {index} {node.name!r} (op {node.op}, attrs {dict(node.attrs)}) "
                             f"on inputs {[getattr(env.get(n), 'shape', None) for n in node.inputs]}")
                raise
            if len(node.outputs) == 1:
                env[node.outputs[0]] = result
            else:
                for name, value in zip(node.outputs, result):
                    env[name] = value
            if trace is not None:
                for name in node.outputs:
                    trace.append(_trace_row(index, node, name, env[name]))
            if release:
                for name in step.release:
                    if name not in protected:
                        env.pop(name, None)
        return {name: env[name] for name in wanted}


    def _needed(self, wanted, available) -> set[int]:
        """Indices of the nodes the ``wanted`` tensors depend on, stopping at ``available``."""
        needed: set[int] = set()
        stack = [name for name in wanted if name not in available]
        while stack:
            index = self.producer.get(stack.pop())
            if index is None or index in needed:
                continue
            needed.add(index)
            stack.extend(name for name in self.steps[index].node.inputs if name not in available)
        return needed


def _trace_row(index: int, node: Node, name: str, value: np.ndarray) -> TraceRow:
    value = np.asarray(value)
    if value.size:
        finite = value.astype(np.float64)
        lo, hi, avg = float(finite.min()), float(finite.max()), float(finite.mean())
    else:
        lo = hi = avg = float("nan")
    return TraceRow(index, node.name, node.op, name, tuple(value.shape), lo, hi, avg)


def infer_shapes(graph: Graph) -> dict[str, tuple[int | None, ...]] | None:
    """Static shapes of every tensor (batch dim ``None``), found by running the graph on an empty
    batch; ``None`` when an input has unknown non-batch dimensions."""
    feeds = []
    for spec in graph.inputs:
        if any(d is None for d in spec.shape[1:]):
            return None
        feeds.append(np.zeros((0, *spec.shape[1:]), dtype=np.float32))
    plan = Plan(graph)
    env = plan.run(feeds, wanted=[o for n in graph.nodes for o in n.outputs], release=False)
    shapes = {spec.name: (None, *spec.shape[1:]) for spec in graph.inputs}
    for name, value in env.items():
        shape = np.shape(value)
        shapes[name] = (None, *shape[1:]) if len(shape) else ()
    return shapes


# Spatial sizes tried when a model accepts any image size: dims that agree between probes are
# static (e.g. the class count), the others are reported as None.
_PROBE_SIZES = (224, 256)


def probe_shapes(graph: Graph) -> dict[str, tuple[int | None, ...]] | None:
    """Like :func:`infer_shapes`, but for inputs with unknown dims: run empty batches at two
    sizes and keep the dims that do not depend on the size. ``None`` if the probes fail."""
    results = []
    for size in _PROBE_SIZES:
        specs = [TensorSpec(s.name, (None, *(size if d is None else d for d in s.shape[1:])), s.dtype)
                 for s in graph.inputs]
        probe = Graph(nodes=graph.nodes, inputs=specs, outputs=graph.outputs, weights=graph.weights, name=graph.name)
        try:
            results.append(infer_shapes(probe))
        except Exception:  # noqa: BLE001 - a probe size the model cannot take: shapes stay unknown
            return None
    first, second = results
    return {name: tuple(a if a == b else None for a, b in zip(shape, second[name])) if len(shape) == len(second[name])
            else None for name, shape in first.items()}


def memory_report() -> dict:
    """This process's memory high-water mark, for the UI's technical details and the benchmark.

    In Pyodide: the size of the WebAssembly linear memory (``pyodide_js._module.HEAP8.length``),
    which holds every Python object and numpy array of the worker and never shrinks, so it is the
    worker's peak. (The DevTools protocol's ``Runtime.getHeapUsage`` on the worker target does not
    see it: it counts the JS heap and array-buffer backing stores, not wasm memory.) In CPython:
    the peak resident set size (``resource.getrusage``). Returns ``{"heap_bytes": int | None,
    "measure": str}``; ``heap_bytes`` is None where neither source exists."""
    try:
        import pyodide_js  # only inside Pyodide
    except ImportError:
        pass
    else:
        return {"heap_bytes": int(pyodide_js._module.HEAP8.length),
                "measure": "WebAssembly linear memory size (the worker's peak; it never shrinks)"}
    try:
        import resource
    except ImportError:  # Windows
        return {"heap_bytes": None, "measure": "unavailable on this platform"}
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux, in bytes on macOS
    return {"heap_bytes": int(peak if sys.platform == "darwin" else peak * 1024),
            "measure": "peak resident set size of the process (resource.getrusage)"}
