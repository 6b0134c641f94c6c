"""Startup benchmark: navigation -> interactive UI -> engine ready, cold and warm cache.

    python build.py bench startup [--runs 3] [--dist dist] [--json out.json] [--no-repeat]
    python build.py bench startup --compare before1.json,before2.json after1.json,after2.json

Serves dist/ on 127.0.0.1 with ``Cache-Control: max-age=600`` (what GitHub Pages sends), drives
headless Debian Chromium (/usr/bin/chromium) with a real on-disk profile and reports medians of:

* ui_ms: ``performance.now()`` when the main-thread MicroPython UI started (``data-ui-ready-ms``);
* engine_ms: when the page set ``data-engine-state="ready"`` (``data-engine-ready-ms``): the engine
  answered ``info`` and ``select_gemm_backend`` and can take a model and classify;
* wall_ms: navigation to data-engine-state="ready" seen by Playwright;
* the engine worker's boot, phase by phase (workers/engine.py ``boot_report()``: the marks of
  static/engine-pyodide.mjs and of the worker script, its first calls, its fetches), all in ms
  since the page's navigation start;
* after ready: when the deferred packages (Pillow, app.boot) were installed and the built-in demo
  model was loaded (the page's pre-heating), i.e. when a first image is classified without waiting;
* bytes the server sent until ready and until that point (the runtime; the demo model is left
  out) and the largest files; which modules Python still compiled from source (no shipped pyc).

Visits: cold = a fresh profile (empty HTTP cache), warm = the second navigation in it, repeat =
the third (Chromium uses its JavaScript code cache for a script from the third load on, so a
returning user sees "repeat"). Each run is a new profile. The machine's load average is printed
before and after: on a shared machine, compare figures only from back-to-back runs.
"""

from __future__ import annotations

import argparse
import collections
import functools
import http.server
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import build  # noqa: E402  (the repo root is only importable after the path tweak)

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MODEL_FILES = ("/static/demo/demo-model.zip",)  # models are not part of the runtime's bytes
SETTLE_TIMEOUT_S = 120


class CountingHandler(build.StaticHandler):
    """Static handler that records bytes sent per path and sends GitHub-Pages-like caching."""

    sent: collections.Counter = collections.Counter()

    def end_headers(self):
        self.send_header("Cache-Control", "max-age=600")
        super().end_headers()

    def copyfile(self, source, outputfile):
        data = source.read()
        outputfile.write(data)
        CountingHandler.sent[self.path.split("?")[0]] += len(data)


def runtime_bytes(sent: dict) -> int:
    return sum(size for path, size in sent.items() if path not in MODEL_FILES)


def measure(page, url: str) -> dict:
    CountingHandler.sent.clear()
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("body:not([data-engine-state='booting'])", state="attached", timeout=180_000)
    wall_ms = (time.perf_counter() - started) * 1000
    state = page.get_attribute("body", "data-engine-state")
    if state != "ready":
        raise SystemExit(f"engine did not become ready: {state}: {page.inner_text('#engine-status')}")
    bytes_at_ready = runtime_bytes(CountingHandler.sent)
    report = settled_boot_report(page)
    return {
        "ui_ms": float(page.get_attribute("body", "data-ui-ready-ms")),
        "engine_ms": float(page.get_attribute("body", "data-engine-ready-ms")),
        "wall_ms": wall_ms,
        "bytes": bytes_at_ready,
        "bytes_settled": runtime_bytes(CountingHandler.sent),
        "files": dict(CountingHandler.sent),
        **boot_phases(page, report),
        "from_source": None if report is None or "modules" not in report else sorted(
            name for name, module in report["modules"].items() if not module["bytecode"]),
    }


def settled_boot_report(page) -> dict | None:
    """The worker's boot report once the deferred packages are installed and the demo model is in
    (None for a build without ``boot_report``, e.g. an older one measured for comparison)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        # a worker without that export rejects the call (PyScript proxies any name)
        text = page.evaluate("async () => { try { return await window.vitrineEngine.boot_report(); } "
                             "catch (error) { return null; } }")
        report = None if text is None else json.loads(text)
        installed = report is None or (report.get("deferred") or {}).get("state", "ready") in ("ready", "failed")
        demo_loaded = page.get_attribute("body", "data-model-state") in ("ready", "error")
        if installed and demo_loaded:
            return report
        if time.monotonic() > deadline:
            raise SystemExit(f"the page did not settle within {SETTLE_TIMEOUT_S} s (deferred packages installed: "
                             f"{installed}, demo model state: {page.get_attribute('body', 'data-model-state')})")
        page.wait_for_timeout(100)


def boot_phases(page, report: dict) -> dict:
    """The worker's boot (``phases``: when each step ended) and what followed ``after_ready``, in
    ms since the page's navigation start."""
    if report is None:
        return {"phases": {}, "after_ready": {}}
    offset = report["time_origin"] - page.evaluate("() => performance.timeOrigin")
    marks = report["marks"]
    deferred_start = marks.get("deferred_install_start", float("inf"))

    def fetched(*suffixes):
        # the boot's own fetches: those the worker started before it began the deferred installs
        ends = [r["end"] for r in report["resources"]
                if r["name"].split("?")[0].endswith(suffixes) and r["start"] < deferred_start]
        return offset + max(ends) if ends else None

    calls = {}
    for entry in report["calls"]:
        calls.setdefault(entry["call"], entry)
    phases = {
        "worker created": offset,
        "pyodide.mjs loaded, loadPyodide called": offset + marks["vitrine:pyodide-start"],
        "runtime files fetched (asm.wasm/.js, stdlib, lock)": fetched("pyodide.asm.wasm", "pyodide.asm.js",
                                                                    "python_stdlib.zip", "pyodide-lock.json"),
        "boot packages fetched": fetched(".whl", ".zip"),
        "Python initialised + boot packages installed": offset + marks["vitrine:pyodide-loaded"],
        "PyScript set up, engine script starts": offset + marks["engine_script_start"],
        "engine script imported app": offset + marks["engine_imports_done"],
        "engine script done": offset + marks["engine_script_done"],
    }
    for name in ("info", "select_gemm_backend"):
        if name in calls:
            phases[f"call {name} answered"] = offset + calls[name]["end"]
    after = {}
    if "deferred_install_done" in marks:
        after["deferred packages (Pillow) installed"] = offset + marks["deferred_install_done"]
    if "open_model" in calls:
        after["demo model loaded (pre-heat)"] = offset + calls["open_model"]["end"]
    return {"phases": phases, "after_ready": after}


def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def print_timeline(runs: list[dict], section: str, start: float = 0.0) -> float:
    previous = start
    names = list(dict.fromkeys(name for r in runs for name in r[section]))
    for name in names:
        values = [r[section][name] for r in runs if r[section].get(name) is not None]
        if values:
            at = statistics.median(values)
            print(f"    {at:7.0f}  (+{at - previous:5.0f})  {name}")
            previous = at
    return previous


def compare(before: list[Path], after: list[Path]) -> int:
    """Pooled medians of runs saved with --json (several files per side: back-to-back rounds)."""
    sides = {}
    for label, paths in (("before", before), ("after", after)):
        pooled = collections.defaultdict(list)
        loads = []
        for path in paths:
            saved = json.loads(path.read_text())
            loads += [load[0] for load in saved.get("load_average", [])]
            for kind in ("cold", "warm", "repeat"):
                pooled[kind] += saved.get(kind, [])
        sides[label] = (pooled, loads)
    print(f"pooled medians (ms), before: {', '.join(map(str, before))}; after: {', '.join(map(str, after))}")
    for label, (_, loads) in sides.items():
        print(f"  {label}: 1-minute load average {min(loads):.2f}..{max(loads):.2f} during the runs")
    for kind in ("cold", "warm", "repeat"):
        row = []
        for key in ("ui_ms", "engine_ms"):
            values = {label: median_of(pooled[kind], key) for label, (pooled, _) in sides.items()}
            if None in values.values():
                continue
            counts = {label: len(pooled[kind]) for label, (pooled, _) in sides.items()}
            row.append(f"{key} {values['before']:.0f} -> {values['after']:.0f} (n={counts['before']}/{counts['after']})")
        if row:
            print(f"  {kind}: " + "; ".join(row))
    for label, (pooled, _) in sides.items():
        print(f"  {label}: transferred {median_of(pooled['cold'], 'bytes') / 1e6:.2f} MB cold until ready, "
              f"{median_of(pooled['cold'], 'bytes_settled') / 1e6:.2f} MB with the deferred packages")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), type=str,
                        help="print pooled medians of two sets of --json files (comma-separated lists) instead of measuring")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--no-repeat", action="store_true", help="skip the third visit")
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*([Path(p) for p in side.split(",")] for side in args.compare))
    if not (args.dist / "index.html").exists():
        build.build(args.dist)

    from playwright.sync_api import sync_playwright

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(args.dist)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    visits = ("cold", "warm") if args.no_repeat else ("cold", "warm", "repeat")
    results = {kind: [] for kind in visits}
    load_before = os.getloadavg()
    with sync_playwright() as playwright:
        for _ in range(args.runs):
            # A real on-disk profile: incognito-like contexts keep only a small in-memory HTTP
            # cache that does not hold the 10 MB pyodide.asm.wasm, which would fake a cold "warm".
            with tempfile.TemporaryDirectory(prefix="vitrine-profile-") as profile:
                context = playwright.chromium.launch_persistent_context(
                    profile, executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
                for kind in visits:
                    page = context.new_page()
                    results[kind].append(measure(page, url))
                    page.close()
                context.close()
    server.shutdown()
    load_after = os.getloadavg()

    print(f"startup benchmark, {args.runs} run(s), {url}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.2f}' for v in load_before)} before, {' '.join(f'{v:.2f}' for v in load_after)} after")
    for kind in visits:
        runs = results[kind]
        print(f"  {kind}: UI interactive {median_of(runs, 'ui_ms'):.0f} ms, engine ready {median_of(runs, 'engine_ms'):.0f} ms "
              f"(wall {median_of(runs, 'wall_ms'):.0f} ms; runs: {', '.join('%.0f' % r['engine_ms'] for r in runs)}), "
              f"transferred {median_of(runs, 'bytes') / 1e6:.2f} MB until ready, "
              f"{median_of(runs, 'bytes_settled') / 1e6:.2f} MB with the deferred packages (medians; runtime, no models)")
    for kind in visits:
        runs = results[kind]
        print(f"  {kind} engine boot (medians, ms since navigation; + = duration of the step before):")
        end = print_timeline(runs, "phases")
        ready = median_of(runs, "engine_ms")
        print(f"    {ready:7.0f}  (+{ready - end:5.0f})  engine ready (page: death watch set up, state flipped)")
        print("    after ready:")
        print_timeline(runs, "after_ready", ready)
    from_source = collections.Counter(name for kind in visits for r in results[kind] for name in r["from_source"] or ())
    print(f"  modules compiled from source in the browser (no shipped pyc): {len(from_source)}"
          + (f": {', '.join(sorted(from_source))}" if from_source else ""))
    largest = sorted(results["cold"][0]["files"].items(), key=lambda item: -item[1])[:10]
    print("  largest files (cold):")
    for path, size in largest:
        print(f"    {size / 1e6:7.2f} MB  {path}")
    if args.json:
        args.json.write_text(json.dumps({"load_average": [load_before, load_after], **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
