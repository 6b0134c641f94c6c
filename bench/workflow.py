"""Workflow benchmark of the clinician page (issue #6): numbers for docs/ui.md, never asserted.

    .venv/bin/python bench/workflow.py [--runs 3] [--batch 32] [--workers 1,2] [--model my.zip] [--json out.json]

Builds the site into a temporary directory (or takes ``--dist``, which must then have been built
with ``--model-host http://127.0.0.1:<--zenodo-port>``), serves it on 127.0.0.1 next to a local
fake Zenodo (tests/zenodo/fake_zenodo.py) holding the model, and drives headless Debian Chromium
(/usr/bin/chromium) through Playwright. For each pool size (``?workers=N``):

(i)  cached model -> first result: the model was downloaded once with "keep in this browser"
     ticked (Cache API); in a fresh tab (fresh engine workers) with one image added, the time from
     choosing the model (Zenodo record id + "Download") until the first result card shows a result.
     Includes the MD5 re-check of the cached bytes and parsing the model in the worker.
(ii) batch throughput: images per second for a batch of ``--batch`` images (the eight PNG / JPEG
     demo samples repeated), from the page's own ``data-run-classify-ms`` (first classify request
     to last result, charts included), after one warm-up batch in the same tab.

Each of the ``--runs`` rounds measures (i) and (ii) once per pool size, alternating, in fresh
tabs; the figures are medians over the rounds.

The model defaults to the built-in demo (64 x 64 input, tiny: per-image time is mostly decoding
and resizing); ``--model`` takes any TF.js zip / .tflite the page can open.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import build  # noqa: E402  (the repo root is only importable after the path tweak)
from tests.zenodo.fake_zenodo import FakeZenodo  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SAMPLES = ROOT / "static" / "demo" / "samples"
PLAIN_SAMPLES = ["ct_head.png", "fundus_retina.jpg", "histology_ihc.jpg", "microscopy_cell.png", "mr_abdomen.png",
                 "photo_camera.png", "photo_cat.jpg", "us_doppler.jpg"]
RECORD = 777001
TIMEOUT_MS = 600_000


def distinct_copy(model: bytes, name: str) -> bytes:
    """The model with one extra zip entry (a different MD5 from the built-in demo, so the page's
    data-model-md5 shows which copy is in use); .tflite files are used as they are."""
    if not name.endswith(".zip"):
        return model
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(model)) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info.filename))
        target.writestr("BENCH.txt", "copy published on a local fake Zenodo by bench/workflow.py\n")
    return buffer.getvalue()


def model_file(path: Path) -> tuple[bytes, str]:
    """(bytes, file name) of ``--model``: a zip / .tflite as it is, a TF.js model folder
    (model.json + weight shards, e.g. .cache/fixtures/big/k2_webipred_densenet121) zipped."""
    if not path.is_dir():
        return path.read_bytes(), path.name
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # float32 weights barely compress
        for member in sorted(path.iterdir()):
            # the model's own files only (fixture folders also hold reference inputs / outputs)
            if member.name in ("model.json", "model-card.json") or member.suffix == ".bin":
                archive.write(member, member.name)
    return buffer.getvalue(), path.name + ".zip"


def image_files(count: int) -> list[dict]:
    files = []
    for i in range(count):
        sample = PLAIN_SAMPLES[i % len(PLAIN_SAMPLES)]
        files.append({"name": f"{i:03d}-{sample}", "mimeType": "image/png" if sample.endswith(".png") else "image/jpeg",
                      "buffer": (SAMPLES / sample).read_bytes()})
    return files


def wait(page, selector: str) -> None:
    page.wait_for_selector(selector, state="attached", timeout=TIMEOUT_MS)


def open_page(page, url: str, workers: int) -> None:
    page.goto(url)
    wait(page, "body:not([data-engine-state='booting'])")
    if page.get_attribute("body", "data-engine-state") != "ready":
        raise SystemExit(f"engine did not start: {page.inner_text('#engine-status')}")
    wait(page, "body[data-model-state='ready']")
    wait(page, f"body[data-pool-target='{workers}'][data-pool-ready='{workers}']")


def add_images(page, files: list[dict]) -> None:
    page.set_input_files("#image-files", files)
    wait(page, f"body[data-images-checking='0'][data-images-ready='{len(files)}']")


def fetch_model(page, md5: str, cache: bool) -> None:
    page.set_checked("#cache-opt-in", cache)
    page.fill("#model-reference", str(RECORD))
    page.click("#model-fetch")
    wait(page, f"body[data-model-state='ready'][data-model-md5='{md5}']")


def cached_model_to_first_result(browser, url: str, workers: int, md5: str, runs: int) -> list[dict]:
    context = browser.new_context()
    page = context.new_page()
    open_page(page, url, workers)
    fetch_model(page, md5, cache=True)  # downloaded once, kept in the Cache API (opt-in)
    page.close()
    measured = []
    for _ in range(runs):
        page = context.new_page()  # a fresh tab: fresh workers, the model only in the Cache API
        open_page(page, url, workers)
        add_images(page, image_files(1))
        started = time.perf_counter()
        fetch_model(page, md5, cache=True)
        model_s = time.perf_counter() - started
        page.click("#predict")
        wait(page, "#result-cards article[data-status='ok']")
        total_s = time.perf_counter() - started
        status = page.inner_text("#model-status")
        if "cache" not in status:
            raise SystemExit(f"the model did not come from the browser's cache: {status!r}")
        measured.append({"model_ready_s": model_s, "first_result_s": total_s})
        page.close()
    context.close()
    return measured


def batch_throughput(browser, url: str, workers: int, batch: int, runs: int, model_md5: str | None) -> list[dict]:
    context = browser.new_context()
    page = context.new_page()
    open_page(page, url, workers)
    if model_md5:
        fetch_model(page, model_md5, cache=False)
        wait(page, f"body[data-pool-ready='{workers}']")
    add_images(page, image_files(batch))
    devtools = context.new_cdp_session(page)
    devtools.send("Performance.enable")
    measured = []
    for run in range(runs + 1):  # run 0 warms every worker up (first numpy / decoder calls)
        main_busy_before = main_thread_busy_s(devtools)
        cpu_before = browser_cpu_s()
        wall_before = time.perf_counter()
        page.click("#predict")
        wait(page, f"body[data-run-state='done'][data-runs='{run + 1}']")
        wall_s = time.perf_counter() - wall_before
        cpu_s = browser_cpu_s() - cpu_before
        main_busy_s = main_thread_busy_s(devtools) - main_busy_before
        classify_ms = float(page.get_attribute("body", "data-run-classify-ms"))
        used = {card.get_attribute("data-worker") for card in page.query_selector_all("#result-cards article")}
        errors = page.locator("#result-cards article[data-status='error']").count()
        if errors:
            raise SystemExit(f"{errors} image(s) failed: {page.inner_text('#predict-status')}")
        if run:
            measured.append({"classify_ms": classify_ms, "images_per_s": batch / (classify_ms / 1000),
                             # cores the browser got during the batch, and the main thread's share
                             "browser_cores": cpu_s / wall_s, "main_thread_cores": main_busy_s / wall_s,
                             "workers_used": sorted(used)})
    context.close()
    return measured


def main_thread_busy_s(devtools) -> float:
    """Seconds the page's main thread has spent running tasks (DevTools ``TaskDuration``): the
    MicroPython UI, DOM updates, layout; the workers run on their own threads."""
    metrics = {m["name"]: m["value"] for m in devtools.send("Performance.getMetrics")["metrics"]}
    return float(metrics["TaskDuration"])


def browser_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process's descendants: the Playwright
    driver and the Chromium it launched (browser, renderer with the engine worker threads, GPU and
    utility processes), from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    me, total = os.getpid(), 0.0
    for pid in cpu:
        ancestor = parents.get(pid)
        while ancestor and ancestor != me:
            ancestor = parents.get(ancestor)
        if ancestor == me:
            total += cpu[pid]
    return total


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, "
            f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at start")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", default="1,2", help="pool sizes to compare (?workers=N), comma-separated")
    parser.add_argument("--dist", type=Path, help="a built site (built with --model-host http://127.0.0.1:<zenodo-port>)")
    parser.add_argument("--zenodo-port", type=int, default=0, help="fixed port of the fake Zenodo (with --dist)")
    parser.add_argument("--model", type=Path, help="model zip / .tflite / TF.js folder to use instead of the built-in demo")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args(argv)
    pool_sizes = [int(n) for n in args.workers.split(",")]
    model_path = args.model or ROOT / "static" / "demo" / "demo-model.zip"
    model_bytes, model_name = model_file(model_path)
    model = distinct_copy(model_bytes, model_name)
    import hashlib

    md5 = hashlib.md5(model).hexdigest()
    from playwright.sync_api import sync_playwright

    results = {"machine": machine(), "model": f"{model_name} ({len(model) / 1e6:.2f} MB)", "batch": args.batch,
               "cached_model_to_first_result": {}, "batch_throughput": {}}
    with FakeZenodo(port=args.zenodo_port) as zenodo, tempfile.TemporaryDirectory(prefix="vitrine-bench-") as tmp:
        zenodo.add_record(RECORD, {"bench-model" + Path(model_name).suffix: model}, title="Vitrine benchmark model", version="1.0")
        dist = args.dist
        if dist is None:
            dist = Path(tmp) / "dist"
            build.build(dist, model_host=zenodo.url, use_cdn=not os.environ.get("VITRINE_NO_CDN"))
        server = build.make_server(dist)
        import threading

        threading.Thread(target=server.serve_forever, daemon=True).start()
        origin = f"http://127.0.0.1:{server.server_address[1]}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            # rounds alternate the pool sizes, so that the load of a shared machine, which drifts
            # over minutes, weighs on every pool size alike
            for workers in pool_sizes:
                results["cached_model_to_first_result"][workers] = []
                results["batch_throughput"][workers] = []
            for _ in range(args.runs):
                for workers in pool_sizes:
                    url = f"{origin}/index.html?workers={workers}&zenodo={zenodo.url}"
                    results["cached_model_to_first_result"][workers] += cached_model_to_first_result(
                        browser, url, workers, md5, 1)
                    results["batch_throughput"][workers] += batch_throughput(
                        browser, url, workers, args.batch, 1, md5 if args.model else None)
            browser.close()
        server.shutdown()

    load = os.getloadavg()
    results["load_average_at_end"] = [round(value, 2) for value in load]
    print(f"workflow benchmark: {results['model']}, {args.runs} run(s) per figure (medians), "
          f"batch of {args.batch}; machine: {results['machine']}, {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end")
    for workers in pool_sizes:
        first = results["cached_model_to_first_result"][workers]
        batch = results["batch_throughput"][workers]
        print(f"  ?workers={workers}: cached model -> first result {statistics.median(r['first_result_s'] for r in first):.2f} s "
              f"(model ready {statistics.median(r['model_ready_s'] for r in first):.2f} s); "
              f"batch {statistics.median(r['images_per_s'] for r in batch):.1f} images/s "
              f"({statistics.median(r['classify_ms'] for r in batch):.0f} ms for {args.batch}; workers used "
              f"{', '.join(batch[0]['workers_used'])}; browser used {statistics.median(r['browser_cores'] for r in batch):.2f} "
              f"cores, its main thread {statistics.median(r['main_thread_cores'] for r in batch):.2f}); runs: first result "
              f"{', '.join('%.2f' % r['first_result_s'] for r in first)} s, batch "
              f"{', '.join('%.1f' % r['images_per_s'] for r in batch)} images/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
