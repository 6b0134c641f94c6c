"""TFLite models through the page (issue #8): the model-file input, real images, Predict, the
results table and the Explain panel, on the built site in Chromium.

Expected values come from LiteRT, never from Vitrine: ``tests/fixtures/tflite/page/`` was written
by ``tools/make_tflite_page_fixtures.py`` (ai-edge-litert 2.3.0 ``BUILTIN_REF`` in /opt/litertenv)
on the inputs tools/make_demo_model.py computed with Pillow / pydicom / OpenCV for the demo's PNG
and DICOM samples (which decode bit-identically in Pyodide and CPython). Grad-CAM references are
TensorFlow GradientTape maps of the demo model (``tests/fixtures/gradcam/demo_model``).
Tolerances (issue #8): float 1e-4 relative to the output scale; int8 one quantization step.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "tests" / "fixtures" / "tflite" / "page"
SAMPLES = REPO / "static" / "demo" / "samples"
GRADCAM_REF = REPO / "tests" / "fixtures" / "gradcam" / "demo_model"
UNET_IMAGE = REPO / "tests" / "fixtures" / "gradcam" / "ui_unet" / "image.png"
ARTIFACTS = REPO / "test-artifacts"
META = json.loads((PAGE / "meta.json").read_text())
TIMEOUT = 180_000
FLOAT_RTOL = 1e-4
GRADCAM_ATOL = 1e-3


@pytest.fixture(scope="module")
def expected():
    with np.load(PAGE / "expected.npz") as data:
        return {key: data[key] for key in data.files}


def wait(page, selector, timeout=TIMEOUT):
    page.wait_for_selector(selector, state="attached", timeout=timeout)


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def open_ready(site_page):
    page = site_page.page
    page.set_viewport_size({"width": 1366, "height": 900})
    site_page.open_site()
    site_page.wait_engine_ready()
    wait(page, "body[data-model-state='ready']")  # the demo model, loaded at start
    return page


def open_model_file(page, path: Path, shown_name: str):
    page.set_input_files("#model-file", str(path))
    wait(page, f"body[data-model-state='ready'][data-model-name='{shown_name}']")


def open_bad_model_file(page, path: Path) -> str:
    """Open a model file that must fail; the error shown for it. After an earlier failure the page
    is already in data-model-state='error', so wait for the error that names this file."""
    page.set_input_files("#model-file", str(path))
    # (selectors, not wait_for_function: the page's CSP refuses Playwright's string evaluation)
    page.locator("#model-error:not([hidden])", has_text=path.name).wait_for(timeout=TIMEOUT)
    wait(page, "body[data-model-state='error']")
    assert page.locator("#model-error").is_visible()
    return page.inner_text("#model-error")


def add_images(page, paths):
    page.set_input_files("#image-files", [str(p) for p in paths])
    wait(page, f"body[data-images-checking='0'][data-images-ready='{len(paths)}']")


def predict(page):
    runs = int(page.get_attribute("body", "data-runs") or 0) + 1
    page.click("#predict")
    wait(page, f"body[data-run-state='done'][data-runs='{runs}']")


def shown_probabilities(page):
    shown = {}
    for row in page.query_selector_all("#results-table tbody tr"):
        probs = row.get_attribute("data-probs")
        shown[row.get_attribute("data-file")] = json.loads(probs) if probs else row.get_attribute("data-error")
    return shown


def card_of(page, name):
    return page.locator(f"#result-cards article[data-file='{name}']")


def open_panel(page, name):
    """Open a card's Explain panel and wait for the worker's answer (ready or error)."""
    card_of(page, name).locator(".explain-box > summary").click()
    wait(page, f"#result-cards article[data-file='{name}'] .explain-box:is([data-state='ready'], [data-state='error'])")
    return card_of(page, name).locator(".explain-box")


def shown_heatmap(box):
    shape = json.loads(box.get_attribute("data-heatmap-shape"))
    return np.frombuffer(base64.b64decode(box.get_attribute("data-heatmap")), dtype="<f4").reshape(shape)


def assert_matches_litert(page, expected, model_file, classes):
    key = model_file.split(".")[0]
    reference = expected[f"{key}__output"]
    step, _zero_point = META["models"][model_file]["output_quantization"]
    # float: 1e-4 of the output scale; int8: one output quantization step (observed: identical)
    atol = step * 1.0001 if step else FLOAT_RTOL * float(np.abs(reference).max())
    shown = shown_probabilities(page)
    files = [str(f) for f in expected["files"]]
    assert set(shown) == set(files), shown
    worst = 0.0
    for i, name in enumerate(files):
        assert isinstance(shown[name], list), (model_file, name, shown[name])
        worst = max(worst, float(np.abs(np.subtract(shown[name], reference[i])).max()))
        np.testing.assert_allclose(shown[name], reference[i], rtol=0, atol=atol, err_msg=f"{model_file} {name}")
        top = int(np.argmax(reference[i]))
        assert classes[top] in card_of(page, name).locator(".result-summary").inner_text(), (model_file, name)
    print(f"{model_file}: max |page - LiteRT| over {len(files)} images = {worst:.2e} (tolerance {atol:.1e})")


def test_tflite_files_and_zip_through_the_page_match_litert(site_page, expected):
    page = open_ready(site_page)
    add_images(page, [SAMPLES / str(f) for f in expected["files"]])
    numbered = [f"class {i}" for i in range(6)]

    # a bare float .tflite: no card, numbered classes, input size from the model
    open_model_file(page, PAGE / "demo_float32.tflite", "demo_float32.tflite")
    assert "tflite" in page.inner_text("#model-status")
    predict(page)
    assert_matches_litert(page, expected, "demo_float32.tflite", numbered)
    screenshot(page, "tflite-float32.png")

    # its Explain panel: Grad-CAM through the TFLite graph equals TensorFlow's on the Keras demo model
    with np.load(GRADCAM_REF / "io.npz") as ref:
        name, ref_class, ref_map = str(ref["files"][0]), int(ref["class_index"][0]), ref["heatmap_upsampled"][0]
    box = open_panel(page, name)
    assert box.get_attribute("data-state") == "ready", box.get_attribute("data-error")
    assert int(box.get_attribute("data-class-index")) == ref_class
    np.testing.assert_allclose(shown_heatmap(box), ref_map, atol=GRADCAM_ATOL)
    print(f"Grad-CAM through demo_float32.tflite: max |page - TensorFlow| = {np.abs(shown_heatmap(box) - ref_map).max():.2e}")
    assert "block4_conv" in box.locator("figcaption").inner_text()
    card_of(page, name).screenshot(path=str(ARTIFACTS / "tflite-float32-explain-card.png"))

    # a full-int8 .tflite (int8 input and output): quantized and dequantized for the user
    open_model_file(page, PAGE / "demo_int8.tflite", "demo_int8.tflite")
    predict(page)
    assert_matches_litert(page, expected, "demo_int8.tflite", numbered)
    box = open_panel(page, name)  # the interpreter has no gradients: the panel says why
    assert box.get_attribute("data-state") == "error"
    message = box.get_attribute("data-error")
    assert "demo_int8.tflite" in message and "INT8" in message and "Grad-CAM" in message, message
    screenshot(page, "tflite-int8.png")

    # a zip holding a .tflite and its model card: the card's classes and standardisation apply
    card = json.loads(_zip_member(PAGE / "demo_tflite.zip", "model-card.json"))
    open_model_file(page, PAGE / "demo_tflite.zip", card["name"])
    assert ", ".join(card["classes"]) in page.text_content("#model-card")  # the card view (collapsed)
    predict(page)
    assert_matches_litert(page, expected, "demo_tflite.zip", card["classes"])
    header = page.inner_text("#results-table thead")
    assert all(c in header for c in card["classes"]), header
    screenshot(page, "tflite-zip-with-card.png")


def _zip_member(path: Path, member: str) -> bytes:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read(member)


BAD_FILES = [
    # (file, words the error must contain: the file and what is wrong with it)
    ("truncated.tflite", ["truncated.tflite", "outside the file"]),
    ("corrupt.tflite", ["corrupt.tflite", "outside the file"]),
    ("custom_op.tflite", ["custom_op.tflite", "FlexRGBToHSV", "SELECT_TF_OPS"]),
    ("unsupported_op.tflite", ["unsupported_op.tflite", "CUMSUM"]),
]


def test_bad_tflite_files_are_named_with_the_reason_and_the_page_stays_usable(site_page, expected):
    page = open_ready(site_page)
    demo_name = page.get_attribute("body", "data-model-name")
    for file_name, words in BAD_FILES:
        if "ops" in META["bad"][file_name]:  # the op named is one LiteRT lists for this file
            assert words[1] in META["bad"][file_name]["ops"]
        message = open_bad_model_file(page, PAGE / file_name)
        for word in words:
            assert word in message, (file_name, word, message)
        # the model loaded before stays in use and says so
        assert demo_name in page.inner_text("#model-status")
        if file_name == "custom_op.tflite":
            screenshot(page, "tflite-bad-custom-op.png")
    # the next model works: open a good .tflite and classify with it
    open_model_file(page, PAGE / "demo_float32.tflite", "demo_float32.tflite")
    assert not page.locator("#model-error").is_visible()
    add_images(page, [SAMPLES / str(f) for f in expected["files"]])
    predict(page)
    assert_matches_litert(page, expected, "demo_float32.tflite", [f"class {i}" for i in range(6)])


def test_tflite_unet_zip_masks_equal_litert_argmax_in_the_page(site_page, expected):
    masks = expected["unet__masks"][0]
    card = json.loads(_zip_member(PAGE / "unet_tflite.zip", "model-card.json"))
    page = open_ready(site_page)
    open_model_file(page, PAGE / "unet_tflite.zip", card["name"])
    add_images(page, [UNET_IMAGE])
    predict(page)
    assert "Mask:" in card_of(page, "image.png").locator(".result-summary").inner_text()
    box = open_panel(page, "image.png")
    assert box.get_attribute("data-state") == "ready", box.get_attribute("data-error")
    assert box.get_attribute("data-kind") == "segmentation"
    areas = np.bincount(masks.ravel(), minlength=len(card["classes"]))
    shown = json.loads(box.get_attribute("data-areas"))
    assert [a["name"] for a in shown] == card["classes"]
    assert [a["pixels"] for a in shown] == areas.tolist()
    layer = Image.open(io.BytesIO(base64.b64decode(box.locator("img.explain-layer").get_attribute("src").split(",", 1)[1])))
    np.testing.assert_array_equal(np.asarray(layer.convert("RGBA"))[..., 3], np.where(masks > 0, 255, 0))
    with page.expect_download() as download_info:
        box.locator("button.explain-export").click()
    np.testing.assert_array_equal(np.asarray(Image.open(download_info.value.path())), masks)
    card_of(page, "image.png").screenshot(path=str(ARTIFACTS / "tflite-unet-card.png"))


def test_tflite_runtime_import_resolves_inside_the_worker(engine_page, expected):
    """``from tflite_runtime.interpreter import Interpreter`` inside the browser's engine worker gives
    Vitrine's interpreter (app.tflite.install_alias at worker start), and a model opened there runs."""
    info = engine_page.engine_call({"call": "info"})
    assert info["ok"], info
    assert info["result"]["in_pyodide"] is True
    assert info["result"]["tflite_runtime"] == "app.tflite.interpreter"
    opened = engine_page.engine_call({"call": "open_model", "args": {"name": "demo_int8.tflite"}},
                                     (PAGE / "demo_int8.tflite").read_bytes())
    assert opened["ok"], opened
    handle = opened["result"]["model"]
    try:
        assert opened["result"]["summary"]["type"] == "TFLiteModel"
        name = str(expected["files"][0])
        reply = engine_page.engine_call({"call": "classify", "args": {"model": handle, "name": name}},
                                        (SAMPLES / name).read_bytes())
        assert reply["ok"], reply
        np.testing.assert_allclose(reply["result"]["probabilities"], expected["demo_int8__output"][0], rtol=0,
                                   atol=META["models"]["demo_int8.tflite"]["output_quantization"][0] * 1.0001)
    finally:
        engine_page.engine_call({"call": "unload_model", "args": {"model": handle}})


REAL_MODEL = REPO / ".cache" / "fixtures" / "tflite-real" / "efficientnet_lite0_uint8.tflite"
PHOTOS = REPO / ".cache" / "samples" / "skimage"


def test_real_pretrained_uint8_tflite_classifies_photos_like_litert(site_page):
    """EfficientNet-Lite0 (uint8, from PyPI, sha256-pinned; cached, not committed) opened as a bare
    .tflite: the page feeds the resized pixels as uint8 and shows LiteRT's scores on the same
    Pillow-decoded, OpenCV-resized photos (tools/make_tflite_page_fixtures.py --real)."""
    meta = json.loads((PAGE / "real" / "efficientnet_lite0_uint8.json").read_text())
    photos = [PHOTOS / name for name in meta["photos"]]
    if not REAL_MODEL.is_file() or not all(p.is_file() for p in photos):
        pytest.skip("EfficientNet-Lite0 or the scikit-image photos are not cached (tests/tflite/real_models.py, "
                    "tools/fetch_sample_images.py)")
    with np.load(PAGE / "real" / "efficientnet_lite0_uint8.npz") as data:
        reference = {str(name): data[f"output_q_{i}"] for i, name in enumerate(data["files"])}
    page = open_ready(site_page)
    open_model_file(page, REAL_MODEL, REAL_MODEL.name)
    add_images(page, photos)
    predict(page)
    step, zero_point = meta["output_quantization"]
    shown = shown_probabilities(page)
    for name, expected_q in reference.items():
        assert isinstance(shown[name], list), shown[name]
        got_q = np.round(np.asarray(shown[name]) / step + zero_point).astype(np.int64)
        print(f"{name}: top class {int(np.argmax(got_q))} ({meta['top5'][name][0]['label']}), "
              f"max step difference {int(np.abs(got_q - expected_q.astype(np.int64)).max())}")
        np.testing.assert_array_equal(got_q, expected_q.astype(np.int64), err_msg=name)
        top = meta["top5"][name][0]["index"]
        assert f"class {top}" in card_of(page, name).locator(".result-summary").inner_text()
    screenshot(page, "tflite-real-efficientnet-lite0.png")
