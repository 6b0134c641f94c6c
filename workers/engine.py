# Pyodide worker glue: converts JS values to str/bytes and back, nothing else.
# The protocol and every call live in app/service.py (tested on CPython); see docs/worker-api.md.
import json

from polyscript import xworker

from app.service import EngineService

_service = EngineService()


def _send_progress(event_json):
    # Fire-and-forget: without SharedArrayBuffer the main-thread call returns a promise we do
    # not need to wait for.
    xworker.sync.on_progress(event_json)


def call(request_json, payload=None):
    """One protocol call: JSON text in, JSON text out; ``payload`` is an optional Uint8Array."""
    data = None if payload is None else payload.to_bytes()
    return _service.handle_json(str(request_json), data, _send_progress)


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
        from app.service import error_payload

        reply.update(ok=False, error=error_payload(exc))
    return json.dumps(reply)


__export__ = ["call", "load_optional"]
