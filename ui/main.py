# Main-thread UI (MicroPython via PyScript). Kept light: it talks to the engine worker only
# through the JSON protocol in docs/worker-api.md and never imports numpy / the app package.
import json

from pyscript import document, window, workers

BOOT_REQUEST = json.dumps({"call": "info", "id": "boot"})


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


async def boot():
    # The UI is interactive from here on (the engine keeps booting in its worker); the timestamp
    # feeds bench/startup.py.
    document.body.setAttribute("data-ui-ready-ms", str(window.performance.now()))
    if document.body.getAttribute("data-engine-state") == "error":
        return  # boot.js already explained why the engine cannot start here
    set_engine_state("booting", "Starting the engine (Python in a background worker)…")
    engine = await workers["engine"]
    engine.on_progress = on_progress
    reply = json.loads(await engine.call(BOOT_REQUEST, None))
    if not reply["ok"]:
        error = reply["error"]
        set_engine_state("error", "The engine failed to start: %s: %s" % (error["type"], error["message"]))
        return
    # One handle for the rest of the UI and for tests: window.vitrineEngine.call(json, bytes|null)
    window.vitrineEngine = engine
    show_engine_info(reply["result"])
    document.body.setAttribute("data-engine-ready-ms", str(window.performance.now()))
    set_engine_state("ready", "Engine ready. Nothing you add leaves this computer.")


await boot()
