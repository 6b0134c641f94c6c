"""The Explain panel on the built site (issue #10): Grad-CAM heatmaps and segmentation masks.

References come from TensorFlow (tools/make_gradcam_fixtures.py, run in /opt/tfenv), never from
Vitrine: ``tests/fixtures/gradcam/demo_model`` holds GradientTape Grad-CAM maps of the bundled demo
model on its PNG samples; ``tests/fixtures/gradcam/ui_unet`` a tiny U-Net zip with a model card, a
PNG image, TensorFlow's argmax mask and its pixel count per class. PNG decodes bit-identically in
Pyodide and CPython, so the page must reproduce them (Grad-CAM to 1e-3, masks exactly).
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
SAMPLES = REPO / "static" / "demo" / "samples"
DEMO_REF = REPO / "tests" / "fixtures" / "gradcam" / "demo_model"
UNET = REPO / "tests" / "fixtures" / "gradcam" / "ui_unet"
ARTIFACTS = REPO / "test-artifacts"
TIMEOUT = 120_000
ATOL = 1e-3


def _jet(values):
    """The Grad-CAM jet colour map written out per channel (red peaks at 0.75, green 0.5, blue 0.25)."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0, 1)
    return np.stack([np.clip(1.5 - np.abs(4 * v - c), 0, 1) for c in (3, 2, 1)], axis=-1) * 255


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
    wait(page, "body[data-model-state='ready']")
    return page


def classify(page, files):
    page.set_input_files("#image-files", [str(f) for f in files])
    wait(page, f"body[data-images-checking='0'][data-images-ready='{len(files)}']")
    runs = int(page.get_attribute("body", "data-runs") or 0) + 1
    page.click("#predict")
    wait(page, f"body[data-run-state='done'][data-runs='{runs}']")


def card_of(page, name):
    return page.locator(f"#result-cards article[data-file='{name}']")


def open_panel(page, name):
    """Open a card's Explain panel with the keyboard and wait for the worker's answer."""
    card = card_of(page, name)
    toggle = card.locator(".explain-box > summary")
    toggle.focus()
    page.keyboard.press("Enter")
    wait(page, f"#result-cards article[data-file='{name}'] .explain-box:is([data-state='ready'], [data-state='error'])")
    box = card.locator(".explain-box")
    assert box.get_attribute("data-state") == "ready", box.get_attribute("data-error")
    return box


def shown_heatmap(box):
    shape = json.loads(box.get_attribute("data-heatmap-shape"))
    return np.frombuffer(base64.b64decode(box.get_attribute("data-heatmap")), dtype="<f4").reshape(shape)


def image_of(locator, mode):
    src = locator.get_attribute("src")
    assert src.startswith("data:image/png;base64,"), src[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert(mode), dtype=np.float64)


def opacity(locator):
    return float(locator.evaluate("e => getComputedStyle(e).opacity"))


@pytest.fixture(scope="module")
def demo_ref():
    with np.load(DEMO_REF / "io.npz") as data:
        return {key: data[key] for key in data.files}


def test_gradcam_heatmap_matches_tensorflow_and_the_slider_sets_its_opacity(site_page, demo_ref):
    page = open_ready(site_page)
    files = [str(f) for f in demo_ref["files"]]
    classify(page, [SAMPLES / f for f in files])
    worst = 0.0
    for i, name in enumerate(files):
        box = open_panel(page, name)
        assert int(box.get_attribute("data-class-index")) == int(demo_ref["class_index"][i])
        assert box.get_attribute("data-layer") == str(demo_ref["layer"])
        heatmap = shown_heatmap(box)
        worst = max(worst, float(np.abs(heatmap - demo_ref["heatmap_upsampled"][i]).max()))
        np.testing.assert_allclose(heatmap, demo_ref["heatmap_upsampled"][i], atol=ATOL, err_msg=name)
        layer_map = json.loads(box.get_attribute("data-layer-heatmap"))
        np.testing.assert_allclose(np.reshape(layer_map["values"], layer_map["shape"]), demo_ref["heatmap"][i], atol=ATOL)
        # the picture on the page is TensorFlow's map in jet colours
        shown = image_of(box.locator("img.explain-layer"), "RGB")
        assert np.abs(shown - _jet(demo_ref["heatmap_upsampled"][i])).max() <= 3, name
    print(f"max |browser - TensorFlow| Grad-CAM over {len(files)} samples: {worst:.2e}")

    # opacity: the slider (keyboard) changes only the heatmap layer's CSS opacity
    box = card_of(page, files[0]).locator(".explain-box")
    layer = box.locator("img.explain-layer")
    assert opacity(layer) == pytest.approx(0.4)
    slider = box.locator("input.explain-opacity")
    assert box.locator(f"label[for='{slider.get_attribute('id')}']").inner_text().startswith("Heatmap opacity")
    slider.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    assert opacity(layer) == pytest.approx(0.6)
    assert box.get_attribute("data-opacity") == "0.6"
    assert "60" in box.locator("output").inner_text()
    assert box.locator("img.explain-scale-img").get_attribute("src").startswith("data:image/png")
    screenshot(page, "explain-gradcam.png")
    card_of(page, files[0]).screenshot(path=str(ARTIFACTS / "explain-gradcam-card.png"))

    # another class, chosen with the keyboard in the labelled selector: TensorFlow's runner-up map
    select = box.locator("select.explain-class")
    assert box.locator(f"label[for='{select.get_attribute('id')}']").inner_text().strip() == "Class"
    runner_up = int(demo_ref["runner_up_class"][0])
    select.select_option(str(runner_up))
    wait(page, f"#result-cards article[data-file='{files[0]}'] .explain-box[data-class-index='{runner_up}'][data-state='ready']")
    np.testing.assert_allclose(shown_heatmap(box), demo_ref["runner_up_heatmap_upsampled"][0], atol=ATOL)
    assert opacity(layer) == pytest.approx(0.6)  # the chosen opacity stays
    screenshot(page, "explain-gradcam-runner-up.png")


def test_segmentation_mask_equals_tensorflow_argmax_and_exports_a_png(site_page):
    with np.load(UNET / "io.npz") as data:
        masks, areas = data["masks"][0], data["areas"]
    card_json = json.loads((UNET / "model-card.json").read_text())
    page = open_ready(site_page)
    classify(page, [SAMPLES / "ct_head.png"])  # run 1, with the demo model (explained again below)
    demo_name = page.get_attribute("body", "data-model-name")
    page.click("#image-list li[data-image='ct_head.png'] button")
    page.set_input_files("#model-file", str(UNET / "model.zip"))
    wait(page, f"body[data-model-state='ready'][data-model-name='{card_json['name']}']")
    classify(page, [UNET / "image.png"])
    card = card_of(page, "image.png")
    # the card's summary reports areas, not a "prediction"
    assert "Mask:" in card.locator(".result-summary").inner_text()
    box = open_panel(page, "image.png")
    assert box.get_attribute("data-kind") == "segmentation"

    shown_areas = json.loads(box.get_attribute("data-areas"))
    assert [a["name"] for a in shown_areas] == card_json["classes"]
    assert [a["pixels"] for a in shown_areas] == areas.tolist()
    np.testing.assert_allclose([a["fraction"] for a in shown_areas], areas / masks.size, rtol=1e-12)
    rows = box.locator("table.explain-areas tbody tr")
    assert rows.count() == len(areas)
    for i, name in enumerate(card_json["classes"]):
        cells = rows.nth(i).locator("td")
        assert cells.nth(1).inner_text() == name and cells.nth(2).inner_text() == str(areas[i])
        assert cells.nth(3).inner_text() == "%.1f %%" % (100 * areas[i] / masks.size)

    # the mask layer: every class in its own colour, background transparent
    layer = box.locator("img.explain-layer")
    rgba = image_of(layer, "RGBA")
    np.testing.assert_array_equal(rgba[..., 3], np.where(masks > 0, 255, 0))
    colours = {tuple(rgba[masks == k][0, :3]) for k in (1, 2)}
    assert len(colours) == 2
    assert opacity(layer) == pytest.approx(0.5)
    slider = box.locator("input.explain-opacity")
    slider.fill("20")
    slider.dispatch_event("input")
    assert opacity(layer) == pytest.approx(0.2)
    slider.fill("70")
    slider.dispatch_event("input")
    assert opacity(layer) == pytest.approx(0.7)
    screenshot(page, "explain-segmentation.png")
    card.screenshot(path=str(ARTIFACTS / "explain-segmentation-card.png"))

    # export: a palette PNG whose pixel values are TensorFlow's argmax classes
    with page.expect_download() as download_info:
        box.locator("button.explain-export").click()
    download = download_info.value
    assert download.suggested_filename == "image_mask.png"
    exported = Image.open(download.path())
    assert exported.format == "PNG" and exported.mode == "P"
    np.testing.assert_array_equal(np.asarray(exported), masks)

    # run 1 reopened from the history: its model is no longer the loaded one, the panel says so
    page.click("#history-list li[data-run='1'] button:has-text('Reopen')")
    wait(page, "body[data-current-run='1']")
    card_of(page, "ct_head.png").locator(".explain-box > summary").click()
    wait(page, "#result-cards article[data-file='ct_head.png'] .explain-box[data-state='error']")
    assert card_of(page, "ct_head.png").locator(".explain-box").get_attribute("data-error") == (
        f"Load the model {demo_name} again to explain this result.")

    # "End session" takes the panels (and the maps they carry) with the cards
    page.click("#end-session")
    wait(page, "body[data-runs='0']")
    assert page.locator(".explain-box").count() == 0
    assert page.locator("[data-heatmap], [data-areas]").count() == 0


def test_explain_on_a_segmentation_model_is_refused_clearly(engine_page):
    """The worker call behind the panel, straight through the page's engine handle."""
    opened = engine_page.engine_call({"call": "open_model", "args": {"name": "model.zip"}}, (UNET / "model.zip").read_bytes())
    assert opened["ok"], opened
    handle = opened["result"]["model"]
    try:
        reply = engine_page.engine_call({"call": "explain", "args": {"model": handle, "name": "image.png"}},
                                        (UNET / "image.png").read_bytes())
        assert reply["ok"] is False and reply["error"]["type"] == "ModelInputError"
        assert "segmentation model" in reply["error"]["message"]
        segmented = engine_page.engine_call({"call": "segment", "args": {"model": handle, "name": "image.png"}},
                                            (UNET / "image.png").read_bytes())
        assert segmented["ok"], segmented
        with np.load(UNET / "io.npz") as data:
            masks = data["masks"][0]
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(segmented["result"]["mask_png"]))))
        np.testing.assert_array_equal(mask, masks)
    finally:
        engine_page.engine_call({"call": "unload_model", "args": {"model": handle}})


def test_worker_gradcam_matches_tensorflow(engine_page, demo_ref):
    """The ``explain`` call inside Pyodide (wasm32) on the demo model, without the UI."""
    demo = REPO / "static" / "demo" / "demo-model.zip"
    opened = engine_page.engine_call({"call": "open_model", "args": {"name": "demo-model.zip"}}, demo.read_bytes())
    assert opened["ok"], opened
    handle = opened["result"]["model"]
    try:
        for i, name in enumerate(str(f) for f in demo_ref["files"]):
            reply = engine_page.engine_call({"call": "explain", "args": {"model": handle, "name": name}},
                                            (SAMPLES / name).read_bytes())
            assert reply["ok"], reply
            heatmap = reply["result"]["heatmap"]
            values = np.frombuffer(base64.b64decode(heatmap["base64"]), dtype="<f4").reshape(heatmap["shape"])
            assert reply["result"]["class_index"] == int(demo_ref["class_index"][i])
            np.testing.assert_allclose(values, demo_ref["heatmap_upsampled"][i], atol=ATOL, err_msg=name)
    finally:
        engine_page.engine_call({"call": "unload_model", "args": {"model": handle}})
