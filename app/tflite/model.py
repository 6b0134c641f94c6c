"""``load(data, name, card)``: a TFLite model behind the engine's Model interface
(``predict``, ``input_shape``, ``output_shape``, ``card``, ``summary``)."""

from __future__ import annotations

import numpy as np

from app.errors import ModelFormatError, ModelInputError
from app.ir import TensorSpec
from app.tflite import quantized as Q
from app.tflite.interpreter import Interpreter


class TFLiteModel:
    """A loaded ``.tflite`` classifier. ``predict`` takes a float32 NHWC batch, quantizes it with
    the input tensor's parameters when the model has integer input (unless the caller already
    passes integers of that type), and returns float32 outputs (dequantized when integer)."""

    format = "tflite"

    def __init__(self, interpreter: Interpreter, name: str, card=None, engine_reason: str | None = None):
        self.interpreter = interpreter
        self.name = name
        self.source = name
        self.card = card
        # why the model runs here and not as an engine graph (e.g. "model input/output 'x' is
        # INT8"): said in errors of features that need the graph, such as Grad-CAM
        self.engine_reason = engine_reason
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        if len(inputs) != 1:
            raise ModelFormatError(f"{name}: Vitrine classifies with single-input models; this "
                                   f"TFLite model has {len(inputs)} inputs")
        self._input = inputs[0]
        self._outputs = outputs
        sig = self._input["shape_signature"]
        self._dynamic_batch = len(sig) > 0 and int(sig[0]) == -1
        self.input_shape = (None,) + tuple(int(d) for d in self._input["shape"][1:])
        self.output_shape = (None,) + tuple(int(d) for d in outputs[0]["shape"][1:])
        self.input_dtype = np.dtype(self._input["dtype"])

    def _prepare(self, x) -> np.ndarray:
        x = np.asarray(x)
        expected = self.input_shape[1:]
        if x.ndim != len(self.input_shape) or tuple(x.shape[1:]) != expected:
            raise ModelInputError(f"{self.name}: expected input of shape (batch, "
                                  f"{', '.join(map(str, expected))}), received {x.shape}")
        if x.dtype == self.input_dtype:
            return x
        if np.issubdtype(self.input_dtype, np.integer):
            if not np.issubdtype(x.dtype, np.floating):
                raise ModelInputError(f"{self.name}: the model takes {self.input_dtype} input; "
                                      f"pass float (quantized for you) or {self.input_dtype}, "
                                      f"received {x.dtype}")
            scale, zero_point = self._input["quantization"]
            if scale == 0:
                raise ModelFormatError(f"{self.name}: integer input tensor has no quantization scale")
            return Q.quantize_float(x.astype(np.float32), scale, zero_point, self.input_dtype)
        return x.astype(self.input_dtype)

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        interp = self.interpreter
        index = self._input["index"]
        interp.resize_tensor_input(index, batch.shape)
        interp.allocate_tensors()
        interp.set_tensor(index, batch)
        interp.invoke()
        outs = []
        for d in self._outputs:
            y = interp.get_tensor(d["index"])
            scale, zero_point = d["quantization"]
            if np.issubdtype(y.dtype, np.integer) and scale:
                y = Q.dequantize(y, scale, zero_point)
            outs.append(y.astype(np.float32, copy=False))
        return outs

    def predict(self, x, *, trace: bool = False):
        """Run the model on a batch; returns the first output (float32, batch first).
        With ``trace=True`` returns ``(output, rows)`` like the engine's Model."""
        if trace:
            return self.predict(x), self.trace(x)
        batch = self._prepare(x)
        if self._dynamic_batch or batch.shape[0] == 1:
            return self._run(batch)[0]
        # A fixed batch-1 signature (e.g. a hard-coded reshape) runs one image at a time.
        return np.concatenate([self._run(batch[i:i + 1])[0] for i in range(batch.shape[0])])

    @property
    def input_shapes(self) -> list[tuple]:
        return [self.input_shape]

    @property
    def output_shapes(self) -> list[tuple]:
        return [(None,) + tuple(int(d) for d in o["shape"][1:]) for o in self._outputs]

    @property
    def inputs(self) -> list[TensorSpec]:
        """The input tensor as ``app.ir.Graph.inputs`` describes one (name, shape with batch None),
        so code that reads ``model.graph.inputs`` of an engine Model can read this the same way."""
        return [TensorSpec(self._input["name"], self.input_shape)]

    @property
    def outputs(self) -> list[TensorSpec]:
        """The output tensors, as ``app.ir.Graph.outputs`` (see :attr:`inputs`)."""
        return [TensorSpec(d["name"], shape) for d, shape in zip(self._outputs, self.output_shapes)]

    @property
    def layer_names(self) -> list[str]:
        """One name per operator: the name of the tensor it produces (TFLite ops are unnamed)."""
        sub = self.interpreter.model_info.subgraphs[0]
        return [sub.tensors[op.outputs[0]].name for op in sub.operators if op.outputs]

    @property
    def param_count(self) -> int:
        sub = self.interpreter.model_info.subgraphs[0]
        return int(sum(t.data.size for t in sub.tensors if t.data is not None))

    def _traced_run(self, x, stop_at: str | None = None):
        """Run one batch calling back per operator; values are dequantized for reporting."""
        sub = self.interpreter.model_info.subgraphs[0]
        rows = []
        captured = {}

        def hook(op, outputs):
            t = sub.tensors[op.outputs[0]]
            value = outputs[0]
            if t.quantization is not None and np.issubdtype(value.dtype, np.integer):
                q = t.quantization
                value = Q.dequantize(value, q.scales, q.zero_points,
                                     q.quantized_dimension if q.per_channel else None)
            value = np.asarray(value, dtype=np.float32)
            rows.append((op, t.name, value))
            if stop_at is not None and t.name == stop_at:
                captured["value"] = value

        batch = self._prepare(x)
        interp = self.interpreter
        index = self._input["index"]
        interp.resize_tensor_input(index, batch.shape)
        interp.allocate_tensors()
        interp.set_tensor(index, batch)
        interp.invoke_with_trace(hook)
        return rows, captured.get("value")

    def trace(self, x) -> list:
        """Per-operator rows (index, tensor name, op, shape, min/max/mean), as app.runtime.TraceRow."""
        from app.runtime import TraceRow  # runtime object; imported lazily to keep layering light

        rows, _ = self._traced_run(x)
        return [TraceRow(index=i, layer=name, op=op.name, output=name, shape=tuple(v.shape),
                         min=float(v.min()) if v.size else 0.0, max=float(v.max()) if v.size else 0.0,
                         mean=float(v.mean()) if v.size else 0.0)
                for i, (op, name, v) in enumerate(rows)]

    def run_until(self, x, layer: str | int) -> np.ndarray:
        """Float value of one operator's output (by tensor name or index in ``layer_names``)."""
        names = self.layer_names
        if isinstance(layer, (int, np.integer)):
            if not -len(names) <= int(layer) < len(names):
                raise ModelInputError(f"layer index {layer} is out of range (model has "
                                      f"{len(names)} layers)")
            layer = names[int(layer)]
        if layer not in names:
            close = [n for n in names if str(layer).lower() in n.lower()][:5]
            raise ModelInputError(f"{self.name}: no layer {layer!r}"
                                  + (f"; did you mean {close}?" if close else ""))
        _, value = self._traced_run(x, stop_at=layer)
        return value

    def summary(self) -> str:
        info = self.interpreter.model_info
        sub = info.subgraphs[0]
        counts: dict[str, int] = {}
        for op in sub.operators:
            counts[op.name] = counts.get(op.name, 0) + 1
        lines = [f"TFLite model {self.name}: {len(sub.operators)} operators, "
                 f"{len(sub.tensors)} tensors",
                 f"  input  {self._input['name']} {self.input_shape} {self.input_dtype}",
                 f"  output {self._outputs[0]['name']} {self.output_shape} "
                 f"{np.dtype(self._outputs[0]['dtype'])}"]
        lines += [f"  {name:<28} x{n}" for name, n in sorted(counts.items())]
        return "\n".join(lines)


def image_input(model, tensor: np.ndarray, standardize=None):
    """What to give ``model.predict`` for a preprocessed image batch ``tensor`` (resized, then
    standardised by the card's ``standardize``).

    TFLite's image-classifier convention: a model with **uint8** input takes the raw pixels (its
    input scale / zero point only say what float values they stand for, e.g. EfficientNet-Lite0's
    0.0126 / 131). So when ``model`` is a :class:`TFLiteModel` with uint8 input and no
    standardisation was applied, the 0..255 pixels are returned as uint8 (fed unchanged); quantizing
    them as floats would saturate the input. Everything else (float and int8 models, a card that
    standardises) gets ``tensor`` unchanged, quantized by ``predict`` when the input is integer."""
    if (isinstance(model, TFLiteModel) and model.input_dtype == np.uint8 and standardize is None
            and np.issubdtype(np.asarray(tensor).dtype, np.floating)):
        return np.clip(np.rint(tensor), 0, 255).astype(np.uint8)
    return tensor


def load(data: bytes, name: str, card=None, *, engine: str = "auto"):
    """Build a model from ``.tflite`` bytes. Raises ModelFormatError / UnsupportedLayerError.

    ``engine="auto"``: a float model whose graph maps onto app.ir is returned as an
    :class:`app.ir.Graph` (``app.load_model`` wraps it in the engine's Model, which adds the
    optimiser, fast GEMM and layer-addressed Grad-CAM); anything else (quantized, hybrid, shape
    arithmetic, ops without IR form) as a :class:`TFLiteModel` on the TFLite interpreter.
    ``engine="interpreter"`` always returns a TFLiteModel."""
    if engine not in ("auto", "interpreter"):
        raise ValueError(f"engine must be 'auto' or 'interpreter', got {engine!r}")
    interp = Interpreter(model_content=data, model_name=name)
    if engine == "auto":
        from app.tflite.to_ir import to_graph

        graph, reason = to_graph(interp.model_info)
        if graph is not None:
            return graph
        return TFLiteModel(interp, name, card, engine_reason=reason)
    return TFLiteModel(interp, name, card, engine_reason="engine='interpreter' was asked for")
