"""Zenodo records that are not simply "one runnable model" (issue #4), through the page and a fake
Zenodo: a record whose zip holds no model, a record with only non-runnable files, a TF.js
graph-model ("not supported yet") and an ambiguous record (two runnable zips: the user chooses,
and the choice loads and predicts). After each failure the page says what happened, naming the
file(s), and the model loaded before stays usable. Also the opt-in model cache's per-model
"Forget" button (test_zenodo_download.py covers "Forget all").

The session's built site allows only its own static model host in the CSP; instead of building a
second site, this module serves a copy of it (hard links) whose index.html names the fake Zenodo
server as the model host (the host appears nowhere else in the build).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from tests.browser.test_workflow import ARTIFACTS, DEMO, SAMPLES, TIMEOUT, TOLERANCE, expected, shown_probabilities, wait
from tests.zenodo.fake_zenodo import FakeZenodo, make_zip

pytestmark = pytest.mark.browser

NO_MODEL_IN_ZIP, NOT_RUNNABLE, GRAPH_MODEL, AMBIGUOUS, CACHED_A, CACHED_B = 6101, 6102, 6103, 6104, 6105, 6106
GRAPH_MODEL_JSON = {"format": "graph-model", "generatedBy": "2.15.0", "convertedBy": "TensorFlow.js Converter v4.22.0",
                    "modelTopology": {"node": [{"name": "x", "op": "Placeholder"}], "library": {}, "versions": {}},
                    "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": []}]}


def repacked_demo(note: str) -> bytes:
    """The demo model plus one text entry: the same network and card, another MD5."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(DEMO / "demo-model.zip") as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info.filename))
        target.writestr("README.txt", note + "\n")
    return buffer.getvalue()


def _link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@pytest.fixture(scope="module")
def zenodo(built_site, static_server, tmp_path_factory):
    with FakeZenodo() as fake:
        fake.add_record(NO_MODEL_IN_ZIP, {"model-tfjs.zip": make_zip({"README.txt": b"weights only, sorry\n",
                                                                      "weights.bin": bytes(64)})},
                        title="A zip without a model", version="1.0")
        fake.add_record(NOT_RUNNABLE, {"model.h5": b"\x89HDF\r\n\x1a\n" + bytes(64), "evaluation.json": b"{}"},
                        title="Keras weights only", version="1.0")
        fake.add_record(GRAPH_MODEL, {"graph-model-tfjs.zip": make_zip({"model.json": json.dumps(GRAPH_MODEL_JSON).encode(),
                                                                        "group1-shard1of1.bin": bytes(16)})},
                        title="A TF.js graph model", version="1.0")
        choices = {"model-a-tfjs.zip": repacked_demo("choice a"), "model-b-tfjs.zip": repacked_demo("choice b")}
        fake.add_record(AMBIGUOUS, {**choices, "evaluation.json": b"{}"}, title="Two runnable zips", version="3.2")
        cached = {CACHED_A: repacked_demo("cached a"), CACHED_B: repacked_demo("cached b")}
        for record, data in cached.items():
            fake.add_record(record, {"demo-tfjs.zip": data}, title=f"Cached demo {record}", version="1.0")

        dist = tmp_path_factory.mktemp("zenodo-choices") / "dist"
        shutil.copytree(built_site.dist, dist, copy_function=_link_or_copy)
        index = dist / "index.html"
        text = index.read_text(encoding="utf-8")
        assert text.count(built_site.model_origin) >= 2, "the model host is no longer written into index.html"
        index.unlink()  # a hard link to the session's site: never write through it
        index.write_text(text.replace(built_site.model_origin, fake.url), encoding="utf-8")
        yield {"fake": fake, "origin": static_server(dist),
               "md5": {key: hashlib.md5(data).hexdigest() for key, data in choices.items()}
               | {record: hashlib.md5(data).hexdigest() for record, data in cached.items()}}


@pytest.fixture
def zenodo_page(browser, zenodo):
    from tests.conftest import _site_page

    zenodo["fake"].reset_faults()
    context, session = _site_page(browser, None)
    yield session
    context.close()
    unexpected = session.unexpected_errors()
    if unexpected:
        pytest.fail("browser console errors:\n" + "\n".join(unexpected))


def open_page(session, zenodo):
    ARTIFACTS.mkdir(exist_ok=True)
    page = session.page
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(f"{zenodo['origin']}/index.html?workers=1&zenodo={zenodo['fake'].url}")
    session.wait_engine_ready()
    wait(page, "body[data-model-state='ready']")
    return page


def fetch(page, reference):
    page.fill("#model-reference", reference)
    page.click("#model-fetch")


def classify_and_check(page, names):
    """Classify the images in the list; the probabilities must be TensorFlow's for the demo network."""
    runs = int(page.get_attribute("body", "data-runs") or 0) + 1
    page.click("#predict")
    wait(page, f"body[data-run-state='done'][data-runs='{runs}']")
    truth = expected()["samples"]
    shown = shown_probabilities(page)
    for name in names:
        assert isinstance(shown[name], list), shown[name]
        np.testing.assert_allclose(shown[name], truth[name]["probabilities"], atol=TOLERANCE, err_msg=name)


def file_downloads(zenodo, record, key):
    return sum(1 for r in zenodo["fake"].requests if r.path.endswith(f"/records/{record}/files/{key}/content"))


def test_records_without_a_runnable_model_are_explained_and_the_loaded_model_stays_usable(zenodo_page, zenodo):
    page = open_page(zenodo_page, zenodo)
    demo_md5 = page.get_attribute("body", "data-model-md5")
    demo_name = page.get_attribute("body", "data-model-name")
    page.set_input_files("#image-files", [str(SAMPLES / "ct_head.png")])
    wait(page, "body[data-images-checking='0'][data-images-ready='1']")

    cases = [
        # (reference, words the message must contain: what happened and the file(s) it is about)
        (str(NOT_RUNNABLE), ["no TF.js or TFLite model", "model.h5", "evaluation.json"]),
        (str(NO_MODEL_IN_ZIP), ["model-tfjs.zip", "no model.json", f"Zenodo record {NO_MODEL_IN_ZIP}", "README.txt",
                                "weights.bin", "A runnable zip holds a TF.js layers-model"]),
        (f"10.5281/zenodo.{GRAPH_MODEL}", ["graph-model-tfjs.zip", "graph-model", "does not support", "yet"]),
    ]
    for reference, words in cases:
        fetch(page, reference)
        wait(page, f"body[data-model-state='error'] #model-error:has-text('{words[1]}')")
        message = page.inner_text("#model-error")
        print(reference, "->", message)
        for word in words:
            assert word in message, (reference, word, message)
        assert page.locator("#model-error").is_visible() and page.get_attribute("#model-error", "role") == "alert"
        assert page.inner_text("#model-status") == f"Still using: {demo_name}"
        assert not page.locator("#model-file-choice").is_visible()  # nothing to choose from
        # the model loaded before is still the one in use, and it still classifies correctly
        assert page.get_attribute("body", "data-model-md5") == demo_md5
        assert not page.locator("#predict").is_disabled()
        classify_and_check(page, ["ct_head.png"])
        if reference == str(NO_MODEL_IN_ZIP):
            assert file_downloads(zenodo, NO_MODEL_IN_ZIP, "model-tfjs.zip") == 1  # found out after downloading it
            page.locator("#model-section").screenshot(path=str(ARTIFACTS / "zenodo-choices-no-model.png"))


def test_an_ambiguous_record_asks_which_file_and_the_choice_loads_and_predicts(zenodo_page, zenodo):
    page = open_page(zenodo_page, zenodo)
    demo_md5 = page.get_attribute("body", "data-model-md5")
    demo_name = page.get_attribute("body", "data-model-name")
    fetch(page, str(AMBIGUOUS))
    wait(page, "body[data-model-state='error'] #model-error:has-text('several files')")
    message = page.inner_text("#model-error")
    assert "model-a-tfjs.zip" in message and "model-b-tfjs.zip" in message and "choose one" in message, message
    assert "evaluation.json" not in message
    assert page.inner_text("#model-status") == f"Still using: {demo_name}"
    assert page.get_attribute("body", "data-model-md5") == demo_md5
    choice = page.locator("#model-file-choice")
    assert choice.is_visible()
    assert "choose one" in choice.locator("label").inner_text()
    options = page.eval_on_selector_all("#model-file-select option", "o => o.map((x) => x.value)")
    assert options == ["model-a-tfjs.zip", "model-b-tfjs.zip"]
    assert file_downloads(zenodo, AMBIGUOUS, "model-a-tfjs.zip") == file_downloads(zenodo, AMBIGUOUS, "model-b-tfjs.zip") == 0
    page.screenshot(path=str(ARTIFACTS / "zenodo-choices-ambiguous.png"), full_page=False)

    # the user picks the second file (keyboard-reachable select + button): it downloads, verifies, loads
    page.select_option("#model-file-select", "model-b-tfjs.zip")
    page.focus("#model-file-use")
    page.keyboard.press("Enter")
    md5 = zenodo["md5"]["model-b-tfjs.zip"]
    wait(page, f"body[data-model-state='ready'][data-model-md5='{md5}']")
    assert file_downloads(zenodo, AMBIGUOUS, "model-b-tfjs.zip") == 1
    assert file_downloads(zenodo, AMBIGUOUS, "model-a-tfjs.zip") == 0
    assert not choice.is_visible()
    assert not page.locator("#model-error").is_visible()
    source = page.locator("#model-card").evaluate(
        "box => [...box.querySelectorAll('dt')].find((dt) => dt.textContent === 'Source').nextElementSibling.textContent")
    for part in (f"Zenodo record {AMBIGUOUS}", "version 3.2", "file model-b-tfjs.zip", f"DOI 10.5281/zenodo.{AMBIGUOUS}",
                 f"MD5 {md5}"):
        assert part in source, (part, source)
    names = ["ct_head.png", "microscopy_cell.png"]
    page.set_input_files("#image-files", [str(SAMPLES / n) for n in names])
    wait(page, "body[data-images-checking='0'][data-images-ready='2']")
    classify_and_check(page, names)
    with page.expect_download() as download_info:
        page.click("#export-csv")
    text = download_info.value.path().read_text(encoding="utf-8")
    assert f"zenodo:{AMBIGUOUS}/model-b-tfjs.zip" in text and md5 in text


def test_one_cached_model_can_be_forgotten_and_the_others_stay(zenodo_page, zenodo):
    page = open_page(zenodo_page, zenodo)
    md5 = zenodo["md5"]
    page.set_checked("#cache-opt-in", True)

    def download(record):
        fetch(page, str(record))
        wait(page, f"body[data-model-state='ready'][data-model-md5='{md5[record]}']")

    def listing():
        page.click("#cache-list")
        wait(page, "#cached-models li")
        return page.eval_on_selector_all("#cached-models li", "items => items.map((li) => li.textContent)")

    # a verified download that holds no runnable model is refused and not cached
    fetch(page, str(NO_MODEL_IN_ZIP))
    wait(page, "body[data-model-state='error'] #model-error:has-text('no model.json')")
    download(CACHED_A)
    download(CACHED_B)
    before = {record: file_downloads(zenodo, record, "demo-tfjs.zip") for record in (CACHED_A, CACHED_B)}
    entries = listing()
    assert len(entries) == 2, entries  # A and B, not the zip without a model
    assert not any(f"zenodo-{NO_MODEL_IN_ZIP}-" in e for e in entries), entries
    assert any(f"zenodo-{CACHED_A}-{md5[CACHED_A]}" in e for e in entries)
    assert any(f"zenodo-{CACHED_B}-{md5[CACHED_B]}" in e for e in entries)

    # each cached model has its own labelled Forget button; forgetting A leaves B
    item_a = page.locator(f"#cached-models li:has-text('zenodo-{CACHED_A}-')")
    assert item_a.locator("button").inner_text() == "Forget"
    assert item_a.locator("button").get_attribute("aria-label") == f"Forget zenodo-{CACHED_A}-{md5[CACHED_A]}/demo-tfjs.zip"
    page.locator("#model-section").screenshot(path=str(ARTIFACTS / "zenodo-choices-cache.png"))
    item_a.locator("button").click()
    item_a.wait_for(state="detached", timeout=TIMEOUT)
    entries = page.eval_on_selector_all("#cached-models li", "items => items.map((li) => li.textContent)")
    assert len(entries) == 1 and f"zenodo-{CACHED_B}-{md5[CACHED_B]}" in entries[0], entries

    # A is downloaded again (B is the model in use: A first, so that each wait sees a new MD5);
    # B comes from the cache, without a request for its file
    download(CACHED_A)
    assert "from this browser's cache" not in page.inner_text("#model-status")
    assert file_downloads(zenodo, CACHED_A, "demo-tfjs.zip") == before[CACHED_A] + 1
    download(CACHED_B)
    assert "from this browser's cache" in page.inner_text("#model-status")
    assert file_downloads(zenodo, CACHED_B, "demo-tfjs.zip") == before[CACHED_B]
    page.click("#cache-forget-all")
    page.wait_for_selector("#cached-models li:has-text('No cached models.')", timeout=TIMEOUT)
