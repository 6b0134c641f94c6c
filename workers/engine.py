# Pyodide worker glue: converts JS values to str/bytes and back, and does the two things only a
# browser can (fetch, the package loader). The protocol and every call live in app/service.py
# (tested on CPython); see docs/worker-api.md.
import json

from polyscript import xworker

# Nothing at module level may raise: a worker whose script fails never exports ``call``, and without
# SharedArrayBuffer PyScript cannot show the error on the page, which would then wait for its boot
# timeout. A missing or damaged package (numpy, Pillow, the app wheel) is reported by every call.
_boot_error = None
try:
    from app.service import EngineService, error_payload
    from app.http import Response
    from app.errors import DownloadError
except Exception as exc:  # noqa: BLE001 - reported to the page through call() below
    _boot_error = exc


class XhrTransport:
    """app.http.Transport for the worker: synchronous XMLHttpRequest (allowed in workers), used
    for Zenodo's small metadata requests only; the model file itself streams through
    download_model's fetch() below so that progress and cancellation work."""

    def get(self, url, *, headers=None):
        from js import XMLHttpRequest

        request = XMLHttpRequest.new()
        try:
            request.open("GET", url, False)
            for name, value in (headers or {}).items():
                request.setRequestHeader(name, value)
            request.send()
        except Exception as exc:  # a JS NetworkError: DNS, refused, CORS, CSP
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


_service = EngineService(transport=XhrTransport()) if _boot_error is None else None
_cancelled_downloads = set()


def _send_progress(event_json):
    # Fire-and-forget: without SharedArrayBuffer the main-thread call returns a promise we do
    # not need to wait for.
    xworker.sync.on_progress(event_json)


def call(request_json, payload=None):
    """One protocol call: JSON text in, JSON text out; ``payload`` is an optional Uint8Array.
    When the worker's packages did not load, every call answers with that boot failure."""
    if _boot_error is not None:
        return _boot_failure_reply(request_json)
    data = None if payload is None else payload.to_bytes()
    return _service.handle_json(str(request_json), data, _send_progress)


def cancel_download(download_id):
    """Ask a running download_model to stop at its next chunk (the worker keeps serving calls
    while the download awaits the network)."""
    _cancelled_downloads.add(str(download_id))
    return json.dumps({"ok": True, "id": str(download_id), "call": "cancel_download", "result": {"cancelled": True}})


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
    from pyodide.http import pyfetch

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
            try:
                response = await pyfetch(str(source["url"]), cache="no-store")
            except Exception as exc:
                raise DownloadError(f"could not reach {source.get('url')}: {exc}") from exc
            if response.status != 200:
                if response.status == 429:
                    raise DownloadError(f"Zenodo rate-limited the download of {name} (HTTP 429); wait a minute and try again")
                raise DownloadError(f"download of {name} failed: HTTP {response.status} from {source.get('url')}")
            chunks = []
            done = 0
            reader = response.js_response.body.getReader()
            progress(0, source.get("size"))
            while download_id not in _cancelled_downloads:
                part = await reader.read()
                if part.done:
                    break
                chunk = part.value.to_bytes()
                chunks.append(chunk)
                done += len(chunk)
                progress(done, source.get("size"))
            else:
                await reader.cancel()
            data = read_verified(chunks, name=name, expected_size=source.get("size"), expected_md5=source.get("md5"),
                                 cancel=lambda: download_id in _cancelled_downloads)
            if use_cache:
                from js import Response as JsResponse, Uint8Array

                body = Uint8Array.new(len(data))
                body.assign(data)
                await store.put(_cache_key(args.get("base_url"), source), JsResponse.new(body))
        opened = _service.handle({"call": "open_model", "id": request.get("id"),
                                  "args": {"name": name, "source": source}}, data, lambda e: _send_progress(json.dumps(e)))
        opened["call"] = "download_model"
        if opened.get("ok"):
            opened["result"]["from_cache"] = from_cache
        return json.dumps(opened)
    except Exception as exc:  # the protocol boundary: report, never throw into the page
        reply.update(ok=False, error=error_payload(exc))
        return json.dumps(reply)
    finally:
        _cancelled_downloads.discard(download_id)


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
        reply.update(ok=True, result={"group": group, "packages": packages})
    except Exception as exc:  # the protocol boundary: report, never throw into the page
        reply.update(ok=False, error=error_payload(exc))
    return json.dumps(reply)


def _install_tflite_alias():
    # once per worker: `from tflite_runtime.interpreter import Interpreter` resolves to app.tflite
    from app.tflite import install_alias

    install_alias()


if _boot_error is None:
    try:
        _install_tflite_alias()
    except Exception as exc:  # noqa: BLE001 - reported to the page through every call below
        _boot_error = exc


def _boot_failure_reply(request_json):
    try:
        request = json.loads(str(request_json))
    except ValueError:
        request = None
    if not isinstance(request, dict):
        request = {}
    return json.dumps({"id": request.get("id"), "call": request.get("call"), "ok": False, "error": {
        "type": "EngineBootError", "internal": False,
        "message": f"the engine's Python packages did not load ({type(_boot_error).__name__}: {_boot_error}); "
                   "the site's files may be incomplete or damaged"}})


__export__ = ["call", "load_optional", "cancel_download", "download_model", "cached_models", "forget_cached_models"]
