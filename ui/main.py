# Main-thread UI (MicroPython via PyScript). Kept light: it talks to the engine workers only
# through the JSON protocol in docs/worker-api.md and never imports numpy / the app package.
# Decoding, preprocessing, prediction, charts (SVG text) and export files are made in the workers;
# this file only moves bytes and text between the page and them. See docs/ui.md.
import asyncio
import gc
import json

from pyscript import document, window, workers
from pyscript.ffi import create_proxy, to_js

try:  # the Explain panel of result cards (ui/explain_view.py, issue #10)
    import explain_view
except ImportError as exc:  # the build did not ship it: the rest of the UI still works, loudly
    explain_view = None
    window.console.warn("Explain panel unavailable (ui/explain_view.py not importable): %s" % exc)

BOOT_REQUEST = json.dumps({"call": "info", "id": "boot"})
GEMM_REQUEST = json.dumps({"call": "select_gemm_backend", "id": "boot-gemm"})
DEMO_URL = "./static/demo/demo-model.zip"
ENGINE_SRC = "./workers/engine.py"
ENGINE_CONFIG = "./config/engine.json"
MAX_POOL = 4
# Pool size memory budget (docs/ui.md, "Pool size"): a worker's peak memory is about
# WORKER_BASE_MB (Pyodide + numpy + Pillow + the app) plus MODEL_MEMORY_FACTOR x the model file
# (weights, their optimised copies and the activations of one image), from the per-worker peaks of
# DenseNet121 / MobileNetV2 / ResNet50 / InceptionV3 in docs/benchmark.md; the workers of one tab
# get MEMORY_SHARE of the device memory, the rest is left to the browser and other tabs.
WORKER_BASE_MB = 170
MODEL_MEMORY_FACTOR = 8
MEMORY_SHARE = 0.5
ASSUMED_DEVICE_MEMORY_GB = 4  # browsers that do not tell (Firefox, Safari)
MEDICAL_SUFFIXES = (".dcm", ".dicom", ".nii", ".nii.gz")
# Many classes (docs/ui.md, "Many classes"): a card's chart and the table show the DEFAULT_TOP_K
# most probable classes unless the user asks for all; the batch chart draws at most
# BATCH_CHART_CLASSES (one distinct colour each, app.charts.PALETTE). Exports hold every class.
DEFAULT_TOP_K = 10
BATCH_CHART_CLASSES = 8

# name of the primary engine worker; each restart boots a fresh worker under a new name because
# PyScript resolves a worker name only once
engine_name = "engine"
engine = None          # the primary worker (catalog, downloads, charts, exports)
pool = []              # live worker slots (new_slot), the primary first: all of them classify images
pool_stats = {"deaths": 0, "replacements": 0, "next_pool": 0, "target": 1}
# Web Lock names are shared by every tab of the site: this tab's workers get names of their own
TAB_ID = str(window.Math.random())[2:12]
WORKER_STOPPED = "__vitrine_worker_stopped__"
primary_ready = asyncio.Event()  # clear while the primary worker is being replaced
engine_info = {}
_proxies = []          # keep event-handler proxies alive (the page's fixed controls)
# owner -> [(node, event, proxy)]: handlers of nodes that go away (an image's Remove button, the
# history and table-header buttons, catalog and cache entries). release(owner) drops them: a proxy
# kept here would keep its closure alive, and with it the image dict, its thumbnail and its
# detached DOM nodes, long after "End session" (tests/browser/test_memory.py)
_owned_proxies = {}
_next_id = [0]

state = {
    "model": None,        # {"handle", "name", "card", "md5", "source", "bytes"(JS Uint8Array or None)}
    "loading": None,      # id of the model request in flight
    "images": [],         # [{"id", "name", "file", "status", "error", "thumb", "meta", "li"}]
    "runs": [],           # session history, memory only
    "current_run": None,
    "cancel": False,
    "running": False,
    "sort": (None, False),  # (column key: "file", "predicted" or a class index; descending)
    "class_limit": DEFAULT_TOP_K,  # classes per card chart and table columns; None: every class
    "medical_loaded": False,
    "pending_choice": None,
    "download_id": None,
    "model_notices": [],  # what the current / last download told the user (model_notice)
    "batch": None,        # the running batch (predict), which replacement workers join
}


def el(element_id):
    return document.getElementById(element_id)


def make(tag, text=None, cls=None):
    node = document.createElement(tag)
    if text is not None:
        node.textContent = text
    if cls:
        node.className = cls
    return node


def on(node, event, handler, owner=None):
    proxy = create_proxy(handler)
    if owner is None:
        _proxies.append(proxy)
    else:
        _owned_proxies.setdefault(owner, []).append((node, event, proxy))
    node.addEventListener(event, proxy)


def release(owner):
    """Remove the handlers registered with ``on(..., owner=owner)`` and forget their proxies."""
    for node, event, proxy in _owned_proxies.pop(owner, ()):
        node.removeEventListener(event, proxy)


def spawn(coroutine_function, *args):
    """Event handler that starts a coroutine (DOM events cannot await)."""
    def handler(event):
        asyncio.create_task(coroutine_function(event, *args))
    return handler


def new_id(prefix):
    _next_id[0] += 1
    return "%s-%d" % (prefix, _next_id[0])


def clear(node):
    while node.firstChild:
        node.removeChild(node.firstChild)


def show(node, visible=True):
    node.hidden = not visible


def set_engine_state(state_name, message):
    document.body.setAttribute("data-engine-state", state_name)
    el("engine-status").textContent = message


def fmt_bytes(n):
    if n is None:
        return "?"
    if n >= 1048576:
        return "%.1f MB" % (n / 1048576)
    if n >= 1024:
        return "%.0f KB" % (n / 1024)
    return "%d B" % n


def percent(p):
    if 0 < p < 0.0005:
        return "< 0.1 %"
    return "%.1f %%" % (p * 100)


def error_text(error):
    text = error.get("message", "unknown error")
    if error.get("internal") and error.get("detail"):
        text += " (" + error["detail"] + ")"
    return text


# ---------------------------------------------------------------------------- engine calls
progress_handlers = {}


def on_progress(event_json):
    # Progress events from long engine calls (docs/worker-api.md): routed by request id.
    event = json.loads(event_json)
    handler = progress_handlers.get(event.get("id"))
    if handler is not None:
        handler(event)


async def call(name, args=None, payload=None, worker=None, request_id=None, slot=None):
    """One engine call (docs/worker-api.md) to ``slot`` (default: the primary worker). If that
    worker dies before answering, the reply is ``{"ok": false, "stopped": true, "error":
    {"type": "WorkerStoppedError", ...}}`` instead of a promise that never settles."""
    request = {"call": name, "id": request_id or new_id(name), "args": args or {}}
    if slot is None and worker is None:
        await primary_ready.wait()  # a replacement of the primary worker may be booting
        slot = primary_slot()
    elif slot is None:
        slot = slot_of(worker)
    if slot is None:  # a handle outside the pool: nobody watches it
        return json.loads(await (worker or engine).call(json.dumps(request), payload))
    if slot["dead"]:
        return stopped_reply(slot, name)
    stopped, reply = await race(slot, slot["engine"].call(json.dumps(request), payload))
    return stopped_reply(slot, name) if stopped else json.loads(reply)


def death_promise():
    """(promise, resolve): a promise of one call's own that ``signal_death`` settles."""
    with_resolvers = getattr(window.Promise, "withResolvers", None)
    if with_resolvers is not None:
        pair = window.Promise.withResolvers()
        return pair.promise, pair.resolve
    box = {}  # Safari < 17.4, Firefox < 121

    def executor(resolve, reject):
        box["resolve"] = resolve

    promise = window.Promise.new(executor)
    return promise, box["resolve"]


async def race(slot, pending):
    """Await a worker's promise or the worker's death, whichever comes first: (stopped, value).
    Each call races a death promise of its own, dropped when the call ends: one promise per worker
    that settles only at its death gained a reaction per call, which kept every call's race
    promise and reply alive for the worker's life (docs/robustness.md, "Memory")."""
    if slot["dead"]:
        return True, None
    slot["next_wait"] += 1
    key = slot["next_wait"]
    death, resolve = death_promise()
    slot["waiters"][key] = resolve
    try:
        value = await window.Promise.race(to_js([pending, death]))
    except Exception as exc:  # a rejected call: the channel to the worker broke
        worker_died(slot, "a call to it failed (%s)" % exc)
        return True, None
    finally:
        slot["waiters"].pop(key, None)
    if isinstance(value, str) and value == WORKER_STOPPED:
        return True, None
    return False, value


def signal_death(slot):
    """Answer every call still waiting on a worker that ended: WorkerStoppedError."""
    waiters = slot["waiters"]
    slot["waiters"] = {}
    for resolve in waiters.values():
        resolve(WORKER_STOPPED)


def stopped_reply(slot, call_name):
    return {"ok": False, "stopped": True, "call": call_name, "error": {
        "type": "WorkerStoppedError", "internal": False,
        "message": "engine worker %s (%s) stopped before answering %s" % (slot["label"], slot["name"], call_name)}}


async def file_bytes(file):
    return window.Uint8Array.new(await file.arrayBuffer())


# ---------------------------------------------------------------------------- engine boot / pool
def show_engine_info(info):
    rows = el("engine-info")
    clear(rows)
    for label, key in (("Python", "python"), ("Pyodide", "pyodide"), ("numpy", "numpy"),
                       ("Pillow", "pillow"), ("Matrix backend", "gemm_backend"), ("Vitrine", "vitrine"),
                       ("Workers in pool", "workers")):
        rows.append(make("dt", label))
        value = make("dd", str(info.get(key)))
        if key == "workers":
            value.id = "pool-size"
        rows.append(value)


async def start_engine():
    """Wait for the named engine worker, check it answers, publish it as window.vitrineEngine."""
    global engine, engine_info
    worker = await workers[engine_name]
    worker.on_progress = on_progress
    reply = json.loads(await worker.call(BOOT_REQUEST, None))
    if not reply["ok"]:
        error = reply["error"]
        set_engine_state("error", "The engine failed to start: %s: %s" % (error["type"], error["message"]))
        return False
    # Route the engine's matrix products through the fastest working backend (SIMD kernels
    # shipped in the app wheel, else numpy); a failure here is reported, not fatal.
    gemm = json.loads(await worker.call(GEMM_REQUEST, None))
    if gemm["ok"]:
        reply["result"]["gemm_backend"] = gemm["result"]["backend"]
    else:
        window.console.warn("GEMM backend selection failed: " + gemm["error"]["message"])
    engine = worker
    engine_info = reply["result"]
    script = document.querySelector('script[type="py"][worker][name="%s"]' % engine_name)
    slot = new_slot(engine_name, worker, script, True, "1")
    for old in [s for s in pool if s["primary"]]:
        pool.remove(old)
    pool.insert(0, slot)
    primary_ready.set()
    engine_info["workers"] = len(pool)
    # One handle for the rest of the UI and for tests: window.vitrineEngine.call(json, bytes|null)
    window.vitrineEngine = worker
    document.body.setAttribute("data-engine-name", engine_name)
    show_engine_info(engine_info)
    update_pool_attributes()
    await watch_life(slot)
    document.body.setAttribute("data-engine-ready-ms", str(window.performance.now()))
    set_engine_state("ready", "Engine ready. Nothing you add leaves this computer.")
    return True


async def restart_engine(reason="Cancelled", slots=None):
    """Hard cancel (docs/ui.md, "Cancel"; docs/worker-api.md): terminate engine workers whatever
    they are running (``slots``, default every worker of the pool), boot fresh ones in their place
    and load the current model into them from page memory. Calls pending on the old workers answer
    WorkerStoppedError at once; a running batch stops (its in-flight images are cancelled, not
    retried) and keeps the results it already has."""
    global engine
    targets = [s for s in (list(pool) if slots is None else slots) if not s["dead"]]
    restart_primary = slots is None or any(s["primary"] for s in targets)
    if state["batch"] is not None:
        state["cancel"] = True
    for slot in targets:
        stop_worker(slot)  # a deliberate stop: not a fault, no replacement from the death watch
    if restart_primary:
        booting = document.querySelector('script[type="py"][worker][name="%s"]' % engine_name)
        if booting is not None:  # a primary still booting is not in the pool yet
            booting.xworker.terminate()
            booting.remove()
        window.vitrineEngine = None
        engine = None
        primary_ready.clear()
        set_engine_state("booting", "%s: restarting the engine…" % reason)
    if state["batch"] is not None:
        check_batch(state["batch"])
    labels = sorted([s["label"] for s in targets] + (["1"] if restart_primary and not any(s["primary"] for s in targets) else []))
    pool_stats["restarts"] = pool_stats.get("restarts", 0) + 1
    document.body.setAttribute("data-engine-restarts", str(pool_stats["restarts"]))
    pool_event("%s: engine worker(s) %s ended on purpose, whatever they were running; starting fresh ones…"
               % (reason, ", ".join(labels)))
    jobs = [boot_primary()] if restart_primary else []
    jobs += [boot_pool_worker(s["label"]) for s in targets if not s["primary"]]
    started = [slot for slot in await asyncio.gather(*jobs) if slot is not None]
    await asyncio.gather(*[load_model_into(slot) for slot in started])
    model = state["model"]
    if model is not None and restart_primary and primary_slot() is not None and not primary_slot()["handle"]:
        # the model's bytes were not in page memory: it cannot be loaded again without the user
        state["model"] = None
        set_model_status("The engine was restarted; choose the model again.")
    update_pool_attributes()
    update_predict_button()
    loaded = model is not None and state["model"] is model
    pool_event("%s: engine restarted with %d fresh worker(s)%s." % (
        reason, len(started), ", the model is loaded again" if loaded else ""))
    if state["batch"] is None and live_count() != pool_stats["target"]:
        asyncio.create_task(resize_pool())


async def boot_primary():
    """A fresh primary worker (new name) in the pool, or None when it did not start (said on the page)."""
    next_primary_script()
    if not await start_engine():
        return None
    return primary_slot()


async def boot_pool_worker(label):
    try:
        return await start_pool_worker(label)
    except Exception as exc:  # a worker that cannot start leaves the pool smaller, said in words
        pool_event("Engine worker %s did not start again: %s" % (label, exc))
        return None


def next_primary_script():
    """Add the script of a new primary worker ``engine-<generation>`` (PyScript resolves a worker
    name only once, so a fresh worker needs a fresh name)."""
    global engine_name
    generation = int(document.body.getAttribute("data-engine-generation") or "0") + 1
    document.body.setAttribute("data-engine-generation", str(generation))
    engine_name = "engine-%d" % generation
    return add_worker_script(engine_name)


def add_worker_script(name):
    script = document.createElement("script")
    script.type = "py"
    script.src = ENGINE_SRC
    script.setAttribute("worker", "")
    script.setAttribute("name", name)
    script.setAttribute("config", ENGINE_CONFIG)
    document.body.append(script)
    return script


def on_restart_request(event):
    # JS (or a Cancel button) asks for a hard cancel with a "vitrine:restart-engine" event.
    asyncio.create_task(restart_engine())


# ---------------------------------------------------------------------------- model
def set_model_status(text, error=None):
    el("model-status").textContent = text
    box = el("model-error")
    if error:
        box.textContent = error
        show(box)
    else:
        box.textContent = ""
        show(box, False)


def model_notice(text):
    """Tell the user something about the model download that is not an error: which version of a
    concept record is used, or that Zenodo asked us to wait and when we retry. Notices of one
    download stay listed until the next download starts."""
    state["model_notices"].append(text)
    box = el("model-notice")
    box.textContent = " ".join(state["model_notices"])
    show(box)
    document.body.setAttribute("data-model-notice", text)


def clear_model_notices():
    state["model_notices"] = []
    box = el("model-notice")
    box.textContent = ""
    show(box, False)
    document.body.removeAttribute("data-model-notice")


METRIC_HELP = (
    ("auc", "area under the ROC curve: 1.0 ranks every positive above every negative, 0.5 is chance"),
    ("sensitivity", "share of images of this class that the model finds (recall)"),
    ("recall", "share of images of this class that the model finds (sensitivity)"),
    ("specificity", "share of images NOT of this class that the model correctly leaves out"),
    ("precision", "share of the model's predictions of this class that are right"),
    ("f1", "harmonic mean of precision and recall"),
    ("accuracy", "share of test images of this class classified correctly"),
)


# model card resize_mode: OpenCV interpolation codes (docs/model-card.md)
RESIZE_MODES = {0: "nearest", 1: "linear", 2: "cubic", 3: "area", 4: "Lanczos-4"}


def metric_help(name):
    lower = name.lower()
    for key, text in METRIC_HELP:
        if key in lower:
            return text
    return "as published by the model's authors"


def render_card(card, extra=None):
    """The model card view: description, classes, input, preprocessing, references, licence,
    source and published metrics (with a short explanation of each)."""
    box = el("model-card")
    clear(box)
    box.append(make("h3", card.get("name") or "Model"))
    if card.get("x-not-for-clinical-use") or "not for clinical use" in (card.get("name") or "").lower():
        box.append(make("p", "Not for clinical use.", "badge badge-warn"))
    if card.get("description"):
        box.append(make("p", card["description"]))
    facts = make("dl", None, "card-facts")
    size = card.get("input_size")
    rows = [
        ("Classes", ", ".join(card.get("classes") or [])),
        ("Task", "multi-label (threshold %s)" % card.get("threshold") if card.get("multi_label") else "single label (highest probability)"),
        # channels null: the model's input shape decides (docs/model-card.md), not "?"
        ("Input size", "%s x %s pixels, %s" % (size[1], size[0], "%s channel(s)" % card["channels"] if card.get("channels")
                                               else "channels as the model's input") if size else "from the model"),
        ("Preprocessing", "resize: %s interpolation (OpenCV mode %s)%s, intensity standardisation: %s" % (
            RESIZE_MODES.get(card.get("resize_mode"), "unknown"), card.get("resize_mode"),
            ", padded to a square" if card.get("pad_square") else "", card.get("standardize") or "none")),
        ("Modality", card.get("modality") or "not stated"),
        ("Discipline", card.get("discipline") or "not stated"),
        ("Licence", card.get("license") or "not stated"),
    ]
    source = card.get("source") or {}
    if source:
        parts = []
        if source.get("zenodo_id"):
            parts.append("Zenodo record %s" % source["zenodo_id"])
        if source.get("version"):
            parts.append("version %s" % source["version"])
        if source.get("file"):
            parts.append("file %s" % source["file"])
        if source.get("doi"):
            parts.append("DOI %s" % source["doi"])
        if source.get("md5"):
            parts.append("MD5 %s" % source["md5"])
        rows.append(("Source", ", ".join(parts)))
    for label, value in rows + (extra or []):
        facts.append(make("dt", label))
        facts.append(make("dd", str(value)))
    box.append(facts)
    references = card.get("references") or []
    if references:
        box.append(make("h4", "References"))
        listing = make("ul")
        for reference in references:
            item = make("li", reference.get("citation", ""))
            if reference.get("link"):
                item.append(document.createTextNode(" "))
                link = make("a", reference["link"])
                link.href = reference["link"]
                link.rel = "noopener noreferrer"
                item.append(link)
            listing.append(item)
        box.append(listing)
    metrics = card.get("metrics") or {}
    if metrics:
        box.append(make("h4", "Published metrics (by the model's authors, not measured by Vitrine)"))
        # MicroPython's dicts do not keep the JSON's order: metrics by name, classes in model order
        classes = card.get("classes") or []
        for metric in sorted(metrics):
            per_class = metrics[metric]
            box.append(make("p", "%s: %s." % (metric, metric_help(metric)), "muted"))
            table = make("table", None, "metrics-table")
            head = make("tr")
            head.append(make("th", "Class"))
            head.append(make("th", "Value"))
            table.append(head)
            names = [c for c in classes if c in per_class] + sorted([c for c in per_class if c not in classes])
            for class_name in names:
                row = make("tr")
                row.append(make("td", class_name))
                row.append(make("td", "%.3f" % per_class[class_name]))
                table.append(row)
            box.append(table)


def model_ready(reply, keep_bytes):
    result = reply["result"]
    state["model"] = {"handle": result["model"], "name": result["name"], "card": result["card"],
                      "md5": result["md5"], "source": result["source"], "bytes": keep_bytes,
                      "file": result["file"], "format": result["format"],
                      # the model file's size sizes the pool (pool_target's memory budget)
                      "size": result.get("bytes") or (keep_bytes.length if keep_bytes is not None else 0)}
    primary = primary_slot()
    if primary is not None:
        primary["handle"] = result["model"]
        primary["model_md5"] = result["md5"]
    update_pool_attributes()
    render_card(result["card"], [("Format", result["format"]), ("Size", fmt_bytes(result.get("bytes")))])
    if explain_view:
        explain_view.model_ready(result)
    set_model_status("Model ready: %s (%s)" % (result["name"], result["format"]))
    document.body.setAttribute("data-model-state", "ready")
    document.body.setAttribute("data-model-md5", result["md5"])
    document.body.setAttribute("data-model-name", result["name"])
    card = result["card"]
    show(el("threshold-box"), bool(card.get("multi_label")))
    if card.get("multi_label"):
        el("threshold").value = str(card.get("threshold", 0.5))
        el("threshold-value").textContent = "%.2f" % float(card.get("threshold", 0.5))
    update_predict_button()


def model_failed(message):
    document.body.setAttribute("data-model-state", "error")
    if state["model"] is not None:
        set_model_status("Still using: %s" % state["model"]["name"], message)
    else:
        set_model_status("No model loaded.", message)
    update_predict_button()


async def open_model_bytes(name, data):
    """Load model bytes (zip / .tflite) into every worker of the pool (pre-heating)."""
    request_id = new_id("open")
    state["loading"] = request_id
    document.body.setAttribute("data-model-state", "loading")
    set_model_status("Loading model %s (%s)…" % (name, fmt_bytes(data.length)))
    reply = await call("open_model", {"name": name}, data, request_id=request_id)
    if state["loading"] != request_id:
        return
    state["loading"] = None
    if reply["ok"]:
        model_ready(reply, data)
        asyncio.create_task(resize_pool())
    else:
        message = error_text(reply["error"])
        model_failed(message if name in message else "%s could not be loaded: %s" % (name, message))


async def reload_model_bytes():
    model = state["model"]
    await open_model_bytes(model["file"], model["bytes"])


async def load_demo(event=None):
    set_model_status("Loading the built-in demo model…")
    response = await window.fetch(DEMO_URL)
    if not response.ok:
        model_failed("The demo model is missing from this site (HTTP %s)." % response.status)
        return
    data = window.Uint8Array.new(await response.arrayBuffer())
    await open_model_bytes("demo-model.zip", data)


async def on_model_file(event):
    files = el("model-file").files
    if files.length == 0:
        return
    file = files.item(0)
    clear_model_notices()  # they were about an earlier download
    await open_model_bytes(file.name, await file_bytes(file))
    el("model-file").value = ""


async def fetch_reference(event=None, reference=None, chosen_file=None):
    """Resolve a DOI / Zenodo URL / record id / catalog id (worker, metadata only), then download it
    in the worker with byte progress, verify its MD5 and load it."""
    if reference is None:
        reference = el("model-reference").value.strip()
    if not reference:
        model_failed("Enter a DOI (10.5281/zenodo.N), a Zenodo record URL or a record id.")
        return
    show(el("model-file-choice"), False)
    request_id = new_id("download")
    state["loading"] = request_id
    state["download_id"] = request_id
    document.body.setAttribute("data-model-state", "loading")
    set_model_status("Looking up %s on Zenodo…" % reference)
    clear_model_notices()
    args = {"reference": reference, "zenodo_url": zenodo_url()}
    if chosen_file:
        args["file"] = chosen_file

    def lookup_progress(event):
        if event.get("stage") == "notice":  # a 429 / 5xx answer being waited out
            model_notice(event["message"])

    progress_handlers[request_id] = lookup_progress
    resolved = await call("resolve_model", args, request_id=request_id)
    progress_handlers.pop(request_id, None)
    if state["loading"] != request_id:
        return
    if not resolved["ok"]:
        state["loading"] = None
        error = resolved["error"]
        if error.get("candidates"):
            offer_file_choice(reference, error["candidates"])
        model_failed("%s: %s" % (reference, error_text(error)))
        return
    source = resolved["result"]
    for notice in source.get("notices") or []:  # e.g. which version of a concept record is used
        if notice not in state["model_notices"]:
            model_notice(notice)
    set_model_status("Downloading %s from Zenodo record %s (%s)…" % (source["file"], source["record"], fmt_bytes(source.get("size"))))
    row = el("model-progress-row")
    show(row)
    show(el("model-cancel"))
    el("model-progress").max = source.get("size") or 1
    el("model-progress").value = 0

    def progress(event):
        if event.get("stage") == "download":
            el("model-progress").value = event["done"]
            el("model-progress-text").textContent = "%s of %s" % (fmt_bytes(event["done"]), fmt_bytes(event.get("total")))
            document.body.setAttribute("data-download-done", str(event["done"]))
        elif event.get("stage") == "parsing":
            el("model-progress-text").textContent = "MD5 verified; loading the model…"
        elif event.get("stage") == "notice":  # waiting out a 429 / 5xx before retrying the file
            model_notice(event["message"])

    progress_handlers[request_id] = progress
    request = {"id": request_id, "args": {"source": source, "cache": bool(el("cache-opt-in").checked),
                                           "base_url": str(document.baseURI)}}
    primary = primary_slot()
    stopped, reply_json = await race(primary, engine.download_model(json.dumps(request)))
    reply = stopped_reply(primary, "download_model") if stopped else json.loads(reply_json)
    progress_handlers.pop(request_id, None)
    show(el("model-cancel"), False)
    state["download_id"] = None
    if state["loading"] != request_id:
        return
    state["loading"] = None
    if reply["ok"]:
        show(row, False)
        # keep the verified bytes in page memory too (a model is not patient data): the other
        # workers of the pool and any replacement worker load them from here
        stopped, data = await race(primary, engine.model_bytes(reply["result"]["model"]))
        model_ready(reply, None if stopped else data)
        if reply["result"].get("from_cache"):
            set_model_status("Model ready: %s (from this browser's cache, MD5 verified)" % reply["result"]["name"])
        asyncio.create_task(resize_pool())
    else:
        el("model-progress-text").textContent = "failed"
        message = error_text(reply["error"])
        model_failed(message if source["file"] in message else "%s: %s" % (source["file"], message))


def offer_file_choice(reference, candidates):
    select = el("model-file-select")
    clear(select)
    for name in candidates:
        option = make("option", name)
        option.value = name
        select.append(option)
    state["pending_choice"] = reference
    show(el("model-file-choice"))


async def use_chosen_file(event):
    await fetch_reference(reference=state["pending_choice"], chosen_file=el("model-file-select").value)


async def cancel_download(event):
    if state["download_id"]:
        await engine.cancel_download(state["download_id"])


def zenodo_url():
    params = window.URLSearchParams.new(window.location.search)
    value = params.get("zenodo")
    return str(value) if value else "https://zenodo.org"


def on_reference_key(event):
    if event.key == "Enter":
        event.preventDefault()
        asyncio.create_task(fetch_reference())


async def list_cached(event=None):
    reply = json.loads(await engine.cached_models(str(document.baseURI)))
    listing = el("cached-models")
    clear(listing)
    release("cached-models")
    keys = reply["result"]["keys"] if reply["ok"] else []
    if not keys:
        listing.append(make("li", "No cached models."))
    for key in keys:
        label = key.split("model-cache/")[-1]
        item = make("li", label + " ")
        button = make("button", "Forget")
        button.type = "button"
        button.className = "secondary"
        button.setAttribute("aria-label", "Forget " + label)  # one per model: say which (docs/ui.md, Labels)
        on(button, "click", spawn(forget_cached, key), owner="cached-models")
        item.append(button)
        listing.append(item)


async def forget_cached(event, key=None):
    await engine.forget_cached_models(key)
    await list_cached()


# ---------------------------------------------------------------------------- catalog
catalog = {"entries": []}


async def load_catalog():
    reply = await call("catalog")
    if not reply["ok"]:
        window.console.warn("catalog: " + reply["error"]["message"])
        return
    catalog["entries"] = reply["result"]["entries"]
    for select_id, key in (("filter-discipline", "disciplines"), ("filter-modality", "modalities"), ("filter-format", "formats")):
        select = el(select_id)
        for value in reply["result"][key]:
            option = make("option", value)
            option.value = value
            select.append(option)
    render_catalog()


def render_catalog(event=None):
    listing = el("catalog-list")
    for node in list(listing.querySelectorAll("li[data-catalog]")):
        node.remove()
    release("catalog")
    text = el("catalog-search").value.strip().lower()
    discipline = el("filter-discipline").value
    modality = el("filter-modality").value
    fmt = el("filter-format").value
    shown = 0
    for entry in catalog["entries"]:
        if text and not all(word in entry["search"] for word in text.split()):
            continue
        if discipline and entry.get("discipline") != discipline:
            continue
        if modality and entry.get("modality") != modality:
            continue
        if fmt and entry.get("format") != fmt:
            continue
        shown += 1
        item = make("li", None, "catalog-entry")
        item.setAttribute("data-catalog", entry["id"])
        info = make("div")
        info.append(make("strong", entry["name"]))
        info.append(make("p", "%s · %s · %s · Zenodo %s" % (entry.get("discipline") or "-", entry.get("modality") or "-",
                                                         entry.get("format") or "-", entry.get("zenodo_record") or "-"), "muted"))
        item.append(info)
        buttons = make("div", None, "row")
        details = make("button", "Details", "secondary")
        details.type = "button"
        details.setAttribute("aria-label", "Details of " + entry["name"])
        on(details, "click", lambda event, e=entry: show_catalog_card(e), owner="catalog")
        use = make("button", "Use")
        use.type = "button"
        use.setAttribute("aria-label", "Use " + entry["name"])
        on(use, "click", spawn(use_catalog_entry, entry["id"]), owner="catalog")
        buttons.append(details)
        buttons.append(use)
        item.append(buttons)
        listing.append(item)
    document.body.setAttribute("data-catalog-shown", str(shown))


def show_catalog_card(entry):
    if entry.get("card"):
        render_card(entry["card"], [("Catalog id", entry["id"]), ("Format", entry.get("format") or "?")])
        el("model-card-box").open = True


async def use_catalog_entry(event, entry_id):
    await fetch_reference(reference=entry_id)


# ---------------------------------------------------------------------------- images
def images_summary():
    images = state["images"]
    good = len([i for i in images if i["status"] == "ok"])
    bad = len([i for i in images if i["status"] == "error"])
    checking = len(images) - good - bad
    if not images:
        text = "No images yet."
    else:
        text = "%d image(s): %d ready, %d with errors%s." % (len(images), good, bad, ", %d being checked" % checking if checking else "")
    el("images-summary").textContent = text
    document.body.setAttribute("data-images-ready", str(good))
    document.body.setAttribute("data-images-checking", str(checking))
    update_predict_button()


def update_predict_button():
    ready = [i for i in state["images"] if i["status"] == "ok"]
    el("predict").disabled = state["running"] or state["model"] is None or state["loading"] is not None or not ready


def add_files(file_list):
    files = [file_list.item(i) for i in range(file_list.length)]
    files = [f for f in files if not str(f.name).startswith(".")]
    new = []
    for file in files:
        image = {"id": new_id("img"), "name": str(file.webkitRelativePath or file.name), "file": file,
                 "status": "checking", "error": None, "meta": None}
        image["li"] = image_item(image)
        state["images"].append(image)
        new.append(image)
    images_summary()
    asyncio.create_task(inspect_images(new))


def image_item(image):
    item = make("li", None, "image-item")
    item.setAttribute("data-image", image["name"])
    item.setAttribute("data-status", "checking")
    thumb = make("img", None, "thumb")
    thumb.alt = "Thumbnail of " + image["name"]
    thumb.width = 64
    thumb.height = 64
    item.append(thumb)
    text = make("div", None, "image-text")
    text.append(make("span", image["name"], "image-name"))
    text.append(make("span", "checking…", "image-status"))
    item.append(text)
    remove = make("button", "Remove", "secondary small")
    remove.type = "button"
    remove.setAttribute("aria-label", "Remove " + image["name"])
    on(remove, "click", lambda event, i=image: remove_image(i), owner=image["id"])
    item.append(remove)
    el("image-list").append(item)
    return item


async def engine_call_with_optional(name, args, data, worker=None, slot=None):
    """A call that may need pydicom / nibabel first: install them on demand and retry once."""
    reply = await call(name, args, data, worker=worker, slot=slot)
    if not reply["ok"] and reply["error"]["type"] == "OptionalPackagesNeededError":
        target = slot or slot_of(worker) or primary_slot()
        stopped, loaded = await race(target, target["engine"].load_optional("medical", str(document.baseURI)))
        if stopped:
            return stopped_reply(target, name)
        loaded = json.loads(loaded)
        if not loaded["ok"]:
            raise RuntimeError(error_text(loaded["error"]))
        reply = await call(name, args, data, worker=worker, slot=slot)
    return reply


async def inspect_images(images):
    for image in images:
        if image not in state["images"]:
            continue  # removed meanwhile
        data = await file_bytes(image["file"])
        reply = await engine_call_with_optional("inspect_image", {"name": image["name"], "show_phi": bool(el("show-phi").checked)}, data)
        if image not in state["images"]:
            continue
        item = image["li"]
        status = item.querySelector(".image-status")
        if reply["ok"]:
            result = reply["result"]
            image["status"] = "ok"
            image["meta"] = result
            image["thumb"] = "data:image/png;base64," + result["thumbnail_png"]
            item.querySelector("img").src = image["thumb"]
            meta = result.get("metadata") or {}
            shape = result["shape"]
            text = "%s, %s x %s, %s" % (meta.get("format", "image"), shape[1] if len(shape) > 1 else "?", shape[0], result["dtype"])
            if result.get("phi"):
                text += " | " + "; ".join("%s: %s" % (k, v) for k, v in result["phi"].items())
            status.textContent = text
        else:
            image["status"] = "error"
            image["error"] = error_text(reply["error"])
            status.textContent = image["error"]
            status.className = "image-status error-text"
        item.setAttribute("data-status", image["status"])
        images_summary()


def remove_image(image):
    if image in state["images"]:
        state["images"].remove(image)
    image["li"].remove()
    release(image["id"])
    # drop the image's references into the page at once (a handler closure may outlive this)
    image["li"] = image["file"] = image["thumb"] = image["meta"] = None
    images_summary()


def remove_all_images(event=None):
    for image in list(state["images"]):
        remove_image(image)


def on_files_chosen(event):
    add_files(event.target.files)
    event.target.value = ""


def on_drag_over(event):
    event.preventDefault()
    el("drop-zone").classList.add("dragging")


def on_drag_leave(event):
    el("drop-zone").classList.remove("dragging")


def on_drop(event):
    event.preventDefault()
    el("drop-zone").classList.remove("dragging")
    items = event.dataTransfer.items
    entries = []
    for i in range(items.length):
        entry = items[i].webkitGetAsEntry() if hasattr(items[i], "webkitGetAsEntry") else None
        if entry is not None and entry.isDirectory:
            entries.append(entry)
    if entries:
        for entry in entries:
            read_folder(entry)
    add_files(event.dataTransfer.files) if not entries else add_plain_files(event.dataTransfer)


def add_plain_files(transfer):
    # a drop mixing folders and files: the files are added here, folders by read_folder
    files = transfer.files
    plain = window.DataTransfer.new()
    for i in range(files.length):
        entry = transfer.items[i].webkitGetAsEntry()
        if entry is not None and entry.isFile:
            plain.items.add(files.item(i))
    if plain.files.length:
        add_files(plain.files)


def read_folder(directory):
    reader = directory.createReader()

    def got_entries(entries):
        collected = window.DataTransfer.new()
        pending = [entries.length]
        if entries.length == 0:
            return
        for i in range(entries.length):
            entry = entries[i]
            if entry.isDirectory:
                read_folder(entry)
                pending[0] -= 1
            else:
                def got_file(file, pending=pending, collected=collected):
                    collected.items.add(file)
                    pending[0] -= 1
                    if pending[0] == 0:
                        add_files(collected.files)
                proxy = create_proxy(got_file)
                _proxies.append(proxy)
                entry.file(proxy)
        if pending[0] == 0 and collected.files.length:
            add_files(collected.files)
        reader.readEntries(entries_proxy)  # directories list in batches until empty

    entries_proxy = create_proxy(got_entries)
    _proxies.append(entries_proxy)
    reader.readEntries(entries_proxy)


async def on_phi_toggle(event):
    # re-read DICOM images so that identifying fields appear / disappear
    dicoms = [i for i in state["images"] if i["status"] == "ok" and (i.get("meta") or {}).get("metadata", {}).get("format", "").upper().startswith("DICOM")]
    for image in dicoms:
        image["status"] = "checking"
    await inspect_images(dicoms)


# ---------------------------------------------------------------------------- prediction
async def predict(event=None):
    """Classify the images over every worker that has the model (docs/ui.md, "Worker pool"). Each
    worker pulls the next image from one queue, so a fast worker is never idle; results fill the
    cards and the table rows of their own image as they arrive (the order stays the image order).
    A worker that dies mid-image is replaced and its image retried once (``worker_died``)."""
    model = state["model"]
    images = [i for i in state["images"] if i["status"] in ("ok", "error")]
    if model is None or not images:
        return
    state["running"] = True
    state["cancel"] = False
    update_predict_button()
    run = {"id": len(state["runs"]) + 1, "model": {"name": model["name"], "source": model["source"], "md5": model["md5"]},
           "card": model["card"], "started": str(window.Date.new().toISOString()), "results": [], "threshold": None,
           "cancelled": False}
    state["current_run"] = run
    for image in images:
        run["results"].append({"file": image["name"], "probabilities": None, "error": image["error"] if image["status"] == "error" else None,
                               "thumb": image.get("thumb"), "pending": image["status"] == "ok", "ms": None,
                               "worker": None, "running": False, "note": None})
    render_run(run)
    todo = [(index, image, 0) for index, image in enumerate(images) if image["status"] == "ok"]
    total = len(todo)
    show(el("predict-progress-row"))
    show(el("predict-cancel"))
    el("predict-progress").max = total
    el("predict-progress").value = 0
    document.body.setAttribute("data-run-state", "running")
    batch = {"run": run, "model": model, "queue": todo, "in_flight": 0, "done": 0, "total": total,
             "finished": asyncio.Event(), "workers": []}
    state["batch"] = batch
    started_ms = window.performance.now()
    document.body.setAttribute("data-run-started-ms", str(started_ms))
    staff_batch(batch)
    check_batch(batch)
    await batch["finished"].wait()
    state["batch"] = None
    # classify phase only (first request to last result), for bench/workflow.py
    document.body.setAttribute("data-run-classify-ms", str(window.performance.now() - started_ms))
    done = batch["done"]
    state["running"] = False
    show(el("predict-cancel"), False)
    run["cancelled"] = state["cancel"]
    show(el("predict-stop"), False)
    for index, result in enumerate(run["results"]):
        if result["pending"]:
            result["pending"] = False
            result["running"] = False
            result["cancelled"] = state["cancel"]  # not a failure of the image: shown as such, not in red
            result["error"] = "not classified (cancelled)" if state["cancel"] else "not classified: no engine worker was left to run it"
            await update_result(run, index, chart=False)
    if state["cancel"]:
        el("predict-status").textContent = "Cancelled after %d of %d images." % (done, total)
    else:
        failed = len([r for r in run["results"] if r["error"] and r["worker"]])
        # the time per image stays on the line after the run: the mean of the images' own times
        times = [r["ms"] for r in run["results"] if r.get("ms") is not None]
        el("predict-status").textContent = "Done: %d of %d images classified%s%s." % (
            done - failed, total, " (%d failed: see the table)" % failed if failed else "",
            "; %.1f ms per image on average" % (sum(times) / len(times)) if times else "")
    state["runs"].append(run)
    render_history()
    await render_batch(run)
    render_table(run)
    document.body.setAttribute("data-run-state", "done")
    document.body.setAttribute("data-runs", str(len(state["runs"])))
    update_predict_button()
    if live_count() > pool_stats["target"]:  # a model change during the batch left surplus workers
        asyncio.create_task(resize_pool())


def staff_batch(batch):
    """Start a classify loop on every live worker that has the batch's model and has none yet."""
    for slot in pool:
        if (not slot["dead"] and slot["handle"] and slot["model_md5"] == batch["model"]["md5"]
                and slot["name"] not in batch["workers"]):
            batch["workers"].append(slot["name"])
            asyncio.create_task(classify_loop(batch, slot))


def check_batch(batch):
    """End the batch when every image has its result, or when nothing runs and nothing can
    (cancelled, or no worker left)."""
    if batch["finished"].is_set():
        return
    if batch["done"] >= batch["total"]:
        batch["finished"].set()
    elif batch["in_flight"] == 0 and (state["cancel"] or not live_ready_slots(batch["model"]) and not pool_stats.get("replacing")):
        batch["finished"].set()


def live_ready_slots(model):
    return [s for s in pool if not s["dead"] and s["handle"] and s["model_md5"] == model["md5"]]


async def classify_loop(batch, slot):
    run = batch["run"]
    try:
        while batch["queue"] and not state["cancel"] and not slot["dead"]:
            index, image, attempts = batch["queue"].pop(0)
            result = run["results"][index]
            result["worker"] = slot["name"]
            result["running"] = True
            batch["in_flight"] += 1
            await update_result(run, index, chart=False)
            data = await file_bytes(image["file"])
            slot["busy"] = image["name"]  # Stop now (stop_predict) ends the workers that are busy
            reply = await engine_call_with_optional("classify", {"model": slot["handle"], "name": image["name"]}, data, slot=slot)
            slot["busy"] = None
            batch["in_flight"] -= 1
            result["running"] = False
            if reply.get("stopped") and slot["retired"]:
                # ended on purpose (Stop now, engine restart): the image is cancelled, not retried
                await update_result(run, index, chart=False)
                continue
            if reply.get("stopped"):
                if attempts == 0:
                    # the worker died with this image in flight: once more, on whichever worker is free
                    result["stopped_on"] = slot["label"]
                    result["note"] = "engine worker %s stopped while classifying this image; retried" % slot["label"]
                    pool_event("Image %s was in flight on engine worker %s when it stopped; retrying it once." % (image["name"], slot["label"]))
                    batch["queue"].insert(0, (index, image, 1))
                    staff_batch(batch)
                    await update_result(run, index, chart=False)
                    continue
                pool_event("Image %s was in flight on engine worker %s too when it stopped: reported as failed, not retried again."
                           % (image["name"], slot["label"]))
                reply = {"ok": False, "error": {"message": "not classified: the engine worker stopped twice while classifying this image "
                                                           "(engine worker %s, then %s); the image may need more memory than this browser gives a worker"
                                                           % (result.get("stopped_on"), slot["label"])}}
            result["pending"] = False
            if reply["ok"]:
                result["probabilities"] = reply["result"]["probabilities"]
                result["ms"] = reply["result"]["ms"]
            else:
                result["error"] = error_text(reply["error"])
            batch["done"] += 1
            el("predict-progress").value = batch["done"]
            # "%.1f" like the card: MicroPython's repr of the worker's 8.8 is 8.800000000000001
            el("predict-status").textContent = "Image %d of %d (%s ms per image)" % (
                batch["done"], batch["total"], "%.1f" % result["ms"] if result["ms"] is not None else "–")
            if batch["done"] == 1:
                document.body.setAttribute("data-first-result-ms", str(window.performance.now()))
            await update_result(run, index)
            check_batch(batch)
    finally:
        if slot["name"] in batch["workers"]:
            batch["workers"].remove(slot["name"])
        check_batch(batch)


def cancel_predict(event):
    """Cooperative cancel: no further image starts; the images being classified finish (their
    results are kept). Works without SharedArrayBuffer: it only stops handing out work."""
    state["cancel"] = True
    batch = state["batch"]
    if batch is None:
        return
    if batch["in_flight"]:
        el("predict-status").textContent = ("Cancelling: %d image(s) being classified finish first. "
                                            "Stop now ends them at once (restarts the busy engine workers)." % batch["in_flight"])
        show(el("predict-stop"))
        el("predict-stop").focus()
    check_batch(batch)


async def stop_predict(event=None):
    """Hard cancel of a batch: the workers busy with an image are terminated and replaced
    (restart_engine); results already shown stay, the rest say "cancelled"."""
    state["cancel"] = True
    show(el("predict-stop"), False)
    busy = [s for s in pool if not s["dead"] and s.get("busy")]
    if state["batch"] is not None and busy:
        await restart_engine("Stopped", busy)


def predicted_of(run, probabilities):
    card = run["card"]
    classes = card["classes"]
    if card.get("multi_label"):
        limit = run["threshold"] if run["threshold"] is not None else card.get("threshold", 0.5)
        return [c for c, p in zip(classes, probabilities) if p >= limit]
    best = 0
    for i in range(len(probabilities)):
        if probabilities[i] > probabilities[best]:
            best = i
    return [classes[best]]


def render_run(run):
    el("run-title").textContent = "Run %d · %s · model: %s" % (run["id"], run["started"][:19].replace("T", " "), run["model"]["name"])
    show(el("result-controls"))
    update_class_limit_control(run)
    release("card-toggles")
    clear(el("result-cards"))
    clear(el("batch-chart"))
    for index in range(len(run["results"])):
        el("result-cards").append(result_card(run, index))
    render_table(run)


def result_card(run, index):
    result = run["results"][index]
    card = make("article", None, "result-card")
    card.id = "result-%d" % index
    card.setAttribute("data-index", str(index))
    card.setAttribute("data-file", result["file"])
    head = make("div", None, "result-head")
    if result.get("thumb"):
        thumb = make("img", None, "thumb")
        thumb.src = result["thumb"]
        thumb.alt = "Thumbnail of " + result["file"]
        thumb.width = 64
        thumb.height = 64
        head.append(thumb)
    title = make("div")
    title.append(make("h3", result["file"]))
    title.append(make("p", "", "result-summary"))
    head.append(title)
    card.append(head)
    card.append(make("div", None, "chart-box"))
    fill_result_card(run, index, card)
    return card


def fill_result_card(run, index, card):
    result = run["results"][index]
    summary = card.querySelector(".result-summary")
    if result.get("worker"):
        # which engine worker classified (or is classifying) this image: shown, and testable
        card.setAttribute("data-worker", result["worker"])
    if result.get("note"):
        card.setAttribute("data-note", result["note"])
    if result["pending"]:
        summary.textContent = ("classifying on engine worker %s…" % result["worker"].replace("engine-pool-", "pool ")
                               if result.get("running") else "waiting…")
        if result.get("note"):
            summary.textContent += " (" + result["note"] + ")"
        card.setAttribute("data-status", "running" if result.get("running") else "pending")
    elif result.get("cancelled"):
        summary.textContent = "Not classified (cancelled)"
        summary.className = "result-summary muted"
        card.setAttribute("data-status", "cancelled")
        card.setAttribute("data-error", result["error"])
    elif result["error"]:
        summary.textContent = "Error: " + result["error"]
        summary.className = "result-summary error-text"
        card.setAttribute("data-status", "error")
        card.setAttribute("data-error", result["error"])
    else:
        names = predicted_of(run, result["probabilities"])
        summary.textContent = "Predicted: %s%s%s" % (", ".join(names) or "none above the threshold",
                                                    " (%.1f ms)" % result["ms"] if result["ms"] is not None else "",
                                                    "; " + result["note"] if result.get("note") else "")
        card.setAttribute("data-status", "ok")
        card.setAttribute("data-probs", json.dumps(result["probabilities"]))
        if explain_view:
            explain_view.offer(card, run, result)


async def update_result(run, index, chart=True):
    if state["current_run"] is not run:
        return
    card = el("result-%d" % index)
    if card is None:
        return
    fill_result_card(run, index, card)
    update_table_row(run, index)
    if chart:
        await draw_chart(run, index, card)


def limit_applies(run):
    """The class limit, when it hides any class of this run's model (else None: show all)."""
    limit = state["class_limit"]
    return limit if limit is not None and limit < len(run["card"]["classes"]) else None


async def draw_chart(run, index, card):
    result = run["results"][index]
    if result["probabilities"] is None:
        return
    limit = limit_applies(run)
    args = {"kind": "bars", "probabilities": result["probabilities"], "order": el("bar-order").value,
            "name": result["file"], "card": run["card"], "model_info": run["model"],
            "top_k": None if result.get("all_classes") else limit}
    if run["threshold"] is not None:
        args["threshold"] = run["threshold"]
    reply = await call("chart", args)
    if reply["ok"] and state["current_run"] is run:
        card.querySelector(".chart-box").innerHTML = reply["result"]["svg"]
        # what the chart shows, for tests: the order, the class limit ("all": every class), the threshold
        card.setAttribute("data-chart-order", args["order"])
        card.setAttribute("data-chart-top-k", "all" if args["top_k"] is None else str(args["top_k"]))
        card.setAttribute("data-chart-threshold", "%.2f" % args["threshold"] if "threshold" in args else "")
        update_card_toggle(run, index, card, limit)


def update_card_toggle(run, index, card, limit):
    """The card's "Show all N classes" / "Show the top K only" button (only while the class
    limit hides classes): one image's every class without lengthening every other card."""
    toggle = card.querySelector("button.show-all-classes")
    if limit is None:
        if toggle is not None:
            toggle.remove()
        return
    result = run["results"][index]
    if toggle is None:
        toggle = make("button", None, "secondary small show-all-classes")
        toggle.type = "button"
        box = card.querySelector(".chart-box")
        box.id = "chart-%d" % index
        toggle.setAttribute("aria-controls", box.id)
        on(toggle, "click", spawn(toggle_card_classes, run, index), owner="card-toggles")  # it holds the run
        box.after(toggle)
    expanded = bool(result.get("all_classes"))
    toggle.setAttribute("aria-expanded", "true" if expanded else "false")
    count = len(run["card"]["classes"])
    toggle.textContent = ("Show the top %d only" % limit) if expanded else ("Show all %d classes" % count)
    toggle.setAttribute("aria-label", "%s for %s" % (toggle.textContent, result["file"]))


async def toggle_card_classes(event, run, index):
    result = run["results"][index]
    result["all_classes"] = not result.get("all_classes")
    card = el("result-%d" % index)
    if card is not None and state["current_run"] is run:
        await draw_chart(run, index, card)


def update_class_limit_control(run):
    """Offer "Classes shown" only for a model with more classes than the default top-k (below
    that every class is shown anyway); its last option names the count."""
    count = len(run["card"]["classes"])
    show(el("class-limit-box"), count > DEFAULT_TOP_K)
    if not state.get("order_chosen"):
        # the model order of hundreds of classes means nothing to a reader: their top k read
        # highest first unless the user chose an order
        el("bar-order").value = "descending" if count > DEFAULT_TOP_K else "default"
    el("class-limit").querySelector("option[value='all']").textContent = "All %d classes" % count


async def on_bar_order(event=None):
    state["order_chosen"] = True
    await redraw_charts()


async def on_class_limit(event=None):
    value = el("class-limit").value
    state["class_limit"] = None if value == "all" else int(value)
    run = state["current_run"]
    if run is None:
        return
    for result in run["results"]:
        result["all_classes"] = False  # the new choice applies to every card
    await redraw_charts()
    await render_batch(run)


async def redraw_charts(event=None):
    run = state["current_run"]
    if run is None:
        return
    for index in range(len(run["results"])):
        card = el("result-%d" % index)
        if card is not None:
            fill_result_card(run, index, card)
            await draw_chart(run, index, card)
    render_table(run)


async def render_batch(run):
    # cancelled images were never classified: they are listed in the table, not drawn as failures
    images = [{"file": r["file"], "probabilities": r["probabilities"]} for r in run["results"] if not r.get("cancelled")]
    if not images:
        clear(el("batch-chart"))
        return
    limit = state["class_limit"]
    most = BATCH_CHART_CLASSES if limit is None else min(limit, BATCH_CHART_CLASSES)
    reply = await call("chart", {"kind": "grouped", "images": images, "card": run["card"], "model_info": run["model"],
                                 "max_classes": most})
    if reply["ok"] and state["current_run"] is run:
        box = el("batch-chart")
        box.innerHTML = reply["result"]["svg"]
        box.setAttribute("data-max-classes", str(most))
        if "chart-wide" in reply["result"]["svg"]:  # many images: the chart scrolls sideways in its box
            box.setAttribute("tabindex", "0")
            box.setAttribute("role", "region")
            box.setAttribute("aria-label", "Batch chart (scrolls sideways)")
        else:
            for name in ("tabindex", "role", "aria-label"):
                box.removeAttribute(name)


def class_maxima(run):
    """Each class's highest probability over the run's results so far (ranks the table columns)."""
    best = None
    for r in run["results"]:
        if r["probabilities"] is not None:
            best = list(r["probabilities"]) if best is None else [max(a, b) for a, b in zip(best, r["probabilities"])]
    return best


def table_columns(run):
    """Class indices that get a table column, in model order: every class, or under a class limit
    the ``limit`` classes highest in any image (ties: lower index), as app.charts.batch_classes
    ranks them for the batch chart."""
    count = len(run["card"]["classes"])
    limit = limit_applies(run)
    best = run.get("class_max")
    if limit is None:
        return list(range(count))
    if best is None:
        return list(range(limit))  # nothing classified yet: the first classes hold the place
    ranked = sorted(range(count), key=lambda c: (-best[c], c))
    return sorted(ranked[:limit])


def render_table(run):
    table = el("results-table")
    show(table, True)
    # the box scrolls sideways on narrow screens: make it reachable and named for keyboard users
    wrap = table.parentNode
    wrap.setAttribute("tabindex", "0")
    wrap.setAttribute("role", "region")
    wrap.setAttribute("aria-label", "Results table (scrolls sideways)")
    classes = run["card"]["classes"]
    run["class_max"] = class_maxima(run)
    run["columns"] = table_columns(run)
    columns = run["columns"]
    table.setAttribute("data-columns", " ".join([str(c) for c in columns]))
    # a multi-label image can have many predicted classes: their cell gets room (vitrine.css)
    table.className = "results-table multi-label" if run["card"].get("multi_label") else "results-table"
    caption = table.querySelector("caption")
    note = el("table-note")
    if note is None:  # outside the table: a caption is as wide as the table, which scrolls sideways
        note = make("p", None, "muted table-note")
        note.id = "table-note"
        wrap.parentNode.insertBefore(note, wrap)
    limited = len(columns) < len(classes)
    show(note, limited)
    if limited:
        caption.textContent = "Images × the %d of %d classes highest in any image (select a column heading to sort)" % (
            len(columns), len(classes))
        note.textContent = ("The table shows %d of the model's %d classes; “Classes shown” above shows every class. "
                            "The CSV and JSON exports always hold all %d." % (len(columns), len(classes), len(classes)))
    else:
        caption.textContent = "All images × classes (select a column heading to sort)"
    head = table.querySelector("thead")
    clear(head)
    release("table-head")
    row = make("tr")
    keys = ["file", "predicted"] + columns
    labels = ["File", "Predicted"] + [classes[c] for c in columns]
    sort_key, sort_desc = state["sort"]
    for key, label in zip(keys, labels):
        cell = make("th")
        cell.scope = "col"
        button = make("button", label, "sort")
        button.type = "button"
        if sort_key == key:
            cell.setAttribute("aria-sort", "descending" if sort_desc else "ascending")
        on(button, "click", lambda event, k=key: sort_table(k), owner="table-head")
        cell.append(button)
        row.append(cell)
    head.append(row)
    body = table.querySelector("tbody")
    clear(body)
    order = list(range(len(run["results"])))
    if sort_key in keys:  # a class column hidden by the class limit no longer sorts the rows
        def key(i):
            r = run["results"][i]
            if sort_key == "file":
                return r["file"].lower()
            if r["probabilities"] is None:
                return "" if sort_key == "predicted" else -1.0
            if sort_key == "predicted":
                return ", ".join(predicted_of(run, r["probabilities"]))
            return r["probabilities"][sort_key]
        order.sort(key=key, reverse=sort_desc)
    for i in order:
        body.append(table_row(run, i))


def table_row(run, i):
    classes = run["card"]["classes"]
    r = run["results"][i]
    tr = make("tr")
    tr.setAttribute("data-file", r["file"])
    tr.setAttribute("data-index", str(i))
    if r.get("worker"):
        tr.setAttribute("data-worker", r["worker"])
    name_cell = make("th")
    name_cell.append(make("span", r["file"], "file-name"))
    name_cell.scope = "row"
    tr.append(name_cell)
    columns = run.get("columns") or list(range(len(classes)))
    if r["probabilities"] is not None:
        tr.setAttribute("data-probs", json.dumps(r["probabilities"]))
        names = predicted_of(run, r["probabilities"])
        tr.append(make("td", ", ".join(names), "predicted"))
        for c in columns:
            p = r["probabilities"][c]
            tr.append(make("td", percent(p), "num" + (" top" if classes[c] in names else "")))
    else:
        tr.setAttribute("data-error", r["error"] or "")
        if r.get("cancelled"):
            cell = make("td", "Not classified (cancelled)", "muted")
        else:
            cell = make("td", "pending" if r["pending"] else "Error: %s" % r["error"], "error-text" if r["error"] else "")
        cell.colSpan = len(columns) + 1
        tr.append(cell)
    return tr


def update_table_row(run, index):
    """Replace one row as its result arrives (the row stays where the current sort put it). Under
    a class limit a result can change which classes are the highest of the batch: then the whole
    table is drawn again with the new columns."""
    result = run["results"][index]
    if result["probabilities"] is not None and limit_applies(run) is not None and not result.get("ranked"):
        result["ranked"] = True
        best = run.get("class_max")
        run["class_max"] = list(result["probabilities"]) if best is None else [
            max(a, b) for a, b in zip(best, result["probabilities"])]
        if table_columns(run) != run.get("columns"):
            render_table(run)
            return
    old = el("results-table").querySelector("tbody tr[data-index='%d']" % index)
    if old is not None:
        old.replaceWith(table_row(run, index))


def sort_table(key):
    sort_key, sort_desc = state["sort"]
    # a class column sorts highest first on its first click, the file and predicted columns A to Z
    state["sort"] = (key, not sort_desc if sort_key == key else key not in ("file", "predicted"))
    if state["current_run"] is not None:
        render_table(state["current_run"])


def on_threshold(event):
    run = state["current_run"]
    value = float(el("threshold").value)
    el("threshold-value").textContent = "%.2f" % value
    if run is not None:
        run["threshold"] = value
        asyncio.create_task(redraw_charts())


async def export(event, fmt, run=None):
    run = run or state["current_run"]
    if run is None:
        return
    results = [{"file": r["file"], "probabilities": r["probabilities"], "error": r["error"]} for r in run["results"]]
    # the date column is the run's (as the history lists it), not the time of the export: a past
    # run exported from the history keeps its own date; same ISO form as the CLI's (UTC, seconds)
    args = {"format": fmt, "results": results, "card": run["card"], "model_info": run["model"],
            "date": run["started"][:19] + "+00:00"}
    if run["threshold"] is not None:
        args["threshold"] = run["threshold"]
    reply = await call("export_results", args)
    if not reply["ok"]:
        el("predict-status").textContent = "Export failed: " + error_text(reply["error"])
        return
    result = reply["result"]
    blob = window.Blob.new(to_js([result["text"]]), to_js({"type": result["mime"] + ";charset=utf-8"}))
    url = window.URL.createObjectURL(blob)
    link = make("a")
    link.href = url
    link.download = result["filename"]
    document.body.append(link)
    link.click()
    link.remove()
    # revoke once the browser has started the download
    window.setTimeout(create_proxy(lambda: window.URL.revokeObjectURL(url)), 1000)


# ---------------------------------------------------------------------------- history
def render_history():
    listing = el("history-list")
    clear(listing)
    release("history")
    for run in state["runs"]:
        ok = len([r for r in run["results"] if r["probabilities"] is not None])
        item = make("li", None, "history-item")
        item.setAttribute("data-run", str(run["id"]))
        item.append(make("span", "Run %d · %s · %s · %d of %d classified%s" % (
            run["id"], run["started"][11:19], run["model"]["name"], ok, len(run["results"]), " (cancelled)" if run["cancelled"] else "")))
        reopen = make("button", "Reopen", "secondary small")
        reopen.type = "button"
        reopen.setAttribute("aria-label", "Reopen run %d" % run["id"])
        on(reopen, "click", spawn(reopen_run, run), owner="history")
        item.append(reopen)
        csv = make("button", "CSV", "secondary small")
        csv.type = "button"
        csv.setAttribute("aria-label", "Export run %d as CSV" % run["id"])
        on(csv, "click", spawn(export, "csv", run), owner="history")
        item.append(csv)
        listing.append(item)


async def reopen_run(event, run):
    state["current_run"] = run
    render_run(run)
    document.body.setAttribute("data-current-run", str(run["id"]))
    await redraw_charts()
    await render_batch(run)


def end_session(event=None):
    """Forget images, results and history (all in memory only: nothing was ever stored)."""
    state["cancel"] = True
    remove_all_images()
    state["runs"] = []
    state["current_run"] = None
    clear(el("history-list"))
    clear(el("result-cards"))
    clear(el("batch-chart"))
    show(el("results-table"), False)
    if el("table-note") is not None:
        show(el("table-note"), False)
    clear(el("results-table").querySelector("thead"))
    clear(el("results-table").querySelector("tbody"))
    release("history")
    release("table-head")
    release("card-toggles")
    if explain_view:
        explain_view.session_ended()
    show(el("result-controls"), False)
    el("run-title").textContent = "Session ended: images, results and history were removed from memory."
    show(el("predict-progress-row"), False)
    document.body.setAttribute("data-runs", "0")
    document.body.removeAttribute("data-run-state")
    images_summary()
    collect_soon()


def collect_soon():
    """Free what the session held in both heaps. MicroPython collects only when its heap is full,
    and the JS objects its dropped references point to (detached cards and rows, thumbnails) stay
    alive until it does. An event-handler proxy links the heaps both ways, so freeing takes turns:
    MicroPython frees its side, then the browser's collector (on its own schedule) frees the
    handler and tells MicroPython, which then frees the closure and the nodes it reached. A few
    collections over the next seconds complete those turns (tests/browser/test_memory.py)."""
    gc.collect()
    for delay_ms in (500, 1500, 3000, 6000, 12000):
        window.setTimeout(_collect_proxy, delay_ms)


_collect_proxy = create_proxy(lambda: gc.collect())


# ---------------------------------------------------------------------------- worker pool
def pool_target(model_bytes=0):
    """Workers to run (docs/ui.md, "Pool size"): one per logical core (the main thread is light
    MicroPython and mostly waits), as many as fit in a memory budget of half the device memory at
    WORKER_BASE_MB + MODEL_MEMORY_FACTOR x the model file per worker, at least 1, at most MAX_POOL.
    ?workers=N on the page URL overrides it (tests, benchmarks)."""
    params = window.URLSearchParams.new(window.location.search)
    wanted = params.get("workers")
    if wanted:
        return max(1, min(MAX_POOL, int(str(wanted))))
    cores = int(window.navigator.hardwareConcurrency or 1)
    # navigator.deviceMemory: Chromium only, in GB, coarse (a power of two) and capped by the browser
    memory_gb = float(window.navigator.deviceMemory or ASSUMED_DEVICE_MEMORY_GB)
    per_worker_mb = worker_memory_mb(model_bytes)
    by_memory = int(memory_gb * 1024 * MEMORY_SHARE / per_worker_mb)
    return max(1, min(MAX_POOL, cores, by_memory))


def worker_memory_mb(model_bytes):
    return WORKER_BASE_MB + MODEL_MEMORY_FACTOR * (model_bytes or 0) / 1048576


def new_slot(name, worker, script, primary, label):
    """A worker of the pool. ``waiters`` resolve the death promises of the calls in flight, which
    ``signal_death`` settles to WORKER_STOPPED when the worker is found dead (``race``)."""
    return {"name": name, "label": label, "engine": worker, "script": script, "primary": primary,
            "handle": None, "model_md5": None, "dead": False, "retired": False, "waiters": {}, "next_wait": 0}


def primary_slot():
    for slot in pool:
        if slot["primary"]:
            return slot
    return None


def slot_of(worker):
    for slot in pool:
        if slot["engine"] is worker:
            return slot
    return None


async def watch_life(slot):
    """Death watch: the worker takes a Web Lock named after itself and never releases it; this
    thread asks for the same lock, which the browser grants only when the worker has ended
    (closed, terminated, crashed, out of memory), even in the middle of a call."""
    lock_name = "vitrine-life-%s-%s" % (TAB_ID, slot["name"])
    locks = getattr(window.navigator, "locks", None)
    stopped, reply = await race(slot, slot["engine"].hold_life_lock(lock_name, slot["name"]))
    if stopped:
        return
    reply = json.loads(reply)
    if locks is None or not reply["ok"]:
        document.body.setAttribute("data-death-watch", "none")
        window.console.warn("engine worker %s: no death watch (%s); a worker that dies silently is not noticed"
                            % (slot["name"], reply.get("error", {}).get("message", "no navigator.locks on the page")))
        return

    def released(lock):
        if not slot["retired"]:
            worker_died(slot, "it stopped running")

    proxy = create_proxy(released)
    _proxies.append(proxy)
    locks.request(lock_name, proxy)
    document.body.setAttribute("data-death-watch", "web-locks")


def retire(slot):
    """Stop watching a worker this page ends on purpose (hard cancel): not a fault."""
    slot["retired"] = True
    slot["dead"] = True
    signal_death(slot)
    if slot["primary"]:
        primary_ready.clear()
    if slot in pool:
        pool.remove(slot)
    update_pool_attributes()


def worker_died(slot, cause):
    """A worker ended without being asked to: its pending calls answer WorkerStoppedError, the
    running batch retries its in-flight image once, and a fresh worker takes its place."""
    if slot["dead"]:
        return
    slot["dead"] = True
    signal_death(slot)
    if slot["primary"]:
        primary_ready.clear()
    if slot in pool:
        pool.remove(slot)
    pool_stats["deaths"] += 1
    document.body.setAttribute("data-worker-deaths", str(pool_stats["deaths"]))
    pool_event("Engine worker %s (%s) stopped: %s. Starting a replacement…" % (slot["label"], slot["name"], cause))
    update_pool_attributes()
    pool_stats["replacing"] = pool_stats.get("replacing", 0) + 1
    asyncio.create_task(replace_worker(slot))


async def replace_worker(dead):
    global engine
    try:
        script = dead["script"]
        if script is not None:
            script.xworker.terminate()  # it may linger half-alive (e.g. out of memory): make sure
            script.remove()
        if dead["primary"]:
            window.vitrineEngine = None
            engine = None
            slot = await boot_primary()
            if slot is None:
                pool_event("Engine worker %s could not be replaced: the new engine did not start." % dead["label"])
                return
        else:
            slot = await start_pool_worker(dead["label"])
        await load_model_into(slot)
        pool_stats["replacements"] += 1
        document.body.setAttribute("data-worker-replacements", str(pool_stats["replacements"]))
        pool_event("Engine worker %s stopped; replaced by a fresh worker (%s)%s." % (
            dead["label"], slot["name"], ", the model is loaded again" if slot["handle"] else ""))
    except Exception as exc:  # a replacement that cannot start leaves the pool smaller, said in words
        pool_event("Engine worker %s could not be replaced: %s" % (dead["label"], exc))
    finally:
        pool_stats["replacing"] -= 1
        update_pool_attributes()
        if state["batch"] is not None:
            staff_batch(state["batch"])
            check_batch(state["batch"])


def pool_event(text):
    """Say what happened to the workers, in the results section (a polite live region)."""
    log = el("pool-events")
    if log is None:
        log = make("ul", None, "pool-events")
        log.id = "pool-events"
        log.setAttribute("role", "log")
        log.setAttribute("aria-live", "polite")
        log.setAttribute("aria-label", "Engine worker events")
        anchor = el("run-title")
        anchor.parentNode.insertBefore(log, anchor)
    stamp = str(window.Date.new().toISOString())[11:19]
    log.append(make("li", "%s %s" % (stamp, text)))
    window.console.info("vitrine pool: " + text)


def update_pool_attributes():
    live = [s for s in pool if not s["dead"]]
    model = state["model"]
    ready = live_ready_slots(model) if model is not None else []
    document.body.setAttribute("data-pool-size", str(len(live)))
    document.body.setAttribute("data-pool-ready", str(len(ready)))
    engine_info["workers"] = len(live)
    size = el("pool-size")
    if size is not None:
        size.textContent = "%d of %d (%d with the model loaded)" % (len(live), pool_stats["target"], len(ready))


async def start_pool_worker(label=None):
    pool_stats["next_pool"] += 1
    name = "engine-pool-%d" % pool_stats["next_pool"]
    script = add_worker_script(name)
    worker = await workers[name]
    worker.on_progress = on_progress
    gemm = json.loads(await worker.call(GEMM_REQUEST, None))
    if not gemm["ok"]:
        window.console.warn("pool worker GEMM selection failed: " + gemm["error"]["message"])
    slot = new_slot(name, worker, script, False, label or str(len(pool) + 1))
    pool.append(slot)
    update_pool_attributes()
    await watch_life(slot)
    return slot


async def load_model_into(slot):
    """Load the current model into one worker from the bytes kept in page memory (every source
    keeps them: built-in demo, local file, Zenodo / catalog download)."""
    model = state["model"]
    if model is None or slot["dead"] or (slot["handle"] and slot["model_md5"] == model["md5"]):
        return
    if slot.get("loading_md5") == model["md5"]:  # resize_pool and a replacement may both ask
        return
    if model.get("bytes") is None:
        pool_event("Engine worker %s cannot get model %s: its bytes are not in this page." % (slot["label"], model["name"]))
        return
    old = slot["handle"]
    slot["handle"] = None
    slot["model_md5"] = None
    update_pool_attributes()
    if old and not slot["primary"]:
        await call("unload_model", {"model": old}, slot=slot)  # one model per pool worker: free the memory
    slot["loading_md5"] = model["md5"]
    try:
        reply = await call("open_model", {"name": model["file"]}, model["bytes"], slot=slot)
    finally:
        slot["loading_md5"] = None
    if reply["ok"] and state["model"] is not model and not slot["primary"]:
        # the user chose another model meanwhile: free this one (resize_pool loads the new one)
        await call("unload_model", {"model": reply["result"]["model"]}, slot=slot)
    elif reply["ok"] and state["model"] is model:
        slot["handle"] = reply["result"]["model"]
        slot["model_md5"] = model["md5"]
        if slot["primary"]:
            model["handle"] = slot["handle"]
        if state["batch"] is not None:  # a batch started while this worker was loading: join it
            staff_batch(state["batch"])
    elif not reply["ok"] and not reply.get("stopped"):
        pool_event("Engine worker %s could not load %s: %s" % (slot["label"], model["name"], error_text(reply["error"])))
    update_pool_attributes()


pool_resize = {"running": False, "again": False}


async def resize_pool():
    """Match the pool to pool_target() for the current model (a bigger model may need fewer
    workers, a smaller one allows more) and load the model into every worker from page memory
    (pre-heating: the first batch does not wait for a worker to load it). Runs once at a time; a
    call while it runs makes it go round again."""
    if pool_resize["running"]:
        pool_resize["again"] = True
        return
    pool_resize["running"] = True
    try:
        while True:
            pool_resize["again"] = False
            model = state["model"]
            target = pool_target(model.get("size") if model else 0)
            pool_stats["target"] = target
            document.body.setAttribute("data-pool-target", str(target))
            update_pool_attributes()
            shrink_pool(target)
            await asyncio.gather(*[load_model_into(slot) for slot in list(pool) if not slot["primary"]])
            while not pool_resize["again"] and live_count() + pool_stats.get("replacing", 0) < target:
                try:
                    slot = await start_pool_worker()
                    await load_model_into(slot)
                except Exception as exc:  # a worker that cannot start leaves the pool smaller, not broken
                    window.console.warn("pool worker did not start: %s" % exc)
                    break
            if not pool_resize["again"]:
                break
    finally:
        pool_resize["running"] = False


def live_count():
    return len([s for s in pool if not s["dead"]])


def shrink_pool(target):
    """End the pool workers beyond ``target`` (never the primary). A worker busy in the running
    batch is left alone; the batch calls resize_pool again when it ends."""
    batch = state["batch"]
    extra = [s for s in pool if not s["dead"] and not s["primary"]][max(0, target - 1):]
    for slot in reversed(extra):
        if batch is not None and slot["name"] in batch["workers"]:
            continue
        stop_worker(slot)
        pool_event("Engine worker %s (%s) ended: the pool is sized for %d worker(s) with this model."
                   % (slot["label"], slot["name"], target))


def stop_worker(slot):
    """End a worker on purpose (not a fault: the death watch does not replace it)."""
    retire(slot)
    if slot["script"] is not None:
        slot["script"].xworker.terminate()
        slot["script"].remove()


# ---------------------------------------------------------------------------- wiring
def wire():
    if explain_view:
        explain_view.setup(engine_call_with_optional, state)
    on(el("use-demo"), "click", spawn(load_demo))
    on(el("model-file"), "change", spawn(on_model_file))
    on(el("model-fetch"), "click", spawn(fetch_reference))
    on(el("model-reference"), "keydown", on_reference_key)
    on(el("model-cancel"), "click", spawn(cancel_download))
    on(el("model-file-use"), "click", spawn(use_chosen_file))
    on(el("cache-list"), "click", spawn(list_cached))
    on(el("cache-forget-all"), "click", spawn(forget_cached))
    on(el("catalog-search"), "input", render_catalog)
    for select_id in ("filter-discipline", "filter-modality", "filter-format"):
        on(el(select_id), "change", render_catalog)
    on(el("image-files"), "change", on_files_chosen)
    on(el("image-folder"), "change", on_files_chosen)
    zone = el("drop-zone")
    on(zone, "dragover", on_drag_over)
    on(zone, "dragleave", on_drag_leave)
    on(zone, "drop", on_drop)
    on(el("images-clear"), "click", remove_all_images)
    on(el("show-phi"), "change", spawn(on_phi_toggle))
    on(el("predict"), "click", spawn(predict))
    on(el("predict-cancel"), "click", cancel_predict)
    on(el("predict-stop"), "click", spawn(stop_predict))
    on(el("bar-order"), "change", spawn(on_bar_order))
    on(el("class-limit"), "change", spawn(on_class_limit))
    on(el("threshold"), "input", on_threshold)
    on(el("export-csv"), "click", spawn(export, "csv"))
    on(el("export-json"), "click", spawn(export, "json"))
    on(el("end-session"), "click", end_session)


async def boot():
    # The UI is interactive from here on (the engine keeps booting in its worker); the timestamp
    # feeds bench/startup.py.
    document.body.setAttribute("data-ui-ready-ms", str(window.performance.now()))
    if document.body.getAttribute("data-engine-state") == "error":
        return  # boot.js already explained why the engine cannot start here
    wire()
    document.addEventListener("vitrine:restart-engine", create_proxy(on_restart_request))
    set_engine_state("booting", "Starting the engine (Python in a background worker)…")
    if not await start_engine():
        return
    # pre-heating: the demo model loads as soon as the engine is up, while the user picks images
    await load_demo()  # its model_ready starts the rest of the pool (resize_pool)
    await load_catalog()
    asyncio.create_task(resize_pool())  # also when the demo model could not be loaded


await boot()
