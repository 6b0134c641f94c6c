"""Downloading a model from (fake) Zenodo inside the engine worker: byte progress, MD5 check,
prediction with the downloaded model; a checksum mismatch and a missing record are explained in
words and the app keeps working with the model it had.

The root conftest's ``built_site`` allows only its own static model host in the CSP, so this file
builds a second site whose ``--model-host`` is the fake Zenodo server's origin.
"""

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.browser.test_workflow import DEMO, SAMPLES, TIMEOUT, TOLERANCE, expected, screenshot, shown_probabilities, wait
from tests.zenodo.fake_zenodo import FakeZenodo

pytestmark = pytest.mark.browser

GOOD_RECORD, BAD_RECORD = 4242, 4343
CONCEPT, CONCEPT_VERSIONS = 5000, [(5001, "1.0"), (5002, "2.0")]
FILE_KEY = "demo-model-tfjs.zip"


def repacked_demo(note: str = "demo model, published on a fake Zenodo for the browser tests\n") -> bytes:
    """The demo model with one extra text entry ``note``: same network and card, a different MD5,
    so the page can show that the downloaded copy (not the built-in one) is in use."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(DEMO / "demo-model.zip") as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info.filename))
        target.writestr("README.txt", note)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def zenodo_site(tmp_path_factory, static_server):
    import build

    with FakeZenodo() as zenodo:
        data = repacked_demo()
        zenodo.add_record(GOOD_RECORD, {FILE_KEY: data}, title="Vitrine demo (fake Zenodo)", version="1.0")
        zenodo.add_record(BAD_RECORD, {FILE_KEY: data}, title="Damaged upload", version="1.0")
        zenodo.wrong_checksum(BAD_RECORD, FILE_KEY)
        # two versions of one concept (all-versions id CONCEPT); the newest is registered last
        concept_md5 = {}
        for record, version in CONCEPT_VERSIONS:
            version_data = repacked_demo(f"version {version}\n")
            concept_md5[record] = hashlib.md5(version_data).hexdigest()
            zenodo.add_record(record, {FILE_KEY: version_data}, title="Vitrine demo, versioned",
                              version=version, concept_id=CONCEPT)
        root = tmp_path_factory.mktemp("zenodo-site")
        dist = root / "dist"
        dist.mkdir()
        origin = static_server(dist)
        build.build(dist, model_host=zenodo.url, use_cdn=not os.environ.get("VITRINE_NO_CDN"))
        yield {"origin": origin, "zenodo": zenodo, "md5": hashlib.md5(data).hexdigest(), "size": len(data),
               "concept_md5": concept_md5}


@pytest.fixture
def zenodo_page(browser, zenodo_site):
    from tests.conftest import _site_page

    context, session = _site_page(browser, None)
    yield session
    context.close()
    unexpected = session.unexpected_errors()
    if unexpected:
        pytest.fail("browser console errors:\n" + "\n".join(unexpected))


def test_model_downloads_from_zenodo_with_progress_md5_and_predicts(zenodo_page, zenodo_site):
    page = zenodo_page.page
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(f"{zenodo_site['origin']}/index.html?zenodo={zenodo_site['zenodo'].url}")
    zenodo_page.wait_engine_ready()
    wait(page, "body[data-model-state='ready']")

    # a record that does not exist: said in words, the demo model stays in use
    page.fill("#model-reference", "999999")
    page.click("#model-fetch")
    wait(page, "body[data-model-state='error']")
    assert "not found" in page.inner_text("#model-error").lower()
    assert "demo" in page.inner_text("#model-status").lower()

    # a published MD5 that does not match the bytes: refused with a clear reason
    page.fill("#model-reference", f"https://zenodo.org/records/{BAD_RECORD}")
    page.click("#model-fetch")
    # (the error of this attempt, not the one before: on a loaded machine the short 'loading'
    # state can come and go between two polls, so the test waits for this error's own words)
    wait(page, "body[data-model-state='error'] #model-error:has-text('MD5')")
    message = page.inner_text("#model-error")
    assert "corrupt" in message and "MD5" in message and FILE_KEY in message, message
    screenshot(page, "zenodo-checksum-error.png")

    # the real thing, by DOI: byte progress up to the file size, MD5 verified, model in use
    page.fill("#model-reference", f"10.5281/zenodo.{GOOD_RECORD}")
    page.click("#model-fetch")
    wait(page, f"body[data-model-state='ready'][data-model-md5='{zenodo_site['md5']}']")
    assert page.get_attribute("body", "data-download-done") == str(zenodo_site["size"])
    card_text = page.text_content("#model-card")
    assert f"Zenodo record {GOOD_RECORD}" in card_text and zenodo_site["md5"] in card_text
    downloads = [r for r in zenodo_site["zenodo"].requests if r.path.endswith(f"/files/{FILE_KEY}/content")]
    assert any(f"/records/{GOOD_RECORD}/" in r.path for r in downloads)

    # the app stayed usable throughout: classify with the downloaded model
    truth = expected()
    names = ["ct_head.png", "microscopy_cell.png"]
    page.set_input_files("#image-files", [str(SAMPLES / n) for n in names])
    wait(page, "body[data-images-checking='0'][data-images-ready='2']")
    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='1']")
    shown = shown_probabilities(page)
    for name in names:
        np.testing.assert_allclose(shown[name], truth["samples"][name]["probabilities"], atol=TOLERANCE, err_msg=name)
    with page.expect_download() as download_info:
        page.click("#export-csv")
    text = Path(download_info.value.path()).read_text(encoding="utf-8")
    assert f"zenodo:{GOOD_RECORD}/{FILE_KEY}" in text and zenodo_site["md5"] in text
    screenshot(page, "zenodo-downloaded.png")


def test_models_are_cached_only_after_opting_in_and_can_be_forgotten(zenodo_page, zenodo_site):
    page = zenodo_page.page
    url = f"{zenodo_site['origin']}/index.html?zenodo={zenodo_site['zenodo'].url}"
    ready = f"body[data-model-state='ready'][data-model-md5='{zenodo_site['md5']}']"

    def downloads():
        return sum(1 for r in zenodo_site["zenodo"].requests
                   if r.path.endswith(f"/records/{GOOD_RECORD}/files/{FILE_KEY}/content"))

    def open_page():
        page.goto(url)
        zenodo_page.wait_engine_ready()
        wait(page, "body[data-model-state='ready']")

    def download(opt_in):
        page.set_checked("#cache-opt-in", opt_in)
        page.fill("#model-reference", str(GOOD_RECORD))
        page.click("#model-fetch")
        wait(page, ready)

    def cached_listing():
        page.click("#cache-list")
        wait(page, "#cached-models li")
        return page.inner_text("#cached-models")

    # without opting in nothing is kept
    open_page()
    before = downloads()
    download(opt_in=False)
    assert downloads() == before + 1
    assert "No cached models." in cached_listing()

    # opted in: downloaded once more, then kept under record id + MD5
    open_page()
    download(opt_in=True)
    assert downloads() == before + 2
    assert f"zenodo-{GOOD_RECORD}-{zenodo_site['md5']}" in cached_listing()

    # next visit: served from the cache (MD5 checked again), no request to Zenodo for the file
    open_page()
    download(opt_in=True)
    assert "from this browser's cache" in page.inner_text("#model-status")
    assert downloads() == before + 2

    # "Forget all cached models" empties it
    page.click("#cache-forget-all")
    page.wait_for_selector("#cached-models li:has-text('No cached models.')", timeout=TIMEOUT)


def test_a_concept_id_downloads_the_newest_version_and_the_page_says_which(zenodo_page, zenodo_site):
    """Issue #4: a concept (all-versions) id is 404 on /api/records/{id}; the newest version is
    taken and the user is told which one."""
    page = zenodo_page.page
    page.goto(f"{zenodo_site['origin']}/index.html?zenodo={zenodo_site['zenodo'].url}")
    zenodo_page.wait_engine_ready()
    wait(page, "body[data-model-state='ready']")
    newest_record, newest_version = CONCEPT_VERSIONS[-1]
    newest_md5 = zenodo_site["concept_md5"][newest_record]

    page.fill("#model-reference", f"10.5281/zenodo.{CONCEPT}")
    page.click("#model-fetch")
    wait(page, f"body[data-model-state='ready'][data-model-md5='{newest_md5}']")
    notice = page.inner_text("#model-notice")
    assert page.locator("#model-notice").is_visible()
    assert str(CONCEPT) in notice and "newest version" in notice and newest_version in notice, notice
    assert str(newest_record) in page.text_content("#model-card")
    screenshot(page, "zenodo-concept-newest-version.png")

    # a local model file afterwards: the notice was about the download and goes away
    page.set_input_files("#model-file", str(DEMO / "demo-model.zip"))
    wait(page, "body[data-model-state='ready'][data-model-name]")
    page.locator("#model-notice[hidden]").wait_for(state="attached", timeout=TIMEOUT)
    assert not page.locator("#model-notice").is_visible()
