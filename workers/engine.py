# Pyodide worker glue: converts JS values to str/bytes and back, and does the two things only a
# browser can (fetch, the package loader). The protocol and every call live in app/service.py
# (tested on CPython); see docs/worker-api.md.
import json

from js import performance
from polyscript import config as _worker_config, xworker

# This worker's start-up timeline in performance.now() ms of the worker (its time origin is when
# the page created it); bench/startup.py reads it through boot_report().
_boot_marks = {"engine_script_start": performance.now()}
_boot_calls = []  # the first calls' name, start and end
BOOT_CALLS_KEPT = 8

# Nothing at module level may raise: a worker whose script fails never exports ``call``, and without
# SharedArrayBuffer PyScript cannot show the error on the page, which would then wait for its boot
# timeout. A missing or damaged package (numpy, Pillow, the app wheel) is reported by every call.
_boot_error = None
try:
    from app.boot import LAST_BOOT_CALL, DeferredPackages, install_lazy_tflite_alias, needs_deferred_packages
    from app.service import EngineService, error_payload
    from app.http import Response
    from app.errors import DownloadError
except Exception as exc:  # noqa: BLE001 - reported to the page through call() below
    _boot_error = exc
_boot_marks["engine_imports_done"] = performance.now()


class XhrTransport:
    """app.http.Transport for the worker: synchronous XMLHttpRequest (allowed in workers), used
    for Zenodo's small metadata requests only; the model file itself streams through
    download_model's fetch() below so that progress and cancellation work."""

    def get(self, url, *, headers=None):
        from js import XMLHttpRequest

        request = XMLHttpRequest.new()
        try:
            request.open("GET", url, False)
            # a synchronous XHR without a timeout blocks this worker for as long as a silent
            # connection stays open (workers, unlike pages, may time out a synchronous XHR)
            request.timeout = METADATA_TIMEOUT_MS
            for name, value in (headers or {}).items():
                request.setRequestHeader(name, value)
            request.send()
        except Exception as exc:  # a JS NetworkError (DNS, refused, CORS, CSP) or TimeoutError
            if "TimeoutError" in str(exc):
                raise DownloadError(f"could not reach {url}: no answer within {METADATA_TIMEOUT_MS // 1000} s; "
                                    f"check the network connection and try again") from exc
            raise DownloadError(f"could not reach {url}: {exc}") from exc
        if request.status == 0:
            raise DownloadError(f"could not reach {url} (network error, blocked by CORS or by the page's security policy)")
        headers_out = {}
        for line in str(request.getAllResponseHeaders() or "").split("\r\n"):
            if ":" in line:
                key, _, value = line.partition(":")
                headers_out[key.strip().lower()] = value.strip()
        body = str(request.responseText or "").encode("utf-8")
        return Response(status=int(request.status), url=str(request.responseURL or url), headers=headers_out,
                        chunks=lambda: iter((body,)))


def _configured_deferred_packages():
    # config/engine.json "deferred_packages" (name -> version, written by build.py): installed
    # after the boot, see app.boot
    declared = getattr(_worker_config, "deferred_packages", None)
    if declared is None:
        return {}
    declared = declared.to_py() if hasattr(declared, "to_py") else declared
    return {str(name): str(version) for name, version in dict(declared).items()}


_deferred = DeferredPackages(_configured_deferred_packages()) if _boot_error is None else None
_deferred_load = []  # the asyncio task installing the deferred packages, once started
_service = EngineService(transport=XhrTransport(), deferred=_deferred) if _boot_error is None else None
_cancelled_downloads = set()


def _send_progress(event_json):
    # Fire-and-forget: without SharedArrayBuffer the main-thread call returns a promise we do
    # not need to wait for.
    xworker.sync.on_progress(event_json)


# Bytes of the last model that download_model opened here (not the ones sent through call(): the
# page has those already). The page takes them once with model_bytes() so that it can load the same
# model into its other workers and into a replacement worker (models are not patient data).
_downloaded = {}
_serving_call = [False]


def _keep_downloaded_bytes(handle_method):
    def handle(request, payload=None, progress=None):
        reply = handle_method(request, payload, progress)
        if (not _serving_call[0] and isinstance(request, dict) and request.get("call") == "open_model"
                and reply.get("ok") and payload is not None):
            _downloaded.clear()  # one model at a time: an older download is not needed any more
            _downloaded[reply["result"]["model"]] = bytes(payload)
        return reply
    return handle


if _service is not None:
    _service.handle = _keep_downloaded_bytes(_service.handle)


async def call(request_json, payload=None):
    """One protocol call: JSON text in, JSON text out; ``payload`` is an optional Uint8Array.
    When the worker's packages did not load, every call answers with that boot failure. A call
    that needs a deferred package (Pillow, app.boot) first waits for its installation."""
    if _boot_error is not None:
        return _boot_failure_reply(request_json)
    started = performance.now()
    name = _call_name(request_json)
    if needs_deferred_packages(name) and _deferred.state != "ready":
        await _deferred_packages_installed()
        if _deferred.state == "failed":
            return _deferred_failure_reply(request_json)
    data = None if payload is None else payload.to_bytes()
    _serving_call[0] = True
    try:
        return _service.handle_json(str(request_json), data, _send_progress)
    finally:
        _serving_call[0] = False
        if len(_boot_calls) < BOOT_CALLS_KEPT:
            _boot_calls.append({"call": name, "start": started, "end": performance.now()})
        if name == LAST_BOOT_CALL:
            _start_deferred_install()  # runs once this reply is on its way (asyncio task)


def _start_deferred_install():
    if _deferred.state == "waiting" and not _deferred_load:
        import asyncio

        _deferred.state = "loading"
        _deferred_load.append(asyncio.ensure_future(_install_deferred_packages()))


async def _deferred_packages_installed():
    _start_deferred_install()
    if _deferred_load:
        await _deferred_load[0]


async def _install_deferred_packages():
    # Pyodide's loadPackage checks each file's sha256 against the shipped lock, like the boot packages
    import importlib

    import pyodide_js
    from pyodide.ffi import to_js

    _boot_marks["deferred_install_start"] = performance.now()
    try:
        await pyodide_js.loadPackage(to_js(sorted(_deferred.versions)))
        importlib.invalidate_caches()
        # loadPackage reports a refused file (e.g. a sha256 mismatch) on the console and goes on
        def canonical(name):  # the lock's display names ("Pillow") vs. the names we load by ("pillow")
            return str(name).lower().replace("_", "-")

        loaded = {canonical(name) for name in pyodide_js.loadedPackages.object_keys()}
        missing = sorted(name for name in _deferred.versions if canonical(name) not in loaded)
        if missing:
            raise ImportError(f"{', '.join(missing)} did not install (see the browser console)")
        _deferred.state = "ready"
    except Exception as exc:  # noqa: BLE001 - reported by every call that needs the packages
        _deferred.state = "failed"
        _deferred.error = f"{type(exc).__name__}: {exc}"
    _boot_marks["deferred_install_done"] = performance.now()


def _deferred_failure_reply(request_json):
    request = _request_dict(request_json)
    return json.dumps({"id": request.get("id"), "call": request.get("call"), "ok": False, "error": {
        "type": "EngineBootError", "internal": False,
        "message": f"the engine's image decoder (Pillow) did not load ({_deferred.error}); "
                   "the site's files may be incomplete or damaged"}})


def _call_name(request_json):
    return _request_dict(request_json).get("call")


def boot_report():
    """This worker's start-up timeline (JSON) for bench/startup.py: its time origin (epoch ms),
    the marks of static/engine-pyodide.mjs and of this script, the first calls and the worker's
    own fetches (Resource Timing), all in the worker's performance.now() milliseconds."""
    marks = {str(entry.name): float(entry.startTime) for entry in performance.getEntriesByType("mark")}
    resources = [{"name": str(entry.name), "start": float(entry.startTime), "end": float(entry.responseEnd),
                  "transfer_bytes": int(entry.transferSize), "body_bytes": int(entry.encodedBodySize)}
                 for entry in performance.getEntriesByType("resource")]
    import sys

    # what Python imported from .py files so far and whether a precompiled pyc was next to it
    # (build.py compiles what a boot + first classification import; the rest compile from source)
    modules = {}
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        origin = getattr(spec, "origin", None)
        if isinstance(origin, str) and origin.endswith((".py", ".pyc")):
            modules[name] = {"origin": origin, "bytecode": _has_precompiled_bytecode(spec)}
    return json.dumps({"time_origin": float(performance.timeOrigin), "marks": {**marks, **_boot_marks},
                       "calls": _boot_calls, "resources": resources, "modules": modules,
                       "deferred": None if _deferred is None else _deferred.report()})


def _has_precompiled_bytecode(spec):
    # shipped pycs are unchecked hash-based (PEP 552 flags = 1); pycs Python writes itself while
    # importing a source are timestamp-based (flags = 0), so they do not count
    if spec.origin.endswith(".pyc"):  # zipimport found <module>.pyc beside <module>.py in the stdlib zip
        return True
    try:
        if spec.cached:
            with open(spec.cached, "rb") as cached:
                header = cached.read(8)
        else:
            return False
    except OSError:
        return False
    return int.from_bytes(header[4:8], "little") == 1


def model_bytes(handle):
    """The bytes of a model that ``download_model`` opened under ``handle``, as a Uint8Array,
    handed over once (the worker then forgets them); ``None`` when this worker does not hold them."""
    from pyodide.ffi import to_js

    data = _downloaded.pop(str(handle), None)
    return None if data is None else to_js(data)


async def hold_life_lock(lock_name, worker_name):
    """Take the Web Lock ``lock_name`` and never release it: the browser releases it when this
    worker ends (terminated, closed, crashed, out of memory), which is how the page learns that a
    worker died even while a call is in flight (docs/ui.md, "Fault handling").
    ``worker_name`` is published as ``self.vitrineWorkerName`` (tests find the worker by it)."""
    import asyncio

    import js
    from pyodide.ffi import create_proxy, to_js

    js.self.vitrineWorkerName = str(worker_name)
    locks = getattr(js.navigator, "locks", None)
    if locks is None:
        return json.dumps({"ok": False, "call": "hold_life_lock", "error": {
            "type": "UnavailableCallError", "internal": False,
            "message": "this browser has no Web Locks API (navigator.locks) in workers"}})
    granted = asyncio.get_event_loop().create_future()

    def keep(lock):
        if not granted.done():
            granted.set_result(lock is not None)
        # a promise that never settles keeps the lock for the worker's whole life
        return js.Promise.new(create_proxy(lambda resolve, reject: None))

    _life_callbacks.append(create_proxy(keep))
    locks.request(str(lock_name), to_js({"ifAvailable": True}, dict_converter=js.Object.fromEntries), _life_callbacks[-1])
    if not await granted:
        return json.dumps({"ok": False, "call": "hold_life_lock", "error": {
            "type": "ServiceRequestError", "internal": False,
            "message": f"the Web Lock {lock_name!r} is already held (worker names must be unique per page)"}})
    return json.dumps({"ok": True, "call": "hold_life_lock", "result": {"lock": str(lock_name)}})


_life_callbacks = []


def cancel_download(download_id):
    """Stop a running download_model at once: its fetch is aborted (the connection closes, also
    while waiting for a stalled server or before a retry) and it answers ``CancelledError``."""
    download_id = str(download_id)
    _cancelled_downloads.add(download_id)
    controller = _download_aborts.get(download_id)
    if controller is not None:
        controller.abort()
    return json.dumps({"ok": True, "id": download_id, "call": "cancel_download", "result": {"cancelled": True}})


# download id -> the AbortController of its fetch, so that a cancel stops the transfer itself
_download_aborts = {}
DOWNLOAD_MAX_RETRIES = 3  # after HTTP 429 / 502 / 503 / 504, waiting Retry-After (docs/zenodo.md)
DOWNLOAD_MAX_WAIT_SECONDS = 60.0
# A fetch has no timeout of its own: a connection that goes silent (a dead Wi-Fi or VPN link, a
# server that stops sending) keeps reader.read() pending indefinitely, and so does Chromium's offline
# mode for a response already streaming (its offline emulation fails new requests only). So the
# download watches itself: no byte (or no answer) for DOWNLOAD_STALL_SECONDS gives it up, and the
# browser reporting offline while no byte arrives gives it up at once (docs/zenodo.md, "Faults").
DOWNLOAD_STALL_SECONDS = 30.0
WATCH_STEP_SECONDS = 0.25
METADATA_TIMEOUT_MS = 30_000  # the synchronous XHR of the record lookup (XhrTransport)


class _TransferWatch:
    """When a pending fetch or body read must be given up: the last time a byte arrived, how many
    did, and whether the browser says it is offline (``navigator.onLine``, which workers have too)."""

    def __init__(self, name, url, size, controller):
        import time

        self.name, self.url, self.size, self.controller = name, url, size, controller
        self.answered = False  # headers received
        self.received = 0
        self._clock = time.monotonic
        self.last_progress = self._clock()

    def progressed(self, received):
        self.received = received
        self.last_progress = self._clock()

    def failure(self):
        """None while the transfer may go on, else the DownloadError that ends it."""
        from js import navigator

        from app.zenodo import OFFLINE_REASON, interrupted_error, no_answer_error, stalled_error

        silent = self._clock() - self.last_progress
        if silent >= WATCH_STEP_SECONDS and not navigator.onLine:
            return interrupted_error(self.name, received=self.received, expected_size=self.size, reason=OFFLINE_REASON)
        if silent >= DOWNLOAD_STALL_SECONDS:
            if not self.answered:
                return no_answer_error(self.name, url=self.url, seconds=DOWNLOAD_STALL_SECONDS)
            return stalled_error(self.name, received=self.received, expected_size=self.size, seconds=DOWNLOAD_STALL_SECONDS)
        return None


class _GivenUp(Exception):
    """The watch ended the transfer (carries the DownloadError to raise)."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


async def _watched(awaitable, watch, cancelled):
    """``await awaitable`` (a fetch or a body read), checking ``watch`` every WATCH_STEP_SECONDS;
    when it says the transfer is lost, the fetch is aborted and _GivenUp raised. A cancel aborts
    the fetch itself (cancel_download), which makes the awaitable reject."""
    import asyncio

    pending = asyncio.ensure_future(awaitable)
    while True:
        done, _ = await asyncio.wait({pending}, timeout=WATCH_STEP_SECONDS)
        if done:
            return pending.result()
        failure = None if cancelled() else watch.failure()
        if failure is not None:
            watch.controller.abort()
            try:  # the abort rejects the pending promise; collect that, it is not news
                await pending
            except Exception:  # noqa: BLE001 - the AbortError we caused
                pass
            raise _GivenUp(failure)


async def _fetch_model_file(source, name, download_id, progress, notice):
    """The verified bytes of ``source`` (a resolve_model result), streamed with progress.

    Retries 429 / 5xx answers after ``Retry-After`` (async: the worker keeps serving calls),
    turns every network failure into a DownloadError naming the file and what arrived, gives up a
    transfer that stalls or goes offline (_TransferWatch), and stops at once when cancel_download
    aborts the fetch."""
    import asyncio

    from js import AbortController
    from pyodide.http import pyfetch

    from app.errors import CancelledError
    from app.zenodo import (RETRY_STATUSES, interrupted_error, read_verified, retries_exhausted_error,
                            retry_notice, retry_wait_seconds)

    url = str(source["url"])
    size = source.get("size")

    def cancelled():
        return download_id in _cancelled_downloads

    attempt = 0
    while True:
        if cancelled():
            raise CancelledError(f"download of {name} cancelled before it started")
        controller = AbortController.new()
        _download_aborts[download_id] = controller
        watch = _TransferWatch(name, url, size, controller)
        try:
            response = await _watched(pyfetch(url, cache="no-store", signal=controller.signal), watch, cancelled)
        except _GivenUp as given_up:
            raise given_up.error from None
        except Exception as exc:  # a JS TypeError / AbortError: offline, DNS, refused, CORS, CSP, cancel
            if cancelled():
                raise CancelledError(f"download of {name} cancelled before any byte arrived") from exc
            raise DownloadError(f"could not download {name}: no answer from {url} ({_js_reason(exc)}); "
                                f"check the network connection and try again") from exc
        if response.status not in RETRY_STATUSES:
            break
        if attempt >= DOWNLOAD_MAX_RETRIES:
            raise retries_exhausted_error(response.status, what=f"file {name}", url=url, max_retries=DOWNLOAD_MAX_RETRIES)
        attempt += 1
        wait = retry_wait_seconds(response.headers.get("retry-after"), attempt, max_wait=DOWNLOAD_MAX_WAIT_SECONDS)
        notice(retry_notice(response.status, what=f"file {name}", wait=wait, attempt=attempt,
                            max_retries=DOWNLOAD_MAX_RETRIES), wait)
        controller.abort()  # the error body is not needed
        waited = 0.0
        while waited < wait and not cancelled():  # short steps so that Cancel is not delayed
            step = min(0.1, wait - waited)
            await asyncio.sleep(step)
            waited += step
    if response.status != 200:
        if response.status == 404:
            raise DownloadError(f"file {name} not found on Zenodo (HTTP 404 from {url})", status=404)
        raise DownloadError(f"download of {name} failed: HTTP {response.status} from {url}", status=response.status)
    chunks = []
    done = 0
    reader = response.js_response.body.getReader()
    watch.answered = True
    watch.progressed(0)
    progress(0, size)
    while True:
        try:
            part = await _watched(reader.read(), watch, cancelled)
        except _GivenUp as given_up:
            raise given_up.error from None
        except Exception as exc:  # the connection failed mid-body (or the cancel aborted it)
            if cancelled():
                raise CancelledError(f"download of {name} cancelled after {done} bytes") from exc
            raise interrupted_error(name, received=done, expected_size=size, reason=_js_reason(exc)) from exc
        if part.done:
            break
        chunk = part.value.to_bytes()
        chunks.append(chunk)
        done += len(chunk)
        watch.progressed(done)
        progress(done, size)
    return read_verified(chunks, name=name, expected_size=size, expected_md5=source.get("md5"), cancel=cancelled)


def _js_reason(exc):
    # "TypeError: network error" / "AbortError: ..." rather than Pyodide's multi-line JsException text
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


CACHE_NAME = "vitrine-models-v1"


def _cache_key(base_url, source):
    # Cache API keys must be http(s) URLs: a path under the site that is never served
    from urllib.parse import quote, urljoin

    return urljoin(str(base_url), f"model-cache/zenodo-{int(source['record'])}-{source['md5']}/{quote(str(source['file']), safe='')}")


async def download_model(request_json):
    """Download a resolved Zenodo file with byte progress, verify size + MD5
    (app.zenodo.read_verified) and open it (service open_model).

    ``request_json``: {"id", "args": {"source": <resolve_model result>, "cache": bool, "base_url"}}.
    With ``cache`` (the user opted in) a verified zip is kept in the Cache API under record id +
    MD5 and read from there next time (its MD5 is checked again). Returns the open_model reply
    envelope with ``call`` "download_model" and ``result.from_cache``."""
    from app.zenodo import read_verified

    request = json.loads(str(request_json))
    download_id = str(request.get("id"))
    args = request.get("args") or {}
    source = args.get("source") or {}
    reply = {"id": request.get("id"), "call": "download_model"}
    name = str(source.get("file") or "model")

    def progress(done, total):
        _send_progress(json.dumps({"id": request.get("id"), "call": "download_model", "stage": "download",
                                   "done": done, "total": total, "file": name}))

    def notice(message, wait_seconds):
        _send_progress(json.dumps({"id": request.get("id"), "call": "download_model", "stage": "notice",
                                   "message": message, "wait_seconds": wait_seconds, "file": name}))

    try:
        use_cache = bool(args.get("cache")) and source.get("md5") and source.get("record")
        data = None
        if use_cache:
            from js import caches

            store = await caches.open(CACHE_NAME)
            hit = await store.match(_cache_key(args.get("base_url"), source))
            if hit:
                cached = bytes((await hit.arrayBuffer()).to_py())
                data = read_verified([cached], name=name, expected_size=source.get("size"),
                                     expected_md5=source.get("md5"), on_progress=progress)
        from_cache = data is not None
        if data is None:
            data = await _fetch_model_file(source, name, download_id, progress, notice)
        opened = _service.handle({"call": "open_model", "id": request.get("id"),
                                  "args": {"name": name, "source": source}}, data, lambda e: _send_progress(json.dumps(e)))
        opened["call"] = "download_model"
        if opened.get("ok"):
            opened["result"]["from_cache"] = from_cache
            # kept only once it opened: a verified zip that holds no runnable model is not cached
            if use_cache and not from_cache:
                from js import Response as JsResponse, Uint8Array

                body = Uint8Array.new(len(data))
                body.assign(data)
                await store.put(_cache_key(args.get("base_url"), source), JsResponse.new(body))
        return json.dumps(opened)
    except Exception as exc:  # the protocol boundary: report, never throw into the page
        reply.update(ok=False, error=error_payload(exc))
        return json.dumps(reply)
    finally:
        _cancelled_downloads.discard(download_id)
        _download_aborts.pop(download_id, None)


async def cached_models(base_url):
    """The models kept in the Cache API (only ever written after the user opted in)."""
    from js import caches

    store = await caches.open(CACHE_NAME)
    keys = await store.keys()
    return json.dumps({"ok": True, "call": "cached_models", "result": {"keys": [str(k.url) for k in keys]}})


async def forget_cached_models(key=None):
    """Delete one cached model (its key URL) or, with no key, the whole model cache."""
    from js import caches

    if key:
        store = await caches.open(CACHE_NAME)
        deleted = bool(await store.delete(str(key)))
    else:
        deleted = bool(await caches.delete(CACHE_NAME))
    return json.dumps({"ok": True, "call": "forget_cached_models", "result": {"deleted": deleted}})


async def load_optional(group, base_url):
    """Install an optional wheel group from config/wheels.json (e.g. "medical": pydicom, nibabel).

    ``base_url`` is the page's document.baseURI: this worker runs from a blob: URL, so relative
    paths need the page's base. Returns the same reply envelope as ``call``."""
    from urllib.parse import urljoin

    import pyodide_js
    from pyodide.ffi import to_js
    from pyodide.http import pyfetch

    reply = {"id": None, "call": "load_optional"}
    try:
        manifest = await (await pyfetch(urljoin(str(base_url), "config/wheels.json"))).json()
        groups = manifest["optional"]
        if group not in groups:
            raise KeyError(f"unknown optional group {group!r}; known: {', '.join(sorted(groups))}")
        packages = [entry if "/" not in entry else urljoin(str(base_url), entry) for entry in groups[group]]
        await pyodide_js.loadPackage(to_js(packages))
        _preload(OPTIONAL_PRELOAD.get(group, ()))
        reply.update(ok=True, result={"group": group, "packages": packages})
    except Exception as exc:  # the protocol boundary: report, never throw into the page
        reply.update(ok=False, error=error_payload(exc))
    return json.dumps(reply)


def heap_census(min_bytes=1024, holders_of=None):
    """What this worker's Python still holds: live buffers by type, length, shape and dtype (never
    their contents), for the memory tests and bench/memory.py (app.diagnostics)."""
    from app.diagnostics import heap_census as census

    try:
        result = census(int(min_bytes), None if holders_of is None else int(holders_of))
        return json.dumps({"ok": True, "call": "heap_census", "result": result})
    except Exception as exc:  # the protocol boundary: report, never throw into the page
        return json.dumps({"ok": False, "call": "heap_census", "error": error_payload(exc)})


# Modules of an optional group imported as soon as it is installed, from this frame, which holds
# no image. Imported later, inside the first decode, an import that fails within them is kept with
# its traceback, and a traceback keeps every caller's frame: Pyodide's Pillow has no _imagingcms,
# pydicom.pixels imports PIL.ImageCms, and PIL.ImageCms keeps that ImportError for good, so the
# first DICOM's bytes and dataset (patient fields included) stayed alive for the worker's life
# (found by tests/browser/test_memory.py; app.diagnostics.holders shows such chains).
OPTIONAL_PRELOAD = {"medical": ("PIL.ImageCms", "pydicom", "pydicom.pixels", "nibabel")}


def _preload(modules):
    import importlib
    import importlib.util

    for module in modules:
        # Pillow is installed after boot (a deferred package): if it is not there yet, pydicom
        # imports without it and never imports PIL.ImageCms later
        if importlib.util.find_spec(module.split(".")[0]) is not None:
            importlib.import_module(module)


if _boot_error is None:
    # `from tflite_runtime.interpreter import Interpreter` resolves to app.tflite, imported on first use
    install_lazy_tflite_alias()


def _request_dict(request_json):
    try:
        request = json.loads(str(request_json))
    except ValueError:
        request = None
    return request if isinstance(request, dict) else {}


def _boot_failure_reply(request_json):
    request = _request_dict(request_json)
    return json.dumps({"id": request.get("id"), "call": request.get("call"), "ok": False, "error": {
        "type": "EngineBootError", "internal": False,
        "message": f"the engine's Python packages did not load ({type(_boot_error).__name__}: {_boot_error}); "
                   "the site's files may be incomplete or damaged"}})


_boot_marks["engine_script_done"] = performance.now()
__export__ = ["call", "load_optional", "cancel_download", "download_model", "cached_models", "forget_cached_models",
              "model_bytes", "hold_life_lock", "boot_report", "heap_census"]
