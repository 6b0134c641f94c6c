"""app.charts with many classes (issue #6): top-k per image, the "other N classes" row, the batch
chart's class choice and its bar geometry. Every expected number below is worked out by hand in the
comment beside it (no expectation comes from the code under test)."""

import xml.etree.ElementTree as ET

import pytest

from app.charts import (ChartError, batch_classes, grouped_bars, grouped_layout, probability_bars,
                        shown_classes)
from app.service import EngineService

SVG = "{http://www.w3.org/2000/svg}"
FIVE = ["atelectasis", "cardiomegaly", "effusion", "infiltration", "mass"]


def class_rows(svg):
    """(class index, highlighted, bar width) of every class bar, top to bottom."""
    root = ET.fromstring(svg)
    return [(int(g.get("data-index")), "bar-top" in g.get("class"), float(g.findall(SVG + "rect")[1].get("width")))
            for g in root.iter(SVG + "g") if g.get("class", "").startswith("bar") and g.get("class") != "bar-rest"]


def rest_row(svg):
    rest = [g for g in ET.fromstring(svg).iter(SVG + "g") if g.get("class") == "bar-rest"]
    return rest[0] if rest else None


def texts(node):
    return [t.text for t in node.iter(SVG + "text")]


def test_shown_classes_top_k_ties_and_predicted_classes():
    p = [0.05, 0.30, 0.10, 0.30, 0.25]
    # ranked by probability, ties by lower index: 1 (0.30), 3 (0.30), 4 (0.25), 2 (0.10), 0 (0.05)
    assert shown_classes(p, 2) == {1, 3}
    assert shown_classes(p, 3) == {1, 3, 4}
    assert shown_classes(p, 1) == {1}  # the tie at 0.30 goes to the lower index
    assert shown_classes(p, None) == shown_classes(p, 5) == shown_classes(p, 99) == {0, 1, 2, 3, 4}
    # multi-label, threshold 0.2: classes 1, 3, 4 are predicted, so shown even with top_k=1
    assert shown_classes(p, 1, multi_label=True, threshold=0.2) == {1, 3, 4}
    assert shown_classes(p, 1, multi_label=True, threshold=0.5) == {1}
    for bad in (0, -3, True, 2.5, "10"):
        with pytest.raises(ChartError, match="top_k must be a whole number >= 1 or None"):
            shown_classes(p, bad)


def test_probability_bars_top_k_draws_the_rest_as_one_summed_bar():
    p = [0.05, 0.35, 0.10, 0.30, 0.20]
    svg = probability_bars(FIVE, p, top_k=3, width=420)
    full = 420 - 130 - 64  # bar space: 226 units
    # shown: 1 (0.35), 3 (0.30), 4 (0.20) in model order; hidden 0 and 2 sum to 0.15
    assert class_rows(svg) == [(1, True, pytest.approx(0.35 * full, abs=0.01)), (3, False, pytest.approx(0.30 * full, abs=0.01)),
                               (4, False, pytest.approx(0.20 * full, abs=0.01))]
    rest = rest_row(svg)
    assert rest.get("data-hidden") == "2"
    assert texts(rest) == ["other 2 classes", "15.0 %"]
    assert float(rest.findall(SVG + "rect")[1].get("width")) == pytest.approx(0.15 * full, abs=0.01)  # 33.90
    root = ET.fromstring(svg)
    assert root.get("viewBox") == "0 0 420 104"  # 4 + 4 row padding + 24 x (3 bars + 1 rest row)
    assert (root.get("data-shown"), root.get("data-hidden")) == ("3", "2")
    assert "3 of 5 classes shown" in root.get("aria-label") and "other 2 classes 15.0 %" in root.get("aria-label")
    assert "atelectasis" not in root.get("aria-label")  # hidden classes are not read out one by one


def test_probability_bars_top_k_keeps_the_sort_order_inside_the_shown_classes():
    p = [0.05, 0.35, 0.10, 0.30, 0.20]
    assert [r[0] for r in class_rows(probability_bars(FIVE, p, top_k=3, order="default"))] == [1, 3, 4]
    assert [r[0] for r in class_rows(probability_bars(FIVE, p, top_k=3, order="descending"))] == [1, 3, 4]
    assert [r[0] for r in class_rows(probability_bars(FIVE, p, top_k=3, order="ascending"))] == [4, 3, 1]
    # the rest row stays last whatever the order
    assert ET.fromstring(probability_bars(FIVE, p, top_k=3, order="ascending"))[-1].get("class") == "bar-rest"


def test_probability_bars_without_top_k_or_with_a_big_one_draws_every_class_and_no_rest():
    p = [0.05, 0.35, 0.10, 0.30, 0.20]
    for top_k in (None, 5, 10):
        svg = probability_bars(FIVE, p, top_k=top_k)
        assert [r[0] for r in class_rows(svg)] == [0, 1, 2, 3, 4]
        assert rest_row(svg) is None


def test_probability_bars_multi_label_top_k_never_hides_a_predicted_class_and_sums_nothing():
    p = [0.9, 0.05, 0.6, 0.7, 0.1, 0.02]
    classes = FIVE + ["nodule"]
    svg = probability_bars(classes, p, multi_label=True, threshold=0.5, top_k=2)
    # top 2: 0 (0.9), 3 (0.7); predicted (>= 0.5): 0, 2, 3 -> shown 0, 2, 3, all highlighted
    assert [(r[0], r[1]) for r in class_rows(svg)] == [(0, True), (2, True), (3, True)]
    rest = rest_row(svg)
    # independent probabilities: no summed bar, the highest hidden one (class 4, 0.1) instead
    assert texts(rest) == ["3 more classes below the threshold, highest 10.0 %"]
    assert rest.findall(SVG + "rect") == []
    assert ET.fromstring(svg).find(f"{SVG}line[@class='threshold']") is not None


def test_probability_bars_rejects_a_bad_top_k():
    with pytest.raises(ChartError, match="probability_bars: top_k must be a whole number >= 1 or None .every class., received 0"):
        probability_bars(FIVE, [0.2] * 5, top_k=0)


def test_batch_classes_ranks_by_the_highest_probability_in_any_image():
    images = [[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.6, 0.1], None]
    # highest per class over the two results: [0.7, 0.2, 0.6, 0.1]; the failed image counts for nothing
    assert batch_classes(images, 2) == [0, 2]
    assert batch_classes(images, 3) == [0, 1, 2]
    assert batch_classes(images, None) == batch_classes(images, 4) == [0, 1, 2, 3]
    assert batch_classes([[0.4, 0.3, 0.3]], 2) == [0, 1]  # tie at 0.3: the lower index
    assert batch_classes([None, None], 2) == []


def test_grouped_layout_whole_unit_bars_inside_their_own_slot():
    # 2 images x 4 bars in 720 units: plot 720 - 40 - 10 = 670, slot 335, bar min(int(335 * 0.8 / 4) = 67, 24) = 24,
    # group 96, first bars at floor(40 + (335 - 96) / 2 + 0.5) = 160 and floor(40 + 335 + 119.5 + 0.5) = 495
    assert grouped_layout(2, 4) == {"width": 720, "slot": 335.0, "bar": 24, "group": 96, "starts": [160, 495], "wide": False}
    # 30 images x 9 bars: int(670 / 30 * 0.8 / 9) = 1 < 3 -> bars of 3, slot 9 x 3 + 4 = 31, chart 50 + 30 x 31 = 980 wide;
    # starts floor(40 + 31 g + (31 - 27) / 2 + 0.5) = 42 + 31 g
    wide = grouped_layout(30, 9)
    assert (wide["width"], wide["slot"], wide["bar"], wide["group"], wide["wide"]) == (980, 31, 3, 27, True)
    assert wide["starts"] == [42 + 31 * g for g in range(30)]


def thousand_class_batch():
    """Two images of a 1000-class model; every probability not listed is 0 (each image sums to 1)."""
    a = dict.fromkeys(range(1000), 0.0) | {285: 0.5, 281: 0.2, 10: 0.1, 500: 0.1, 999: 0.06, 42: 0.04}
    b = dict.fromkeys(range(1000), 0.0) | {872: 0.6, 285: 0.1, 3: 0.15, 7: 0.05, 999: 0.07, 43: 0.03}
    return [f"class {i}" for i in range(1000)], [("a.png", [a[i] for i in range(1000)]), ("b.png", [b[i] for i in range(1000)])]


def test_grouped_bars_with_1000_classes_draws_the_8_highest_and_sums_the_rest_inside_each_slot():
    classes, images = thousand_class_batch()
    svg = grouped_bars(classes, images)
    root = ET.fromstring(svg)
    # highest in any image: 872 .6, 285 .5, 281 .2, 3 .15, 10 .1, 500 .1, 999 .07, 7 .05 (then 42 .04, 43 .03)
    assert root.get("data-classes") == "3 7 10 281 285 500 872 999"
    assert root.get("data-hidden") == "992"
    bars = [r for r in root.iter(SVG + "rect") if r.get("data-index")]
    assert len(bars) == 2 * 9  # 8 classes + the grey rest bar per image
    # 9 bars per image: slot 335, bar min(int(335 * 0.8 / 9) = 29, 24) = 24, group 216,
    # starts floor(40 + 59.5 + 0.5) = 100 and floor(40 + 335 + 60) = 435
    assert [(r.get("data-index"), r.get("x"), r.get("width")) for r in bars[:9]] == [
        (str(c), str(100 + 24 * n), "24") for n, c in enumerate([3, 7, 10, 281, 285, 500, 872, 999])] + [("rest", "292", "24")]  # 100 + 8 x 24
    assert [r.get("x") for r in bars[9:]] == [str(435 + 24 * n) for n in range(9)]
    # plot height 240 - 40 - 10 = 190: class 285 in a.png is 0.5 x 190 = 95 tall from y = 10 + 190 - 95 = 105;
    # the rest of a.png is class 42 alone (0.04 x 190 = 7.6), of b.png class 43 (0.03 x 190 = 5.7)
    assert (bars[4].get("y"), bars[4].get("height")) == ("105.00", "95.00")
    assert (bars[8].get("height"), bars[17].get("height")) == ("7.60", "5.70")
    assert "other 992 classes 4.0 %" in bars[8].find(SVG + "title").text
    assert root.get("width") == "100%" and root.get("viewBox") == "0 0 720 294"  # 240 + 3 legend rows of 18 (9 entries, 4 a row)
    legend = [t.text for t in root.iter(SVG + "text")][-9:]
    assert legend == ["class 3", "class 7", "class 10", "class 281", "class 285", "class 500", "class 872", "class 999",
                      "other 992 classes"]
    assert "the 8 of 1000 classes highest in any image, the other 992 summed as one grey bar" in root.get("aria-label")


def test_grouped_bars_multi_label_draws_no_rest_bar_and_says_how_many_are_left_out():
    classes, images = thousand_class_batch()
    root = ET.fromstring(grouped_bars(classes, images, multi_label=True, max_classes=3))
    # highest in any image: 872 (.6), 285 (.5), 281 (.2)
    assert root.get("data-classes") == "281 285 872"
    assert [r.get("data-index") for r in root.iter(SVG + "rect") if r.get("data-index")] == ["281", "285", "872"] * 2
    assert [t.text for t in root.iter(SVG + "text")][-1] == "997 more classes not drawn"


def test_grouped_bars_many_images_widen_the_chart_instead_of_sub_unit_bars():
    classes = [f"finding {i}" for i in range(20)]
    images = [(f"img{g}.png", [1.0 if c == g % 20 else 0.0 for c in range(20)]) for g in range(30)]
    root = ET.fromstring(grouped_bars(classes, images))
    # 8 classes + rest = 9 bars x 30 images: slots of 31 units as in test_grouped_layout_..., whose
    # names are slanted (31 < 60), so the left margin is 88: 88 + 10 + 30 x 31 = 1028 units wide
    assert (root.get("width"), root.get("viewBox").split()[2]) == ("1028", "1028")
    assert "chart-wide" in root.get("class")
    # slots of 31 units (< 60): names slanted at -40 degrees in a 60-unit band, so the chart is
    # 240 + 60 + 3 legend rows x 18 = 354 tall; 18 characters of a name, not 5 ("img1…")
    assert root.get("viewBox") == "0 0 1028 354" and root.get("height") == "354"
    names = [t for t in root.iter(SVG + "text") if (t.text or "").startswith("img")]
    assert [t.text for t in names[:2]] == ["img0.png", "img1.png"]
    assert names[1].get("transform") == f"rotate(-40 {88 + 1.5 * 31:.1f} {240 - 40 + 12})"
    assert [t for t in root.iter(SVG + "text") if t.text == "other 12 classes"][0].get("y") == str(240 + 60 + 2 * 18)
    bars = [r for r in root.iter(SVG + "rect") if r.get("data-index")]
    assert len(bars) == 30 * 9
    for n, bar in enumerate(bars):
        group, position = divmod(n, 9)
        # floor(88 + 31 g + (31 - 27) / 2 + 0.5) = 90 + 31 g
        assert (int(bar.get("x")), int(bar.get("width"))) == (90 + 31 * group + 3 * position, 3)


def test_grouped_bars_few_classes_unchanged_every_class_in_model_order_no_rest():
    root = ET.fromstring(grouped_bars(["CT", "MR", "US"], [("a", [0.1, 0.2, 0.7]), ("b", [0.6, 0.3, 0.1])]))
    assert [r.get("data-index") for r in root.iter(SVG + "rect") if r.get("data-index")] == ["0", "1", "2"] * 2
    assert root.get("data-hidden") == "0"
    # every class drawn: max_classes=None (no limit) too, colours repeating after 8
    many = ET.fromstring(grouped_bars([f"c{i}" for i in range(10)], [("a", [0.1] * 10)], max_classes=None))
    assert len([r for r in many.iter(SVG + "rect") if r.get("data-index")]) == 10


def test_chart_call_passes_top_k_and_max_classes_to_the_charts():
    service = EngineService()
    card = {"schema_version": 1, "name": "twelve findings", "classes": [f"finding {i}" for i in range(12)]}
    probabilities = [0.01 * (i + 1) for i in range(11)] + [0.34]  # 0.01 .. 0.11 and 0.34: sum 1.0
    reply = service.handle({"call": "chart", "args": {"card": card, "kind": "bars", "probabilities": probabilities, "top_k": 3}})
    assert reply["ok"], reply
    # top 3: finding 11 (.34), 10 (.11), 9 (.10); the other 9 sum to .01 + ... + .09 = .45
    assert [r[0] for r in class_rows(reply["result"]["svg"])] == [9, 10, 11]
    assert texts(rest_row(reply["result"]["svg"])) == ["other 9 classes", "45.0 %"]
    reply = service.handle({"call": "chart", "args": {"card": card, "kind": "bars", "probabilities": probabilities}})
    assert len(class_rows(reply["result"]["svg"])) == 12  # no top_k: every class, as before
    reply = service.handle({"call": "chart", "args": {"card": card, "kind": "grouped", "max_classes": 2,
                                                      "images": [{"file": "x.png", "probabilities": probabilities}]}})
    assert ET.fromstring(reply["result"]["svg"]).get("data-classes") == "10 11"
    reply = service.handle({"call": "chart", "args": {"card": card, "kind": "bars", "probabilities": probabilities, "top_k": "ten"}})
    assert not reply["ok"] and "top_k must be a whole number >= 1 or None" in reply["error"]["message"]


def test_one_hidden_class_is_named_in_the_singular():
    classes = [f"c{i}" for i in range(9)]
    images = [("a", [0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])]
    # 9 classes, 8 drawn: the last tie at 0.1 (c8) is the one left out
    assert [t.text for t in ET.fromstring(grouped_bars(classes, images)).iter(SVG + "text")][-1] == "other 1 class"
    assert [t.text for t in ET.fromstring(grouped_bars(classes, images, multi_label=True)).iter(SVG + "text")][-1] == \
        "1 more class not drawn"
    assert texts(rest_row(probability_bars(classes, images[0][1], top_k=8))) == ["other 1 class", "10.0 %"]
