# Pyodide worker glue: converts JS values to str/bytes and back, nothing else.
# The protocol and every call live in app/service.py (tested on CPython); see docs/worker-api.md.
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


__export__ = ["call"]
