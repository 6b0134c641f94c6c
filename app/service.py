"""The engine service: every call the page makes to the Pyodide worker, as pure Python.

The worker (``workers/engine.py``) is thin glue: it converts the JS request to a ``str`` and the
optional ``Uint8Array`` payload to ``bytes``, calls :meth:`EngineService.handle_json` and hands
the JSON reply back. Everything here runs and is tested under plain CPython
(``tests/service/``). The protocol is documented once, in ``docs/worker-api.md``; later features
add calls to :data:`EngineService.calls` instead of inventing another channel.

Request (JSON object)::

    {"call": "load_model", "id": "job-7", "args": {"name": "densenet.zip"}}

plus an optional binary payload (a model zip, an image file) passed beside the JSON.

Reply::

    {"ok": true,  "id": "job-7", "call": "load_model", "result": {...}}
    {"ok": false, "id": "job-7", "call": "load_model",
     "error": {"type": "ModelFormatError", "message": "...", "file": "densenet.zip",
               "internal": false}}

Deliberate errors (subclasses of :class:`app.errors.VitrineError`) keep their class name as
``type``; anything else is a bug and is reported as ``{"type": "InternalError", "internal": true}``
with the original exception class and message in ``detail``.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import platform
import sys
import traceback
from importlib.util import find_spec
from typing import Any, Callable, Mapping

from . import IN_PYODIDE, __version__
from .errors import VitrineError

API_VERSION = 1

ProgressCallback = Callable[[dict], None]


class ServiceRequestError(VitrineError):
    """A request does not follow the worker protocol (unknown call, missing or mistyped argument)."""


class UnavailableCallError(VitrineError):
    """A call is part of the protocol but the module implementing it is not in this build."""


def _require(args: Mapping[str, Any], call: str, key: str, kind: type | tuple[type, ...]):
    if key not in args:
        raise ServiceRequestError(f"call {call!r}: missing argument {key!r}")
    value = args[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ServiceRequestError(
            f"call {call!r}: argument {key!r} must be {expected}, received {type(value).__name__} {value!r}"
        )
    return value


def _engine_function(module_name: str, function_name: str, call: str) -> Callable:
    """A function another part of Vitrine provides, imported on first use; absence is a clear error."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UnavailableCallError(f"call {call!r} needs {module_name}, which is not part of this build") from exc
    function = getattr(module, function_name, None)
    if function is None:
        raise UnavailableCallError(f"call {call!r} needs {module_name}.{function_name}, which is not part of this build")
    return function


def error_payload(exc: BaseException) -> dict:
    """The protocol's error object for ``exc`` (see the module docstring)."""
    if isinstance(exc, VitrineError):
        error = {"type": type(exc).__name__, "message": str(exc), "internal": False}
        for attribute in ("file", "filename", "layer", "record"):
            value = getattr(exc, attribute, None)
            if isinstance(value, (str, int)):
                error["file" if attribute == "filename" else attribute] = value
        return error
    return {
        "type": "InternalError",
        "message": "internal error in the engine (this is a bug in Vitrine, please report it)",
        "internal": True,
        "detail": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }


class EngineService:
    """Stateful engine behind one worker: holds loaded models and dispatches protocol calls.

    ``calls`` maps a call name to a method ``(args: dict, payload: bytes | None, progress) ->
    dict``; :meth:`handle` validates the envelope, dispatches and wraps errors.
    """

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}
        self._next_model_number = 1
        self.calls: dict[str, Callable[[dict, bytes | None, ProgressCallback], dict]] = {
            "ping": self._ping,
            "info": self._info,
            "selftest": self._selftest,
            "load_model": self._load_model,
            "unload_model": self._unload_model,
            "predict": self._predict,
            "decode_image": self._decode_image,
            "select_gemm_backend": self._select_gemm_backend,
        }
        self._gemm_report: dict | None = None

    # ---------------------------------------------------------------- envelope
    def handle(self, request: Any, payload: bytes | None = None, progress: ProgressCallback | None = None) -> dict:
        """Run one request (a dict) and return the reply dict; never raises."""
        request_id = request.get("id") if isinstance(request, dict) else None
        call_name = request.get("call") if isinstance(request, dict) else None
        reply: dict[str, Any] = {"id": request_id, "call": call_name}
        try:
            if not isinstance(request, dict):
                raise ServiceRequestError(f"request must be a JSON object, received {type(request).__name__}")
            if not isinstance(call_name, str):
                raise ServiceRequestError(f"request needs a string 'call', received {call_name!r}")
            method = self.calls.get(call_name)
            if method is None:
                raise ServiceRequestError(f"unknown call {call_name!r}; known calls: {', '.join(sorted(self.calls))}")
            args = request.get("args", {})
            if not isinstance(args, dict):
                raise ServiceRequestError(f"call {call_name!r}: 'args' must be an object, received {type(args).__name__}")
            if payload is not None and not isinstance(payload, (bytes, bytearray, memoryview)):
                raise ServiceRequestError(f"call {call_name!r}: payload must be bytes, received {type(payload).__name__}")

            def report(event: dict) -> None:
                if progress is not None:
                    progress({"id": request_id, "call": call_name, **event})

            reply["result"] = method(args, None if payload is None else bytes(payload), report)
            reply["ok"] = True
        except Exception as exc:  # the protocol boundary: every failure becomes an error reply
            reply["ok"] = False
            reply["error"] = error_payload(exc)
        return reply

    def handle_json(self, request_json: str, payload: bytes | None = None, progress: Callable[[str], None] | None = None) -> str:
        """JSON-text form of :meth:`handle` used by the worker glue (strings cross every boundary)."""
        try:
            request = json.loads(request_json)
        except (TypeError, ValueError) as exc:
            reply = {"ok": False, "id": None, "call": None,
                     "error": error_payload(ServiceRequestError(f"request is not valid JSON: {exc}"))}
            return json.dumps(reply)
        progress_dicts = None if progress is None else (lambda event: progress(json.dumps(event)))
        return json.dumps(self.handle(request, payload, progress_dicts), allow_nan=False, default=_json_default)

    # ---------------------------------------------------------------- calls
    def _ping(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        return {"pong": True, "echo": args.get("echo"), "payload_bytes": None if payload is None else len(payload)}

    def _info(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        import numpy
        import PIL

        return {
            "api_version": API_VERSION,
            "vitrine": __version__,
            "python": platform.python_version(),
            "platform": sys.platform,
            "in_pyodide": IN_PYODIDE,
            "pyodide": _pyodide_version(),
            "numpy": numpy.__version__,
            "pillow": PIL.__version__,
            # the app.fastpath backend once selected, else what plain numpy matmul uses
            "gemm_backend": self._gemm_report["backend"] if self._gemm_report else f"numpy matmul ({gemm_backend()})",
            "gemm_report": self._gemm_report,
            "optional_modules": {name: find_spec(name) is not None for name in ("pydicom", "nibabel")},
            "calls": sorted(self.calls),
            "models_loaded": len(self._models),
        }

    def _selftest(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        """A deterministic numpy + Pillow workout the browser smoke test checks against CPython."""
        import numpy as np
        from PIL import Image

        seed = _require(args, "selftest", "seed", int)
        size = _require(args, "selftest", "size", int)
        if not 2 <= size <= 512:
            raise ServiceRequestError(f"call 'selftest': size must be in [2, 512], received {size}")
        rng = np.random.default_rng(seed)
        matrix = rng.standard_normal((size, size))
        gram = matrix @ matrix.T
        singular_values = np.linalg.svd(matrix, compute_uv=False)
        pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        progress({"stage": "selftest", "done": 1, "total": 1})
        return {
            "gram_trace": float(np.trace(gram)),
            "singular_values": [float(v) for v in singular_values],
            "png_bytes": len(buffer.getvalue()),
            "decoded_pixels_sha256": hashlib.sha256(np.ascontiguousarray(decoded).tobytes()).hexdigest(),
        }

    def _load_model(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        name = _require(args, "load_model", "name", str)
        if payload is None:
            raise ServiceRequestError(f"call 'load_model': model {name!r} needs its bytes as the payload")
        load_model = _engine_function("app.loaders", "load_model", "load_model")
        progress({"stage": "parsing", "file": name})
        model = load_model(payload)
        handle = f"m{self._next_model_number}"
        self._next_model_number += 1
        self._models[handle] = model
        progress({"stage": "ready", "file": name})
        return {"model": handle, "name": name, "summary": _model_summary(model)}

    def _unload_model(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        handle = self._model_handle(args, "unload_model")
        del self._models[handle]
        return {"model": handle, "unloaded": True}

    def _predict(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        """Run a loaded model on a float32 array sent as the payload (``shape`` in args)."""
        import numpy as np

        handle = self._model_handle(args, "predict")
        shape = _require(args, "predict", "shape", list)
        if payload is None:
            raise ServiceRequestError("call 'predict': the input array must be sent as the payload (float32 bytes)")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ServiceRequestError(f"call 'predict': shape must be positive integers, received {shape!r}")
        expected_bytes = int(np.prod(shape)) * 4
        if len(payload) != expected_bytes:
            raise ServiceRequestError(
                f"call 'predict': shape {shape} needs {expected_bytes} float32 bytes, received {len(payload)}"
            )
        array = np.frombuffer(payload, dtype="<f4").reshape(shape)
        model = self._models[handle]
        predict = getattr(model, "predict", None)
        if predict is None:
            raise UnavailableCallError(f"call 'predict': model {handle} ({type(model).__name__}) has no predict()")
        outputs = predict(array)
        if isinstance(outputs, np.ndarray):
            outputs = [outputs]
        return {"model": handle, "outputs": [{"shape": list(o.shape), "values": np.asarray(o, dtype=np.float64).ravel().tolist()} for o in outputs]}

    def _decode_image(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        name = _require(args, "decode_image", "name", str)
        if payload is None:
            raise ServiceRequestError(f"call 'decode_image': image {name!r} needs its bytes as the payload")
        decode_image = _engine_function("app.imaging", "decode_image", "decode_image")
        image = decode_image(payload, name)
        # patient-identifying DICOM attributes (image.phi) never leave the engine through here
        return {"name": name, "shape": list(image.pixels.shape), "dtype": str(image.pixels.dtype),
                "metadata": image.metadata}

    def _select_gemm_backend(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        """Pick the fastest working GEMM backend (app.fastpath) and route the engine through it.

        ``args.order``: backends to try, default app.fastpath.BACKEND_ORDER; payload: optional SIMD
        kernel library bytes (otherwise the copy shipped inside the app wheel is used)."""
        select_backend = _engine_function("app.fastpath", "select_backend", "select_gemm_backend")
        install = _engine_function("app.fastpath", "install", "select_gemm_backend")
        backend_report = _engine_function("app.fastpath", "backend_report", "select_gemm_backend")
        order = args.get("order")
        if order is not None and not (isinstance(order, list) and order and all(isinstance(k, str) for k in order)):
            raise ServiceRequestError(f"call 'select_gemm_backend': 'order' must be a non-empty list of names, received {order!r}")
        options = {} if order is None else {"order": tuple(order)}
        select_backend(**options, kernel_bytes=payload)
        install()
        self._gemm_report = backend_report()
        return self._gemm_report

    # ---------------------------------------------------------------- helpers
    def _model_handle(self, args: dict, call: str) -> str:
        handle = _require(args, call, "model", str)
        if handle not in self._models:
            loaded = ", ".join(sorted(self._models)) or "none"
            raise ServiceRequestError(f"call {call!r}: no loaded model {handle!r} (loaded: {loaded})")
        return handle


def _model_summary(model: Any) -> dict:
    summary: dict[str, Any] = {"type": type(model).__name__}
    graph = getattr(model, "graph", model)
    for side in ("inputs", "outputs"):
        specs = getattr(graph, side, None)
        if specs is not None:
            summary[side] = [{"name": getattr(s, "name", None), "shape": list(getattr(s, "shape", ()) or ())} for s in specs]
    return summary


def _pyodide_version() -> str | None:
    if not IN_PYODIDE:
        return None
    import pyodide  # only importable inside Pyodide

    return pyodide.__version__


def gemm_backend() -> str:
    """Name of the BLAS numpy multiplies matrices with ("numpy built-in (no BLAS)" inside Pyodide)."""
    import numpy as np

    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        if not blas.get("found", True):
            # Pyodide's numpy is built without a BLAS: matmul uses numpy's own loops
            return "numpy built-in (no BLAS)"
        return str(blas.get("name") or "unknown")
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        return f"unknown ({type(exc).__name__})"


def _json_default(value: Any):
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a core dependency
        raise TypeError(f"not JSON serialisable: {type(value).__name__}") from None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
