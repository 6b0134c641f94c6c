"""Side-by-side inference benchmark: Vitrine (the real site page) vs TF.js 4.22 wasm vs ONNX Runtime Web.

    python build.py bench [--json out.json] [--models densenet121,mobilenetv2] [--runs 5] [--warmup 2]
    python bench/inference.py ...                       (the same)

One headless Debian Chromium (/usr/bin/chromium, Playwright for Python), one local static server
serving ``dist/`` at ``/`` and, under ``/__bench/``, the dev-only harness page (``bench/page/``),
the peer libraries from ``node_modules`` (devDependencies, never in dist/), the models and the
inputs. No COOP/COEP headers, exactly like GitHub Pages, so every engine is single-threaded per
worker / page.

Per model (same input bytes for every engine: ``input_0`` of the fixture's io.npz):

* latency: batch 1, ``--warmup`` untimed runs then ``--runs`` timed runs, median. Timed in the page
  with ``performance.now()`` around what a caller waits for: Vitrine = ``await
  window.vitrineEngine.call(predict)`` (message to the worker, numpy inference, JSON reply);
  TF.js = ``tf.tensor`` + ``model.predict`` + ``await data()``; ORT = ``new ort.Tensor`` +
  ``session.run``.
* CPU ms per image: CPU time (user + system, all threads) that the engine's renderer process
  spent during the timed latency runs, divided by the runs (``SystemInfo.getProcessInfo``
  ``cpuTime``). On a loaded machine wall-clock latency mostly measures the competition for the
  cores; CPU time does not (it still includes the page's own idle work, tiny here).
* throughput: a batch of ``--batch`` (32) images (io.npz's images tiled). Vitrine: the page's
  worker pool when the page exposes one, else N = os.cpu_count() site pages in the same browser,
  each with its own engine worker, sharing the images one ``predict`` call per image (what the UI
  does); wall time from the first start to the last reply. TF.js: one ``model.predict`` on the
  whole batch in one page (its best case).
* CPU split by thread (``*_cpu_ms_per_image_by_thread``, ``*throughput_cpu_ms_by_thread``): from
  /proc/<renderer pid>/task/*/stat, so the engine worker's own thread is told apart from the
  page's main thread and Chromium's helpers; ``throughput_cpu_ms_per_image`` is the CPU the
  busy threads used per image during the throughput run.
* max |diff| between Vitrine's and TF.js's batch-1 outputs (and each against TensorFlow's own
  output stored in io.npz).
* worker memory: the engine worker's own high-water mark, reported from inside the worker
  (``info`` -> ``memory.heap_bytes`` = Pyodide's WebAssembly linear memory, which never shrinks),
  read after the latency runs and, for each pool worker, after the throughput run; printed
  against the goal 2 x the model's weight bytes + 150 MB.
* peak memory: VmHWM (peak resident set size) from /proc of the Chromium renderer process that
  hosts the engine, read after loading + warm-up + the latency runs. Each engine runs in its own
  browser context (own renderer process); the process is found as the renderer that appeared
  with the context (pids from the DevTools protocol ``SystemInfo.getProcessInfo``) with the
  largest resident set. It includes the page, its workers (Vitrine's engine worker lives in the
  page's renderer process) and Chromium's own per-renderer overhead.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import build  # noqa: E402  (the repo root is only importable after the path tweak)
from playwright.sync_api import Error as PlaywrightError  # noqa: E402
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
BIG_FIXTURES = ROOT / ".cache" / "fixtures" / "big"
PAGE_DIR = ROOT / "bench" / "page"
# the only node_modules packages the harness serves (bundles: tf.min.js, tf-backend-wasm.min.js, ort.wasm.min.js)
PEER_PACKAGES = ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "onnxruntime-web")
BOOT_TIMEOUT_MS = 240_000

# ONNX Runtime Web runs DenseNet121 from the onnx package's own test data (weights are
# ConstantOfShape nodes, so only the timing is meaningful). Pinned wheel, checked by sha256.
ONNX_REQUIREMENT = "onnx==1.17.0"
ONNX_WHEEL = "onnx-1.17.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
ONNX_WHEEL_SHA256 = "4a183c6178be001bf398260e5ac2c927dc43e7746e8638d6c05c20e321f8c949"
ONNX_DENSENET_MEMBER = "onnx/backend/test/data/light/light_densenet121.onnx"
ONNX_CACHE = ROOT / ".cache" / "onnx"

# name in the report -> (fixture case, ONNX model for ORT or None)
MODELS = {
    "densenet121": ("k2_webipred_densenet121", ONNX_DENSENET_MEMBER),
    "mobilenetv2": ("k2_mobilenetv2", None),
    "resnet50": ("k2_resnet50", None),
    "inceptionv3": ("k2_inceptionv3", None),
}


class BenchError(Exception):
    """The benchmark cannot run (missing fixture, engine failure); the message says what to do."""


# ------------------------------------------------------------------ inputs and model files
class Case:
    """A TF.js layers-model folder (model.json + shards + io.npz) and the bytes served for it."""

    def __init__(self, name: str, directory: Path, batch: int):
        if not (directory / "model.json").is_file() or not (directory / "io.npz").is_file():
            raise BenchError(
                f"{directory}: model.json / io.npz missing. Generate the big fixtures with\n"
                f"  bash tools/fixture_env.sh && /opt/tfenv/bin/python tools/make_big_fixtures.py --only {directory.name}\n"
                "(needs the TensorFlow venv /opt/tfenv; see tools/README.md)")
        self.name = name
        self.directory = directory
        with np.load(directory / "io.npz") as data:
            images = np.ascontiguousarray(data["input_0"], dtype="<f4")
            self.reference = np.asarray(data["output_0"], dtype=np.float64)
        self.image_shape = list(images.shape[1:])
        self.single = images[:1]
        reps = -(-batch // images.shape[0])
        self.batch = np.ascontiguousarray(np.tile(images, (reps, 1, 1, 1))[:batch])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for path in sorted(directory.iterdir()):
                if path.name == "model.json" or path.suffix == ".bin":
                    archive.write(path, path.name)
        self.zip_bytes = buffer.getvalue()
        # the model's weights as stored (float32 shards): the yardstick of the per-worker memory goal
        self.weight_bytes = sum(path.stat().st_size for path in directory.iterdir() if path.suffix == ".bin")

    def generated_files(self) -> dict[str, bytes]:
        return {f"{self.name}/model.zip": self.zip_bytes, f"{self.name}/b1.f32": self.single.tobytes(),
                f"{self.name}/batch.f32": self.batch.tobytes()}


def onnx_densenet() -> Path:
    """light_densenet121.onnx from the pinned onnx wheel (pip download once into .cache/onnx)."""
    target = ONNX_CACHE / "light_densenet121.onnx"
    if target.exists():
        return target
    wheel = ONNX_CACHE / ONNX_WHEEL
    if not wheel.exists():
        print(f"[bench] pip download {ONNX_REQUIREMENT} (for its DenseNet121 test model)", file=sys.stderr)
        build.pip_download(ONNX_REQUIREMENT, ONNX_WHEEL, wheel)
    build.verify(ONNX_WHEEL, wheel.read_bytes(), ONNX_WHEEL_SHA256, f"PyPI {ONNX_REQUIREMENT}")
    with zipfile.ZipFile(wheel) as archive:
        build.write_atomically(target, archive.read(ONNX_DENSENET_MEMBER))
    return target


# ------------------------------------------------------------------ server
def make_handler(dist: Path, model_roots: dict[str, Path], generated: dict[str, bytes]):
    """dist/ at /, the harness under /__bench/: page/, node_modules/<peer>/, models/<case>/, gen/, onnx/."""

    class BenchHandler(build.StaticHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(dist), **kwargs)

        def translate_path(self, path):
            clean = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
            if not clean.startswith("/__bench/"):
                return super().translate_path(path)
            parts = [p for p in clean[len("/__bench/"):].split("/") if p not in ("", ".", "..")]
            if not parts:
                return str(PAGE_DIR / "missing")
            kind, rest = parts[0], parts[1:]
            if kind == "page":
                return str(PAGE_DIR.joinpath(*rest))
            if kind == "node_modules":
                scoped = 2 if rest and rest[0].startswith("@") else 1
                if "/".join(rest[:scoped]) not in PEER_PACKAGES:
                    return str(PAGE_DIR / "missing")
                return str(ROOT.joinpath("node_modules", *rest))
            if kind == "models" and rest and rest[0] in model_roots:
                return str(model_roots[rest[0]].joinpath(*rest[1:]))
            if kind == "onnx":
                return str(ONNX_CACHE.joinpath(*rest))
            return str(PAGE_DIR / "missing")

        def do_GET(self):  # noqa: N802 - http.server naming
            clean = urllib.parse.urlsplit(self.path).path
            if clean.startswith("/__bench/gen/"):
                data = generated.get(clean[len("/__bench/gen/"):])
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            super().do_GET()

    return BenchHandler


def serve(dist: Path, model_roots: dict[str, Path], generated: dict[str, bytes]):
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(dist, model_roots, generated))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="vitrine-bench", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# ------------------------------------------------------------------ memory (DevTools + /proc)
def renderer_pids(cdp) -> set[int]:
    return {p["id"] for p in cdp.send("SystemInfo.getProcessInfo")["processInfo"] if p["type"] == "renderer"}


def proc_status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def engine_process(cdp, before: set[int]) -> int:
    """The renderer hosting the engine: the largest (VmRSS) renderer that appeared since ``before``."""
    candidates = [(proc_status_kb(pid, "VmRSS") or 0, pid) for pid in renderer_pids(cdp) - before]
    if not candidates:
        raise BenchError("no new Chromium renderer process appeared for the engine's browser context")
    return max(candidates)[1]


def peak_mb(pid: int) -> float | None:
    """VmHWM (peak resident set size over the process's life) in MiB."""
    hwm = proc_status_kb(pid, "VmHWM")
    return None if hwm is None else round(hwm / 1024, 1)


def cpu_seconds(cdp, pid: int) -> float:
    """CPU time (user + system, all threads: the page and its workers) of one process, from CDP."""
    for process in cdp.send("SystemInfo.getProcessInfo")["processInfo"]:
        if process["id"] == pid:
            return float(process["cpuTime"])
    raise BenchError(f"renderer process {pid} vanished during the benchmark")


def thread_cpu_seconds(pid: int, by_thread: bool = False) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid``, summed by thread name (``comm``:
    CrRendererMain, DedicatedWorker thread, V8 DefaultWorker, Compositor, ...), from
    /proc/<pid>/task/*/stat; with ``by_thread`` one entry per thread, "name/tid". Empty where
    /proc is not readable."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    totals: dict[str, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return totals
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        if by_thread:
            name = f"{name}/{task.name}"
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[11], fields[12] are utime, stime (fields 14 and 15 of proc(5), counted from 1)
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return totals


def busy_threads(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU ms each thread used between two :func:`thread_cpu_seconds` readings (>= 10 ms only)."""
    used = {name: round((seconds - before.get(name, 0.0)) * 1000, 1) for name, seconds in after.items()}
    return {name: ms for name, ms in sorted(used.items(), key=lambda item: -item[1]) if ms >= 10}


def timed_latency(page, cdp, pid: int, script: str, arguments: list, runs: int) -> tuple[dict, float, dict]:
    """Evaluate a latency script (warm-up already done); returns its result, the CPU ms per run of
    the engine process and the same split by thread name (threads using < 0.5 ms per run left out)."""
    threads_before = thread_cpu_seconds(pid)
    cpu_before = cpu_seconds(cdp, pid)
    result = page.evaluate(script, arguments)
    cpu_ms = (cpu_seconds(cdp, pid) - cpu_before) * 1000 / max(runs, 1)
    threads_after = thread_cpu_seconds(pid)
    per_thread = {name: round((seconds - threads_before.get(name, 0.0)) * 1000 / max(runs, 1), 1)
                  for name, seconds in threads_after.items()}
    return result, cpu_ms, {name: ms for name, ms in sorted(per_thread.items(), key=lambda item: -item[1]) if ms >= 0.5}


# ------------------------------------------------------------------ Vitrine through the real page
VITRINE_CALL = """async ([request, url]) => {
  let payload = null;
  if (url !== null) payload = new Uint8Array(await (await fetch(url)).arrayBuffer());
  const started = performance.now();
  const reply = JSON.parse(await window.vitrineEngine.call(JSON.stringify(request), payload));
  return {reply, elapsed: performance.now() - started};
}"""

VITRINE_LATENCY = """async ([model, url, shape, warmup, runs]) => {
  const data = new Uint8Array(await (await fetch(url)).arrayBuffer());
  const request = JSON.stringify({call: "predict", id: "bench", args: {model, shape}});
  const once = async () => {
    const payload = data.slice();   // a fresh copy per call, outside the timed region
    const started = performance.now();
    const reply = JSON.parse(await window.vitrineEngine.call(request, payload));
    const elapsed = performance.now() - started;
    if (!reply.ok) throw new Error(reply.error.type + ": " + reply.error.message);
    return {elapsed, outputs: reply.result.outputs};
  };
  let last = null;
  for (let i = 0; i < warmup; i++) last = await once();
  const times = [];
  for (let i = 0; i < runs; i++) { last = await once(); times.push(last.elapsed); }
  return {times_ms: times, outputs: last === null ? null : last.outputs};
}"""

# Starts (does not await) this page's share of the batch: one predict call per image.
VITRINE_SHARE_START = """([model, url, imageShape, indices]) => {
  window.__benchShare = (async () => {
    const all = new Uint8Array(await (await fetch(url)).arrayBuffer());
    const bytesPerImage = imageShape.reduce((a, b) => a * b, 1) * 4;
    const payloads = indices.map((i) => all.slice(i * bytesPerImage, (i + 1) * bytesPerImage));
    const request = JSON.stringify({call: "predict", id: "bench-batch", args: {model, shape: [1, ...imageShape]}});
    const start = performance.timeOrigin + performance.now();
    for (const payload of payloads) {
      const reply = JSON.parse(await window.vitrineEngine.call(request, payload));
      if (!reply.ok) throw new Error(reply.error.type + ": " + reply.error.message);
    }
    return {start, end: performance.timeOrigin + performance.now(), images: payloads.length};
  })();
  return true;
}"""


# The page's worker pool (ui/main.py: the primary engine + "engine-pool-<i>" workers, sized by
# ?workers=N). The pool's workers are reached through their PyScript <script worker> elements
# (xworker.sync.call is the same exported `call` as window.vitrineEngine.call). Each worker gets
# the model, one warm-up image, then all of them pull images from one shared queue, one predict
# call per image, as the UI does.
VITRINE_POOL_SETUP = """async ([zipUrl, name, url, imageShape, count]) => {
  const primary = document.body.getAttribute("data-engine-name");
  const scripts = [...document.querySelectorAll('script[type="py"][worker]')]
    .filter((s) => s.xworker && (s.getAttribute("name") === primary || s.getAttribute("name").startsWith("engine-pool-")));
  const engines = scripts.map((s) => s.xworker.sync);
  const zip = new Uint8Array(await (await fetch(zipUrl)).arrayBuffer());
  const all = new Uint8Array(await (await fetch(url)).arrayBuffer());
  const bytesPerImage = imageShape.reduce((a, b) => a * b, 1) * 4;
  const check = (text) => { const reply = JSON.parse(text); if (!reply.ok) throw new Error(reply.error.type + ": " + reply.error.message); return reply.result; };
  const handles = [];
  for (const engine of engines) {
    const loaded = check(await engine.call(JSON.stringify({call: "load_model", id: "bench-load", args: {name}}), zip.slice()));
    handles.push(loaded.model);
  }
  const request = (i) => JSON.stringify({call: "predict", id: "bench-pool", args: {model: handles[i], shape: [1, ...imageShape]}});
  await Promise.all(engines.map(async (engine, i) => check(await engine.call(request(i), all.slice(0, bytesPerImage)))));
  const payloads = Array.from({length: count}, (_, i) => all.slice(i * bytesPerImage, (i + 1) * bytesPerImage));
  window.__benchPool = {engines, request, payloads, check, workers: scripts.map((s) => s.getAttribute("name"))};
  return true;
}"""

# The timed part: the workers pull the images from one shared queue (after VITRINE_POOL_SETUP).
VITRINE_POOL_RUN = """async () => {
  const {engines, request, payloads, check, workers} = window.__benchPool;
  let next = 0;
  const perWorker = engines.map(() => 0);
  const started = performance.now();
  await Promise.all(engines.map(async (engine, i) => {
    while (next < payloads.length) {
      const payload = payloads[next++];
      check(await engine.call(request(i), payload));
      perWorker[i]++;
    }
  }));
  const elapsed = performance.now() - started;
  // each worker's memory high-water mark (info.memory: wasm linear memory in Pyodide)
  const heaps = [];
  for (const engine of engines) heaps.push((check(await engine.call(JSON.stringify({call: "info", id: "bench-memory"}), null)).memory || {}).heap_bytes ?? null);
  return {elapsed, workers, per_worker: perWorker, heap_bytes: heaps};
}"""


def open_vitrine_page(context, origin: str, query: str = ""):
    page = context.new_page()
    page.goto(origin + "/index.html" + query)
    page.wait_for_selector("body:not([data-engine-state='booting'])", state="attached", timeout=BOOT_TIMEOUT_MS)
    state = page.get_attribute("body", "data-engine-state")
    if state != "ready":
        raise BenchError(f"Vitrine's engine did not start ({state}): {page.inner_text('#engine-status')}")
    return page


def vitrine_call(page, request: dict, url: str | None = None) -> dict:
    result = page.evaluate(VITRINE_CALL, [request, url])
    reply = result["reply"]
    if not reply["ok"]:
        raise BenchError(f"Vitrine {request['call']} failed: {reply['error']['type']}: {reply['error']['message']}")
    return {"result": reply["result"], "elapsed_ms": result["elapsed"]}


def vitrine_load(page, origin: str, case: Case) -> tuple[str, float]:
    loaded = vitrine_call(page, {"call": "load_model", "id": "bench-load", "args": {"name": f"{case.name}.zip"}},
                          f"{origin}/__bench/gen/{case.name}/model.zip")
    return loaded["result"]["model"], loaded["elapsed_ms"]


def mib(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def worker_memory(page, case: Case) -> dict:
    """The engine worker's memory high-water mark against the goal 2 x weights + 150 MB.

    Measured inside the worker (``info`` -> ``memory.heap_bytes``: the size of Pyodide's
    WebAssembly linear memory, which holds every Python object and array and never shrinks).
    The DevTools protocol cannot give this figure: ``Runtime.getHeapUsage`` on the worker target
    counts the JS heap and array-buffer backing stores only (~25-55 MB whatever the model), and
    ``Runtime.queryObjects`` does not answer on worker targets."""
    info = vitrine_call(page, {"call": "info", "id": "bench-memory"})["result"]
    memory = info.get("memory") or {}
    weights_mb = mib(case.weight_bytes)
    # gemm_report after the runs: which ops ran on the SIMD kernels, numpy fallbacks by reason
    return {"vitrine_gemm_report": info.get("gemm_report"),
            "worker_heap_mb": mib(memory.get("heap_bytes")), "weights_mb": weights_mb,
            "worker_memory_budget_mb": round(2 * weights_mb + 150, 1)}


# ------------------------------------------------------------------ peers in the harness page
def open_harness(context, origin: str):
    page = context.new_page()
    page.goto(origin + "/__bench/page/index.html")
    page.wait_for_selector("body[data-harness='ready']", state="attached", timeout=60_000)
    return page


def flat_outputs(outputs: list[dict]) -> np.ndarray:
    return np.concatenate([np.asarray(o["values"], dtype=np.float64).ravel() for o in outputs])


# ------------------------------------------------------------------ the benchmark
def machine_info(browser) -> dict:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = proc_meminfo_kb("MemTotal")
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gb": None if mem_total is None else round(mem_total / 1024 / 1024, 1),
        "os": platform.platform(),
        "chromium": browser.version,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def proc_meminfo_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def vitrine_pages_throughput(context, origin: str, case: Case, workers: int, log, key: str) -> dict:
    """Fallback when the page has no pool: ``workers`` site pages, each with its own engine worker."""
    log(f"{key}: Vitrine throughput, {workers} page(s) with one engine worker each (no page pool), {len(case.batch)} images")
    shape1 = [1, *case.image_shape]
    pages, handles = [], []
    for _ in range(workers):
        page = open_vitrine_page(context, origin)
        handle, _ = vitrine_load(page, origin, case)
        page.evaluate(VITRINE_LATENCY, [handle, f"{origin}/__bench/gen/{case.name}/b1.f32", shape1, 1, 0])
        pages.append(page)
        handles.append(handle)
    shares = [list(range(i, len(case.batch), workers)) for i in range(workers)]
    for page, handle, indices in zip(pages, handles, shares):
        page.evaluate(VITRINE_SHARE_START, [handle, f"{origin}/__bench/gen/{case.name}/batch.f32", case.image_shape, indices])
    spans = [page.evaluate("() => window.__benchShare") for page in pages]
    wall_s = (max(s["end"] for s in spans) - min(s["start"] for s in spans)) / 1000
    return {"throughput_ips": round(len(case.batch) / wall_s, 3),
            "throughput_mode": f"{workers} site pages x 1 engine worker (the page exposed no pool of {workers})"}


def run_model(browser, cdp, origin: str, key: str, case: Case, onnx_url: str | None, args, log) -> dict:
    shape1 = [1, *case.image_shape]
    shape_batch = [len(case.batch), *case.image_shape]
    result: dict = {"fixture": case.name, "image_shape": case.image_shape, "batch": len(case.batch)}

    # --- Vitrine: latency + peak memory in one fresh context (own renderer process). One worker
    # (?workers=1): the page's default pool on this machine is one worker per core, and a second
    # worker booting and loading its model beside the timed one was counted in its CPU time.
    before = renderer_pids(cdp)
    context = browser.new_context()
    try:
        page = open_vitrine_page(context, origin, "?workers=1")
        info = vitrine_call(page, {"call": "info", "id": "bench-info"})["result"]
        result["vitrine_gemm_backend"] = info.get("gemm_backend")
        handle, load_ms = vitrine_load(page, origin, case)
        result["vitrine_load_ms"] = round(load_ms, 1)
        pid = engine_process(cdp, before)
        log(f"{key}: Vitrine loaded in {load_ms:.0f} ms; latency runs")
        b1_url = f"{origin}/__bench/gen/{case.name}/b1.f32"
        page.evaluate(VITRINE_LATENCY, [handle, b1_url, shape1, args.warmup, 0])
        lat, cpu_ms, threads = timed_latency(page, cdp, pid, VITRINE_LATENCY, [handle, b1_url, shape1, 0, args.runs],
                                             args.runs)
        result["cpu_ms_per_image_by_thread"] = threads
        result["latency_ms"] = round(statistics.median(lat["times_ms"]), 1)
        result["latency_runs_ms"] = [round(t, 1) for t in lat["times_ms"]]
        result["cpu_ms_per_image"] = round(cpu_ms, 1)
        vitrine_out = flat_outputs(lat["outputs"])
        result["peak_mb"] = peak_mb(pid)
        result.update(worker_memory(page, case))
    finally:
        context.close()

    # --- Vitrine throughput: the page's own worker pool (?workers=N); else N pages x 1 worker
    if not args.skip_throughput:
        workers = args.workers or os.cpu_count() or 1
        before = renderer_pids(cdp)
        context = browser.new_context()
        try:
            page = open_vitrine_page(context, origin, f"?workers={workers}")
            has_pool = page.get_attribute("body", "data-pool-size") is not None
            if has_pool:
                # the UI grows its pool after the primary engine is ready (demo model first)
                try:
                    page.wait_for_selector(f"body[data-pool-size='{workers}']", state="attached", timeout=BOOT_TIMEOUT_MS)
                except PlaywrightTimeoutError:
                    has_pool = False
            if has_pool:
                log(f"{key}: Vitrine throughput, the page's pool of {workers} workers, {len(case.batch)} images")
                page.evaluate(VITRINE_POOL_SETUP, [f"{origin}/__bench/gen/{case.name}/model.zip", f"{case.name}.zip",
                                                   f"{origin}/__bench/gen/{case.name}/batch.f32", case.image_shape,
                                                   len(case.batch)])
                pool_pid = engine_process(cdp, before)
                threads_before = thread_cpu_seconds(pool_pid, by_thread=True)
                pool = page.evaluate(VITRINE_POOL_RUN)
                result["throughput_cpu_ms_by_thread"] = busy_threads(threads_before,
                                                                     thread_cpu_seconds(pool_pid, by_thread=True))
                # CPU per image over the whole pool: on a busy machine the wall-clock throughput
                # mostly says how much of the cores the workers got
                result["throughput_cpu_ms_per_image"] = round(
                    sum(result["throughput_cpu_ms_by_thread"].values()) / len(case.batch), 1)
                result["throughput_ips"] = round(len(case.batch) / (pool["elapsed"] / 1000), 3)
                result["throughput_mode"] = f"the page's worker pool ?workers={workers}: {pool['workers']}, images per worker {pool['per_worker']}"
                result["pool_peak_mb"] = peak_mb(engine_process(cdp, before))
                result["pool_worker_heap_mb"] = [mib(b) for b in pool["heap_bytes"]]
            else:
                page.close()
                result.update(vitrine_pages_throughput(context, origin, case, workers, log, key))
        finally:
            context.close()

    # --- TF.js 4.22 wasm
    before = renderer_pids(cdp)
    context = browser.new_context()
    try:
        page = open_harness(context, origin)
        result["tfjs"] = page.evaluate("() => window.benchTfjs.init()")
        loaded = page.evaluate("(url) => window.benchTfjs.load(url)", f"{origin}/__bench/models/{case.name}/model.json")
        result["tfjs_load_ms"] = round(loaded["load_ms"], 1)
        pid = engine_process(cdp, before)
        log(f"{key}: TF.js loaded in {loaded['load_ms']:.0f} ms; latency runs")
        tfjs_run = "([u, s, w, r]) => window.benchTfjs.run(u, s, w, r)"
        b1_url = f"{origin}/__bench/gen/{case.name}/b1.f32"
        page.evaluate(tfjs_run, [b1_url, shape1, args.warmup, 0])
        lat, cpu_ms, threads = timed_latency(page, cdp, pid, tfjs_run, [b1_url, shape1, 0, args.runs], args.runs)
        result["tfjs_cpu_ms_per_image_by_thread"] = threads
        result["tfjs_latency_ms"] = round(lat["median_ms"], 1)
        result["tfjs_latency_runs_ms"] = [round(t, 1) for t in lat["times_ms"]]
        result["tfjs_cpu_ms_per_image"] = round(cpu_ms, 1)
        tfjs_out = flat_outputs(lat["outputs"])
        result["tfjs_peak_mb"] = peak_mb(pid)
        if not args.skip_throughput:
            log(f"{key}: TF.js throughput, one predict on {len(case.batch)} images")
            threads_before = thread_cpu_seconds(pid, by_thread=True)
            batch = page.evaluate("([u, s, w, r]) => window.benchTfjs.run(u, s, w, r)",
                                  [f"{origin}/__bench/gen/{case.name}/batch.f32", shape_batch, 0, 1])
            result["tfjs_throughput_cpu_ms_by_thread"] = busy_threads(threads_before,
                                                                      thread_cpu_seconds(pid, by_thread=True))
            result["tfjs_throughput_cpu_ms_per_image"] = round(
                sum(result["tfjs_throughput_cpu_ms_by_thread"].values()) / len(case.batch), 1)
            result["tfjs_throughput_ips"] = round(len(case.batch) / (batch["median_ms"] / 1000), 3)
    finally:
        context.close()

    # --- ONNX Runtime Web (timing only)
    if onnx_url is not None and not args.skip_ort:
        before = renderer_pids(cdp)
        context = browser.new_context()
        try:
            page = open_harness(context, origin)
            result["ort"] = page.evaluate("() => window.benchOrt.init()")
            loaded = page.evaluate("(url) => window.benchOrt.load(url)", onnx_url)
            pid = engine_process(cdp, before)
            log(f"{key}: ORT loaded in {loaded['load_ms']:.0f} ms; latency runs")
            nchw = [1, case.image_shape[2], case.image_shape[0], case.image_shape[1]]
            ort_run = "([u, s, w, r]) => window.benchOrt.run(u, s, w, r)"
            nchw_url = f"{origin}/__bench/gen/{case.name}/b1_nchw.f32"
            page.evaluate(ort_run, [nchw_url, nchw, args.warmup, 0])
            lat, cpu_ms, threads = timed_latency(page, cdp, pid, ort_run, [nchw_url, nchw, 0, args.runs], args.runs)
            result["ort_cpu_ms_per_image_by_thread"] = threads
            result["ort_latency_ms"] = round(lat["median_ms"], 1)
            result["ort_latency_runs_ms"] = [round(t, 1) for t in lat["times_ms"]]
            result["ort_cpu_ms_per_image"] = round(cpu_ms, 1)
            result["ort_model"] = f"{ONNX_REQUIREMENT} {ONNX_DENSENET_MEMBER} (ConstantOfShape weights: timing only)"
        finally:
            context.close()

    # --- ratios and agreement
    result["max_abs_diff"] = float(np.max(np.abs(vitrine_out - tfjs_out)))
    reference = case.reference[:1].ravel()
    result["vitrine_max_abs_diff_vs_tensorflow"] = float(np.max(np.abs(vitrine_out - reference)))
    result["tfjs_max_abs_diff_vs_tensorflow"] = float(np.max(np.abs(tfjs_out - reference)))
    result["latency_ratio"] = round(result["latency_ms"] / result["tfjs_latency_ms"], 3)
    peers = [result["tfjs_latency_ms"], *([result["ort_latency_ms"]] if "ort_latency_ms" in result else [])]
    result["best_peer_latency_ratio"] = round(result["latency_ms"] / min(peers), 3)
    # cpuTime has a 10 ms resolution: a tiny model can show 0
    result["cpu_latency_ratio"] = (round(result["cpu_ms_per_image"] / result["tfjs_cpu_ms_per_image"], 3)
                                   if result["tfjs_cpu_ms_per_image"] > 0 else None)
    if "throughput_ips" in result and "tfjs_throughput_ips" in result:
        result["throughput_ratio"] = round(result["throughput_ips"] / result["tfjs_throughput_ips"], 3)
    return result


def run_benchmark(browser, dist: Path, cases: dict[str, tuple[Case, Path | None]], args, log=None) -> dict:
    """Run every case in ``browser``; returns {"machine": ..., "models": {...}} (see module docstring)."""
    log = log or (lambda message: print(f"[bench] {message}", file=sys.stderr, flush=True))
    generated: dict[str, bytes] = {}
    model_roots: dict[str, Path] = {}
    for case, onnx_path in cases.values():
        generated.update(case.generated_files())
        model_roots[case.name] = case.directory
        if onnx_path is not None:
            generated[f"{case.name}/b1_nchw.f32"] = np.ascontiguousarray(case.single.transpose(0, 3, 1, 2)).tobytes()
    server, origin = serve(dist, model_roots, generated)
    cdp = browser.new_browser_cdp_session()
    report = {"machine": machine_info(browser), "settings": {"warmup": args.warmup, "runs": args.runs,
                                                             "batch": args.batch}, "models": {}}
    try:
        for key, (case, onnx_path) in cases.items():
            onnx_url = None if onnx_path is None else f"{origin}/__bench/onnx/{onnx_path.name}"
            try:
                report["models"][key] = run_model(browser, cdp, origin, key, case, onnx_url, args, log)
            except (PlaywrightError, BenchError) as exc:
                # one engine failing on one model (e.g. a layer a peer lacks) must not hide the others
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log(f"{key}: FAILED: {first_line}")
                report["models"][key] = {"fixture": case.name, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    finally:
        server.shutdown()
        server.server_close()
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def format_table(report: dict) -> str:
    lines = ["| model | Vitrine ms | TF.js ms | ORT ms | Vitrine/TF.js | Vitrine/best peer | CPU ms Vitrine / TF.js / ORT "
             "| throughput Vitrine/TF.js (img/s) | max abs diff | peak MB Vitrine / TF.js "
             "| worker heap MB / budget (2 x weights + 150) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, m in report["models"].items():
        if "error" in m:
            lines.append(f"| {key} | failed: {m['error'].splitlines()[0][:120]} |" + " |" * 9)
            continue
        ort = f"{m['ort_latency_ms']:.0f}" if "ort_latency_ms" in m else "–"
        cpu = f"{m['cpu_ms_per_image']:.0f} / {m['tfjs_cpu_ms_per_image']:.0f} / {m.get('ort_cpu_ms_per_image', '–')}"
        thr = (f"{m['throughput_ratio']:.2f} ({m['throughput_ips']:.2f} / {m['tfjs_throughput_ips']:.2f})"
               if "throughput_ratio" in m else "–")
        pool_heaps = "".join(f" (pool {', '.join(map(str, m['pool_worker_heap_mb']))})" if m.get("pool_worker_heap_mb") else "")
        memory = f"{m.get('worker_heap_mb')}{pool_heaps} / {m.get('worker_memory_budget_mb')}"
        lines.append(f"| {key} | {m['latency_ms']:.0f} | {m['tfjs_latency_ms']:.0f} | {ort} | {m['latency_ratio']:.2f} | "
                     f"{m['best_peer_latency_ratio']:.2f} | {cpu} | {thr} | {m['max_abs_diff']:.1e} | "
                     f"{m['peak_mb']} / {m['tfjs_peak_mb']} | {memory} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--fixtures", type=Path, default=BIG_FIXTURES, help="folder with the big TF.js fixtures")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="Vitrine pages for throughput (default: CPU cores)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-ort", action="store_true")
    args = parser.parse_args(argv)

    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    try:
        cases = {}
        for key in keys:
            fixture, onnx_member = MODELS[key]
            onnx_path = onnx_densenet() if onnx_member and not args.skip_ort else None
            cases[key] = (Case(fixture, args.fixtures / fixture, args.batch), onnx_path)
        if not (args.dist / "index.html").exists():
            build.build(args.dist)
    except (BenchError, build.BuildError) as exc:
        print(f"bench/inference.py: error: {exc}", file=sys.stderr)
        return 1

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            report = run_benchmark(browser, args.dist, cases, args)
        except BenchError as exc:
            print(f"bench/inference.py: error: {exc}", file=sys.stderr)
            return 1
        finally:
            browser.close()

    machine = report["machine"]
    print(f"inference benchmark: {machine['cpu_model']}, {machine['cores']} cores, Chromium {machine['chromium']}, "
          f"load average {machine['load_average_start']} -> {machine['load_average_end']}")
    backends = {m.get("vitrine_gemm_backend") for m in report["models"].values() if "error" not in m}
    print(f"Vitrine GEMM backend: {', '.join(str(b) for b in backends)}; "
          f"median of {args.runs} runs after {args.warmup} warm-up, batch 1; throughput on {args.batch} images")
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if any("error" in m for m in report["models"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
