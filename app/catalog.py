"""The model catalog: the models Vitrine ships a card for, plus models a user adds at run time.

The shipped part is ``app/catalog.json`` (package data): the nine AUCMEDI classifiers published
on Zenodo (records 7785982..7786009). A :class:`Catalog` is searched by text, filtered by
discipline / modality / format and looked up by id. User additions live in memory only
(:meth:`Catalog.add` / :meth:`Catalog.add_reference`); nothing is written anywhere.

:func:`load_catalog` also reads a catalog file: Vitrine's own format or WebIPred's catalog
(``catalog-all.json``: ``{"models": [...]}`` as its ``/models`` endpoint answers, or a bare list of
entries), told apart by shape and read as-is through :meth:`ModelCard.from_webipred`. A WebIPred
entry gets the id ``webipred-<its id>`` (a bare number would read as a Zenodo record id).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Iterable

from .errors import ModelFormatError, ModelSourceError
from .modelcard import ModelCard, decode_json_file

CATALOG_SCHEMA = "vitrine-catalog/1"
WEBIPRED_ID_PREFIX = "webipred-"
#: Keys only a WebIPred catalog entry has; one of them marks a list of entries as WebIPred's.
WEBIPRED_KEYS = ("zenodoDepositID", "resizeWidth", "resizeHeight", "standardizeMode", "isMultiLabel")
FORMATS = ("tfjs-layers", "tflite")
_MISSING = object()


@dataclass(frozen=True)
class CatalogEntry:
    """One model: a stable ``id``, its ``format``, where to download it (``zenodo_record``) and
    its :class:`~app.modelcard.ModelCard`. ``builtin`` is False for models the user added."""

    id: str
    card: ModelCard | None
    format: str | None = None
    zenodo_record: int | None = None
    reference: str | None = None
    builtin: bool = True

    @property
    def name(self) -> str:
        return self.card.name if self.card is not None else (self.reference or self.id)

    @property
    def discipline(self) -> str | None:
        return self.card.discipline if self.card is not None else None

    @property
    def modality(self) -> str | None:
        return self.card.modality if self.card is not None else None

    def search_text(self) -> str:
        card = self.card
        if card is None:
            return " ".join(x for x in (self.id, self.reference or "", self.format or "") if x).lower()
        aliases = " ".join(a for a, full in MODALITY_ALIASES.items() if card.modality and full == card.modality.lower())
        return " ".join(x for x in (self.id, card.name, card.description, card.modality or "", card.discipline or "", aliases,
                                    " ".join(card.classes), self.format or "") if x).lower()


class Catalog:
    """An ordered collection of :class:`CatalogEntry` (shipped entries first, then user ones)."""

    def __init__(self, entries: Iterable[CatalogEntry] = ()):
        self._entries: dict[str, CatalogEntry] = {}
        for entry in entries:
            self._insert(entry)

    def _insert(self, entry: CatalogEntry) -> None:
        if entry.id in self._entries:
            raise ModelSourceError(f"catalog already has a model with id {entry.id!r}")
        self._entries[entry.id] = entry

    @property
    def entries(self) -> tuple[CatalogEntry, ...]:
        return tuple(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(self._entries.values())

    def get(self, entry_id: str, default=_MISSING) -> CatalogEntry | None:
        """The entry ``entry_id``; raises :class:`~app.errors.ModelSourceError` listing the known
        ids unless a ``default`` is given."""
        entry = self._entries.get(entry_id)
        if entry is None:
            if default is not _MISSING:
                return default
            raise ModelSourceError(f"no catalog model with id {entry_id!r}; known ids: {', '.join(self._entries) or '(none)'}")
        return entry

    def by_zenodo_record(self, record_id: int) -> CatalogEntry | None:
        return next((e for e in self._entries.values() if e.zenodo_record == record_id), None)

    def search(self, text: str = "", *, discipline: str | None = None, modality: str | None = None,
               format: str | None = None) -> list[CatalogEntry]:
        """Entries whose id / name / description / classes / modality / discipline contain every
        word of ``text`` (case-insensitive), narrowed by the filters (case-insensitive substring:
        ``modality="x-ray"``, ``discipline="radio"``)."""
        words = [w for w in re.split(r"\s+", text.lower().strip()) if w]
        out = []
        for entry in self._entries.values():
            haystack = entry.search_text()
            if not all(w in haystack for w in words):
                continue
            if discipline and discipline.lower() not in (entry.discipline or "").lower():
                continue
            if modality and not _modality_matches(modality, entry.modality):
                continue
            if format and (entry.format or "").lower() != format.lower():
                continue
            out.append(entry)
        return out

    def filter(self, *, discipline: str | None = None, modality: str | None = None, format: str | None = None) -> list[CatalogEntry]:
        return self.search("", discipline=discipline, modality=modality, format=format)

    def disciplines(self) -> list[str]:
        return sorted({e.discipline for e in self if e.discipline})

    def modalities(self) -> list[str]:
        return sorted({e.modality for e in self if e.modality})

    # .. user additions (in memory) ..

    def add(self, entry: CatalogEntry) -> CatalogEntry:
        """Add a user model (``builtin`` is forced to False)."""
        if entry.builtin:
            entry = CatalogEntry(entry.id, entry.card, entry.format, entry.zenodo_record, entry.reference, builtin=False)
        self._insert(entry)
        return entry

    def add_reference(self, reference: str, card: ModelCard | None = None, *, entry_id: str | None = None,
                      format: str | None = None) -> CatalogEntry:
        """Add a model the user named by DOI / URL / record id / path (no network access here;
        without ``card`` the entry has none until the model is fetched and its own card read)."""
        from .sources import parse_reference

        parsed = parse_reference(reference)
        if parsed.kind not in ("zenodo", "local", "doi"):
            raise ModelSourceError(f"{reference!r} cannot be added as a model reference")
        if entry_id is None:
            entry_id = f"zenodo-{parsed.record_id}" if parsed.record_id else f"user-{len(self._entries) + 1}"
        return self.add(CatalogEntry(entry_id, card, format, parsed.record_id, reference, builtin=False))


# Common abbreviations a user types for the modality names used in the catalog.
MODALITY_ALIASES = {
    "mri": "magnetic resonance imaging", "mr": "magnetic resonance imaging", "ct": "computed tomography",
    "us": "ultrasound", "xray": "x-ray", "cxr": "x-ray", "radiograph": "x-ray", "fundus": "retinal imaging",
    "dermoscopy": "dermatoscopy", "histology": "microscopy", "colonoscopy": "endoscopy", "gastroscopy": "endoscopy",
}


def _modality_matches(wanted: str, modality: str | None) -> bool:
    wanted = wanted.lower().strip()
    have = (modality or "").lower()
    return wanted in have or MODALITY_ALIASES.get(wanted.replace(" ", ""), "\0") in have


def parse_catalog(obj, *, filename: str = "catalog.json") -> Catalog:
    """Validate a decoded catalog JSON (``{"schema": "vitrine-catalog/1", "models": [...]}``)."""
    if not isinstance(obj, dict) or obj.get("schema") != CATALOG_SCHEMA:
        found = obj.get("schema") if isinstance(obj, dict) else type(obj).__name__
        raise ModelFormatError(f"{filename}: expected an object with schema {CATALOG_SCHEMA!r}, got {found!r}")
    models = obj.get("models")
    if not isinstance(models, list):
        raise ModelFormatError(f"{filename}: field 'models' must be a list")
    entries = []
    for i, item in enumerate(models):
        where = f"{filename} model {i}"
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise ModelFormatError(f"{where}: needs a non-empty string 'id'")
        where = f"{filename} model {item['id']!r}"
        fmt = item.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise ModelFormatError(f"{where}: field 'format' must be one of {', '.join(FORMATS)}, got {fmt!r}")
        record = item.get("zenodo_record")
        if record is not None and (not isinstance(record, int) or isinstance(record, bool) or record <= 0):
            raise ModelFormatError(f"{where}: field 'zenodo_record' must be a positive integer, got {record!r}")
        card = ModelCard.from_json(item.get("card"), filename=f"{where} card")
        entries.append(CatalogEntry(item["id"], card, fmt, record, builtin=True))
    return Catalog(entries)


def parse_webipred_catalog(obj, *, filename: str = "catalog-all.json") -> Catalog:
    """Read WebIPred's catalog as-is: ``{"models": [entry, ...], ...}`` (its ``/models`` answer,
    other keys such as ``pagination_links`` ignored) or a bare list of entries. Each entry becomes
    ``webipred-<id>`` with the card :meth:`ModelCard.from_webipred` reads, format ``tfjs-layers``
    (WebIPred serves converted TF.js layers-models) and its ``zenodoDepositID`` as the record."""
    models = obj.get("models") if isinstance(obj, dict) else obj
    if not isinstance(models, list):
        raise ModelFormatError(f"{filename}: a WebIPred catalog needs a list 'models', got {type(models).__name__}")
    if not models:
        raise ModelFormatError(f"{filename}: the WebIPred catalog lists no models")
    entries = []
    seen: dict[str, int] = {}
    for i, item in enumerate(models):
        if not isinstance(item, dict):
            raise ModelFormatError(f"{filename} model {i}: a WebIPred entry must be an object, got {type(item).__name__}")
        raw_id = item.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (int, str)) or str(raw_id).strip() == "":
            raise ModelFormatError(f"{filename} model {i}: needs an 'id' (number or text), got {raw_id!r}")
        entry_id = WEBIPRED_ID_PREFIX + str(raw_id).strip()
        if entry_id in seen:
            raise ModelFormatError(f"{filename}: models {seen[entry_id]} and {i} both have id {raw_id!r}")
        seen[entry_id] = i
        record = item.get("zenodoDepositID")
        if record is not None and (not isinstance(record, int) or isinstance(record, bool) or record <= 0):
            raise ModelFormatError(f"{filename} (model {raw_id!r}): field 'zenodoDepositID' must be a positive "
                                   f"integer, got {record!r}")
        card = ModelCard.from_webipred(item, filename=filename)
        entries.append(CatalogEntry(entry_id, card, "tfjs-layers", record, builtin=True))
    return Catalog(entries)


def catalog_from_json(obj, *, filename: str) -> Catalog:
    """A decoded catalog file, whichever of the two formats its shape says it is."""
    if isinstance(obj, dict) and "schema" in obj:
        return parse_catalog(obj, filename=filename)
    models = obj.get("models") if isinstance(obj, dict) else obj
    if isinstance(models, list) and any(isinstance(m, dict) and any(k in m for k in WEBIPRED_KEYS) for m in models):
        return parse_webipred_catalog(obj, filename=filename)
    if isinstance(models, list) and not models:
        raise ModelFormatError(f"{filename}: the catalog lists no models")
    if isinstance(models, list):
        first = next((m for m in models if isinstance(m, dict)), None)
        detail = (f"first entry's keys: {', '.join(map(repr, list(first)[:6])) or '(none)'}" if first is not None
                  else "the entries are not objects")
        got = f"{len(models)} model entries without any of those fields ({detail})"
    elif isinstance(obj, dict):
        got = f"an object with keys {', '.join(map(repr, list(obj)[:6])) or '(none)'}"
    else:
        got = f"a JSON {type(obj).__name__}"
    raise ModelFormatError(
        f"{filename}: not a model catalog: expected Vitrine's format (an object with \"schema\": "
        f"{CATALOG_SCHEMA!r} and \"models\") or WebIPred's catalog-all.json (\"models\": a list of entries "
        f"with {', '.join(WEBIPRED_KEYS[:3])}...); got {got}"
    )


def read_catalog_file(path) -> Catalog:
    """Read a catalog file (Vitrine's format or WebIPred's). Errors name the file and the reason."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ModelSourceError(f"catalog file {name}: cannot read it ({exc.strerror or exc})") from exc
    return catalog_from_json(decode_json_file(data, name), filename=name)


def load_catalog(path=None) -> Catalog:
    """The catalog shipped with the package, or the catalog file ``path`` (Vitrine's format or
    WebIPred's ``catalog-all.json``). A fresh object: user additions are per instance."""
    if path is not None:
        return read_catalog_file(path)
    text = resources.files(__package__).joinpath("catalog.json").read_text(encoding="utf-8")
    return parse_catalog(json.loads(text))
