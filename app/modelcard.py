"""Model cards: what a classifier's outputs mean and how its input must be prepared.

A model card is a small JSON object (``model-card.json`` in the root of a model zip, or an entry
of the shipped catalog). The schema is documented in ``docs/model-card.md``; this module is its
reference implementation. :class:`ModelCard` is frozen; the imaging code reads
``input_size``, ``channels``, ``resize_mode``, ``standardize`` and ``pad_square``
(``PreprocessSpec.from_card``), the UI and exports read ``classes`` and ``multi_label``.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Mapping

from .errors import ModelFormatError

SCHEMA_VERSION = 1
CARD_FILENAME = "model-card.json"

#: OpenCV interpolation codes (cv2.INTER_*) accepted for ``resize_mode``.
RESIZE_MODES = {0: "nearest", 1: "linear", 2: "cubic", 3: "area", 4: "lanczos4"}
#: Intensity standardisation modes (AUCMEDI's names); ``None`` means "feed pixel values 0..255".
STANDARDIZE_MODES = ("torch", "tf", "caffe", "z-score", "minmax", "grayscale")
ALLOWED_CHANNELS = (1, 3)  # what app.imaging produces: grayscale or RGB


@dataclass(frozen=True)
class Reference:
    """A citation of the data set, training code or paper behind a model."""

    citation: str
    link: str | None = None


@dataclass(frozen=True)
class ModelSource:
    """Where the model bytes came from (filled in when the model is fetched)."""

    zenodo_id: int | None = None
    doi: str | None = None
    md5: str | None = None
    version: str | None = None
    file: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to run a classifier correctly and to explain its output.

    ``classes`` are in output order. ``input_size`` is ``(height, width)`` or ``None`` (take it
    from the model's input shape); ``channels`` likewise (``None`` = from the model).
    ``resize_mode`` is an OpenCV interpolation code (see :data:`RESIZE_MODES`), ``standardize``
    one of :data:`STANDARDIZE_MODES` or ``None``. ``metrics`` maps a metric name to
    ``{class name: value}`` as published by the model's authors (never computed by Vitrine).
    """

    name: str
    classes: tuple[str, ...]
    multi_label: bool = False
    threshold: float = 0.5
    input_size: tuple[int, int] | None = None
    channels: int | None = None
    resize_mode: int = 1
    standardize: str | None = None
    pad_square: bool = False
    modality: str | None = None
    discipline: str | None = None
    description: str = ""
    references: tuple[Reference, ...] = ()
    license: str | None = None
    source: ModelSource | None = None
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "references", tuple(self.references))
        if self.input_size is not None:
            object.__setattr__(self, "input_size", tuple(self.input_size))
        frozen_metrics = {name: MappingProxyType(dict(per_class)) for name, per_class in (self.metrics or {}).items()}
        object.__setattr__(self, "metrics", MappingProxyType(frozen_metrics))

    # -- JSON ----------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, obj: Any, *, filename: str = CARD_FILENAME) -> "ModelCard":
        """Validate a decoded ``model-card.json`` object. Errors name ``filename`` and the field."""
        return _CardParser(filename).parse(obj)

    def to_json(self) -> dict:
        """The card as a JSON-ready dict (round-trips through :meth:`from_json`)."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "references":
                value = [{"citation": r.citation, **({"link": r.link} if r.link else {})} for r in value]
            elif f.name == "source":
                value = None if value is None else {k: v for k, v in vars(value).items() if v is not None}
            elif f.name == "metrics":
                value = {name: dict(per_class) for name, per_class in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def with_source(self, **source_fields) -> "ModelCard":
        """A copy whose ``source`` has the given fields updated (others kept)."""
        current = vars(self.source) if self.source is not None else {}
        return replace(self, source=ModelSource(**{**current, **source_fields}))

    # -- WebIPred ------------------------------------------------------------------------------

    @classmethod
    def from_webipred(cls, entry: Mapping[str, Any], *, filename: str = "WebIPred catalog") -> "ModelCard":
        """Read one model entry of WebIPred's catalog format as-is (``resizeWidth``,
        ``resizeHeight``, ``resizeMode``, ``standardizeMode``, ``classes`` with ``index``,
        ``isMultiLabel``, ``zenodoDepositID``, ``medicalDiscipline``, ``medicalProcedure``,
        ``numberOfColorChannels`` where 0 means "not stated", ``references``...)."""
        if not isinstance(entry, Mapping):
            raise ModelFormatError(f"{filename}: a model entry must be an object, got {type(entry).__name__}")
        where = f"{filename} (model {entry.get('id', entry.get('name', '?'))!r})"
        for key in ("name", "classes", "resizeWidth", "resizeHeight"):
            if key not in entry:
                raise ModelFormatError(f"{where}: missing field {key!r}")
        classes_field = entry["classes"]
        if not isinstance(classes_field, list) or not classes_field:
            raise ModelFormatError(f"{where}: field 'classes' must be a non-empty list, got {classes_field!r}")
        try:
            ordered = sorted(classes_field, key=lambda c: c["index"])
            indices = [c["index"] for c in ordered]
            names = [str(c["name"]) for c in ordered]
        except (KeyError, TypeError) as exc:
            raise ModelFormatError(f"{where}: field 'classes' entries need 'index' and 'name' ({exc})") from exc
        if indices != list(range(len(indices))):
            raise ModelFormatError(f"{where}: field 'classes' indices must be 0..{len(indices) - 1}, got {indices}")
        channels = entry.get("numberOfColorChannels") or None
        standardize = entry.get("standardizeMode") or None
        record = entry.get("zenodoDepositID")
        card_json = {
            "name": entry["name"],
            "classes": names,
            "multi_label": bool(entry.get("isMultiLabel", False)),
            "input_size": [entry["resizeHeight"], entry["resizeWidth"]],
            "channels": channels,
            "resize_mode": entry.get("resizeMode", 1),
            "standardize": standardize,
            "pad_square": False,
            "modality": entry.get("medicalProcedure"),
            "discipline": entry.get("medicalDiscipline"),
            "description": html_to_text(entry.get("description") or ""),
            "references": [
                {"citation": r.get("citation", ""), "link": r.get("link")}
                for r in entry.get("references") or []
                if isinstance(r, Mapping)
            ],
            "source": {"zenodo_id": record, "doi": f"10.5281/zenodo.{record}"} if record else None,
        }
        return _CardParser(where).parse(card_json)


def decode_json_file(data: bytes, filename: str):
    """The JSON value in ``data`` (UTF-8, a BOM allowed); a :class:`~app.errors.ModelFormatError`
    naming the file and where it is not text / not JSON. Model cards and catalog files."""
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{filename}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{filename}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc


def load_card(data: bytes, filename: str = CARD_FILENAME) -> ModelCard:
    """Parse and validate the bytes of a ``model-card.json`` (the engine calls this for a card
    found beside ``model.json``). Raises :class:`~app.errors.ModelFormatError` naming the file."""
    return ModelCard.from_json(decode_json_file(data, filename), filename=filename)


def html_to_text(text: str) -> str:
    """Flatten the small HTML subset found in catalog descriptions (links, lists, bold) to text."""
    text = re.sub(r"<li[^>]*>", "\n- ", text, flags=re.IGNORECASE)
    text = re.sub(r"<br\s*/?>|</?(ul|ol|p|div)[^>]*>", "\n", text, flags=re.IGNORECASE)
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text)
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


def metrics_from_webipred_eval(obj: Mapping[str, Any], *, filename: str = "evaluation JSON") -> dict[str, dict[str, float]]:
    """Per-class metrics from an AUCMEDI/WebIPred evaluation file (``metrics-python.json``):
    ``{"auc": [{"name": cls, "series": [{"name": "Python", "value": v}]}], ...}`` ->
    ``{"auc": {cls: v}}``. Only the scalar per-class metrics are kept (not ROC curves)."""
    wanted = ("accuracy", "precision", "recall", "specificity", "f1", "auc")
    out: dict[str, dict[str, float]] = {}
    for metric in wanted:
        if metric not in obj:
            continue
        per_class: dict[str, float] = {}
        for item in obj[metric]:
            try:
                series = item["series"]
                if len(series) != 1:
                    raise ValueError(f"expected one series, got {len(series)}")
                per_class[str(item["name"])] = float(series[0]["value"])
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise ModelFormatError(f"{filename}: metric {metric!r} entry {item!r} is malformed ({exc})") from exc
        out[metric] = per_class
    return out


class _CardParser:
    """Field-by-field validation with messages naming the file and the field."""

    KNOWN = {f.name for f in fields(ModelCard)} | {"schema_version"}
    SOURCE_KNOWN = {f.name for f in fields(ModelSource)}

    def __init__(self, filename: str):
        self.filename = filename

    def fail(self, field_name: str, message: str):
        raise ModelFormatError(f"{self.filename}: field {field_name!r} {message}")

    def parse(self, obj: Any) -> ModelCard:
        if not isinstance(obj, Mapping):
            raise ModelFormatError(f"{self.filename}: a model card must be a JSON object, got {type(obj).__name__}")
        unknown = sorted(k for k in obj if k not in self.KNOWN and not str(k).startswith("x-"))
        if unknown:
            raise ModelFormatError(
                f"{self.filename}: unknown field(s) {', '.join(map(repr, unknown))}; known fields are "
                f"{', '.join(sorted(self.KNOWN))} (prefix custom fields with 'x-')"
            )
        version = obj.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            self.fail("schema_version", f"must be {SCHEMA_VERSION} (this Vitrine reads schema {SCHEMA_VERSION}), got {version!r}")
        for required in ("name", "classes"):
            if required not in obj:
                raise ModelFormatError(f"{self.filename}: missing required field {required!r}")
        channels = self.channels(obj.get("channels"))
        standardize = self.standardize(obj.get("standardize"))
        if standardize in ("torch", "caffe") and channels not in (None, 3):
            self.fail("standardize", f"{standardize!r} works on RGB images and needs channels 3 (or null), got channels {channels}")
        return ModelCard(
            name=self.text("name", obj["name"], required=True),
            classes=self.classes(obj["classes"]),
            multi_label=self.boolean("multi_label", obj.get("multi_label", False)),
            threshold=self.threshold(obj.get("threshold", 0.5)),
            input_size=self.input_size(obj.get("input_size")),
            channels=channels,
            resize_mode=self.resize_mode(obj.get("resize_mode", 1)),
            standardize=standardize,
            pad_square=self.boolean("pad_square", obj.get("pad_square", False)),
            modality=self.text("modality", obj.get("modality")),
            discipline=self.text("discipline", obj.get("discipline")),
            description=self.text("description", obj.get("description")) or "",
            references=self.references(obj.get("references") or []),
            license=self.license(obj.get("license")),
            source=self.source(obj.get("source")),
            metrics=self.metrics(obj.get("metrics") or {}),
        )

    def text(self, name, value, *, required=False):
        if value is None and not required:
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(name, f"must be a {'non-empty ' if required else ''}string, got {value!r}")
        return value

    def boolean(self, name, value):
        if not isinstance(value, bool):
            self.fail(name, f"must be true or false, got {value!r}")
        return value

    @staticmethod
    def _is_int(value):
        return isinstance(value, int) and not isinstance(value, bool)

    def classes(self, value):
        if not isinstance(value, list) or not value:
            self.fail("classes", f"must be a non-empty list of class names in output order, got {value!r}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.fail("classes", f"entry {i} must be a non-empty string, got {item!r}")
        duplicates = sorted({c for c in value if value.count(c) > 1})
        if duplicates:
            self.fail("classes", f"has duplicate names: {', '.join(duplicates)}")
        return tuple(value)

    def threshold(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
            self.fail("threshold", f"must be a number strictly between 0 and 1, got {value!r}")
        return float(value)

    def input_size(self, value):
        if value is None:
            return None
        if (not isinstance(value, list) or len(value) != 2
                or not all(self._is_int(v) and v > 0 for v in value)):
            self.fail("input_size", f"must be [height, width] with two positive integers, got {value!r}")
        return (value[0], value[1])

    def channels(self, value):
        if value is None:
            return None
        if not self._is_int(value) or value not in ALLOWED_CHANNELS:
            self.fail("channels", f"must be one of {', '.join(map(str, ALLOWED_CHANNELS))} or null, got {value!r}")
        return value

    def resize_mode(self, value):
        if not self._is_int(value) or value not in RESIZE_MODES:
            codes = ", ".join(f"{k}={v}" for k, v in RESIZE_MODES.items())
            self.fail("resize_mode", f"must be an OpenCV interpolation code ({codes}), got {value!r}")
        return value

    def standardize(self, value):
        if value is not None and value not in STANDARDIZE_MODES:
            self.fail("standardize", f"must be one of {', '.join(STANDARDIZE_MODES)} or null, got {value!r}")
        return value

    def references(self, value):
        if not isinstance(value, list):
            self.fail("references", f"must be a list of {{citation, link}} objects, got {value!r}")
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(Reference(citation=item))
                continue
            if not isinstance(item, Mapping) or not isinstance(item.get("citation"), str):
                self.fail("references", f"entry {i} must be a string or an object with a 'citation' string, got {item!r}")
            link = item.get("link")
            if link is not None and not isinstance(link, str):
                self.fail("references", f"entry {i} 'link' must be a string, got {link!r}")
            out.append(Reference(citation=item["citation"], link=link))
        return tuple(out)

    def license(self, value):
        # Zenodo writes {"id": "cc-by-4.0"}; a card may hold the bare id.
        if isinstance(value, Mapping) and isinstance(value.get("id"), str):
            return value["id"]
        return self.text("license", value)

    def source(self, value):
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.fail("source", f"must be an object, got {value!r}")
        unknown = sorted(set(value) - self.SOURCE_KNOWN)
        if unknown:
            self.fail("source", f"has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(self.SOURCE_KNOWN))}")
        zenodo_id = value.get("zenodo_id")
        if zenodo_id is not None and not (self._is_int(zenodo_id) and zenodo_id > 0):
            self.fail("source", f"'zenodo_id' must be a positive integer, got {zenodo_id!r}")
        md5 = value.get("md5")
        if md5 is not None and not (isinstance(md5, str) and re.fullmatch(r"[0-9a-f]{32}", md5)):
            self.fail("source", f"'md5' must be 32 lower-case hex digits, got {md5!r}")
        for key in ("doi", "version", "file", "url"):
            if value.get(key) is not None and not isinstance(value[key], str):
                self.fail("source", f"{key!r} must be a string, got {value[key]!r}")
        return ModelSource(**value)

    def metrics(self, value):
        if not isinstance(value, Mapping):
            self.fail("metrics", f"must be an object {{metric: {{class: value}}}}, got {value!r}")
        out = {}
        for metric, per_class in value.items():
            if not isinstance(per_class, Mapping):
                self.fail("metrics", f"{metric!r} must map class names to numbers, got {per_class!r}")
            for cls, number in per_class.items():
                if isinstance(number, bool) or not isinstance(number, (int, float)):
                    self.fail("metrics", f"{metric!r} value for {cls!r} must be a number, got {number!r}")
            out[metric] = {str(cls): float(number) for cls, number in per_class.items()}
        return out
