"""SVG charts for the browser UI, generated in Python (stdlib only, so they run and are tested
under CPython and in the Pyodide worker alike; the MicroPython main thread just inserts the text).

Why SVG from Python rather than a JS chart library: no third-party script in the page (the CSP
allows only our own files), the numbers shown are the engine's own floats (no second formatting
path), charts scale cleanly for print and zoom, and every bar carries a ``<title>`` plus the
chart a ``role="img"`` / ``aria-label`` so screen readers get the values. See docs/ui.md.

* :func:`probability_bars` - one image: a horizontal bar per class, value labels, the top class
  (or every class over the threshold for multi-label models) highlighted.
* :func:`grouped_bars` - a batch: per image a group of vertical bars, one per class.
"""

from __future__ import annotations

import math
from typing import Sequence
from xml.sax.saxutils import escape

ORDERS = ("default", "descending", "ascending")

# colour-blind-safe palette (Okabe-Ito), all >= 3:1 against white for non-text graphics
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
BAR = "#8a94a6"
HIGHLIGHT = "#0b5cad"
TEXT = "#1d2330"


class ChartError(ValueError):
    """Chart input that cannot be drawn (mismatched lengths, unknown order, NaN)."""


def _attr(text: str) -> str:
    return escape(str(text), {'"': "&quot;"})


def _check_probabilities(classes: Sequence[str], probabilities: Sequence[float], where: str) -> list[float]:
    if len(classes) != len(probabilities):
        raise ChartError(f"{where}: {len(probabilities)} probabilities for {len(classes)} classes")
    values = [float(p) for p in probabilities]
    if any(math.isnan(v) for v in values):
        raise ChartError(f"{where}: probabilities contain NaN")
    return values


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


def format_percent(value: float) -> str:
    """``0.98765`` -> ``"98.8 %"``; tiny non-zero values say ``"< 0.1 %"`` instead of ``"0.0 %"``."""
    if 0 < value < 0.0005:
        return "< 0.1 %"
    return f"{value * 100:.1f} %"


def probability_bars(classes: Sequence[str], probabilities: Sequence[float], *, order: str = "default",
                     multi_label: bool = False, threshold: float = 0.5, title: str = "Class probabilities",
                     width: int = 420) -> str:
    """A horizontal bar chart of one image's class probabilities, as SVG text."""
    values = _check_probabilities(classes, probabilities, "probability_bars")
    row_height, label_width, value_width, top = 24, 130, 64, 4
    bar_space = max(width - label_width - value_width, 40)
    marked = highlighted(values, multi_label=multi_label, threshold=threshold)
    rows = order_indices(values, order)
    height = top * 2 + row_height * len(rows) + (14 if multi_label else 0)
    summary = "; ".join(f"{classes[i]} {format_percent(values[i])}" for i in rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-bars" viewBox="0 0 {width} {height}" '
             f'width="100%" role="img" aria-label="{_attr(title + ": " + summary)}">']
    for row, i in enumerate(rows):
        y = top + row * row_height
        is_top = i in marked
        length = max(values[i], 0.0) * bar_space
        weight = ' font-weight="700"' if is_top else ""
        parts.append(f'<g class="bar{" bar-top" if is_top else ""}" data-class="{_attr(classes[i])}">'
                     f'<title>{escape(classes[i])}: {format_percent(values[i])}</title>'
                     f'<text x="{label_width - 6}" y="{y + 16}" text-anchor="end" font-size="12" fill="{TEXT}"{weight}>'
                     f'{escape(_shorten(classes[i], 20))}</text>'
                     f'<rect x="{label_width}" y="{y + 4}" width="{bar_space}" height="{row_height - 8}" fill="#eef1f5"/>'
                     f'<rect x="{label_width}" y="{y + 4}" width="{length:.2f}" height="{row_height - 8}" '
                     f'fill="{HIGHLIGHT if is_top else BAR}"/>'
                     f'<text x="{label_width + bar_space + 6}" y="{y + 16}" font-size="12" fill="{TEXT}"{weight}>'
                     f'{format_percent(values[i])}</text></g>')
    if multi_label:
        x = label_width + threshold * bar_space
        parts.append(f'<line class="threshold" x1="{x:.2f}" x2="{x:.2f}" y1="{top}" y2="{height - 14}" '
                     f'stroke="#b00020" stroke-width="2" stroke-dasharray="4 3"/>'
                     f'<text x="{x:.2f}" y="{height - 2}" text-anchor="middle" font-size="11" fill="#b00020">'
                     f'threshold {format_percent(threshold)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def grouped_bars(classes: Sequence[str], images: Sequence[tuple[str, Sequence[float] | None]], *,
                 title: str = "Class probabilities per image", width: int = 720, height: int = 240) -> str:
    """Vertical grouped bars for a batch: one group per image (failed images: an empty, labelled
    slot), one colour per class, a legend under the axis. SVG text."""
    checked = [(name, None if probs is None else _check_probabilities(classes, probs, f"grouped_bars {name}"))
               for name, probs in images]
    left, bottom, top = 40, 40, 10
    legend_rows = math.ceil(len(classes) / 4) if classes else 0
    total_height = height + legend_rows * 18
    plot_width = width - left - 10
    plot_height = height - bottom - top
    group_width = plot_width / max(len(checked), 1)
    bar_width = max(group_width * 0.8 / max(len(classes), 1), 1.0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-grouped" viewBox="0 0 {width} {total_height}" '
             f'width="100%" role="img" aria-label="{_attr(title)}">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_height * (1 - tick)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d5dae2"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="{TEXT}">{int(tick * 100)}%</text>')
    for g, (name, probs) in enumerate(checked):
        x0 = left + g * group_width + group_width * 0.1
        label_x = left + (g + 0.5) * group_width
        parts.append(f'<text x="{label_x:.1f}" y="{height - bottom + 14}" text-anchor="middle" font-size="10" fill="{TEXT}">'
                     f'{escape(_shorten(name, max(int(group_width / 6), 4)))}</text>')
        if probs is None:
            # upright when the slot is wide enough for the word, else vertical (many images: the
            # words of neighbouring failed slots would run into each other)
            middle = top + plot_height / 2
            turn = "" if group_width >= 36 else f' transform="rotate(-90 {label_x:.1f} {middle:.1f})"'
            parts.append(f'<text x="{label_x:.1f}" y="{middle:.1f}" text-anchor="middle" dominant-baseline="middle" '
                         f'font-size="10" fill="#b00020"{turn}>failed</text>')
            continue
        for c, value in enumerate(probs):
            bar_height = max(value, 0.0) * plot_height
            parts.append(f'<rect x="{x0 + c * bar_width:.2f}" y="{top + plot_height - bar_height:.2f}" width="{bar_width:.2f}" '
                         f'height="{bar_height:.2f}" fill="{PALETTE[c % len(PALETTE)]}">'
                         f'<title>{escape(name)}: {escape(classes[c])} {format_percent(value)}</title></rect>')
    for c, class_name in enumerate(classes):
        x = left + (c % 4) * (plot_width / 4)
        y = height + (c // 4) * 18
        parts.append(f'<rect x="{x:.1f}" y="{y - 10}" width="10" height="10" fill="{PALETTE[c % len(PALETTE)]}"/>'
                     f'<text x="{x + 14:.1f}" y="{y}" font-size="11" fill="{TEXT}">{escape(_shorten(class_name, 22))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _shorten(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "…"
