"""`build.py bundle`: the offline zip unzips into a folder that serves itself with one command
and classifies the demo samples in Chromium without a single request leaving the folder's origin.

Expected probabilities come from static/demo/expected.json (TensorFlow, tools/make_demo_model.py),
not from Vitrine.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

import build

pytestmark = pytest.mark.browser

DEMO = build.ROOT / "static" / "demo"
TIMEOUT_MS = 120_000
# PNG and DICOM decode bit-identically in Pyodide and in TensorFlow's preprocessing (see
# tests/browser/test_workflow.py); JPEG does not, so this test uses no JPEG.
TOLERANCE = 1e-4
SAMPLES = ("mr_abdomen.png", "mr_small.dcm")


@pytest.fixture(scope="module")
def bundle_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "vitrine-offline.zip"
    try:
        return build.bundle(out, use_cdn=not os.environ.get("VITRINE_NO_CDN"))
    except build.BuildError as exc:
        pytest.fail(f"building the bundle failed: {exc}")


@pytest.fixture(scope="module")
def unzipped(bundle_zip, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("hospital")
    with zipfile.ZipFile(bundle_zip) as archive:
        archive.extractall(target)
    folders = list(target.iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("vitrine-"), f"one top folder expected, got {folders}"
    return folders[0]


@pytest.fixture(scope="module")
def served_bundle(unzipped, tmp_path_factory):
    """Run the bundle's own serve.py the way the README says, from another working directory."""
    elsewhere = tmp_path_factory.mktemp("cwd")
    process = subprocess.Popen([sys.executable, str(unzipped / "serve.py"), "--port", "0"], cwd=elsewhere,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            process.kill()
            pytest.fail(f"serve.py did not announce its address; stdout {line!r}, stderr {process.communicate()[1]!r}")
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_bundle_holds_the_site_the_server_and_an_honest_readme(unzipped):
    manifest = json.loads((unzipped / "build-manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (unzipped / name).read_bytes()
        assert len(data) == entry["bytes"], name
    for sample in SAMPLES:
        assert (unzipped / "static/demo/samples" / sample).read_bytes() == (DEMO / "samples" / sample).read_bytes()
    assert (unzipped / "static/demo/demo-model.zip").read_bytes() == (DEMO / "demo-model.zip").read_bytes()
    readme = (unzipped / "README.txt").read_text()
    assert "python3 serve.py" in readme and "http://127.0.0.1:8000/" in readme
    assert "NOT FOR CLINICAL USE" in readme
    assert "static/demo/SOURCES.md" in readme and (unzipped / "static/demo/SOURCES.md").exists()


def test_serve_script_sends_the_mime_types_modules_and_webassembly_need(served_bundle):
    expected = {"/pyodide/pyodide.mjs": "text/javascript", "/pyodide/pyodide.asm.wasm": "application/wasm",
                "/static/boot.js": "text/javascript", "/index.html": "text/html"}
    for path, mime in expected.items():
        with urllib.request.urlopen(served_bundle + path, timeout=10) as response:
            assert response.headers.get_content_type() == mime, path


def test_unzipped_bundle_classifies_offline_like_tensorflow(served_bundle, unzipped, blank_page):
    page = blank_page.page
    foreign = []

    def only_the_origin(route):
        url = route.request.url
        if urlsplit(url).scheme in ("http", "https") and not url.startswith(served_bundle + "/"):
            foreign.append(url)
            route.abort()
        else:
            route.continue_()

    page.context.route("**/*", only_the_origin)
    page.goto(served_bundle + "/")
    page.wait_for_selector("body:not([data-engine-state='booting'])", state="attached", timeout=TIMEOUT_MS)
    assert page.get_attribute("body", "data-engine-state") == "ready", page.inner_text("#engine-status")
    page.wait_for_selector("body[data-model-state='ready']", state="attached", timeout=TIMEOUT_MS)
    assert "not for clinical use" in page.inner_text("#model-section").lower()

    # the clinician picks the sample files that came in the bundle
    page.set_input_files("#image-files", [str(unzipped / "static/demo/samples" / name) for name in SAMPLES])
    page.wait_for_selector(f"body[data-images-checking='0'][data-images-ready='{len(SAMPLES)}']",
                           state="attached", timeout=TIMEOUT_MS)
    page.click("#predict")
    page.wait_for_selector("body[data-run-state='done'][data-runs='1']", state="attached", timeout=TIMEOUT_MS)

    truth = json.loads((DEMO / "expected.json").read_text())["samples"]
    for name in SAMPLES:
        row = page.locator(f"#results-table tbody tr[data-file='{name}']")
        probabilities = row.get_attribute("data-probs")
        assert probabilities, f"{name}: {row.get_attribute('data-error')}"
        shown = json.loads(probabilities)
        print(name, "max |browser - TensorFlow| =", float(np.max(np.abs(np.subtract(shown, truth[name]["probabilities"])))))
        np.testing.assert_allclose(shown, truth[name]["probabilities"], atol=TOLERANCE, err_msg=name)

    # the page's and the workers' requests (the worker's fetches are reported for the page too)
    assert served_bundle + "/pyodide/pyodide.asm.wasm" in blank_page.requests
    assert served_bundle + "/static/demo/demo-model.zip" in blank_page.requests
    assert any(url.startswith(served_bundle + "/wheels/pydicom-") for url in blank_page.requests)
    assert foreign == []
    left_origin = [url for url in blank_page.requests
                   if urlsplit(url).scheme in ("http", "https") and not url.startswith(served_bundle + "/")]
    assert left_origin == []


def site_copy(unzipped: Path, target: Path) -> Path:
    """The unzipped site without the files the bundle adds (what build() leaves in a folder)."""
    shutil.copytree(unzipped, target)
    (target / "README.txt").unlink()
    (target / "serve.py").unlink()
    return target


def test_bundle_of_a_site_copy_is_the_same_zip(unzipped, bundle_zip, tmp_path):
    # bundle_site depends on the files only, not on where or when they were written
    site = site_copy(unzipped, tmp_path / "site")
    again = build.bundle_site(site, tmp_path / "again.zip")
    assert again.read_bytes() == bundle_zip.read_bytes()


def test_bundle_refuses_a_site_missing_a_manifest_file(unzipped, tmp_path):
    site = site_copy(unzipped, tmp_path / "site")
    (site / "config/wheels.json").unlink()
    with pytest.raises(build.BuildError, match=r"lacks files its build-manifest.json lists: \['config/wheels.json'\]"):
        build.bundle_site(site, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_bundle_refuses_a_site_that_already_has_a_readme(unzipped, tmp_path):
    site = site_copy(unzipped, tmp_path / "site")
    (site / "README.txt").write_text("someone else's")
    with pytest.raises(build.BuildError, match=r"already has \['README.txt'\], which the bundle adds itself"):
        build.bundle_site(site, tmp_path / "out.zip")
