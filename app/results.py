"""Exporting predictions (CSV / JSON). Shared by the CLI and the browser UI so both write the
same columns.

CSV columns: ``file``, ``predicted``, one ``P(<class>)`` column per class in model order,
``model``, ``model_source``, ``model_md5``, ``date``, ``error``. Multi-class models predict the
arg-max class; multi-label models list every class whose probability is at least the threshold
(default 0.5, or the card's), joined with ``"; "``. A failed image gets a row with its error and
empty probabilities. Text cells that a spreadsheet would run as a formula are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from .errors import VitrineError
from .modelcard import ModelCard


@dataclass(frozen=True)
class PredictionResult:
    """One image's outcome: ``probabilities`` in class order, or an ``error`` message."""

    file: str
    probabilities: Sequence[float] | None = None
    error: str | None = None


def _as_result(item: Any) -> PredictionResult:
    if isinstance(item, PredictionResult):
        return item
    if isinstance(item, Mapping):
        return PredictionResult(str(item["file"]), item.get("probabilities"), item.get("error"))
    raise TypeError(f"expected PredictionResult or mapping, got {type(item).__name__}")


def _info(model_info: Any, key: str) -> str:
    if model_info is None:
        return ""
    value = model_info.get(key) if isinstance(model_info, Mapping) else getattr(model_info, key, None)
    return "" if value is None else str(value)


def predicted_classes(probabilities: Sequence[float], card: ModelCard, *, threshold: float | None = None) -> list[str]:
    """Arg-max class (multi-class) or every class with probability >= threshold (multi-label)."""
    if card.multi_label:
        limit = card.threshold if threshold is None else threshold
        return [name for name, p in zip(card.classes, probabilities) if p >= limit]
    best = max(range(len(probabilities)), key=lambda i: probabilities[i])
    return [card.classes[best]]


def probability_column(class_name: str) -> str:
    return f"P({class_name})"


def rows_for_export(results: Iterable[Any], card: ModelCard, model_info: Any = None, *,
                    threshold: float | None = None, date: str | None = None) -> list[dict]:
    """One dict per image, keys in column order (see the module docstring).

    ``model_info`` is a mapping or object with ``name``, ``source``, ``md5`` (and optionally
    ``date``); missing values are left empty. ``date`` defaults to the current UTC time (ISO 8601).
    Raises :class:`~app.errors.VitrineError` if a probability vector does not match the classes."""
    if date is None:
        date = _info(model_info, "date") or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    name = _info(model_info, "name") or card.name
    rows = []
    for item in results:
        result = _as_result(item)
        row = {"file": result.file, "predicted": ""}
        probabilities = result.probabilities
        if probabilities is not None and result.error is None:
            probabilities = [float(p) for p in probabilities]
            if len(probabilities) != len(card.classes):
                raise VitrineError(
                    f"{result.file}: the model gave {len(probabilities)} outputs but the model card lists "
                    f"{len(card.classes)} classes ({', '.join(card.classes)})"
                )
            if any(math.isnan(p) for p in probabilities):
                raise VitrineError(f"{result.file}: the model produced NaN probabilities")
            row["predicted"] = "; ".join(predicted_classes(probabilities, card, threshold=threshold))
        for i, class_name in enumerate(card.classes):
            row[probability_column(class_name)] = probabilities[i] if probabilities is not None and result.error is None else None
        row.update({"model": name, "model_source": _info(model_info, "source"), "model_md5": _info(model_info, "md5"),
                    "date": date, "error": result.error or ""})
        rows.append(row)
    return rows


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".9g")  # round-trips float32 exactly
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def to_csv(results: Iterable[Any], card: ModelCard, model_info: Any = None, *, threshold: float | None = None,
           date: str | None = None) -> str:
    """CSV text (UTF-8 when encoded; ``\\r\\n`` line ends as RFC 4180 asks)."""
    rows = rows_for_export(results, card, model_info, threshold=threshold, date=date)
    columns = ["file", "predicted", *map(probability_column, card.classes), "model", "model_source", "model_md5", "date", "error"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])
    return buffer.getvalue()


def to_json(results: Iterable[Any], card: ModelCard, model_info: Any = None, *, threshold: float | None = None,
            date: str | None = None, indent: int | None = 2) -> str:
    """JSON text: ``{"model": {...}, "classes": [...], "multi_label": bool, "threshold": t,
    "predictions": [{"file", "predicted": [...], "probabilities": {class: p} | null, "error"}]}``."""
    rows = rows_for_export(results, card, model_info, threshold=threshold, date=date)
    predictions = []
    for row in rows:
        failed = bool(row["error"])
        predictions.append({
            "file": row["file"],
            "predicted": [] if failed or not row["predicted"] else row["predicted"].split("; "),
            "probabilities": None if failed else {c: row[probability_column(c)] for c in card.classes},
            "error": row["error"] or None,
        })
    document = {
        "model": {"name": rows[0]["model"] if rows else (_info(model_info, "name") or card.name),
                  "source": _info(model_info, "source"), "md5": _info(model_info, "md5")},
        "date": rows[0]["date"] if rows else date,
        "classes": list(card.classes),
        "multi_label": card.multi_label,
        "threshold": (card.threshold if threshold is None else threshold) if card.multi_label else None,
        "predictions": predictions,
    }
    return json.dumps(document, indent=indent, ensure_ascii=False)
