"""The clinician's workflow on the built site: demo model, images, predictions, export, history.

Expected probabilities come from static/demo/expected.json, recorded with TensorFlow for the same
sample files by tools/make_demo_model.py (not from Vitrine). Screenshots go to test-artifacts/.
"""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "static" / "demo"
SAMPLES = DEMO / "samples"
ARTIFACTS = REPO / "test-artifacts"
TIMEOUT = 120_000
# PNG / DICOM inputs decode bit-identically in Pyodide and CPython, so the browser must match
# TensorFlow to 1e-4. JPEG does not: Pyodide's libjpeg rounds its IDCT differently from the
# libjpeg-turbo in CPython's Pillow wheel (docs/imaging.md, "In the browser"), moving pixels by a
# level or so; the probabilities then move by up to ~1e-3 and the predicted class must not change.
TOLERANCE = 1e-4
JPEG_TOLERANCE = 2e-3


def expected():
    return json.loads((DEMO / "expected.json").read_text())


def wait(page, selector, timeout=TIMEOUT):
    page.wait_for_selector(selector, state="attached", timeout=timeout)


def open_ready(site_page, width=1366, height=900):
    page = site_page.page
    page.set_viewport_size({"width": width, "height": height})
    site_page.open_site()
    site_page.wait_engine_ready()
    wait(page, "body[data-model-state='ready']")
    return page


def add_images(page, names):
    page.set_input_files("#image-files", [str(SAMPLES / name) for name in names])
    wait(page, f"body[data-images-checking='0'][data-images-ready='{len([n for n in names if n != 'corrupt.png'])}']")


def classify(page, runs):
    page.click("#predict")
    wait(page, f"body[data-run-state='done'][data-runs='{runs}']")


def shown_probabilities(page):
    rows = page.query_selector_all("#results-table tbody tr")
    shown = {}
    for row in rows:
        probs = row.get_attribute("data-probs")
        shown[row.get_attribute("data-file")] = json.loads(probs) if probs else row.get_attribute("data-error")
    return shown


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_demo_model_classifies_samples_exports_and_keeps_history(site_page):
    page = open_ready(site_page)
    truth = expected()
    names = sorted(truth["samples"]) + ["corrupt.png"]
    assert "not for clinical use" in page.inner_text("#model-section").lower()

    add_images(page, names)
    corrupt_item = page.locator("#image-list li[data-image='corrupt.png']")
    assert corrupt_item.get_attribute("data-status") == "error"
    assert "corrupt" in corrupt_item.inner_text().lower()
    classify(page, 1)

    shown = shown_probabilities(page)
    differences = {name: float(np.max(np.abs(np.subtract(shown[name], s["probabilities"]))))
                   for name, s in truth["samples"].items() if isinstance(shown[name], list)}
    print("max |browser - TensorFlow| per sample:", json.dumps(differences))
    for name, sample in truth["samples"].items():
        assert isinstance(shown[name], list), (name, shown[name])
        tolerance = JPEG_TOLERANCE if name.endswith(".jpg") else TOLERANCE
        np.testing.assert_allclose(shown[name], sample["probabilities"], atol=tolerance, err_msg=name)
        card = page.locator(f"#result-cards article[data-file='{name}']")
        assert sample["predicted"] in card.inner_text()
        assert card.locator("svg.chart-bars").count() == 1
    assert "corrupt" in shown["corrupt.png"].lower()
    assert page.locator("#batch-chart svg.chart-grouped").count() == 1
    screenshot(page, "workflow-desktop-1366.png")
    page.set_viewport_size({"width": 768, "height": 1024})
    screenshot(page, "workflow-tablet-768.png")
    page.set_viewport_size({"width": 1366, "height": 900})

    # CSV export: a real .csv file, UTF-8, the app.results columns, one row per image
    with page.expect_download() as download_info:
        page.click("#export-csv")
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    text = Path(download.path()).read_bytes().decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    classes = truth["model"]["classes"]
    assert list(rows[0]) == ["file", "predicted", *[f"P({c})" for c in classes], "model", "model_source", "model_md5",
                             "date", "error"]
    by_file = {row["file"]: row for row in rows}
    assert set(by_file) == set(names)
    for name, sample in truth["samples"].items():
        assert by_file[name]["predicted"] == sample["predicted"]
        np.testing.assert_allclose([float(by_file[name][f"P({c})"]) for c in classes], shown[name], rtol=1e-6, atol=1e-9)
        assert by_file[name]["model_md5"] == truth["model"]["md5"]
    assert by_file["corrupt.png"]["error"] and by_file["corrupt.png"]["P(CT)"] == ""

    # a second run on fewer images, then reopen the first from the history
    page.click("#image-list li[data-image='photo_cat.jpg'] button")
    classify(page, 2)
    assert "photo_cat.jpg" not in shown_probabilities(page)
    page.click("#history-list li[data-run='1'] button:has-text('Reopen')")
    wait(page, "body[data-current-run='1']")
    reopened = shown_probabilities(page)
    assert set(reopened) == set(names)
    assert reopened["photo_cat.jpg"] == shown["photo_cat.jpg"]

    # End session: images, results and history are gone
    page.click("#end-session")
    wait(page, "body[data-runs='0']")
    assert page.locator("#history-list li").count() == 0
    assert page.locator("#image-list li").count() == 0
    assert page.locator("#results-table tbody tr").count() == 0
    assert page.locator("#result-cards article").count() == 0
    screenshot(page, "workflow-ended.png")


# WCAG 2.x contrast of every visible text on the page (HTML text and the charts' SVG text),
# computed here from the computed styles: colour over the first opaque background up the tree,
# with translucent layers and opacity blended in. Disabled controls are exempt (WCAG 1.4.3).
LOW_CONTRAST = """() => {
    const parse = (text) => {
        const m = /rgba?\\(([^)]+)\\)/.exec(text || '');
        if (!m) return null;
        const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
        return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    };
    const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    const luminance = (c) => 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2]);
    const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
    const backdrop = (node) => {
        const layers = [];
        for (let n = node; n; n = n.parentElement) {
            const c = parse(getComputedStyle(n).backgroundColor);
            if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
        }
        let colour = [255, 255, 255, 1];
        for (let i = layers.length - 1; i >= 0; i--) colour = over(layers[i], colour);
        return colour;
    };
    const low = [];
    for (const node of document.querySelectorAll('body *')) {
        const inSvg = node.closest('svg');
        const ownText = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
        if (!ownText || (inSvg && node.tagName.toLowerCase() !== 'text')) continue;
        if (node.closest('[hidden], [disabled], option, title, style, script')) continue;
        const box = node.getBoundingClientRect();
        const style = getComputedStyle(node);
        if (!box.width || !box.height || style.visibility === 'hidden') continue;
        let opacity = 1;
        for (let n = node; n; n = n.parentElement) opacity *= Number(getComputedStyle(n).opacity);
        const fg = parse(inSvg ? style.fill : style.color);
        if (!fg) continue;
        const bg = backdrop(inSvg ? inSvg.parentElement : node);
        const text = over([fg[0], fg[1], fg[2], fg[3] * opacity], bg);
        const [a, b] = [luminance(text), luminance(bg)];
        const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        const size = parseFloat(style.fontSize);
        const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
        if (ratio < (large ? 3 : 4.5)) {
            low.push({text: node.textContent.trim().slice(0, 50), id: node.id, tag: node.tagName,
                      ratio: Math.round(ratio * 100) / 100, color: inSvg ? style.fill : style.color, background: bg.join(',')});
        }
    }
    return low;
}"""

# Controls without an accessible name (aria-label, aria-labelledby, a <label>, a button's text, title).
UNNAMED_CONTROLS = """() => {
    const unnamed = [];
    for (const node of document.querySelectorAll('button, input, select, textarea, summary, [tabindex]')) {
        if (node.type === 'hidden' || node.closest('[hidden]')) continue;
        const labelled = node.getAttribute('aria-labelledby');
        const name = [node.getAttribute('aria-label'), labelled && document.getElementById(labelled)?.textContent,
                      node.labels && [...node.labels].map((l) => l.textContent).join(' '),
                      ['BUTTON', 'SUMMARY'].includes(node.tagName) ? node.textContent : '', node.title]
            .map((t) => (t || '').trim()).find(Boolean);
        if (!name) unnamed.push(node.outerHTML.slice(0, 140));
    }
    return unnamed;
}"""

# Layout: the page never scrolls sideways, and no results-table number, heading or (short) file
# name wraps onto a second line (the table's own box scrolls sideways instead).
LAYOUT = """() => {
    const lines = (node) => { const r = document.createRange(); r.selectNodeContents(node); return r.getClientRects().length; };
    const cells = [...document.querySelectorAll('#results-table td.num, #results-table thead th button, #results-table .file-name')];
    const wrap = document.querySelector('.table-wrap');
    return {page_width: document.documentElement.scrollWidth, viewport: document.documentElement.clientWidth,
            wrapped_cells: cells.filter((c) => lines(c) > 1).map((c) => c.textContent),
            table_scrolls: wrap.scrollWidth > wrap.clientWidth, cells: cells.length};
}"""

FOCUSED = """() => {
    const node = document.activeElement;
    const ring = node.matches('input.visually-hidden') ? node.labels[0] : node;
    const style = getComputedStyle(ring);
    return {id: node.id || null, tag: node.tagName, name: node.getAttribute('aria-label') || node.textContent.trim().slice(0, 40),
            outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2};
}"""


def test_keyboard_labels_contrast_and_layout_at_laptop_and_tablet_width(site_page):
    page = site_page.page
    page.set_viewport_size({"width": 1366, "height": 900})
    site_page.open_site("/index.html?workers=1")  # layout does not depend on the pool size
    site_page.wait_engine_ready()
    wait(page, "body[data-model-state='ready']")
    add_images(page, ["ct_head.png", "fundus_retina.jpg", "corrupt.png"])

    # keyboard only: Tab reaches every step of the workflow, each with a visible focus ring
    focused = []
    page.locator("body").focus()
    for _ in range(120):
        page.keyboard.press("Tab")
        focused.append(page.evaluate(FOCUSED))
    reached = {f["id"] for f in focused}
    for control in ("use-demo", "model-reference", "model-fetch", "cache-opt-in", "model-file", "image-files",
                    "image-folder", "show-phi", "predict", "end-session"):
        assert control in reached, (control, [f["id"] or f["name"] for f in focused])
    assert all(f["outline"] for f in focused if f["tag"] != "BODY"), [f for f in focused if not f["outline"]]
    page.focus("#predict")
    page.keyboard.press("Enter")
    wait(page, "body[data-run-state='done'][data-runs='1']")
    page.focus("#results-table thead th:nth-child(3) button")  # sort by the first class, by keyboard
    page.keyboard.press("Enter")
    assert page.get_attribute("#results-table thead th:nth-child(3)", "aria-sort") == "descending"
    truth = expected()["samples"]
    shown = shown_probabilities(page)
    for name in ("ct_head.png", "fundus_retina.jpg"):
        tolerance = JPEG_TOLERANCE if name.endswith(".jpg") else TOLERANCE
        np.testing.assert_allclose(shown[name], truth[name]["probabilities"], atol=tolerance, err_msg=name)

    assert page.evaluate(UNNAMED_CONTROLS) == []
    for width, height in ((1366, 900), (768, 1024)):
        page.set_viewport_size({"width": width, "height": height})
        assert page.evaluate(LOW_CONTRAST) == [], width
        layout = page.evaluate(LAYOUT)
        assert layout["page_width"] <= layout["viewport"], layout
        assert layout["cells"] and layout["wrapped_cells"] == [], layout
        screenshot(page, f"a11y-{width}.png")
    page.focus("#end-session")
    page.keyboard.press("Space")
    wait(page, "body[data-runs='0']")
