"""Details of the clinician's workflow (issue #6) that test_workflow.py does not exercise, each
checked through the real page: the inference progress line, the model card view (published
metrics with their explanations), catalog search and filters, drag-and-drop and the folder
picker, a past run's CSV from the history, and the Explain panel's layer selector.

Expected values come from input files (app/catalog.json, the demo model's model-card.json,
static/demo/expected.json recorded with TensorFlow), never from the page's own functions.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.browser.test_workflow import (ARTIFACTS, DEMO, JPEG_TOLERANCE, SAMPLES, TIMEOUT, TOLERANCE, expected,
                                         screenshot, shown_probabilities, wait)

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "app" / "catalog.json"
TFLITE_DEMO = REPO / "tests" / "fixtures" / "tflite" / "page" / "demo_tflite.zip"


def open_ready(site_page, path="/index.html?workers=1", width=1366, height=900):
    """The site with the demo model loaded (one worker: these tests are not about the pool)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = site_page.page
    page.set_viewport_size({"width": width, "height": height})
    site_page.open_site(path)
    site_page.wait_engine_ready()
    wait(page, "body[data-model-state='ready']")
    return page


def add_images(page, paths, ready):
    page.set_input_files("#image-files", [str(p) for p in paths])
    wait(page, f"body[data-images-checking='0'][data-images-ready='{ready}']")


def classify(page):
    runs = int(page.get_attribute("body", "data-runs") or 0) + 1
    page.click("#predict")
    wait(page, f"body[data-run-state='done'][data-runs='{runs}']")
    return runs


def demo_card():
    with zipfile.ZipFile(DEMO / "demo-model.zip") as archive:
        return json.loads(archive.read("model-card.json"))


# ---------------------------------------------------------------------------- 1. progress line
# every text the progress line shows, recorded in the page as it changes
RECORD_STATUS = """() => {
    const node = document.getElementById('predict-status');
    window.vitrineStatusLog = [];
    new MutationObserver(() => window.vitrineStatusLog.push(node.textContent))
        .observe(node, {childList: true, characterData: true, subtree: true});
}"""
PROGRESS = re.compile(r"^Image (\d+) of (\d+) \((\d+(?:\.\d)?|–) ms per image\)$")
DONE = re.compile(r"^Done: (\d+) of (\d+) images classified(?: \(\d+ failed: see the table\))?; "
                  r"(\d+(?:\.\d)?) ms per image on average\.$")


def test_progress_line_shows_image_n_of_n_and_the_time_per_image(site_page):
    page = open_ready(site_page)
    good = ["ct_head.png", "mr_abdomen.png", "microscopy_cell.png", "photo_camera.png", "us_doppler.jpg",
            "fundus_retina.jpg"]
    add_images(page, [SAMPLES / n for n in good + ["corrupt.png"]], len(good))
    page.evaluate(RECORD_STATUS)
    classify(page)

    log = page.evaluate("() => window.vitrineStatusLog")
    print("progress line:", log)
    progress = [PROGRESS.match(text) for text in log[:-1]]
    assert progress and all(progress), log  # every text before the last is "Image n of N (x ms per image)"
    counts = [int(m.group(1)) for m in progress]
    assert all(int(m.group(2)) == len(good) for m in progress), log  # N = the images that can be classified
    assert counts == sorted(counts) and 1 <= counts[0] and counts[-1] == len(good), log  # n grows to N
    assert all(n <= len(good) for n in counts)
    times = [float(m.group(3)) for m in progress]
    assert all(ms > 0 for ms in times), log

    # each time shown is the time of an image that just finished: the cards say the same
    card_times = []
    for name in good:
        summary = page.inner_text(f"#result-cards article[data-file='{name}'] .result-summary")
        found = re.search(r"\((\d+(?:\.\d)?) ms\)", summary)
        assert found, summary
        card_times.append(float(found.group(1)))
    assert all(any(abs(t - c) < 0.051 for c in card_times) for t in times), (times, card_times)

    # after the run the line keeps the count and the time per image (the mean of the images' times)
    done = DONE.match(log[-1])
    assert done, log[-1]
    assert page.inner_text("#predict-status") == log[-1]
    assert (int(done.group(1)), int(done.group(2))) == (len(good), len(good))
    assert float(done.group(3)) == pytest.approx(sum(card_times) / len(card_times), abs=0.06)
    assert page.locator("#predict-progress").evaluate("e => [e.value, e.max]") == [len(good), len(good)]
    assert page.locator("#predict-progress-row").is_visible()


# ---------------------------------------------------------------------------- 2. model card
# the model card view as data: facts (dt -> dd), references, and per published metric its
# explanation line and its table rows
READ_CARD = """(box) => {
    const facts = {};
    for (const dt of box.querySelectorAll('dl.card-facts dt')) facts[dt.textContent] = dt.nextElementSibling.textContent;
    const references = [...box.querySelectorAll('ul > li')].map((li) => {
        const a = li.querySelector('a');
        return {text: li.textContent, href: a ? a.getAttribute('href') : null};
    });
    const metrics = [...box.querySelectorAll('table.metrics-table')].map((table) => ({
        help: table.previousElementSibling.textContent,
        rows: [...table.querySelectorAll('tr')].slice(1).map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)),
    }));
    return {title: box.querySelector('h3').textContent, paragraphs: [...box.querySelectorAll(':scope > p')].map((p) => p.textContent),
            facts, references, metrics, headings: [...box.querySelectorAll('h4')].map((h) => h.textContent)};
}"""

# what each published metric must be explained with (hand-written, not the page's table)
METRIC_WORDS = {"auc": "ROC", "accuracy": "classified correctly", "precision": "right", "recall": "finds",
                "sensitivity": "finds", "specificity": "NOT of this class", "f1": "harmonic mean"}


# model card resize_mode = OpenCV interpolation code (docs/model-card.md)
RESIZE = {0: "nearest", 1: "linear", 2: "cubic", 3: "area", 4: "Lanczos-4"}


def words_for(metric):
    return next(words for key, words in METRIC_WORDS.items() if key in metric.lower())


def assert_metrics_shown(shown, card):
    """Every published metric, by name, with its explanation and one row per class in the
    model's class order (classes the authors did not report are left out)."""
    metrics = card["metrics"]
    assert shown["headings"][-1].startswith("Published metrics"), shown["headings"]
    assert len(shown["metrics"]) == len(metrics)
    for metric, table in zip(sorted(metrics), shown["metrics"]):
        assert table["help"].startswith(metric + ": "), table["help"]
        assert words_for(metric) in table["help"], (metric, table["help"])
        per_class = metrics[metric]
        assert table["rows"] == [[name, "%.3f" % per_class[name]] for name in card["classes"] if name in per_class], metric


def assert_references_shown(shown, card):
    assert [r["text"].strip() for r in shown["references"]] == [
        (r["citation"] + (" " + r["link"] if r.get("link") else "")).strip() for r in card["references"]]
    assert [r["href"] for r in shown["references"]] == [r.get("link") for r in card["references"]]


def test_model_card_shows_its_fields_and_published_metrics_with_explanations(site_page):
    page = open_ready(site_page)
    card = demo_card()
    md5 = hashlib.md5((DEMO / "demo-model.zip").read_bytes()).hexdigest()
    page.click("#model-card-box > summary")
    shown = page.locator("#model-card").evaluate(READ_CARD)
    assert shown["title"] == card["name"]
    assert "Not for clinical use." in shown["paragraphs"]
    assert card["description"] in shown["paragraphs"]
    facts = shown["facts"]
    assert facts["Classes"] == ", ".join(card["classes"])
    assert facts["Input size"] == "%d x %d pixels, %d channel(s)" % (card["input_size"][1], card["input_size"][0], card["channels"])
    assert facts["Preprocessing"] == "resize: %s interpolation (OpenCV mode %d), intensity standardisation: %s" % (
        RESIZE[card["resize_mode"]], card["resize_mode"], card["standardize"])
    assert facts["Licence"] == card["license"]
    assert facts["Modality"] == card["modality"] and facts["Discipline"] == card["discipline"]
    for part in ("version %s" % card["source"]["version"], "file demo-model.zip", "MD5 %s" % md5):
        assert part in facts["Source"], facts["Source"]
    assert facts["Format"] == "tfjs-layers"
    assert_references_shown(shown, card)
    assert_metrics_shown(shown, card)
    page.locator("#model-section").screenshot(path=str(ARTIFACTS / "details-card-demo.png"))

    # a catalog entry with several published metrics: its card from app/catalog.json
    entry = next(m for m in json.loads(CATALOG.read_text(encoding="utf-8"))["models"] if m["zenodo_record"] == 7785993)
    catalog_card = entry["card"]
    wait(page, f"li[data-catalog='{entry['id']}']")
    page.click(f"li[data-catalog='{entry['id']}'] button:has-text('Details')")
    wait(page, f"#model-card-box[open] #model-card h3:text-is('{catalog_card['name']}')")
    shown = page.locator("#model-card").evaluate(READ_CARD)
    assert shown["title"] == catalog_card["name"]
    assert catalog_card["description"] in shown["paragraphs"]
    facts = shown["facts"]
    assert facts["Catalog id"] == entry["id"] and facts["Format"] == entry["format"]
    assert facts["Classes"] == ", ".join(catalog_card["classes"])
    assert catalog_card["channels"] is None  # the model's input shape decides: said so, not "?"
    assert facts["Input size"] == "%d x %d pixels, channels as the model's input" % (
        catalog_card["input_size"][1], catalog_card["input_size"][0])
    assert facts["Preprocessing"] == "resize: %s interpolation (OpenCV mode %d), intensity standardisation: %s" % (
        RESIZE[catalog_card["resize_mode"]], catalog_card["resize_mode"], catalog_card["standardize"])
    assert facts["Licence"] == (catalog_card["license"] or "not stated")
    assert facts["Modality"] == catalog_card["modality"] and facts["Discipline"] == catalog_card["discipline"]
    assert "Zenodo record 7785993" in facts["Source"] and "DOI 10.5281/zenodo.7785993" in facts["Source"], facts["Source"]
    assert_references_shown(shown, catalog_card)
    assert len(catalog_card["metrics"]) >= 5
    assert_metrics_shown(shown, catalog_card)
    # looking at a catalog card does not load or download anything
    assert page.get_attribute("body", "data-model-md5") == md5
    assert page.get_attribute("body", "data-model-state") == "ready"
    page.locator("#model-card-box").screenshot(path=str(ARTIFACTS / "details-card-catalog-7785993.png"))


# ---------------------------------------------------------------------------- 3. catalog search / filters
def catalog_expected(models, text="", discipline="", modality="", fmt=""):
    """The documented rule, written out here: every word of ``text`` (case-insensitive) in the id,
    name, description, classes, modality or discipline; each filter an exact match."""
    out = []
    for m in models:
        card = m["card"]
        haystack = " ".join([m["id"], card["name"], card["description"], " ".join(card["classes"]),
                             card.get("modality") or "", card.get("discipline") or ""]).lower()
        if not all(word in haystack for word in text.lower().split()):
            continue
        if discipline and card.get("discipline") != discipline:
            continue
        if modality and card.get("modality") != modality:
            continue
        if fmt and m["format"] != fmt:
            continue
        out.append(m["id"])
    return out


def shown_catalog(page):
    return page.eval_on_selector_all("#catalog-list li[data-catalog]", "nodes => nodes.map((n) => n.getAttribute('data-catalog'))")


def test_catalog_search_and_filters_show_the_matching_entries(site_page):
    page = open_ready(site_page)
    models = json.loads(CATALOG.read_text(encoding="utf-8"))["models"]
    wait(page, f"body[data-catalog-shown='{len(models)}']")
    assert shown_catalog(page) == [m["id"] for m in models]

    # the filters offer exactly the catalog's values
    disciplines = sorted({m["card"]["discipline"] for m in models})
    modalities = sorted({m["card"]["modality"] for m in models})
    assert page.eval_on_selector_all("#filter-discipline option", "o => o.map((x) => x.value)") == [""] + disciplines
    assert page.eval_on_selector_all("#filter-modality option", "o => o.map((x) => x.value)") == [""] + modalities
    formats = page.eval_on_selector_all("#filter-format option", "o => o.map((x) => x.value)")
    assert formats[0] == "" and {m["format"] for m in models} <= set(formats) and "tflite" in formats

    def check(text="", discipline="", modality="", fmt="", nonempty=True):
        for select, value in (("#filter-discipline", discipline), ("#filter-modality", modality), ("#filter-format", fmt)):
            if value:
                page.select_option(select, value=value)
            else:
                page.select_option(select, index=0)  # "All"
        page.fill("#catalog-search", text)
        want = catalog_expected(models, text, discipline, modality, fmt)
        assert bool(want) == nonempty, (text, discipline, modality, fmt, want)  # the case tests what it means to
        wait(page, f"body[data-catalog-shown='{len(want)}']")
        assert shown_catalog(page) == want, (text, discipline, modality, fmt)
        for entry_id in want:  # each entry shown can be used and has details
            item = page.locator(f"li[data-catalog='{entry_id}']")
            assert item.is_visible() and item.locator("button:has-text('Use')").count() == 1
        return want

    radiology = check(discipline="Radiology")
    assert len(radiology) >= 2
    assert len(check(text="covid", discipline="Radiology")) < len(radiology)
    assert len(check(modality="Endoscopy")) >= 2
    check(modality="Endoscopy", discipline="Dermatology", nonempty=False)
    assert check(fmt="tfjs-layers") == [m["id"] for m in models]
    check(fmt="tflite", nonempty=False)
    check(text="chest")
    check(text="  SKIN  ")
    check(text="breast ultrasound")
    check(text="PNEUMONIA", fmt="tfjs-layers")
    check(text="zebrafish", nonempty=False)
    check(text="chest", discipline="Radiology", modality="X-ray", fmt="tfjs-layers")
    # back to no filter and no text: every entry again
    assert check() == [m["id"] for m in models]
    # the built-in demo entry is always offered
    assert page.locator("#use-demo").is_visible()


# ---------------------------------------------------------------------------- 4. drag and drop, folder picker
DROP = """(files) => {
    const transfer = new DataTransfer();
    for (const f of files) {
        const text = atob(f.b64);
        const bytes = new Uint8Array(text.length);
        for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
        transfer.items.add(new File([bytes], f.name, {type: f.type}));
    }
    const zone = document.getElementById('drop-zone');
    zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true, cancelable: true}));
    const dragging = zone.classList.contains('dragging');
    const accepted = !zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
    return {dragging, accepted, after: zone.classList.contains('dragging')};
}"""
READ_IMAGES = """nodes => nodes.map((li) => ({
    name: li.getAttribute('data-image'), status: li.getAttribute('data-status'),
    text: li.querySelector('.image-status').textContent, thumb: li.querySelector('img').getAttribute('src')}))"""
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".dcm": "application/dicom"}


def listed_images(page):
    return page.eval_on_selector_all("#image-list li", READ_IMAGES)


def test_dropping_files_gives_the_same_checked_list_as_the_file_picker(site_page):
    page = open_ready(site_page)
    names = ["ct_head.png", "photo_cat.jpg", "corrupt.png", "ct_small.dcm", "microscopy_cell.png"]
    files = [{"name": n, "type": MIME[Path(n).suffix], "b64": base64.b64encode((SAMPLES / n).read_bytes()).decode()}
             for n in names]
    drag = page.evaluate(DROP, files)
    assert drag == {"dragging": True, "accepted": True, "after": False}, drag  # highlighted while over, drop handled
    wait(page, "body[data-images-checking='0'][data-images-ready='4']")
    dropped = listed_images(page)
    assert [i["name"] for i in dropped] == names
    assert {i["name"]: i["status"] for i in dropped} == {n: "error" if n == "corrupt.png" else "ok" for n in names}
    assert "corrupt" in next(i for i in dropped if i["name"] == "corrupt.png")["text"].lower()
    assert "DICOM" in next(i for i in dropped if i["name"] == "ct_small.dcm")["text"]
    assert all(i["thumb"].startswith("data:image/png;base64,") for i in dropped if i["status"] == "ok")
    assert "5 image(s): 4 ready, 1 with errors." == page.inner_text("#images-summary")
    page.locator("#images-section").screenshot(path=str(ARTIFACTS / "details-dropped-images.png"))

    # the dropped files classify like picked ones
    classify(page)
    truth = expected()["samples"]
    shown = shown_probabilities(page)
    for name in ("ct_head.png", "photo_cat.jpg", "microscopy_cell.png"):
        tolerance = JPEG_TOLERANCE if name.endswith(".jpg") else TOLERANCE
        np.testing.assert_allclose(shown[name], truth[name]["probabilities"], atol=tolerance, err_msg=name)

    # the same files through the picker: the same list, statuses, texts and thumbnails
    page.click("#images-clear")
    wait(page, "body[data-images-ready='0']")
    assert page.locator("#image-list li").count() == 0
    add_images(page, [SAMPLES / n for n in names], 4)
    assert listed_images(page) == dropped


def test_folder_picker_adds_every_file_of_the_folder_with_its_path(site_page, tmp_path):
    page = open_ready(site_page)
    folder = tmp_path / "study"
    (folder / "series2").mkdir(parents=True)
    for name in ("ct_head.png", "corrupt.png"):
        (folder / name).write_bytes((SAMPLES / name).read_bytes())
    (folder / "series2" / "mr_abdomen.png").write_bytes((SAMPLES / "mr_abdomen.png").read_bytes())
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden files are skipped
    page.set_input_files("#image-folder", str(folder))
    wait(page, "body[data-images-checking='0'][data-images-ready='2']")
    listed = {i["name"]: i["status"] for i in listed_images(page)}
    assert listed == {"study/ct_head.png": "ok", "study/corrupt.png": "error", "study/series2/mr_abdomen.png": "ok"}, listed
    classify(page)
    truth = expected()["samples"]
    shown = shown_probabilities(page)
    for name in ("ct_head.png", "series2/mr_abdomen.png"):
        np.testing.assert_allclose(shown["study/" + name], truth[Path(name).name]["probabilities"], atol=TOLERANCE)


# ---------------------------------------------------------------------------- 5. history CSV
def download_csv(page, selector):
    with page.expect_download() as download_info:
        page.click(selector)
    download = download_info.value
    assert download.suggested_filename.endswith(".csv"), download.suggested_filename
    return list(csv.DictReader(io.StringIO(Path(download.path()).read_bytes().decode("utf-8"))))


def run_date(page, run):
    """The run's date as its title shows it ("Run 1 · 2026-12-07 10:30:01 · model: ..."), in the
    CSV's ISO form (UTC, seconds)."""
    found = re.match(r"Run (\d+) · (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) · ", page.inner_text("#run-title"))
    assert found and int(found.group(1)) == run, page.inner_text("#run-title")
    return f"{found.group(2)}T{found.group(3)}+00:00"


def test_a_past_runs_csv_from_the_history_holds_that_runs_rows(site_page):
    page = open_ready(site_page)
    classes = demo_card()["classes"]
    with zipfile.ZipFile(TFLITE_DEMO) as archive:
        assert json.loads(archive.read("model-card.json"))["classes"] == classes  # one set of CSV columns
    first = ["ct_head.png", "mr_abdomen.png", "photo_camera.png", "corrupt.png"]
    add_images(page, [SAMPLES / n for n in first], 3)
    classify(page)
    demo_md5 = page.get_attribute("body", "data-model-md5")
    demo_name = page.get_attribute("body", "data-model-name")
    first_shown = shown_probabilities(page)
    first_date = run_date(page, 1)

    # run 2: other images and another model (the demo converted to TFLite: other MD5 and name)
    page.click("#images-clear")
    wait(page, "body[data-images-ready='0']")
    page.set_input_files("#model-file", str(TFLITE_DEMO))
    wait(page, f"body[data-model-state='ready']:not([data-model-md5='{demo_md5}'])")
    tflite_md5 = page.get_attribute("body", "data-model-md5")
    tflite_name = page.get_attribute("body", "data-model-name")
    assert tflite_name != demo_name
    second = ["microscopy_cell.png", "us_doppler.jpg"]
    add_images(page, [SAMPLES / n for n in second], 2)
    classify(page)
    second_shown = shown_probabilities(page)
    second_date = run_date(page, 2)
    wait(page, "#history-list li[data-run='2']")

    for run, names, shown, md5, name, date in ((1, first, first_shown, demo_md5, demo_name, first_date),
                                               (2, second, second_shown, tflite_md5, tflite_name, second_date),
                                               (1, first, first_shown, demo_md5, demo_name, first_date)):
        rows = download_csv(page, f"#history-list li[data-run='{run}'] button:has-text('CSV')")
        assert [row["file"] for row in rows] == names, run
        assert date[11:19] in page.inner_text(f"#history-list li[data-run='{run}']")
        for row in rows:
            assert row["model_md5"] == md5 and row["model"] == name, (run, row)
            assert row["date"] == date, (run, row["date"])  # the run's date, not the export's
            if isinstance(shown[row["file"]], list):
                np.testing.assert_allclose([float(row[f"P({c})"]) for c in classes], shown[row["file"]], rtol=1e-6, atol=1e-9)
            else:
                assert row["error"] and row["P(CT)"] == "", row
    # exporting an earlier run does not switch the page to it
    assert set(shown_probabilities(page)) == set(second)
    # the results section's own CSV button exports the run shown (the latest)
    assert [row["file"] for row in download_csv(page, "#export-csv")] == second


# ---------------------------------------------------------------------------- 7. Explain: another layer
def explain_box(page, name):
    return page.locator(f"#result-cards article[data-file='{name}'] .explain-box")


def heatmap_of(box):
    shape = json.loads(box.get_attribute("data-heatmap-shape"))
    return np.frombuffer(base64.b64decode(box.get_attribute("data-heatmap")), dtype="<f4").reshape(shape)


def test_explain_layer_selector_changes_the_heatmap_and_its_layer(site_page):
    # tests/fixtures/gradcam/demo_model/io.npz has TensorFlow maps for block4_conv only, so the
    # second layer is checked for its state (layer, resolution, a different map), not its values
    with np.load(REPO / "tests" / "fixtures" / "gradcam" / "demo_model" / "io.npz") as ref:
        assert set(ref.files) >= {"layer", "heatmap"} and not any("block3" in k for k in ref.files)
        default_layer = str(ref["layer"])
    page = open_ready(site_page)
    name = "ct_head.png"
    add_images(page, [SAMPLES / name], 1)
    classify(page)
    box = explain_box(page, name)
    box.locator("summary").click()
    wait(page, f"#result-cards article[data-file='{name}'] .explain-box[data-state='ready']")
    assert box.get_attribute("data-layer") == default_layer
    first = heatmap_of(box)
    first_layer_map = json.loads(box.get_attribute("data-layer-heatmap"))
    first_src = box.locator("img.explain-layer").get_attribute("src")
    select = box.locator("select.explain-layer-select")
    layers = select.evaluate("s => [...s.options].map((o) => o.value)")
    assert select.evaluate("s => s.value") == default_layer
    assert default_layer in layers and "block3_relu" in layers, layers

    select.select_option("block3_relu")
    wait(page, f"#result-cards article[data-file='{name}'] .explain-box[data-layer='block3_relu'][data-state='ready']")
    second = heatmap_of(box)
    layer_map = json.loads(box.get_attribute("data-layer-heatmap"))
    assert second.shape == first.shape == (64, 64)  # both upsampled to the model's input
    # block4_conv sees 64 / 8 = 8x8 (after three 2x2 pools), block3_relu 16x16 (before block3_pool)
    assert first_layer_map["shape"] == [8, 8] and layer_map["shape"] == [16, 16]
    assert np.abs(second - first).max() > 0.05
    assert second.min() >= 0 and second.max() <= 1 and second.max() > 0.5
    assert box.locator("img.explain-layer").get_attribute("src") != first_src
    caption = box.locator("figcaption").inner_text()
    assert "block3_relu" in caption and "16x16" in caption, caption
    assert select.evaluate("s => s.value") == "block3_relu"
    card = page.locator(f"#result-cards article[data-file='{name}']")
    card.screenshot(path=str(ARTIFACTS / "details-explain-block3_relu.png"))

    # another class keeps the chosen layer
    klass = box.locator("select.explain-class")
    other = next(v for v in klass.evaluate("s => [...s.options].map((o) => o.value)") if v != box.get_attribute("data-class-index"))
    klass.select_option(other)
    wait(page, f"#result-cards article[data-file='{name}'] .explain-box[data-class-index='{other}'][data-state='ready']")
    assert box.get_attribute("data-layer") == "block3_relu"
    assert np.abs(heatmap_of(box) - second).max() > 0

    # and back to the default layer: the first map again
    klass.select_option(str(int(np.argmax(json.loads(card.get_attribute("data-probs"))))))
    select.select_option(default_layer)
    wait(page, f"#result-cards article[data-file='{name}'] .explain-box[data-layer='{default_layer}'][data-state='ready']")
    wait(page, f"#result-cards article[data-file='{name}'] .explain-box[data-class-index='{int(np.argmax(json.loads(card.get_attribute('data-probs'))))}']")
    np.testing.assert_allclose(heatmap_of(box), first, atol=1e-6)
