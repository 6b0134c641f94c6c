"""Memory benchmark: a long batch in the real page, measured from outside (issue #9).

    python build.py bench memory [--images 500] [--batches 2] [--workers 1] [--dist dist] [--json out.json]

Serves dist/, opens it in headless Debian Chromium (/usr/bin/chromium) with the built-in demo
model, and runs ``--batches`` times: add ``--images`` distinct images (the 20 real test images
plus generated PNG / JPEG photos of varied sizes), check them, classify them, export CSV, End
session. Nothing in the page measures itself (without cross-origin isolation it has no memory
API); every figure comes from the DevTools protocol or the operating system:

* page JS heap: ``Performance.getMetrics`` JSHeapUsedSize of the page (main thread: MicroPython
  UI, DOM wrappers), sampled every second; DOM nodes and JS event listeners
  (``Memory.getDOMCounters``) at the end of each phase;
* engine worker JS heap: ``Runtime.getHeapUsage`` on the worker target (its JS objects and array
  buffers; the wasm heap is not part of it);
* engine wasm heap: the Pyodide linear memory size (engine ``info`` call, app.runtime.memory_report),
  which never shrinks, so it is the worker's peak; and the engine's live buffers and gc-tracked
  objects (``heap_census``, app.diagnostics) after each phase;
* Chromium's memory: the proportional set size (PSS, /proc/<pid>/smaps_rollup) of every process
  of this browser, summed, and of the renderer that runs the page and its workers, sampled every
  second;
* JS objects referenced from MicroPython (its ``proxy_js_ref`` table): what End session must let go.

"After End session" figures are taken after a forced page GC and 15 s for End session's follow-up
collections; the "pressure" rows after that, once Chromium was told memory is critically short
(``Memory.simulatePressureNotification``) and the page collected again (the caches Chromium keeps
but gives back under pressure). Figures are printed; nothing passes or fails (docs/robustness.md,
"Memory").
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import build  # noqa: E402  (the repo root is only importable after the path tweak)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 3_600_000
MICROPYTHON_REFS = """() => { let used = 0; for (const o of (window.proxy_js_ref || [])) if (o !== undefined) used++; return used; }"""


# ---------------------------------------------------------------------------- the images
def real_images() -> list[Path]:
    samples = ROOT / "static" / "demo" / "samples"
    seeds = ROOT / "tests" / "hostile" / "corpus" / "good"
    images = sorted(p for p in samples.iterdir() if p.name != "corrupt.png")
    images += [seeds / n for n in ("camera.png", "chelsea.png", "retina.jpg", "resampled_anat_moved.nii", "standard.nii.gz")]
    images += sorted((ROOT / "tests" / "zenodo" / "data" / "cli_png").glob("*.png"))
    return [p for p in images if p.is_file()]


def make_images(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` distinct images: the real test images, then crops of the demo photos at random
    sizes (96..640 px), rotations and noise, alternately PNG and JPEG; deterministic per seed."""
    import numpy as np
    from PIL import Image

    rng = random.Random(seed)
    out = []
    for path in real_images()[:count]:
        target = folder / f"real-{len(out):04d}-{path.name}"
        target.write_bytes(path.read_bytes())
        out.append(target)
    photos = [Image.open(p).convert("RGB") for p in sorted((ROOT / "static" / "demo" / "samples").glob("*.jpg"))]
    noise = np.random.default_rng(seed)
    while len(out) < count:
        photo = photos[len(out) % len(photos)].rotate(rng.uniform(-20, 20))
        side = rng.randint(96, 640)
        image = photo.resize((side, rng.randint(96, 640)))
        pixels = np.asarray(image, dtype=np.int16) + noise.integers(-8, 9, size=(image.height, image.width, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        suffix = "png" if len(out) % 2 else "jpg"
        target = folder / f"gen-{len(out):04d}.{suffix}"
        buffer = io.BytesIO()
        image.save(buffer, format="PNG" if suffix == "png" else "JPEG", quality=90)
        target.write_bytes(buffer.getvalue())
        out.append(target)
    return out


# ---------------------------------------------------------------------------- processes
def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def browser_processes(profile: Path) -> dict[int, str]:
    """{pid: process type} of the Chromium started with ``--user-data-dir=profile`` and all its
    descendants (renderers, GPU, utility, zygotes)."""
    parents, kinds, root = {}, {}, None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        pid = int(entry.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        # Chromium rewrites its children's process titles: the arguments may be one string
        args = [a for part in cmdline for a in part.decode(errors="replace").split(" ") if a]
        kind = next((a.split("=", 1)[1] for a in args if a.startswith("--type=")), "browser")
        kinds[pid] = kind
        if kind == "browser" and f"--user-data-dir={profile}" in args:
            root = pid
    if root is None:
        return {}
    family, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                grew = True
    return {pid: kinds.get(pid, "?") for pid in family}


class ProcessSampler:
    """Samples the PSS of the browser's processes once a second in a thread (no CDP involved)."""

    def __init__(self, profile: Path):
        self.profile = profile
        self.samples: list[tuple[float, int, int]] = []  # (time, total kB, largest renderer kB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def now(self) -> tuple[int, int]:
        processes = browser_processes(self.profile)
        pss = {pid: _pss_kb(pid) for pid in processes}
        renderers = [kb for pid, kb in pss.items() if processes[pid] == "renderer"]
        return sum(pss.values()), max(renderers, default=0)

    def _run(self):
        while not self._stop.is_set():
            total, renderer = self.now()
            self.samples.append((time.monotonic(), total, renderer))
            self._stop.wait(1.0)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)

    def peak_since(self, since: float) -> tuple[int, int]:
        window = [s for s in self.samples if s[0] >= since] or [(0, *self.now())]
        return max(s[1] for s in window), max(s[2] for s in window)


# ---------------------------------------------------------------------------- DevTools
class Probe:
    """DevTools sessions on the page and on the engine worker (non-flat target sessions, as in
    tests/browser/test_privacy_network.py's WorkerCDP)."""

    def __init__(self, context, page):
        self.page = page
        self.cdp = context.new_cdp_session(page)
        self.cdp.send("Performance.enable")
        self.workers: dict[str, str] = {}
        self._replies: dict[int, dict] = {}
        self._next = 0
        self.cdp.on("Target.attachedToTarget", lambda e: self.workers.__setitem__(e["sessionId"], e["targetInfo"]["url"])
                    if e["targetInfo"]["type"] == "worker" else None)
        self.cdp.on("Target.detachedFromTarget", lambda e: self.workers.pop(e["sessionId"], None))
        self.cdp.on("Target.receivedMessageFromTarget", self._received)
        self.cdp.send("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": False})
        page.wait_for_timeout(300)

    def _received(self, event):
        message = json.loads(event["message"])
        if "id" in message:
            self._replies[message["id"]] = message

    def worker_heaps(self) -> dict[str, int]:
        """{worker URL: JS heap used bytes} of every worker of the page."""
        heaps = {}
        for session_id, url in list(self.workers.items()):
            self._next += 1
            ident = self._next
            self.cdp.send("Target.sendMessageToTarget", {"sessionId": session_id, "message": json.dumps(
                {"id": ident, "method": "Runtime.getHeapUsage", "params": {}})})
            for _ in range(250):
                if ident in self._replies:
                    result = self._replies.pop(ident).get("result") or {}
                    heaps[url] = int(result.get("usedSize", 0)) + int(result.get("backingStorageSize", 0))
                    break
                self.page.wait_for_timeout(20)
        return heaps

    def page_heap(self) -> int:
        metrics = {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        return int(metrics["JSHeapUsedSize"])

    def dom(self) -> dict:
        return self.cdp.send("Memory.getDOMCounters")

    def collect(self):
        self.cdp.send("HeapProfiler.enable")
        self.cdp.send("HeapProfiler.collectGarbage")


def engine_json(page, expression: str, *args):
    return json.loads(page.evaluate(expression, list(args)))


def engine_memory(page) -> dict:
    info = engine_json(page, "() => window.vitrineEngine.call(JSON.stringify({call: 'info', id: 'bench-memory'}), null)")
    census = engine_json(page, "([n]) => window.vitrineEngine.heap_census(n)", 4096)
    memory = (info.get("result") or {}).get("memory") or {}
    result = census.get("result") or {}
    return {"wasm_heap_bytes": memory.get("heap_bytes"), "live_buffer_bytes": result.get("buffer_bytes"),
            "live_buffers": len(result.get("buffers") or []), "gc_objects": result.get("gc_objects")}


def snapshot(probe: Probe, sampler: ProcessSampler, page) -> dict:
    total, renderer = sampler.now()
    return {"page_js_heap": probe.page_heap(), "worker_js_heaps": sum(probe.worker_heaps().values()),
            "dom": probe.dom(), "micropython_js_refs": page.evaluate(MICROPYTHON_REFS),
            "browser_pss_kb": total, "renderer_pss_kb": renderer, "engine": engine_memory(page)}


def wait_sampling(page, probe: Probe, selector: str, peaks: dict) -> None:
    """Wait for ``selector`` while sampling the page and worker heaps once a second."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        if page.locator(selector).count():
            return
        peaks["page_js_heap"] = max(peaks.get("page_js_heap", 0), probe.page_heap())
        peaks["worker_js_heaps"] = max(peaks.get("worker_js_heaps", 0), sum(probe.worker_heaps().values()))
        page.wait_for_timeout(1000)
    raise TimeoutError(f"{selector} did not appear within {TIMEOUT_MS / 1000:.0f} s")


def run_batch(page, probe: Probe, sampler: ProcessSampler, images: list[Path]) -> dict:
    started = time.monotonic()
    peaks: dict = {}
    page.set_input_files("#image-files", [str(p) for p in images])
    wait_sampling(page, probe, "body[data-images-checking='0']", peaks)
    ready = int(page.get_attribute("body", "data-images-ready") or 0)
    page.click("#predict")
    wait_sampling(page, probe, "body[data-run-state='done']", peaks)
    classified = page.locator("#results-table tbody tr[data-probs]").count()
    with page.expect_download():
        page.click("#export-csv")
    during = snapshot(probe, sampler, page)
    peaks["page_js_heap"] = max(peaks.get("page_js_heap", 0), during["page_js_heap"])
    peaks["worker_js_heaps"] = max(peaks.get("worker_js_heaps", 0), during["worker_js_heaps"])
    peaks["browser_pss_kb"], peaks["renderer_pss_kb"] = sampler.peak_since(started)
    seconds = time.monotonic() - started
    page.click("#end-session")
    page.wait_for_selector("body[data-runs='0']", state="attached", timeout=TIMEOUT_MS)
    for _ in range(15):  # End session's follow-up collections (ui/main.py collect_soon) meet page GCs
        page.wait_for_timeout(1000)
        probe.collect()
    ended = snapshot(probe, sampler, page)
    return {"images": len(images), "ready": ready, "classified": classified, "seconds": round(seconds, 1),
            "peaks": peaks, "before_end": during, "after_end": ended, "after_pressure": pressure(probe, sampler, page)}


def pressure(probe: Probe, sampler: ProcessSampler, page) -> dict:
    """PSS and page heap after a critical memory-pressure notification to every process
    (``Memory.simulatePressureNotification``: Chromium drops its caches, decoded images included)
    and a forced page GC: what of the "after End session" figure the browser gives back when
    memory runs short."""
    probe.cdp.send("Memory.simulatePressureNotification", {"level": "critical"})
    for _ in range(3):
        page.wait_for_timeout(1000)
        probe.collect()
    total, renderer = sampler.now()
    return {"page_js_heap": probe.page_heap(), "browser_pss_kb": total, "renderer_pss_kb": renderer}


def mb(value) -> str:
    return "-" if value is None else f"{value / 1e6:.1f} MB"


def kb_mb(value) -> str:
    return f"{value / 1024:.0f} MB"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="engine workers in the pool (?workers=N)")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args(argv)
    if not (args.dist / "index.html").exists():
        build.build(args.dist)

    from playwright.sync_api import sync_playwright

    server = build.make_server(args.dist)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html?workers={args.workers}"
    results: dict = {"url": url, "images": args.images, "workers": args.workers, "batches": []}
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-memory-") as scratch:
        scratch = Path(scratch)
        (scratch / "images").mkdir()
        images = make_images(scratch / "images", args.images, args.seed)
        results["image_bytes"] = sum(p.stat().st_size for p in images)
        profile = scratch / "profile"
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, accept_downloads=True)
            sampler = ProcessSampler(profile).start()
            page = context.pages[0] if context.pages else context.new_page()
            page.set_viewport_size({"width": 1366, "height": 900})
            page.goto(url)
            page.wait_for_selector("body[data-engine-state='ready']", state="attached", timeout=300_000)
            page.wait_for_selector("body[data-model-state='ready']", state="attached", timeout=300_000)
            probe = Probe(context, page)
            probe.collect()
            results["booted"] = snapshot(probe, sampler, page)
            results["booted_pressure"] = pressure(probe, sampler, page)
            for number in range(1, args.batches + 1):
                batch = run_batch(page, probe, sampler, images)
                results["batches"].append(batch)
                print(f"batch {number} done in {batch['seconds']} s", flush=True)
            sampler.stop()
            context.close()
    server.shutdown()

    booted = results["booted"]
    print(f"\nmemory benchmark: {args.images} images ({results['image_bytes'] / 1e6:.1f} MB of files), "
          f"{args.batches} batch(es), {args.workers} engine worker(s), demo model, {url}")
    header = f"{'':24}{'booted':>12}" + "".join(f"{'batch ' + str(i + 1) + ' peak':>15}{'after End':>12}"
                                               for i in range(len(results["batches"])))
    print(header)

    def row(label, first, peak_of, end_of):
        line = f"{label:24}{first:>12}"
        for batch in results["batches"]:
            line += f"{peak_of(batch):>15}{end_of(batch):>12}"
        print(line)

    row("page JS heap", mb(booted["page_js_heap"]), lambda b: mb(b["peaks"]["page_js_heap"]), lambda b: mb(b["after_end"]["page_js_heap"]))
    row("worker JS heaps", mb(booted["worker_js_heaps"]), lambda b: mb(b["peaks"]["worker_js_heaps"]),
        lambda b: mb(b["after_end"]["worker_js_heaps"]))
    row("engine wasm heap", mb(booted["engine"]["wasm_heap_bytes"]), lambda b: mb(b["before_end"]["engine"]["wasm_heap_bytes"]),
        lambda b: mb(b["after_end"]["engine"]["wasm_heap_bytes"]))
    row("engine live buffers", mb(booted["engine"]["live_buffer_bytes"]), lambda b: mb(b["before_end"]["engine"]["live_buffer_bytes"]),
        lambda b: mb(b["after_end"]["engine"]["live_buffer_bytes"]))
    row("engine gc objects", str(booted["engine"]["gc_objects"]), lambda b: str(b["before_end"]["engine"]["gc_objects"]),
        lambda b: str(b["after_end"]["engine"]["gc_objects"]))
    row("renderer PSS", kb_mb(booted["renderer_pss_kb"]), lambda b: kb_mb(b["peaks"]["renderer_pss_kb"]),
        lambda b: kb_mb(b["after_end"]["renderer_pss_kb"]))
    row("Chromium PSS (all)", kb_mb(booted["browser_pss_kb"]), lambda b: kb_mb(b["peaks"]["browser_pss_kb"]),
        lambda b: kb_mb(b["after_end"]["browser_pss_kb"]))
    under = results["booted_pressure"]
    row("renderer PSS, pressure", kb_mb(under["renderer_pss_kb"]), lambda b: "-", lambda b: kb_mb(b["after_pressure"]["renderer_pss_kb"]))
    row("Chromium PSS, pressure", kb_mb(under["browser_pss_kb"]), lambda b: "-", lambda b: kb_mb(b["after_pressure"]["browser_pss_kb"]))
    row("page JS heap, pressure", mb(under["page_js_heap"]), lambda b: "-", lambda b: mb(b["after_pressure"]["page_js_heap"]))
    row("DOM nodes", str(booted["dom"]["nodes"]), lambda b: str(b["before_end"]["dom"]["nodes"]), lambda b: str(b["after_end"]["dom"]["nodes"]))
    row("JS event listeners", str(booted["dom"]["jsEventListeners"]), lambda b: str(b["before_end"]["dom"]["jsEventListeners"]),
        lambda b: str(b["after_end"]["dom"]["jsEventListeners"]))
    row("MicroPython JS refs", str(booted["micropython_js_refs"]), lambda b: str(b["before_end"]["micropython_js_refs"]),
        lambda b: str(b["after_end"]["micropython_js_refs"]))
    for i, batch in enumerate(results["batches"], 1):
        print(f"batch {i}: {batch['ready']} of {batch['images']} images readable, {batch['classified']} classified, {batch['seconds']} s")
    print("(peak columns: page/worker JS heaps and PSS are maxima of 1 s samples; the wasm heap never shrinks, so its "
          "value is the peak; live buffers, gc objects, DOM and MicroPython figures are at the end of the batch; "
          "'pressure' rows: after End session, a critical memory-pressure notification and a page GC)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
