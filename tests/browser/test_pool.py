"""The clinician page's worker pool (issue #6): with ``?workers=2`` every model source (built-in
demo, catalog / Zenodo download) is loaded into both workers, both classify, and the shown
probabilities equal TensorFlow's (static/demo/expected.json, written by tools/make_demo_model.py);
a second tab of the same site in the same browser context classifying at the same time gets its
own correct results.

No timing assertions: which worker takes which image is not fixed, only that both took some.
"""

import hashlib
import json

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.test_workflow import (DEMO, JPEG_TOLERANCE, SAMPLES, TIMEOUT, TOLERANCE, expected, screenshot,
                                         shown_probabilities, wait)
from tests.browser.test_zenodo_download import GOOD_RECORD, zenodo_page, zenodo_site  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser
DEMO_ZIP = DEMO / "demo-model.zip"

# PNG / JPEG samples decode without the optional DICOM wheels, so every worker can take any image
PLAIN_SAMPLES = ["ct_head.png", "fundus_retina.jpg", "histology_ihc.jpg", "microscopy_cell.png", "mr_abdomen.png",
                 "photo_camera.png", "photo_cat.jpg", "us_doppler.jpg"]


def image_batch(copies):
    """``copies`` x each plain sample under distinct names (``2-ct_head.png``): a batch long enough
    for every worker to take images. Returns (Playwright file payloads, {shown name: sample name})."""
    files, origin = [], {}
    for copy in range(copies):
        for sample in PLAIN_SAMPLES:
            name = sample if copy == 0 else f"{copy}-{sample}"
            mime = "image/png" if sample.endswith(".png") else "image/jpeg"
            files.append({"name": name, "mimeType": mime, "buffer": (SAMPLES / sample).read_bytes()})
            origin[name] = sample
    return files, origin


def open_pool_page(page, url, workers):
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(url)
    wait(page, "body:not([data-engine-state='booting'])")
    assert page.get_attribute("body", "data-engine-state") == "ready", page.inner_text("#engine-status")
    wait(page, "body[data-model-state='ready']")
    wait(page, f"body[data-pool-target='{workers}'][data-pool-ready='{workers}']")


def add_batch(page, files, ready=None):
    """Add ``files`` to the image list; wait until ``ready`` images (default: just these) are checked."""
    page.set_input_files("#image-files", files)
    wait(page, f"body[data-images-checking='0'][data-images-ready='{ready or len(files)}']")


def card_workers(page):
    """{file: engine worker name} from the result cards' data-worker attributes."""
    return {card.get_attribute("data-file"): card.get_attribute("data-worker")
            for card in page.query_selector_all("#result-cards article.result-card")}


def assert_matches_tensorflow(shown, origin):
    truth = expected()["samples"]
    for name, sample in origin.items():
        assert isinstance(shown[name], list), (name, shown[name])
        tolerance = JPEG_TOLERANCE if sample.endswith(".jpg") else TOLERANCE
        np.testing.assert_allclose(shown[name], truth[sample]["probabilities"], atol=tolerance, err_msg=name)


def test_pool_of_two_workers_both_classify_and_match_tensorflow(site_page):
    page = site_page.page
    open_pool_page(page, site_page.site.origin + "/index.html?workers=2", 2)
    assert page.get_attribute("body", "data-death-watch") == "web-locks"
    assert "2 of 2 (2 with the model loaded)" in page.inner_text("#pool-size")
    files, origin = image_batch(copies=2)
    add_batch(page, files)
    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='1']")

    shown = shown_probabilities(page)
    assert_matches_tensorflow(shown, origin)
    used = card_workers(page)
    assert set(used) == set(origin)
    assert set(used.values()) == {"engine", "engine-pool-1"}, used
    # the table and the cards keep the image order, whichever worker finished first
    rows = [row.get_attribute("data-file") for row in page.query_selector_all("#results-table tbody tr")]
    assert rows == [f["name"] for f in files]
    cards = [card.get_attribute("data-file") for card in page.query_selector_all("#result-cards article")]
    assert cards == rows
    table_workers = {row.get_attribute("data-file"): row.get_attribute("data-worker")
                     for row in page.query_selector_all("#results-table tbody tr")}
    assert table_workers == used
    assert page.get_attribute("body", "data-worker-deaths") is None
    screenshot(page, "pool-two-workers-1366.png")


def test_downloaded_model_is_loaded_into_every_pool_worker(zenodo_page, zenodo_site):  # noqa: F811 - fixtures
    page = zenodo_page.page
    open_pool_page(page, f"{zenodo_site['origin']}/index.html?workers=2&zenodo={zenodo_site['zenodo'].url}", 2)
    page.fill("#model-reference", str(GOOD_RECORD))
    page.click("#model-fetch")
    wait(page, f"body[data-model-state='ready'][data-model-md5='{zenodo_site['md5']}']")
    # the downloaded bytes came back to the page once and went to the second worker too
    wait(page, "body[data-pool-ready='2']")

    files, origin = image_batch(copies=1)
    add_batch(page, files)
    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='1']")
    assert_matches_tensorflow(shown_probabilities(page), origin)
    assert set(card_workers(page).values()) == {"engine", "engine-pool-1"}
    # the results name the downloaded model (its MD5), not the built-in demo
    with page.expect_download() as download_info:
        page.click("#export-csv")
    assert zenodo_site["md5"] in open(download_info.value.path(), encoding="utf-8").read()


def test_second_tab_of_the_same_site_classifies_at_the_same_time_without_interference(site_page):
    first = site_page.page
    second = first.context.new_page()
    errors = []
    second.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    second.on("pageerror", lambda e: errors.append(str(e)))
    url = site_page.site.origin + "/index.html?workers=2"
    open_pool_page(first, url, 2)
    open_pool_page(second, url, 2)
    # different images per tab, so that a result crossing tabs would show
    files_a, origin_a = image_batch(copies=1)
    files_b, origin_b = image_batch(copies=2)
    files_b = files_b[len(PLAIN_SAMPLES):]
    origin_b = {f["name"]: origin_b[f["name"]] for f in files_b}
    add_batch(first, files_a)
    add_batch(second, files_b)
    first.click("#predict")
    second.click("#predict")
    for page in (first, second):
        wait(page, "body[data-run-state='done'][data-runs='1']")
    shown_a, shown_b = shown_probabilities(first), shown_probabilities(second)
    assert set(shown_a) == set(origin_a) and set(shown_b) == set(origin_b)
    assert_matches_tensorflow(shown_a, origin_a)
    assert_matches_tensorflow(shown_b, origin_b)
    for page in (first, second):
        assert page.get_attribute("body", "data-worker-deaths") is None
        assert page.get_attribute("body", "data-pool-ready") == "2"
    assert not errors, errors
    second.close()
    print("second tab workers:", json.dumps(card_workers(first)))


# Runs inside an engine worker: from its n-th classify answer on, the answers are held back (the
# image stays in flight, as on a slow model) until ``self.vitrineRelease()`` sends them. PyScript's
# workers answer the page over a MessagePort (coincident), so the hook sits on its postMessage.
HOLD_CLASSIFY = """(n) => {
    let seen = 0;
    const held = [];
    const post = MessagePort.prototype.postMessage;
    MessagePort.prototype.postMessage = function (data, transfer) {
        const reply = Array.isArray(data) && typeof data[1] === 'string' ? data[1] : '';
        if (reply.startsWith('{') && reply.includes('"call": "classify"') && ++seen >= n) {
            held.push([this, data, transfer]);
            return;
        }
        return post.call(this, data, transfer);
    };
    self.vitrineRelease = () => {
        MessagePort.prototype.postMessage = post;
        for (const [port, data, transfer] of held) post.call(port, data, transfer);
        return held.length;
    };
    return self.vitrineWorkerName;
}"""


def engine_worker(page, name):
    """The Playwright Worker whose engine published ``self.vitrineWorkerName == name``."""
    names = []
    for worker in page.workers:
        found = worker.evaluate("() => self.vitrineWorkerName || null")
        names.append(found)
        if found == name:
            return worker
    raise AssertionError(f"no engine worker named {name!r} among the page's workers {names}")


def card_states(page):
    """{file: (data-status, data-error or None)} of the result cards."""
    return {card.get_attribute("data-file"): (card.get_attribute("data-status"), card.get_attribute("data-error"))
            for card in page.query_selector_all("#result-cards article.result-card")}


def start_held_batch(page, files):
    """Both workers answer one classify each, then hold their second image: 2 results shown, 2 in flight."""
    add_batch(page, files)
    for name in ("engine", "engine-pool-1"):
        assert engine_worker(page, name).evaluate(HOLD_CLASSIFY, 2) == name
    page.click("#predict")
    expect(page.locator("#result-cards article[data-status='ok']")).to_have_count(2, timeout=TIMEOUT)
    expect(page.locator("#result-cards article[data-status='running']")).to_have_count(2, timeout=TIMEOUT)


def assert_cancelled_run(page, origin, classified):
    """``classified`` images have TensorFlow's probabilities, every other one says it was cancelled,
    in its card and in its table row."""
    states = card_states(page)
    done = {name for name, (status, _) in states.items() if status == "ok"}
    assert len(done) == classified, states
    shown = shown_probabilities(page)
    assert_matches_tensorflow({name: shown[name] for name in done}, {name: origin[name] for name in done})
    for name, (status, error) in states.items():
        if name not in done:
            assert status == "cancelled" and error == "not classified (cancelled)", (name, status, error)
            assert shown[name] == "not classified (cancelled)"
    assert f"Cancelled after {classified} of {len(origin)} images." in page.inner_text("#predict-status")
    assert "(cancelled)" in page.inner_text("#history-list li[data-run='1']")


def test_cancel_lets_the_images_in_flight_finish_and_keeps_their_results(site_page):
    page = site_page.page
    open_pool_page(page, site_page.site.origin + "/index.html?workers=2", 2)
    files, origin = image_batch(copies=3)
    start_held_batch(page, files)
    page.click("#predict-cancel")
    assert "2 image(s) being classified finish first" in page.inner_text("#predict-status")
    assert page.is_visible("#predict-stop")
    for name in ("engine", "engine-pool-1"):  # the two images in flight now finish
        assert engine_worker(page, name).evaluate("() => self.vitrineRelease()") == 1
    wait(page, "body[data-run-state='done'][data-runs='1']")
    assert_cancelled_run(page, origin, classified=4)
    assert not page.is_visible("#predict-stop")
    assert page.get_attribute("body", "data-worker-deaths") is None
    assert page.get_attribute("body", "data-engine-restarts") is None
    screenshot(page, "pool-cancelled-1366.png")

    page.click("#predict")  # nothing was left behind: the next run classifies every image
    wait(page, "body[data-run-state='done'][data-runs='2']")
    assert_matches_tensorflow(shown_probabilities(page), origin)


def test_stop_now_restarts_the_busy_workers_and_the_pool_works_again(site_page):
    page = site_page.page
    open_pool_page(page, site_page.site.origin + "/index.html?workers=2", 2)
    files, origin = image_batch(copies=3)
    start_held_batch(page, files)
    page.click("#predict-cancel")
    page.click("#predict-stop")  # the two held images would never finish: end their workers
    wait(page, "body[data-run-state='done'][data-runs='1']")
    assert_cancelled_run(page, origin, classified=2)
    wait(page, "body[data-engine-restarts='1'][data-engine-state='ready'][data-pool-ready='2']")
    assert page.get_attribute("body", "data-worker-deaths") is None  # ended on purpose: not a fault
    assert page.get_attribute("body", "data-engine-name") == "engine-1"
    events = page.inner_text("#pool-events")
    assert "Stopped: engine worker(s) 1, 2 ended on purpose" in events
    assert "Stopped: engine restarted with 2 fresh worker(s), the model is loaded again." in events
    screenshot(page, "pool-stopped-1366.png")

    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='2']")
    assert_matches_tensorflow(shown_probabilities(page), origin)
    assert set(card_workers(page).values()) == {"engine-1", "engine-pool-2"}


# The sizing rule of docs/ui.md ("Pool size"), restated here: one worker per logical core, as many
# as fit in half the device memory at 170 MB + 8 x the model file each, at least 1.
def documented_pool_size(cores, device_memory_gb, model_bytes):
    per_worker_mb = 170 + 8 * model_bytes / 1048576
    return max(1, min(4, cores, int(device_memory_gb * 1024 * 0.5 / per_worker_mb)))


def padded_demo_model(extra_bytes):
    """The demo model zip plus one stored entry of random bytes: the same weights (TensorFlow's
    expected outputs still apply) in a file big enough to change the memory budget."""
    import io
    import zipfile

    source = DEMO_ZIP.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(source)) as original, zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as padded:
        for info in original.infolist():
            padded.writestr(info, original.read(info.filename))
        padded.writestr("PADDING.bin", np.random.default_rng(0).bytes(extra_bytes))
    return buffer.getvalue()


def test_default_pool_size_follows_cores_and_the_memory_budget_of_the_model(site_page):
    page = site_page.page
    cores, memory_gb = 2, 1
    page.context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'hardwareConcurrency', {get: () => %d});"
        "Object.defineProperty(Navigator.prototype, 'deviceMemory', {get: () => %d});" % (cores, memory_gb))
    small = documented_pool_size(cores, memory_gb, DEMO_ZIP.stat().st_size)
    big_model = padded_demo_model(24 * 1048576)
    big = documented_pool_size(cores, memory_gb, len(big_model))
    assert (small, big) == (2, 1)  # the scenario exercises both limits: cores, then memory
    open_pool_page(page, site_page.site.origin + "/index.html", small)  # no ?workers: the default

    page.set_input_files("#model-file", {"name": "padded-demo.zip", "mimeType": "application/zip", "buffer": big_model})
    wait(page, f"body[data-model-state='ready'][data-model-md5='{hashlib.md5(big_model).hexdigest()}']")
    wait(page, f"body[data-pool-target='{big}'][data-pool-size='{big}'][data-pool-ready='{big}']")
    assert "Engine worker 2 (engine-pool-1) ended: the pool is sized for 1 worker(s) with this model." in page.inner_text("#pool-events")
    files, origin = image_batch(copies=2)
    add_batch(page, files)
    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='1']")
    assert_matches_tensorflow(shown_probabilities(page), origin)
    assert set(card_workers(page).values()) == {"engine"}

    page.click("#use-demo")  # a small model again: the pool grows back
    wait(page, f"body[data-model-state='ready'][data-model-md5='{expected()['model']['md5']}']")
    wait(page, f"body[data-pool-target='{small}'][data-pool-ready='{small}']")
    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='2']")
    assert_matches_tensorflow(shown_probabilities(page), origin)
    assert set(card_workers(page).values()) == {"engine", "engine-pool-2"}
