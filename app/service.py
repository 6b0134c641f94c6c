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
from .boot import DeferredPackages
from .errors import ModelFormatError, VitrineError

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
        for attribute in ("file", "filename", "layer", "record", "group"):
            value = getattr(exc, attribute, None)
            if isinstance(value, (str, int)):
                error["file" if attribute == "filename" else attribute] = value
        # lists the UI offers as choices: the files of a record (no runnable / ambiguous model)
        for attribute in ("candidates", "files"):
            value = getattr(exc, attribute, None)
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                error[attribute] = list(value)
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

    def __init__(self, transport: Any = None, deferred: DeferredPackages | None = None) -> None:
        # transport: an app.http.Transport for Zenodo metadata (the worker glue passes a browser
        # one); None means app.http.UrllibTransport (CPython)
        self._transport = transport
        # packages the worker installs after its boot (app.boot; none on CPython), for `info`
        self.deferred = deferred if deferred is not None else DeferredPackages()
        self._models: dict[str, Any] = {}
        self._cards: dict[str, Any] = {}
        self._model_info: dict[str, dict] = {}
        self._catalog = None
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
            # the clinician's workflow (docs/worker-api.md, "Workflow calls")
            "catalog": self._catalog_call,
            "resolve_model": self._resolve_model,
            "open_model": self._open_model,
            "inspect_image": self._inspect_image,
            "classify": self._classify,
            "export_results": self._export_results,
            "chart": self._chart,
            # explanations (docs/worker-api.md, "Explain calls"; docs/explain.md)
            "explain": self._explain,
            "segment": self._segment,
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

        from .runtime import memory_report

        if "pillow" not in self.deferred.versions or self.deferred.state == "ready":
            import PIL

            pillow = PIL.__version__
        elif self.deferred.state == "failed":
            pillow = None  # deferred_packages says why
        else:  # being installed after the boot (app.boot): the version the build ships
            pillow = self.deferred.versions["pillow"]

        return {
            "api_version": API_VERSION,
            "vitrine": __version__,
            "python": platform.python_version(),
            "platform": sys.platform,
            "in_pyodide": IN_PYODIDE,
            "pyodide": _pyodide_version(),
            "numpy": numpy.__version__,
            "pillow": pillow,
            "deferred_packages": self.deferred.report(),
            # the app.fastpath backend once selected, else what plain numpy matmul uses
            "gemm_backend": self._gemm_report["backend"] if self._gemm_report else f"numpy matmul ({gemm_backend()})",
            "gemm_report": self._gemm_report,
            "optional_modules": {name: find_spec(name) is not None for name in ("pydicom", "nibabel")},
            "tflite_runtime": _tflite_runtime_module(),
            "calls": sorted(self.calls),
            "models_loaded": len(self._models),
            # the worker's memory high-water mark (Pyodide: wasm linear memory), see app.runtime
            "memory": memory_report(),
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
        model = load_model(payload, name=name)  # the name labels every error about these bytes
        handle = f"m{self._next_model_number}"
        self._next_model_number += 1
        self._models[handle] = model
        # the workflow calls (classify, chart, export_results, explain, segment) need a card: the
        # one inside the zip, else one completed from the model's shapes (numbered classes)
        try:
            self._cards[handle] = _complete_card(getattr(model, "card", None), model, name)
        except ModelFormatError:
            pass  # no card and no class count: those calls answer a ServiceRequestError (_card_of)
        self._model_info[handle] = {"name": self._cards[handle].name if handle in self._cards else name,
                                    "md5": hashlib.md5(payload).hexdigest(), "source": f"local file {name}"}
        progress({"stage": "ready", "file": name})
        return {"model": handle, "name": name, "summary": _model_summary(model)}

    def _unload_model(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        handle = self._model_handle(args, "unload_model")
        del self._models[handle]
        self._cards.pop(handle, None)
        self._model_info.pop(handle, None)
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
        report = backend_report()
        if report["backend"].startswith("simd"):
            # GEMM alone leaves conv (im2col copies), depthwise and folded batch-norm in numpy:
            # the SIMD conv/depthwise/scale_shift kernels roughly halve a DenseNet's time in Pyodide.
            from .kernels import install_fastpath_kernels

            report["kernels"] = install_fastpath_kernels()
        self._gemm_report = report
        return report

    # ---------------------------------------------------------------- workflow calls
    def _catalog_call(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        """The shipped model catalog, flattened for the UI's search and filters."""
        from .catalog import FORMATS, load_catalog

        if self._catalog is None:
            self._catalog = load_catalog()
        entries = []
        for entry in self._catalog:
            entries.append({"id": entry.id, "name": entry.name, "format": entry.format,
                            "zenodo_record": entry.zenodo_record, "discipline": entry.discipline,
                            "modality": entry.modality, "search": entry.search_text(),
                            "card": None if entry.card is None else entry.card.to_json()})
        return {"entries": entries, "disciplines": self._catalog.disciplines(),
                "modalities": self._catalog.modalities(), "formats": list(FORMATS)}

    def _resolve_model(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        """A DOI / Zenodo URL / record id / catalog id -> the one file to download (metadata only)."""
        from .catalog import load_catalog
        from .sources import resolve
        from .zenodo import DEFAULT_ZENODO_URL, ZenodoClient, file_content_url

        reference = _require(args, "resolve_model", "reference", str).strip()
        zenodo_url = args.get("zenodo_url") or DEFAULT_ZENODO_URL
        chosen = args.get("file")
        if not reference:
            raise ServiceRequestError("call 'resolve_model': the model reference is empty; enter a DOI, Zenodo URL or record id")
        if self._catalog is None:
            self._catalog = load_catalog()
        notices: list[str] = []
        client = ZenodoClient(zenodo_url=str(zenodo_url), transport=self._transport, max_retries=2,
                              max_wait_seconds=10.0, on_notice=lambda m: (notices.append(m), progress({"stage": "notice", "message": m})))
        progress({"stage": "resolving", "reference": reference})
        resolved = resolve(reference, zenodo_url=str(zenodo_url), catalog=self._catalog,
                           file=chosen if isinstance(chosen, str) and chosen else None, client=client)
        if resolved.kind != "zenodo":
            raise ServiceRequestError(f"{reference!r} names a local file; in the browser, add local models with the file picker")
        record, file = resolved.record, resolved.file
        return {"reference": reference, "record": record.id, "title": record.title, "version": record.version,
                "doi": record.doi, "file": file.key, "size": file.size, "md5": file.md5,
                "url": file.url or file_content_url(resolved.zenodo_url, record.id, file.key),
                "source_label": resolved.source_label, "catalog_id": resolved.catalog_id,
                "card": None if resolved.card is None else resolved.card.to_json(),
                "notices": [*resolved.notices, *notices]}

    def _open_model(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        """Unpack (zip or .tflite), load and describe a model whose bytes are the payload.

        ``source`` (optional): the ``resolve_model`` result it was downloaded for; its md5 is
        checked again here and it fills the card's source and the export provenance."""
        from dataclasses import replace

        from .modelcard import ModelCard
        from .sources import unpack
        from .zenodo import verify_md5

        name = _require(args, "open_model", "name", str)
        source = args.get("source") or {}
        if not isinstance(source, dict):
            raise ServiceRequestError(f"call 'open_model': 'source' must be an object, received {type(source).__name__}")
        if payload is None:
            raise ServiceRequestError(f"call 'open_model': model {name!r} needs its bytes as the payload")
        md5 = hashlib.md5(payload).hexdigest()
        if source.get("md5"):
            verify_md5(payload, str(source["md5"]), name=name, digest=md5)
        progress({"stage": "parsing", "file": name})
        # errors about the archive name the record too, as the CLI does (app.sources.open_model)
        package = unpack(payload, f"Zenodo record {source['record']} file {name}" if source.get("record") else name)
        if package.format == "tflite":
            _engine_function("app.tflite", "install_alias", "open_model")()
        load_model = _engine_function("app.loaders", "load_model", "open_model")
        model = load_model(package.engine_input, name=name)
        card = package.card or getattr(model, "card", None)
        if card is None and source.get("card"):
            card = ModelCard.from_json(source["card"], filename=f"catalog card of {name}")
        card = _complete_card(card, model, name)
        if source.get("record"):
            card = card.with_source(zenodo_id=int(source["record"]), doi=source.get("doi"), md5=md5,
                                    version=source.get("version"), file=source.get("file"))
        else:
            card = card.with_source(md5=md5, file=name)
        handle = f"m{self._next_model_number}"
        self._next_model_number += 1
        self._models[handle] = model
        self._cards[handle] = card
        self._model_info[handle] = {"name": card.name, "md5": md5,
                                    "source": source.get("source_label") or f"local file {name}"}
        progress({"stage": "ready", "file": name})
        return {"model": handle, "name": card.name, "file": name, "format": package.format, "md5": md5,
                "bytes": len(payload), "source": self._model_info[handle]["source"],
                "card": card.to_json(), "summary": _model_summary(model),
                "has_card": package.card is not None or bool(source.get("card"))}

    def _inspect_image(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        """Validate one image at once: decode it, return its facts and a PNG thumbnail (base64).

        Patient-identifying DICOM attributes are returned only with ``show_phi: true``."""
        import base64

        from .imaging import make_thumbnail

        name = _require(args, "inspect_image", "name", str)
        image = self._decode(name, payload, "inspect_image")
        result = {"name": name, "shape": list(image.pixels.shape), "dtype": str(image.pixels.dtype),
                  "metadata": image.metadata,
                  "thumbnail_png": base64.b64encode(make_thumbnail(image, max_side=int(args.get("max_side", 128)))).decode("ascii")}
        if args.get("show_phi") is True:
            result["phi"] = dict(image.phi)
        return result

    def _classify(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        """Decode, preprocess exactly as the model card says, predict: class probabilities."""
        import time

        import numpy as np

        from .imaging import PreprocessSpec, preprocess
        from .results import predicted_classes

        handle = self._model_handle(args, "classify")
        name = _require(args, "classify", "name", str)
        started = time.perf_counter()
        image = self._decode(name, payload, "classify")
        card = self._card_of(handle, "classify")
        spec = PreprocessSpec.from_card(card)
        model = self._models[handle]
        outputs = model.predict(_model_feed(model, preprocess(image, spec), spec.standardize))
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[0]
        if np.ndim(outputs) == 4:  # a segmentation model (N, H, W, C): per-class areas of its mask
            return self._classify_segmentation(handle, name, card, outputs, args, started)
        probabilities = np.asarray(outputs, dtype=np.float64).reshape(-1)
        if probabilities.size != len(card.classes):
            raise ModelFormatError(f"the model gave {probabilities.size} outputs for {name} but its card lists "
                                   f"{len(card.classes)} classes ({', '.join(card.classes)})")
        if not np.all(np.isfinite(probabilities)):
            raise ModelFormatError(f"the model produced non-finite outputs for {name}")
        values = probabilities.tolist()
        return {"name": name, "model": handle, "probabilities": values,
                "predicted": predicted_classes(values, card, threshold=args.get("threshold")),
                "ms": round((time.perf_counter() - started) * 1000, 1)}

    def _export_results(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        """CSV or JSON text of a run (app.results columns), with a file name for the download."""
        import datetime as dt

        from .results import to_csv, to_json

        card, info = self._card_and_info(args, "export_results")
        fmt = _require(args, "export_results", "format", str)
        results = _require(args, "export_results", "results", list)
        if fmt not in ("csv", "json"):
            raise ServiceRequestError(f"call 'export_results': format must be 'csv' or 'json', received {fmt!r}")
        for i, item in enumerate(results):
            if not isinstance(item, dict) or not isinstance(item.get("file"), str):
                raise ServiceRequestError(f"call 'export_results': results[{i}] needs a string 'file'")
        threshold = args.get("threshold")
        if isinstance(args.get("date"), str):
            info["date"] = args["date"]
        writer = to_csv if fmt == "csv" else to_json
        text = writer(results, card, info, threshold=threshold)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        return {"filename": f"vitrine-results-{stamp}.{fmt}", "mime": "text/csv" if fmt == "csv" else "application/json",
                "text": text}

    def _chart(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        """SVG chart text (app.charts): ``kind`` "bars" (one image) or "grouped" (a batch)."""
        from . import charts

        card, _ = self._card_and_info(args, "chart")
        kind = _require(args, "chart", "kind", str)
        try:
            return {"svg": self._chart_svg(charts, card, kind, args)}
        except charts.ChartError as exc:  # mismatched lengths, NaN, unknown order: the request's fault
            raise ServiceRequestError(f"call 'chart': {exc}") from exc

    def _chart_svg(self, charts, card, kind: str, args: dict) -> str:
        if kind == "bars":
            probabilities = _require(args, "chart", "probabilities", list)
            threshold = args.get("threshold", card.threshold)
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                raise ServiceRequestError(f"call 'chart': argument 'threshold' must be a number, received {threshold!r}")
            svg = charts.probability_bars(card.classes, probabilities, order=str(args.get("order", "default")),
                                          multi_label=card.multi_label, threshold=float(threshold),
                                          title=f"Class probabilities for {args.get('name', 'the image')}",
                                          top_k=args.get("top_k"))
        elif kind == "grouped":
            images = _require(args, "chart", "images", list)
            if not all(isinstance(i, dict) for i in images):
                raise ServiceRequestError("call 'chart': every item of 'images' must be an object {file, probabilities}")
            svg = charts.grouped_bars(card.classes, [(str(i.get("file")), i.get("probabilities")) for i in images],
                                      max_classes=args.get("max_classes", len(charts.PALETTE)),
                                      multi_label=card.multi_label)
        else:
            raise ServiceRequestError(f"call 'chart': kind must be 'bars' or 'grouped', received {kind!r}")
        return svg

    def _card_and_info(self, args: dict, call: str):
        """The card and provenance of a loaded model (``model`` handle), or of an earlier run whose
        model is no longer loaded (``card``: card JSON, ``model_info``: name / source / md5)."""
        from .modelcard import ModelCard

        if "model" in args:
            handle = self._model_handle(args, call)
            return self._card_of(handle, call), dict(self._model_info[handle])
        card_json = _require(args, call, "card", dict)
        info = args.get("model_info") or {}
        if not isinstance(info, dict):
            raise ServiceRequestError(f"call {call!r}: 'model_info' must be an object")
        return ModelCard.from_json(card_json, filename=f"{call} card"), dict(info)

    def _decode(self, name: str, payload: bytes | None, call: str):
        from .imaging.decode import is_dicom, is_nifti

        if payload is None:
            raise ServiceRequestError(f"call {call!r}: image {name!r} needs its bytes as the payload")
        lower = name.lower()
        if (is_dicom(payload) or lower.endswith(".dcm")) and find_spec("pydicom") is None:
            raise OptionalPackagesNeededError(f"{name}: DICOM needs the optional medical packages (pydicom)", "medical", name)
        if (is_nifti(payload) or lower.endswith((".nii", ".nii.gz"))) and find_spec("nibabel") is None:
            raise OptionalPackagesNeededError(f"{name}: NIfTI needs the optional medical packages (nibabel)", "medical", name)
        decode_image = _engine_function("app.imaging", "decode_image", call)
        return decode_image(payload, name)

    def _classify_segmentation(self, handle: str, name: str, card, outputs, args: dict, started: float) -> dict:
        """``classify`` on a segmentation model: ``probabilities`` are the mask's area fractions per
        class (they sum to 1, so the table, charts and exports work unchanged), ``kind`` says so."""
        import time

        import numpy as np

        from .explain.present import segmentation_class_names
        from .explain.segment import class_areas, masks_from_output

        threshold = args.get("threshold")
        mask = masks_from_output(np.asarray(outputs), **({} if threshold is None else {"threshold": float(threshold)}))[0]
        names = segmentation_class_names(card.classes, int(np.shape(outputs)[-1]))
        if tuple(names) != tuple(card.classes):
            raise ModelFormatError(f"the segmentation model's output has {np.shape(outputs)[-1]} channel(s) for {name} "
                                   f"but its card lists {len(card.classes)} classes ({', '.join(card.classes)})")
        areas = class_areas(mask, names)
        return {"name": name, "model": handle, "kind": "segmentation",
                "probabilities": [a.fraction for a in areas],
                "areas": [{"index": a.index, "name": a.name, "pixels": a.pixels, "fraction": a.fraction} for a in areas],
                "predicted": [a.name for a in areas[1:] if a.pixels > 0],
                "ms": round((time.perf_counter() - started) * 1000, 1)}

    def _explain(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        """Grad-CAM of one image (``name`` + bytes) for ``class`` (index or name; default the top
        class) at ``layer`` (default the last spatial layer): PNG layers and the raw map."""
        import base64
        import time

        import numpy as np

        from .explain.present import explain_image, resolve_class

        started = time.perf_counter()
        handle, name, card, tensor, background = self._prepared_image(args, payload, "explain")
        layer = args.get("layer")
        if layer is not None and not isinstance(layer, str):
            raise ServiceRequestError(f"call 'explain': argument 'layer' must be a layer name (str), received {layer!r}")
        progress({"stage": "gradcam", "file": name})
        result = explain_image(self._models[handle], tensor, background, card.classes,
                               class_index=resolve_class(args.get("class"), card.classes), layer=layer or None,
                               alpha=_alpha(args, "explain", 0.4))
        heatmap = np.ascontiguousarray(result.heatmap, dtype="<f4")
        return {"name": name, "model": handle, "class_index": result.class_index, "class_name": result.class_name,
                "logit": result.logit, "layer": result.layer, "layers": list(result.layers), "alpha": result.alpha,
                "heatmap": {"shape": list(heatmap.shape), "dtype": "float32",
                            "base64": base64.b64encode(heatmap.tobytes()).decode("ascii")},
                "layer_heatmap": {"shape": list(result.layer_heatmap.shape),
                                  "values": np.asarray(result.layer_heatmap, dtype=np.float64).ravel().tolist()},
                "image_png": _b64(result.image_png), "heatmap_png": _b64(result.heatmap_png),
                "overlay_png": _b64(result.overlay_png), "scale_png": _b64(result.scale_png),
                "ms": round((time.perf_counter() - started) * 1000, 1)}

    def _segment(self, args: dict, payload: bytes | None, progress: ProgressCallback) -> dict:
        """Mask of one image (``name`` + bytes) of a segmentation model: per-class colours and
        areas, PNG layers and the raw class-index mask PNG for export."""
        import time

        from .explain.present import segment_image

        started = time.perf_counter()
        handle, name, card, tensor, background = self._prepared_image(args, payload, "segment")
        threshold = args.get("threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ServiceRequestError(f"call 'segment': argument 'threshold' must be a number, received {threshold!r}")
        result = segment_image(self._models[handle], tensor, background, card.classes,
                               alpha=_alpha(args, "segment", 0.5), threshold=float(threshold))
        stem = name.rsplit("/", 1)[-1]
        for suffix in (".nii.gz", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom", ".nii"):
            if stem.lower().endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
                break
        height, width = result.mask.shape
        return {"name": name, "model": handle, "shape": [height, width], "alpha": result.alpha,
                "classes": [{"index": a.index, "name": a.name, "colour": "#%02x%02x%02x" % tuple(int(c) for c in result.colours[a.index]),
                             "pixels": a.pixels, "fraction": a.fraction} for a in result.areas],
                "image_png": _b64(result.image_png), "mask_rgba_png": _b64(result.mask_rgba_png),
                "overlay_png": _b64(result.overlay_png), "mask_png": _b64(result.mask_png),
                "mask_filename": f"{stem}_mask.png",
                "ms": round((time.perf_counter() - started) * 1000, 1)}

    def _prepared_image(self, args: dict, payload: bytes | None, call: str):
        """(handle, name, card, model input (1, H, W, C), uint8 background (H, W[, C])) of one image,
        decoded and preprocessed exactly as ``classify`` does."""
        import numpy as np

        from .imaging import PreprocessSpec, preprocess, resized_image
        from .imaging.display import minmax_to_uint8

        handle = self._model_handle(args, call)
        name = _require(args, call, "name", str)
        card = self._card_of(handle, call)
        image = self._decode(name, payload, call)
        spec = PreprocessSpec.from_card(card)
        tensor = _model_feed(self._models[handle], preprocess(image, spec), spec.standardize)
        background = resized_image(image, spec)
        if background.dtype != np.uint8:
            background = minmax_to_uint8(background)[0]
        return handle, name, card, tensor, background

    # ---------------------------------------------------------------- helpers
    def _card_of(self, handle: str, call: str):
        card = self._cards.get(handle)
        if card is None:
            raise ServiceRequestError(f"call {call!r}: model {handle} has no model card and its output shape does not "
                                      f"tell its classes; open it with 'open_model' (with a model-card.json)")
        return card

    def _model_handle(self, args: dict, call: str) -> str:
        handle = _require(args, call, "model", str)
        if handle not in self._models:
            loaded = ", ".join(sorted(self._models)) or "none"
            raise ServiceRequestError(f"call {call!r}: no loaded model {handle!r} (loaded: {loaded})")
        return handle


class OptionalPackagesNeededError(VitrineError):
    """The file needs an optional wheel group (``group``, e.g. "medical") the worker has not
    installed yet; the UI installs it (worker export ``load_optional``) and retries."""

    def __init__(self, message: str, group: str, file: str):
        super().__init__(message)
        self.group = group
        self.file = file


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def _alpha(args: Mapping[str, Any], call: str, default: float) -> float:
    alpha = args.get("alpha", default)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ServiceRequestError(f"call {call!r}: argument 'alpha' (overlay opacity) must be a number in [0, 1], "
                                  f"received {alpha!r}")
    return float(alpha)


def _complete_card(card: Any, model: Any, name: str):
    """The card with what it leaves open (input size, channels) taken from the model's input
    shape; a model without a card gets numbered classes from its output shape."""
    from dataclasses import replace

    from .modelcard import ModelCard

    summary = _model_summary(model)
    input_shape = (summary.get("inputs") or [{}])[0].get("shape") or []
    output_shape = (summary.get("outputs") or [{}])[0].get("shape") or []
    if card is None:
        if not output_shape or not output_shape[-1]:
            raise ModelFormatError(f"{name} has no model card and its output shape does not tell the number of classes")
        channels = int(output_shape[-1])
        # a single-channel segmentation output (N, H, W, 1) has two classes: p <= / > threshold
        classes = ("background", "foreground") if len(output_shape) == 4 and channels == 1 else \
            tuple(f"class {i}" for i in range(channels))
        card = ModelCard(name=name, classes=classes)
    if card.input_size is None and len(input_shape) == 4 and all(input_shape[1:3]):
        card = replace(card, input_size=(int(input_shape[1]), int(input_shape[2])))
    if card.channels is None and len(input_shape) == 4 and input_shape[3] in (1, 3):
        card = replace(card, channels=int(input_shape[3]))
    return card


def _model_summary(model: Any) -> dict:
    summary: dict[str, Any] = {"type": type(model).__name__}
    graph = getattr(model, "graph", model)
    for side in ("inputs", "outputs"):
        specs = getattr(graph, side, None)
        if specs is not None:
            summary[side] = [{"name": getattr(s, "name", None), "shape": list(getattr(s, "shape", ()) or ())} for s in specs]
    return summary


def _model_feed(model: Any, tensor: Any, standardize: Any):
    """The preprocessed image as the model takes it: a uint8-input TFLite model gets the raw pixels
    when the card sets no standardisation (app.tflite.image_input); every other model the tensor."""
    if getattr(model, "format", None) != "tflite":
        return tensor
    return _engine_function("app.tflite", "image_input", "classify")(model, tensor, standardize)


def _tflite_runtime_module() -> str | None:
    """The module ``from tflite_runtime.interpreter import Interpreter`` gives in this engine
    ("app.tflite.interpreter" where app.tflite.install_alias() provides the name, as in the
    browser worker), or None when that import fails."""
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        return None
    return Interpreter.__module__


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
