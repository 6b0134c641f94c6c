# Main-thread UI (MicroPython via PyScript). Kept light: it talks to the engine worker only
# through the JSON protocol in docs/worker-api.md and never imports numpy / the app package.
import asyncio
import json

from pyscript import document, window, workers
from pyscript.ffi import create_proxy

BOOT_REQUEST = json.dumps({"call": "info", "id": "boot"})
GEMM_REQUEST = json.dumps({"call": "select_gemm_backend", "id": "boot-gemm"})


def set_engine_state(state, message):
    document.body.setAttribute("data-engine-state", state)
    document.getElementById("engine-status").textContent = message


def show_engine_info(info):
    rows = document.getElementById("engine-info")
    for label, key in (("Python", "python"), ("Pyodide", "pyodide"), ("numpy", "numpy"),
                       ("Pillow", "pillow"), ("Matrix backend", "gemm_backend"), ("Vitrine", "vitrine")):
        term = document.createElement("dt")
        term.textContent = label
        value = document.createElement("dd")
        value.textContent = str(info.get(key))
        rows.append(term)
        rows.append(value)


def on_progress(event_json):
    # Progress events from long engine calls (see docs/worker-api.md); the UI shows the latest.
    event = json.loads(event_json)
    stage = event.get("stage", "")
    if "done" in event and "total" in event:
        stage = "%s %s/%s" % (stage, event["done"], event["total"])
    document.getElementById("engine-status").textContent = "Working: " + stage


ENGINE_SRC = "./workers/engine.py"
ENGINE_CONFIG = "./config/engine.json"
# name of the live engine worker; each restart boots a fresh worker under a new name because
# PyScript resolves a worker name only once
engine_name = "engine"


async def start_engine():
    """Wait for the named engine worker, check it answers, publish it as window.vitrineEngine."""
    engine = await workers[engine_name]
    engine.on_progress = on_progress
    reply = json.loads(await engine.call(BOOT_REQUEST, None))
    if not reply["ok"]:
        error = reply["error"]
        set_engine_state("error", "The engine failed to start: %s: %s" % (error["type"], error["message"]))
        return
    # Route the engine's matrix products through the fastest working backend (SIMD kernels
    # shipped in the app wheel, else numpy); a failure here is reported, not fatal.
    gemm = json.loads(await engine.call(GEMM_REQUEST, None))
    if gemm["ok"]:
        reply["result"]["gemm_backend"] = gemm["result"]["backend"]
    else:
        window.console.warn("GEMM backend selection failed: " + gemm["error"]["message"])
    # One handle for the rest of the UI and for tests: window.vitrineEngine.call(json, bytes|null)
    window.vitrineEngine = engine
    document.body.setAttribute("data-engine-name", engine_name)
    if not document.getElementById("engine-info").hasChildNodes():
        show_engine_info(reply["result"])
    document.body.setAttribute("data-engine-ready-ms", str(window.performance.now()))
    set_engine_state("ready", "Engine ready. Nothing you add leaves this computer.")


async def restart_engine(reason="Cancelled"):
    """Hard cancel (docs/worker-api.md): terminate the engine worker, whatever it is running, and
    boot a fresh one. Loaded models are lost; replies still pending from the old worker never come."""
    global engine_name
    old = document.querySelector('script[type="py"][worker][name="%s"]' % engine_name)
    window.vitrineEngine = None
    if old is not None:
        old.xworker.terminate()
        old.remove()
    set_engine_state("booting", "%s: restarting the engine…" % reason)
    generation = int(document.body.getAttribute("data-engine-generation") or "0") + 1
    document.body.setAttribute("data-engine-generation", str(generation))
    engine_name = "engine-%d" % generation
    script = document.createElement("script")
    script.type = "py"
    script.src = ENGINE_SRC
    script.setAttribute("worker", "")
    script.setAttribute("name", engine_name)
    script.setAttribute("config", ENGINE_CONFIG)
    document.body.append(script)
    await start_engine()


def on_restart_request(event):
    # JS (or a Cancel button) asks for a hard cancel with a "vitrine:restart-engine" event.
    asyncio.create_task(restart_engine())


async def boot():
    # The UI is interactive from here on (the engine keeps booting in its worker); the timestamp
    # feeds bench/startup.py.
    document.body.setAttribute("data-ui-ready-ms", str(window.performance.now()))
    if document.body.getAttribute("data-engine-state") == "error":
        return  # boot.js already explained why the engine cannot start here
    document.addEventListener("vitrine:restart-engine", create_proxy(on_restart_request))
    set_engine_state("booting", "Starting the engine (Python in a background worker)…")
    await start_engine()


await boot()
