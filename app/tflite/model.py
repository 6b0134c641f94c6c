"""``load(data, name, card)``: a TFLite model behind the engine's Model interface
(``predict``, ``input_shape``, ``output_shape``, ``card``, ``summary``)."""

from __future__ import annotations

import numpy as np

from app.errors import ModelFormatError, ModelInputError
from app.tflite import quantized as Q
from app.tflite.interpreter import Interpreter


class TFLiteModel:
    """A loaded ``.tflite`` classifier. ``predict`` takes a float32 NHWC batch, quantizes it with
    the input tensor's parameters when the model has integer input (unless the caller already
    passes integers of that type), and returns float32 outputs (dequantized when integer)."""

    def __init__(self, interpreter: Interpreter, name: str, card=None):
        self.interpreter = interpreter
        self.name = name
        self.card = card
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

    def predict(self, x) -> np.ndarray:
        """Run the model on a batch; returns the first output (float32, batch first)."""
        batch = self._prepare(x)
        if self._dynamic_batch or batch.shape[0] == 1:
            return self._run(batch)[0]
        # A fixed batch-1 signature (e.g. a hard-coded reshape) runs one image at a time.
        return np.concatenate([self._run(batch[i:i + 1])[0] for i in range(batch.shape[0])])

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


def load(data: bytes, name: str, card=None) -> TFLiteModel:
    """Build a model from ``.tflite`` bytes. Raises ModelFormatError / UnsupportedLayerError."""
    interp = Interpreter(model_content=data, model_name=name)
    return TFLiteModel(interp, name, card)
