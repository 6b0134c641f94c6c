"""app.charts: SVG text for the UI. Checked by parsing the SVG (no rendering needed)."""

import xml.etree.ElementTree as ET

import pytest

from app.charts import ChartError, format_percent, grouped_bars, highlighted, order_indices, probability_bars

SVG = "{http://www.w3.org/2000/svg}"
CLASSES = ["CT", "MR", "fundus <photo>"]


def bars(svg):
    root = ET.fromstring(svg)
    return [(g.get("data-class"), "bar-top" in g.get("class"), float(g.findall(SVG + "rect")[1].get("width")))
            for g in root.iter(SVG + "g")]


def test_order_indices():
    probabilities = [0.2, 0.5, 0.3]
    assert order_indices(probabilities) == [0, 1, 2]
    assert order_indices(probabilities, "descending") == [1, 2, 0]
    assert order_indices(probabilities, "ascending") == [0, 2, 1]
    assert order_indices([0.5, 0.5, 0.1], "descending") == [0, 1, 2]  # stable on ties
    with pytest.raises(ChartError, match="order must be one of default, descending, ascending, received 'up'"):
        order_indices(probabilities, "up")


def test_highlight_single_and_multi_label():
    assert highlighted([0.2, 0.5, 0.3]) == {1}
    assert highlighted([0.6, 0.1, 0.55], multi_label=True, threshold=0.5) == {0, 2}
    assert highlighted([0.6, 0.1, 0.55], multi_label=True, threshold=0.7) == set()


def test_probability_bars_lengths_order_and_escaping():
    svg = probability_bars(CLASSES, [0.25, 0.5, 0.25], order="descending", width=420)
    drawn = bars(svg)
    assert [d[0] for d in drawn] == ["MR", "CT", "fundus <photo>"]  # escaped in the text, parsed back
    assert [d[1] for d in drawn] == [True, False, False]
    full = 420 - 130 - 64
    assert drawn[0][2] == pytest.approx(0.5 * full, abs=0.01) and drawn[1][2] == pytest.approx(0.25 * full, abs=0.01)
    root = ET.fromstring(svg)
    assert root.get("role") == "img" and "MR 50.0 %" in root.get("aria-label")


def test_probability_bars_multi_label_draws_the_threshold():
    svg = probability_bars(CLASSES, [0.7, 0.2, 0.6], multi_label=True, threshold=0.5)
    assert [d[1] for d in bars(svg)] == [True, False, True]
    assert ET.fromstring(svg).find(f"{SVG}line[@class='threshold']") is not None


def test_probability_bars_validation():
    with pytest.raises(ChartError, match="2 probabilities for 3 classes"):
        probability_bars(CLASSES, [0.5, 0.5])
    with pytest.raises(ChartError, match="NaN"):
        probability_bars(CLASSES, [0.5, float("nan"), 0.5])


def test_grouped_bars_one_rect_per_class_and_failed_slot():
    svg = grouped_bars(CLASSES, [("a.png", [0.1, 0.2, 0.7]), ("b.png", None), ("c.png", [1, 0, 0])])
    root = ET.fromstring(svg)
    titled = [r for r in root.iter(SVG + "rect") if r.find(SVG + "title") is not None]
    assert len(titled) == 6
    assert "failed" in "".join(t.text or "" for t in root.iter(SVG + "text"))


def test_format_percent():
    assert format_percent(0.98765) == "98.8 %"
    assert format_percent(1e-9) == "< 0.1 %"
    assert format_percent(0.0) == "0.0 %"
