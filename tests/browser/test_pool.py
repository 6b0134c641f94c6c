"""The clinician page's worker pool (issue #6): with ``?workers=2`` every model source (built-in
demo, catalog / Zenodo download) is loaded into both workers, both classify, and the shown
probabilities equal TensorFlow's (static/demo/expected.json, written by tools/make_demo_model.py);
a second tab of the same site in the same browser context classifying at the same time gets its
own correct results.

No timing assertions: which worker takes which image is not fixed, only that both took some.
"""

import json

import numpy as np
import pytest

from tests.browser.test_workflow import (JPEG_TOLERANCE, SAMPLES, TIMEOUT, TOLERANCE, expected, screenshot,
                                         shown_probabilities, wait)
from tests.browser.test_zenodo_download import GOOD_RECORD, zenodo_page, zenodo_site  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

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
