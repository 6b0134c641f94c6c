"""SVG charts for the browser UI, generated in Python (stdlib only, so they run and are tested
under CPython and in the Pyodide worker alike; the MicroPython main thread just inserts the text).

Why SVG from Python rather than a JS chart library: no third-party script in the page (the CSP
allows only our own files), the numbers shown are the engine's own floats (no second formatting
path), charts scale cleanly for print and zoom, and every bar carries a ``<title>`` plus the
chart a ``role="img"`` / ``aria-label`` so screen readers get the values. See docs/ui.md.

* :func:`probability_bars` - one image: a horizontal bar per class, value labels, the top class
  (or every class over the threshold for multi-label models) highlighted. With ``top_k`` only the
  most probable classes get a bar and the rest is one labelled row ("other 990 classes").
* :func:`grouped_bars` - a batch: per image a group of vertical bars, one per class; with many
  classes only the classes highest in any image of the batch (``max_classes``, one colour each).

Models with many classes (ImageNet's 1000, multi-label chest X-ray models' 14+) are why
``top_k`` / ``max_classes`` exist: a bar per class made a 1000-class page 31,000 px tall and the
batch chart's 1000 bars per image did not fit their slot (docs/ui.md, "Many classes").
"""

from __future__ import annotations

import math
from typing import Sequence
from xml.sax.saxutils import escape

ORDERS = ("default", "descending", "ascending")
DEFAULT_TOP_K = 10

# colour-blind-safe palette (Okabe-Ito), all >= 3:1 against white for non-text graphics
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
BAR = "#8a94a6"
HIGHLIGHT = "#0b5cad"
TEXT = "#1d2330"
REST = "#5b6472"   # the "other N classes" bar / legend swatch: grey, darker than BAR, 5.9:1 on white
REST_TEXT = "#3d4553"

# grouped_bars geometry, in SVG user units (= CSS px when the chart is not scaled): bars are whole
# units wide at whole-unit positions, never narrower than MIN_BAR_WIDTH (thinner bars were drawn
# anti-aliased at fractional positions, and the old 1-unit floor pushed 1000 bars per image far
# past their own image's slot); the chart grows wider (and its box scrolls) instead.
MIN_BAR_WIDTH = 3
MAX_BAR_WIDTH = 24
MIN_GROUP_GAP = 4
# image names under slots narrower than this are written slanted (in a band LABEL_BAND tall), not
# cut to "copy…": with many images the names are what tells the groups apart
SLANT_BELOW = 60
LABEL_BAND = 60
SLANT_LEFT = 88  # the left margin then: the first name slants left of its slot, past the axis labels


class ChartError(ValueError):
    """Chart input that cannot be drawn (mismatched lengths, unknown order, NaN, bad top_k)."""


def _attr(text: str) -> str:
    return escape(str(text), {'"': "&quot;"})


def _check_probabilities(classes: Sequence[str], probabilities: Sequence[float], where: str) -> list[float]:
    if len(classes) != len(probabilities):
        raise ChartError(f"{where}: {len(probabilities)} probabilities for {len(classes)} classes")
    values = [float(p) for p in probabilities]
    if any(math.isnan(v) for v in values):
        raise ChartError(f"{where}: probabilities contain NaN")
    return values


def _check_limit(limit: int | None, name: str, where: str) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ChartError(f"{where}: {name} must be a whole number >= 1 or None (every class), received {limit!r}")
    return limit


def order_indices(probabilities: Sequence[float], order: str = "default") -> list[int]:
    """Class indices in display order: model order, or by probability (stable for ties)."""
    if order not in ORDERS:
        raise ChartError(f"order must be one of {', '.join(ORDERS)}, received {order!r}")
    indices = list(range(len(probabilities)))
    if order == "descending":
        indices.sort(key=lambda i: -probabilities[i])
    elif order == "ascending":
        indices.sort(key=lambda i: probabilities[i])
    return indices


def highlighted(probabilities: Sequence[float], *, multi_label: bool = False, threshold: float = 0.5) -> set[int]:
    """Indices to highlight: the arg-max (first on ties), or every class >= threshold (multi-label)."""
    if not probabilities:
        return set()
    if multi_label:
        return {i for i, p in enumerate(probabilities) if p >= threshold}
    return {max(range(len(probabilities)), key=lambda i: probabilities[i])}


def shown_classes(probabilities: Sequence[float], top_k: int | None = DEFAULT_TOP_K, *, multi_label: bool = False,
                  threshold: float = 0.5) -> set[int]:
    """The classes a one-image chart draws: every class when ``top_k`` is None or covers them
    all; else the ``top_k`` most probable (ties: the lower class index first) and, for a
    multi-label model, every class at or above the threshold even beyond ``top_k`` (a predicted
    class is never hidden). The arg-max of a single-label model is always among them."""
    top_k = _check_limit(top_k, "top_k", "shown_classes")
    count = len(probabilities)
    if top_k is None or top_k >= count:
        return set(range(count))
    ranked = sorted(range(count), key=lambda i: (-probabilities[i], i))
    shown = set(ranked[:top_k])
    if multi_label:
        shown |= highlighted(probabilities, multi_label=True, threshold=threshold)
    return shown


def batch_classes(probabilities_per_image: Sequence[Sequence[float] | None], limit: int | None) -> list[int]:
    """The classes a batch view shows, in model order: all when ``limit`` is None or covers them;
    else the ``limit`` classes with the highest probability in ANY image (a class that is the
    finding of one image counts, however rare in the rest; ties: lower class index). Images
    without a result (None) do not count."""
    rows = [p for p in probabilities_per_image if p is not None]
    count = len(rows[0]) if rows else 0
    limit = _check_limit(limit, "limit", "batch_classes")
    if limit is None or limit >= count:
        return list(range(count))
    best = [max(row[c] for row in rows) for c in range(count)]
    return sorted(sorted(range(count), key=lambda c: (-best[c], c))[:limit])


def format_percent(value: float) -> str:
    """``0.98765`` -> ``"98.8 %"``; tiny non-zero values say ``"< 0.1 %"`` instead of ``"0.0 %"``."""
    if 0 < value < 0.0005:
        return "< 0.1 %"
    return f"{value * 100:.1f} %"


def rest_label(hidden: int, *, multi_label: bool) -> str:
    """The row that stands for the classes without a bar: a single-label model's probabilities
    sum to 1, so their sum is meaningful ("other 990 classes"); a multi-label model's are
    independent, so the row names them and their highest probability instead."""
    noun = "class" if hidden == 1 else "classes"
    return f"{hidden} more {noun} below the threshold" if multi_label else f"other {hidden} {noun}"


def probability_bars(classes: Sequence[str], probabilities: Sequence[float], *, order: str = "default",
                     multi_label: bool = False, threshold: float = 0.5, title: str = "Class probabilities",
                     width: int = 420, top_k: int | None = None) -> str:
    """A horizontal bar chart of one image's class probabilities, as SVG text.

    ``top_k``: draw only :func:`shown_classes` (in ``order``) and one last row for the rest: a
    single-label model's "other N classes" bar with their summed probability, a multi-label
    model's "N more classes below the threshold" with the highest of them. None: every class."""
    values = _check_probabilities(classes, probabilities, "probability_bars")
    top_k = _check_limit(top_k, "top_k", "probability_bars")
    row_height, label_width, value_width, top = 24, 130, 64, 4
    bar_space = max(width - label_width - value_width, 40)
    marked = highlighted(values, multi_label=multi_label, threshold=threshold)
    shown = shown_classes(values, top_k, multi_label=multi_label, threshold=threshold)
    rows = [i for i in order_indices(values, order) if i in shown]
    hidden = [i for i in range(len(values)) if i not in shown]
    rest_rows = 1 if hidden else 0
    height = top * 2 + row_height * (len(rows) + rest_rows) + (14 if multi_label else 0)
    summary = "; ".join(f"{classes[i]} {format_percent(values[i])}" for i in rows)
    if hidden:
        rest_value = max(values[i] for i in hidden) if multi_label else math.fsum(values[i] for i in hidden)
        rest_text = rest_label(len(hidden), multi_label=multi_label)
        rest_shown = ("highest " if multi_label else "") + format_percent(rest_value)
        summary = f"{len(rows)} of {len(values)} classes shown: {summary}; {rest_text} {rest_shown}"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-bars" viewBox="0 0 {width} {height}" '
             f'width="100%" role="img" aria-label="{_attr(title + ": " + summary)}" '
             f'data-shown="{len(rows)}" data-hidden="{len(hidden)}">']
    for row, i in enumerate(rows):
        y = top + row * row_height
        is_top = i in marked
        length = max(values[i], 0.0) * bar_space
        weight = ' font-weight="700"' if is_top else ""
        parts.append(f'<g class="bar{" bar-top" if is_top else ""}" data-class="{_attr(classes[i])}" data-index="{i}">'
                     f'<title>{escape(classes[i])}: {format_percent(values[i])}</title>'
                     f'<text x="{label_width - 6}" y="{y + 16}" text-anchor="end" font-size="12" fill="{TEXT}"{weight}>'
                     f'{escape(_shorten(classes[i], 20))}</text>'
                     f'<rect x="{label_width}" y="{y + 4}" width="{bar_space}" height="{row_height - 8}" fill="#eef1f5"/>'
                     f'<rect x="{label_width}" y="{y + 4}" width="{length:.2f}" height="{row_height - 8}" '
                     f'fill="{HIGHLIGHT if is_top else BAR}"/>'
                     f'<text x="{label_width + bar_space + 6}" y="{y + 16}" font-size="12" fill="{TEXT}"{weight}>'
                     f'{format_percent(values[i])}</text></g>')
    if hidden:
        y = top + len(rows) * row_height
        # a dashed rule sets the rest apart from the class bars; the label says what it stands for
        parts.append(f'<g class="bar-rest" data-hidden="{len(hidden)}">'
                     f'<title>{escape(rest_text)}: {rest_shown} (every class is in the table and the exports)</title>'
                     f'<line x1="4" x2="{width - 4}" y1="{y + 1}" y2="{y + 1}" stroke="{BAR}" stroke-dasharray="3 3"/>')
        if multi_label:  # a sum of independent probabilities would be no probability: a sentence, no bar
            parts.append(f'<text x="8" y="{y + 16}" font-size="12" font-style="italic" fill="{REST_TEXT}">'
                         f'{escape(rest_text)}, highest {format_percent(rest_value)}</text></g>')
        else:
            parts.append(f'<text x="{label_width - 6}" y="{y + 16}" text-anchor="end" font-size="12" font-style="italic" '
                         f'fill="{REST_TEXT}">{escape(_shorten(rest_text, 20))}</text>'
                         f'<rect x="{label_width}" y="{y + 4}" width="{bar_space}" height="{row_height - 8}" fill="#eef1f5"/>'
                         f'<rect x="{label_width}" y="{y + 4}" width="{max(rest_value, 0.0) * bar_space:.2f}" '
                         f'height="{row_height - 8}" fill="{REST}"/>'
                         f'<text x="{label_width + bar_space + 6}" y="{y + 16}" font-size="12" font-style="italic" '
                         f'fill="{REST_TEXT}">{format_percent(rest_value)}</text></g>')
    if multi_label:
        x = label_width + threshold * bar_space
        parts.append(f'<line class="threshold" x1="{x:.2f}" x2="{x:.2f}" y1="{top}" y2="{height - 14}" '
                     f'stroke="#b00020" stroke-width="2" stroke-dasharray="4 3"/>'
                     f'<text x="{x:.2f}" y="{height - 2}" text-anchor="middle" font-size="11" fill="#b00020">'
                     f'threshold {format_percent(threshold)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def grouped_layout(images: int, bars: int, *, width: int = 720, left: int = 40, right: int = 10) -> dict:
    """Where the batch chart's bars go: ``bar`` width and each image's first bar ``starts``, all
    whole units, every group centred in its own slot of ``slot`` units and never wider than it;
    ``width`` grows beyond the asked width when the bars would be thinner than MIN_BAR_WIDTH."""
    images, bars, asked = max(images, 1), max(bars, 1), width
    slot = (width - left - right) / images
    bar = min(int(slot * 0.8 / bars), MAX_BAR_WIDTH)
    if bar < MIN_BAR_WIDTH:
        bar = MIN_BAR_WIDTH
        slot = bars * bar + max(MIN_GROUP_GAP, bar)
        width = left + right + math.ceil(slot * images)
    group = bars * bar
    starts = [math.floor(left + g * slot + (slot - group) / 2 + 0.5) for g in range(images)]
    return {"width": width, "slot": slot, "bar": bar, "group": group, "starts": starts, "wide": width > asked}


def grouped_bars(classes: Sequence[str], images: Sequence[tuple[str, Sequence[float] | None]], *,
                 title: str = "Class probabilities per image", width: int = 720, height: int = 240,
                 max_classes: int | None = len(PALETTE), multi_label: bool = False) -> str:
    """Vertical grouped bars for a batch: one group per image (failed images: an empty, labelled
    slot), one colour per class, a legend under the axis. SVG text.

    At most ``max_classes`` classes get bars (default: one per colour of the palette), chosen by
    :func:`batch_classes`; for a single-label model a grey "other N classes" bar per image holds
    the rest's summed probability, for a multi-label model the legend says how many were left out.
    None draws every class (colours then repeat)."""
    checked = [(name, None if probs is None else _check_probabilities(classes, probs, f"grouped_bars {name}"))
               for name, probs in images]
    max_classes = _check_limit(max_classes, "max_classes", "grouped_bars")
    drawn = batch_classes([p for _, p in checked], max_classes) if any(p is not None for _, p in checked) \
        else list(range(len(classes) if max_classes is None else min(len(classes), max_classes)))
    hidden = len(classes) - len(drawn)
    rest_bar = hidden > 0 and not multi_label
    legend_items = len(drawn) + (1 if hidden else 0)
    left, bottom, top = 40, 40, 10
    bars_per_image = len(drawn) + (1 if rest_bar else 0)
    layout = grouped_layout(len(checked), bars_per_image, width=width, left=left)
    slanted = layout["slot"] < SLANT_BELOW
    if slanted:
        left = SLANT_LEFT
        layout = grouped_layout(len(checked), bars_per_image, width=width, left=left)
    width = layout["width"]
    legend_columns = 4
    legend_rows = math.ceil(legend_items / legend_columns) if legend_items else 0
    slot = layout["slot"]
    band = LABEL_BAND if slanted else 0
    total_height = height + band + legend_rows * 18
    plot_width = width - left - 10
    plot_height = height - bottom - top
    label = title if not hidden else (f"{title}: the {len(drawn)} of {len(classes)} classes highest in any image"
                                      + ("" if multi_label else f", the other {hidden} summed as one grey bar"))
    size = f'width="{width}" height="{total_height}"' if layout["wide"] else 'width="100%"'
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-grouped{" chart-wide" if layout["wide"] else ""}" '
             f'viewBox="0 0 {width} {total_height}" {size} role="img" aria-label="{_attr(label)}" '
             f'data-classes="{" ".join(str(c) for c in drawn)}" data-hidden="{hidden}">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_height * (1 - tick)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d5dae2"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="{TEXT}">{int(tick * 100)}%</text>')
    for g, (name, probs) in enumerate(checked):
        x0 = layout["starts"][g]
        label_x = left + (g + 0.5) * slot
        if slanted:
            y = height - bottom + 12
            parts.append(f'<text x="{label_x:.1f}" y="{y}" text-anchor="end" font-size="10" fill="{TEXT}" '
                         f'transform="rotate(-40 {label_x:.1f} {y})">{escape(_shorten(name, 18))}</text>')
        else:
            parts.append(f'<text x="{label_x:.1f}" y="{height - bottom + 14}" text-anchor="middle" font-size="10" fill="{TEXT}">'
                         f'{escape(_shorten(name, max(int(slot / 6), 4)))}</text>')
        if probs is None:
            # upright when the slot is wide enough for the word, else vertical (many images: the
            # words of neighbouring failed slots would run into each other)
            middle = top + plot_height / 2
            turn = "" if slot >= 36 else f' transform="rotate(-90 {label_x:.1f} {middle:.1f})"'
            parts.append(f'<text x="{label_x:.1f}" y="{middle:.1f}" text-anchor="middle" dominant-baseline="middle" '
                         f'font-size="10" fill="#b00020"{turn}>failed</text>')
            continue
        bars = [(probs[c], PALETTE[n % len(PALETTE)], classes[c], c) for n, c in enumerate(drawn)]
        if rest_bar:
            kept = set(drawn)
            bars.append((math.fsum(p for c, p in enumerate(probs) if c not in kept), REST,
                         rest_label(hidden, multi_label=False), None))
        for n, (value, colour, class_name, c) in enumerate(bars):
            bar_height = max(value, 0.0) * plot_height
            index = "rest" if c is None else c
            parts.append(f'<rect x="{x0 + n * layout["bar"]}" y="{top + plot_height - bar_height:.2f}" width="{layout["bar"]}" '
                         f'height="{bar_height:.2f}" fill="{colour}" data-index="{index}">'
                         f'<title>{escape(name)}: {escape(class_name)} {format_percent(value)}</title></rect>')
    legend = [(PALETTE[n % len(PALETTE)], _shorten(classes[c], 22), "") for n, c in enumerate(drawn)]
    if hidden:
        noun = "class" if hidden == 1 else "classes"
        legend.append((REST if rest_bar else None,
                       f"other {hidden} {noun}" if rest_bar else f"{hidden} more {noun} not drawn", ' font-style="italic"'))
    for n, (colour, text, style) in enumerate(legend):
        # a wide chart keeps its legend in the first 720 units, in view before any scrolling
        x = left + (n % legend_columns) * (min(plot_width, 720 - 50) / legend_columns)
        y = height + band + (n // legend_columns) * 18
        swatch = (f'<rect x="{x:.1f}" y="{y - 10}" width="10" height="10" fill="{colour}"/>' if colour else
                  f'<rect x="{x + 0.5:.1f}" y="{y - 9.5}" width="9" height="9" fill="none" stroke="{REST}"/>')
        parts.append(f'{swatch}<text x="{x + 14:.1f}" y="{y}" font-size="11" fill="{TEXT}"{style}>{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _shorten(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "…"
