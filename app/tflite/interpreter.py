"""``Interpreter``: the ``tflite_runtime.interpreter.Interpreter`` API on pure numpy.

Runs subgraph 0 (or a signature's subgraph) operator by operator through ``ops.HANDLERS``.
Every operator computes from the arrays it receives, so ``resize_tensor_input`` only has to
record the new input shape; ``allocate_tensors`` plans the output shapes the detail dicts report
before the next ``invoke`` (``shapes.plan_shapes``, as LiteRT's Prepare steps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.errors import ModelFormatError, ModelInputError, UnsupportedLayerError
from app.tflite.loader import ModelInfo, SubGraphInfo, TensorInfo, parse_model
from app.tflite.ops import HANDLERS, SUPPORTED_OPS, Call
from app.tflite.shapes import plan_shapes


class TensorValueError(ModelInputError, ValueError):
    """A value given to ``set_tensor`` / ``resize_tensor_input`` does not fit the tensor.
    Also a ValueError, as tflite_runtime raises, so ported code keeps working."""


class InterpreterStateError(ModelInputError, RuntimeError):
    """A call made in the wrong order (e.g. ``invoke`` before ``allocate_tensors``)."""


# Operators whose output type legitimately differs from their (8-bit) data input.
_TYPE_CHANGING_OPS = {"QUANTIZE", "DEQUANTIZE", "CAST", "ARG_MAX", "SHAPE"}


def check_supported(model: ModelInfo) -> None:
    """Raise UnsupportedLayerError for the first operator Vitrine cannot run."""
    for sub_index, sub in enumerate(model.subgraphs):
        for op in sub.operators:
            if op.name == "CUSTOM":
                code = op.custom_code
                hint = ""
                if isinstance(code, str) and code.startswith("Flex") and len(code) > 4:
                    # the converter's SELECT_TF_OPS keeps a TensorFlow op, run by TensorFlow's Flex delegate
                    hint = (f" (the TensorFlow op {code[4:]} kept by the converter's SELECT_TF_OPS, which only "
                            f"TensorFlow's Flex delegate runs; convert with TFLite builtin operators only)")
                raise UnsupportedLayerError(
                    f"{model.source}: subgraph {sub_index} {op.label} is a custom operator "
                    f"{code!r}{hint}; custom TFLite operators cannot run in Vitrine")
            if op.name not in HANDLERS:
                raise UnsupportedLayerError(
                    f"{model.source}: subgraph {sub_index} {op.label}: TFLite builtin operator "
                    f"{op.name} is not supported. Supported: {', '.join(SUPPORTED_OPS)}")
            data_in = sub.tensors[op.inputs[0]] if op.inputs and op.inputs[0] >= 0 else None
            if (data_in is not None and data_in.type_name in ("INT8", "UINT8")
                    and op.name not in _TYPE_CHANGING_OPS):
                for i in op.outputs:
                    if sub.tensors[i].type_name not in ("INT8", "UINT8"):
                        raise ModelFormatError(
                            f"{model.source}: {op.label} has {data_in.type_name} input but "
                            f"{sub.tensors[i].type_name} output {sub.tensors[i].name!r}")
            for i in op.inputs + op.outputs:
                t = sub.tensors[i] if i >= 0 else None
                if t is not None and t.type_name in ("INT8", "UINT8"):
                    q = t.quantization
                    if q is None and op.name not in ("CAST", "GATHER", "ARG_MAX", "SHAPE"):
                        raise ModelFormatError(
                            f"{model.source}: {op.label}: {t.type_name} tensor {t.name!r} has no "
                            f"quantization parameters (scale / zero point)")
                    if q is not None and not (np.isfinite(q.scales).all() and (q.scales > 0).all()):
                        raise ModelFormatError(
                            f"{model.source}: {op.label}: tensor {t.name!r} has invalid "
                            f"quantization scales {q.scales[:4].tolist()} (must be finite and > 0)")
                if t is not None and t.type_name == "INT16" and t.quantization is not None:
                    raise UnsupportedLayerError(
                        f"{model.source}: {op.label} uses int16 activations (16x8 quantization, "
                        f"tensor {t.name!r}); only float, float16 weights, dynamic-range and "
                        f"8-bit (int8/uint8) quantized models are supported")


def _quant_details(t: TensorInfo) -> tuple[tuple[float, int], dict]:
    """``quantization`` and ``quantization_parameters`` as LiteRT 2.3 reports them (its
    ``block_size`` is for blockwise quantization, which Vitrine refuses at load: always 0)."""
    q = t.quantization
    if q is None:
        return (0.0, 0), {"scales": np.zeros(0, np.float32), "zero_points": np.zeros(0, np.int32),
                          "quantized_dimension": 0, "block_size": 0}
    return ((float(q.scales[0]), int(q.zero_points[0])) if q.scales.size == 1 else (0.0, 0),
            {"scales": q.scales.astype(np.float32).copy(),
             "zero_points": q.zero_points.astype(np.int32),
             "quantized_dimension": int(q.quantized_dimension), "block_size": 0})


class _Executor:
    """State of one subgraph: current tensor values and input shapes."""

    def __init__(self, model: ModelInfo, sub_index: int):
        self.model = model
        self.sub: SubGraphInfo = model.subgraphs[sub_index]
        self.input_shapes = {i: tuple(self.sub.tensors[i].shape) for i in self.sub.inputs}
        self.values: dict[int, np.ndarray] = {}
        self.caches = [dict() for _ in self.sub.operators]
        self.allocated = False
        # Operator outputs' shapes planned by allocate(), reported until invoke computes them.
        self.planned: dict[int, tuple[int, ...]] = {}
        # DEQUANTIZE of a constant (float16 / int8 weights) gives the same array every run:
        # computed once, then skipped (tflite-micro's "prepare once" habit).
        self.folded: dict[int, np.ndarray] = {}

    def allocate(self) -> None:
        self.planned = plan_shapes(self.sub, self.input_shapes)
        self.allocated = True

    def details(self, index: int) -> dict:
        t = self.sub.tensors[index]
        shape = self.input_shapes.get(index)
        if shape is None:
            shape = self.planned.get(index)
        if shape is None:
            shape = self.values[index].shape if index in self.values else t.shape
        quantization, params = _quant_details(t)
        return {"name": t.name, "index": index, "shape": np.array(shape, np.int32),
                "shape_signature": np.array(t.shape_signature, np.int32),
                "dtype": t.dtype.type if t.dtype is not None else None,
                "quantization": quantization, "quantization_parameters": params,
                "sparsity_parameters": {}}

    def set(self, index: int, value) -> None:
        t = self.sub.tensors[index]
        if index not in self.input_shapes:
            raise TensorValueError(f"{self.model.source}: tensor {index} ({t.name!r}) is not an "
                                   f"input of the model; inputs are {list(self.sub.inputs)}")
        arr = np.asarray(value)
        if arr.dtype != t.dtype:
            raise TensorValueError(
                f"{self.model.source}: cannot set tensor: got value of type {arr.dtype} but "
                f"expected type {t.dtype} for input {index}, name: {t.name}")
        expected = self.input_shapes[index]
        if tuple(arr.shape) != tuple(expected):
            raise TensorValueError(
                f"{self.model.source}: cannot set tensor: dimension mismatch. Got shape "
                f"{tuple(arr.shape)} but expected {tuple(expected)} for input {index}, "
                f"name: {t.name} (call resize_tensor_input first to change it)")
        self.values[index] = arr.copy()

    def resize(self, index: int, shape) -> None:
        t = self.sub.tensors[index]
        if index not in self.input_shapes:
            raise TensorValueError(f"{self.model.source}: tensor {index} ({t.name!r}) is not an "
                                   f"input and cannot be resized")
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(t.shape) or any(d < 0 for d in shape):
            raise TensorValueError(f"{self.model.source}: cannot resize input {t.name!r} of rank "
                                   f"{len(t.shape)} to {shape}")
        for dim, (new, sig) in enumerate(zip(shape, t.shape_signature)):
            if sig != -1 and new != sig and not (dim == 0 and sig == 1):
                raise TensorValueError(
                    f"{self.model.source}: input {t.name!r} dimension {dim} is fixed to {sig} "
                    f"(shape_signature {tuple(t.shape_signature)}), cannot resize to {new}")
        self.input_shapes[index] = shape
        self.allocated = False

    def run(self, trace=None) -> None:
        if not self.allocated:
            raise InterpreterStateError(f"{self.model.source}: call allocate_tensors() before "
                                        f"invoke()")
        tensors = self.sub.tensors
        for index in self.sub.inputs:
            if index not in self.values:
                raise InterpreterStateError(f"{self.model.source}: input {index} "
                                            f"({tensors[index].name!r}) was never set")
        values = self.values
        values.update(self.folded)
        for op, cache in zip(self.sub.operators, self.caches):
            if op.outputs and op.outputs[0] in self.folded:
                self.planned.pop(op.outputs[0], None)
                if trace is not None:
                    trace(op, [values[i] for i in op.outputs])
                continue
            inputs, in_t = [], []
            for i in op.inputs:
                if i < 0:
                    inputs.append(None)
                    in_t.append(None)
                    continue
                t = tensors[i]
                arr = t.data if t.data is not None else values.get(i)
                if arr is None:
                    raise ModelFormatError(f"{self.model.source}: {op.label} reads tensor {i} "
                                           f"({t.name!r}) before any operator produced it")
                inputs.append(arr)
                in_t.append(t)
            out_t = [tensors[i] for i in op.outputs]
            try:
                outs = HANDLERS[op.name](Call(op, inputs, in_t, out_t, cache))
            except (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError,
                    OverflowError, MemoryError) as exc:
                shapes = [None if a is None else a.shape for a in inputs]
                raise ModelFormatError(f"{self.model.source}: {op.label} failed on input "
                                       f"shapes {shapes}: {exc}") from exc
            if len(outs) != len(op.outputs):
                raise ModelFormatError(f"{self.model.source}: {op.label} produced {len(outs)} "
                                       f"outputs, the model declares {len(op.outputs)}")
            for i, arr in zip(op.outputs, outs):
                want = tensors[i].dtype
                values[i] = arr if want is None or arr.dtype == want else arr.astype(want)
                self.planned.pop(i, None)
            if op.name == "DEQUANTIZE" and all(i >= 0 and tensors[i].data is not None for i in op.inputs):
                self.folded[op.outputs[0]] = values[op.outputs[0]]
            if trace is not None:
                trace(op, [values[i] for i in op.outputs])


class Interpreter:
    """Pure-numpy stand-in for ``tflite_runtime.interpreter.Interpreter``.

    ``Interpreter(model_path=None, model_content=None)``; extra tflite_runtime keyword
    arguments (``num_threads``, ``experimental_delegates``, ``experimental_op_resolver_type``,
    ``experimental_preserve_all_tensors``) are accepted and ignored: there is one CPU backend.
    ``model_name`` (Vitrine extra) names the model in error messages.
    """

    def __init__(self, model_path=None, model_content=None, experimental_delegates=None,
                 num_threads=None, experimental_op_resolver_type=None,
                 experimental_preserve_all_tensors=False, *, model_name: str | None = None):
        if (model_path is None) == (model_content is None):
            raise ValueError("pass exactly one of model_path or model_content")
        if model_path is not None:
            source = str(model_path)
            try:
                data = Path(model_path).read_bytes()
            except OSError as exc:
                raise ModelFormatError(f"{source}: cannot read model file: {exc.strerror}") from None
        else:
            source = model_name or "model_content"
            data = bytes(model_content)
        self._model = parse_model(data, source)
        check_supported(self._model)
        self._exec = _Executor(self._model, 0)

    # -------------------------------------------------------------- tflite_runtime API
    def allocate_tensors(self) -> None:
        self._exec.allocate()

    def get_input_details(self) -> list[dict]:
        return [self._exec.details(i) for i in self._exec.sub.inputs]

    def get_output_details(self) -> list[dict]:
        return [self._exec.details(i) for i in self._exec.sub.outputs]

    def get_tensor_details(self) -> list[dict]:
        return [self._exec.details(i) for i in range(len(self._exec.sub.tensors))]

    def set_tensor(self, tensor_index: int, value) -> None:
        self._check_index(tensor_index)
        self._exec.set(tensor_index, value)

    def get_tensor(self, tensor_index: int, subgraph_index: int = 0) -> np.ndarray:
        self._check_index(tensor_index)
        t = self._exec.sub.tensors[tensor_index]
        if t.data is not None:
            return np.array(t.data)
        if tensor_index not in self._exec.values:
            raise InterpreterStateError(f"{self._model.source}: tensor {tensor_index} "
                                        f"({t.name!r}) has no value yet; call invoke() first")
        return self._exec.values[tensor_index].copy()

    def tensor(self, tensor_index: int):
        """tflite_runtime returns a callable giving a live view; here a snapshot callable."""
        return lambda: self.get_tensor(tensor_index)

    def resize_tensor_input(self, input_index: int, tensor_size, strict: bool = False) -> None:
        self._check_index(input_index)
        self._exec.resize(input_index, tensor_size)

    def invoke(self) -> None:
        self._exec.run()

    def reset_all_variables(self) -> None:
        """No variable tensors are kept between calls in Vitrine's image models."""

    def get_signature_list(self) -> dict:
        return {s.key: {"inputs": list(s.inputs), "outputs": list(s.outputs)}
                for s in self._model.signatures}

    def get_signature_runner(self, signature_key: str | None = None) -> "SignatureRunner":
        signatures = self._model.signatures
        if not signatures:
            raise ValueError(f"{self._model.source}: the model has no signature definitions")
        if signature_key is None:
            if len(signatures) != 1:
                raise ValueError(f"{self._model.source}: the model has {len(signatures)} "
                                 f"signatures; pass signature_key")
            return SignatureRunner(self._model, signatures[0])
        for sig in signatures:
            if sig.key == signature_key:
                return SignatureRunner(self._model, sig)
        raise ValueError(f"{self._model.source}: no signature {signature_key!r}; available: "
                         f"{[s.key for s in signatures]}")

    # -------------------------------------------------------------- Vitrine extras
    @property
    def model_info(self) -> ModelInfo:
        return self._model

    def invoke_with_trace(self, trace) -> None:
        """``invoke`` calling ``trace(operator, outputs)`` after each operator (debugging)."""
        self._exec.run(trace)

    def _check_index(self, index: int) -> None:
        n = len(self._exec.sub.tensors)
        if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < n:
            raise TensorValueError(f"{self._model.source}: tensor index {index!r} is out of range "
                                   f"(the model has {n} tensors)")


class SignatureRunner:
    """``interpreter.get_signature_runner()``: call with keyword inputs, get a dict of outputs."""

    def __init__(self, model: ModelInfo, signature):
        self._signature = signature
        self._exec = _Executor(model, signature.subgraph_index)
        self._model = model

    def get_input_details(self) -> dict:
        return {name: self._exec.details(i) for name, i in self._signature.inputs.items()}

    def get_output_details(self) -> dict:
        return {name: self._exec.details(i) for name, i in self._signature.outputs.items()}

    def __call__(self, **inputs) -> dict:
        expected = set(self._signature.inputs)
        if set(inputs) != expected:
            raise TensorValueError(f"{self._model.source}: signature {self._signature.key!r} "
                                   f"takes inputs {sorted(expected)}, got {sorted(inputs)}")
        for name, value in inputs.items():
            index = self._signature.inputs[name]
            arr = np.asarray(value)
            if tuple(arr.shape) != self._exec.input_shapes[index]:
                self._exec.resize(index, arr.shape)
            self._exec.set(index, arr)
        self._exec.allocated = True
        self._exec.run()
        return {name: self._exec.values[i].copy() for name, i in self._signature.outputs.items()}
