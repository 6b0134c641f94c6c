"""Startup benchmark: navigation -> interactive UI -> engine ready, cold and warm cache.

    python build.py bench startup [--runs 3] [--dist dist] [--json out.json]

Serves dist/ on 127.0.0.1 with ``Cache-Control: max-age=600`` (what GitHub Pages sends), drives
headless Debian Chromium (/usr/bin/chromium) and reports, per run:

* ui_ms: ``performance.now()`` when the main-thread MicroPython UI started (``data-ui-ready-ms``);
* engine_ms: when the engine worker answered its first call (``data-engine-ready-ms``);
* wall_ms: navigation to data-engine-state="ready" seen by Playwright;
* bytes the server sent (runtime only; models are not part of startup) and the largest files.

Cold = fresh browser context (empty HTTP cache); warm = a second navigation in the same context.
"""

from __future__ import annotations

import argparse
import collections
import functools
import http.server
import json
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


def measure(page, url: str) -> dict:
    CountingHandler.sent.clear()
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("body:not([data-engine-state='booting'])", state="attached", timeout=180_000)
    wall_ms = (time.perf_counter() - started) * 1000
    state = page.get_attribute("body", "data-engine-state")
    if state != "ready":
        raise SystemExit(f"engine did not become ready: {state}: {page.inner_text('#engine-status')}")
    return {
        "ui_ms": float(page.get_attribute("body", "data-ui-ready-ms")),
        "engine_ms": float(page.get_attribute("body", "data-engine-ready-ms")),
        "wall_ms": wall_ms,
        "bytes": sum(CountingHandler.sent.values()),
        "files": dict(CountingHandler.sent),
        "phases": boot_phases(page),
    }


def boot_phases(page) -> dict:
    """The engine worker's boot timeline (workers/engine.py boot_report()) in ms since the
    page's navigation start: when each phase ended."""
    report = json.loads(page.evaluate("() => window.vitrineEngine.boot_report()"))
    offset = report["time_origin"] - page.evaluate("() => performance.timeOrigin")
    marks = report["marks"]

    def fetched(*suffixes):
        ends = [r["end"] for r in report["resources"] if r["name"].split("?")[0].endswith(suffixes)]
        return offset + max(ends) if ends else None

    calls = {}
    for entry in report["calls"]:
        calls.setdefault(entry["call"], entry)
    phases = {
        "worker_created": offset,
        "pyodide_module_loaded": offset + marks["vitrine:pyodide-start"],
        "runtime_fetched": fetched("pyodide.asm.wasm", "pyodide.asm.js", "python_stdlib.zip", "pyodide-lock.json"),
        "wheels_fetched": fetched(".whl"),
        **{k: offset + v for k, v in marks.items() if k.startswith("vitrine:") and k not in ("vitrine:pyodide-start", "vitrine:pyodide-loaded")},
        "pyodide_loaded": offset + marks["vitrine:pyodide-loaded"],
        "engine_script_start": offset + marks["engine_script_start"],
        "engine_imports_done": offset + marks["engine_imports_done"],
        "engine_script_done": offset + marks["engine_script_done"],
    }
    for name, entry in calls.items():
        phases[f"call_{name}_start"] = offset + entry["start"]
        phases[f"call_{name}_end"] = offset + entry["end"]
    return phases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args(argv)
    if not (args.dist / "index.html").exists():
        build.build(args.dist)

    from playwright.sync_api import sync_playwright

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(args.dist)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    results = {"cold": [], "warm": []}
    with sync_playwright() as playwright:
        for _ in range(args.runs):
            # A real on-disk profile: incognito-like contexts keep only a small in-memory HTTP
            # cache that does not hold the 10 MB pyodide.asm.wasm, which would fake a cold "warm".
            with tempfile.TemporaryDirectory(prefix="vitrine-profile-") as profile:
                context = playwright.chromium.launch_persistent_context(
                    profile, executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
                page = context.new_page()
                results["cold"].append(measure(page, url))
                page.close()
                page = context.new_page()
                results["warm"].append(measure(page, url))
                context.close()
    server.shutdown()

    print(f"startup benchmark, {args.runs} run(s), {url}")
    for kind in ("cold", "warm"):
        runs = results[kind]
        med = {key: statistics.median(r[key] for r in runs) for key in ("ui_ms", "engine_ms", "wall_ms", "bytes")}
        print(f"  {kind}: UI interactive {med['ui_ms']:.0f} ms, engine ready {med['engine_ms']:.0f} ms "
              f"(wall {med['wall_ms']:.0f} ms), transferred {med['bytes'] / 1e6:.2f} MB (medians)")
        print(f"  {kind} engine boot (medians, ms since navigation; + = duration of the step before):")
        names = list(dict.fromkeys(name for r in runs for name in r["phases"]))
        previous = 0.0
        for name in names:
            values = [r["phases"][name] for r in runs if r["phases"].get(name) is not None]
            if not values:
                continue
            at = statistics.median(values)
            print(f"    {at:7.0f}  (+{at - previous:5.0f})  {name}")
            previous = at
        print(f"    {med['engine_ms']:7.0f}  (+{med['engine_ms'] - previous:5.0f})  engine_ready (page)")
    largest = sorted(results["cold"][0]["files"].items(), key=lambda item: -item[1])[:8]
    print("  largest files (cold):")
    for path, size in largest:
        print(f"    {size / 1e6:7.2f} MB  {path}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
