"""From what a user typed to a runnable model: resolve a model reference, fetch its bytes, unpack
them and hand them to the engine.

Accepted references (see :func:`parse_reference`):

* a Zenodo record URL: ``https://zenodo.org/records/N`` or ``/record/N``, optionally with
  ``/files/NAME`` (which also chooses the file), or the API form ``/api/records/N``;
* a DOI: ``10.5281/zenodo.N``, ``doi:10.5281/zenodo.N``, ``https://doi.org/10.5281/zenodo.N``
  (a DOI from another registrar is searched on Zenodo);
* a record id: ``zenodo:N`` or bare digits (a concept id resolves to its newest version);
* the id of a catalog entry (:mod:`app.catalog`);
* a local ``.zip``, ``.tflite``, ``model.json`` or folder holding ``model.json`` (offline use).

Steps: :func:`resolve` (metadata only, one or two small requests) -> :func:`fetch` (bytes,
with progress / cancel / MD5; optional on-disk cache for the CLI) -> :func:`unpack` (zip in
memory, format detection, model card) -> :func:`load` (``app.load_model``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from .errors import ModelFormatError, ModelSourceError, UnsupportedFormatError
from .modelcard import CARD_FILENAME, ModelCard, load_card
from .zenodo import (
    DEFAULT_ZENODO_URL,
    ZENODO_DOI_PREFIX,
    CancelCheck,
    ProgressCallback,
    ZenodoClient,
    ZenodoFile,
    ZenodoRecord,
    choose_model_file,
    verify_md5,
)

ACCEPTED_FORMS = (
    "a Zenodo record URL (https://zenodo.org/records/N[/files/NAME]), a DOI (10.5281/zenodo.N, "
    "doi:..., https://doi.org/...), a record id (zenodo:N or N), a catalog id, or a local .zip / "
    ".tflite / model.json / folder"
)
_ZENODO_HOSTS = {"zenodo.org", "www.zenodo.org"}
_DOI_HOSTS = {"doi.org", "dx.doi.org", "www.doi.org"}
_DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")


@dataclass(frozen=True)
class ParsedReference:
    """What kind of reference the user gave. ``kind`` is ``"zenodo"`` (``record_id``),
    ``"doi"`` (``doi``, not a Zenodo one), ``"catalog"`` (``catalog_id``) or ``"local"`` (``path``).
    ``file`` is a file name chosen by the reference itself (``.../files/NAME``); ``zenodo_url``
    is set when a URL names a server other than zenodo.org."""

    kind: str
    record_id: int | None = None
    doi: str | None = None
    catalog_id: str | None = None
    path: Path | None = None
    file: str | None = None
    zenodo_url: str | None = None


def parse_reference(reference: str, *, catalog=None) -> ParsedReference:
    """Classify ``reference`` without any network access."""
    text = reference.strip()
    if not text:
        raise ModelSourceError(f"empty model reference; give {ACCEPTED_FORMS}")
    lower = text.lower()
    if lower.startswith(("http://", "https://")):
        return _parse_url(text)
    if lower.startswith("zenodo:"):
        number = text[len("zenodo:"):].strip()
        if not number.isdigit():
            raise ModelSourceError(f"model reference {reference!r}: after 'zenodo:' a record number is expected, got {number!r}")
        return ParsedReference("zenodo", record_id=int(number))
    if lower.startswith("doi:"):
        return _parse_doi(text[len("doi:"):].strip(), reference)
    if _DOI_RE.match(text):
        return _parse_doi(text, reference)
    if text.isdigit():
        return ParsedReference("zenodo", record_id=int(text))
    if catalog is not None and catalog.get(text, default=None) is not None:
        return ParsedReference("catalog", catalog_id=text)
    path = Path(text).expanduser()
    if path.exists():
        return ParsedReference("local", path=path)
    if "/" in text or os.sep in text or lower.endswith((".zip", ".tflite", ".json")):
        raise ModelSourceError(f"model file {text} does not exist")
    known = f" (catalog ids: {', '.join(e.id for e in catalog.entries)})" if catalog is not None else ""
    raise ModelSourceError(f"model reference {reference!r} is not understood; give {ACCEPTED_FORMS}{known}")


def _parse_doi(doi: str, reference: str) -> ParsedReference:
    if not _DOI_RE.match(doi):
        raise ModelSourceError(f"model reference {reference!r}: {doi!r} is not a DOI (expected 10.NNNN/...)")
    if doi.lower().startswith(ZENODO_DOI_PREFIX):
        number = doi[len(ZENODO_DOI_PREFIX):]
        if not number.isdigit():
            raise ModelSourceError(f"model reference {reference!r}: a Zenodo DOI ends in a record number, got {number!r}")
        return ParsedReference("zenodo", record_id=int(number))
    return ParsedReference("doi", doi=doi)


def _parse_url(url: str) -> ParsedReference:
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    path = urllib.parse.unquote(parts.path)
    if host in _DOI_HOSTS:
        return _parse_doi(path.lstrip("/"), url)
    server = None if host in _ZENODO_HOSTS else f"{parts.scheme}://{parts.netloc}"
    match = re.match(r"^/(?:api/)?records?/(\d+)(?:/files/(.+?))?(?:/content)?/?$", path)
    if match:
        return ParsedReference("zenodo", record_id=int(match.group(1)), file=match.group(2), zenodo_url=server)
    match = re.match(r"^/doi/(10\..+)$", path)
    if match:
        parsed = _parse_doi(match.group(1), url)
        return ParsedReference(parsed.kind, record_id=parsed.record_id, doi=parsed.doi, zenodo_url=server)
    raise ModelSourceError(
        f"model URL {url} is not a Zenodo record URL (expected .../records/N or .../records/N/files/NAME)"
    )


@dataclass(frozen=True)
class ResolvedModel:
    """A reference resolved to one concrete file. For Zenodo: ``record`` and ``file``; for a
    local model: ``path``. ``card`` comes from the catalog when known (a ``model-card.json``
    inside the zip, found by :func:`unpack`, takes precedence). ``notices`` are messages for the
    user, e.g. which version a concept id resolved to."""

    reference: str
    kind: str  # "zenodo" | "local"
    zenodo_url: str = DEFAULT_ZENODO_URL
    record: ZenodoRecord | None = None
    file: ZenodoFile | None = None
    path: Path | None = None
    card: ModelCard | None = None
    catalog_id: str | None = None
    notices: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        if self.card is not None:
            return self.card.name
        if self.record is not None:
            return self.record.title
        return self.path.name if self.path else self.reference

    @property
    def md5(self) -> str | None:
        return self.file.md5 if self.file is not None else None

    @property
    def source_label(self) -> str:
        """Short provenance for exports: ``zenodo:N/FILE (DOI, version V)`` or the local path."""
        if self.record is None:
            return str(self.path)
        extra = ", ".join(x for x in (self.record.doi, f"version {self.record.version}" if self.record.version else None) if x)
        return f"zenodo:{self.record.id}/{self.file.key}" + (f" ({extra})" if extra else "")


def resolve(reference: str, *, zenodo_url: str = DEFAULT_ZENODO_URL, catalog=None, file: str | None = None,
            client: ZenodoClient | None = None) -> ResolvedModel:
    """Resolve ``reference`` to one model file (network: record metadata only).

    ``file`` picks a file of the record explicitly (after :class:`~app.zenodo.AmbiguousModelFileError`).
    ``client`` overrides the HTTP client (transport, retries, notices); its ``zenodo_url`` is
    replaced by the one a reference URL names, if any."""
    parsed = parse_reference(reference, catalog=catalog)
    if parsed.kind == "local":
        return ResolvedModel(reference=reference, kind="local", zenodo_url=zenodo_url, path=parsed.path)
    card = None
    catalog_id = None
    record_id = parsed.record_id
    if parsed.kind == "catalog":
        entry = catalog.get(parsed.catalog_id)
        card, catalog_id, record_id = entry.card, entry.id, entry.zenodo_record
        if entry.reference is not None:  # a user entry naming a DOI / URL / file: resolve that
            resolved = resolve(entry.reference, zenodo_url=zenodo_url, file=file, client=client)
            return ResolvedModel(**{**vars(resolved), "card": card or resolved.card, "catalog_id": entry.id})
        if record_id is None:
            raise ModelSourceError(f"catalog entry {entry.id!r} has no Zenodo record to download")
        if file is None and card is not None and card.source is not None:
            file = card.source.file
    server = (parsed.zenodo_url or zenodo_url).rstrip("/")
    client = _client_for(client, server)
    if parsed.kind == "doi":
        record = client.find_by_doi(parsed.doi)
        if record is None:
            raise ModelSourceError(f"DOI {parsed.doi} is not a Zenodo DOI and no record on {server} carries it")
    else:
        record = client.get_record(record_id)
    chosen = choose_model_file(record, file or parsed.file)
    return ResolvedModel(reference=reference, kind="zenodo", zenodo_url=server, record=record, file=chosen,
                         card=card, catalog_id=catalog_id, notices=tuple(record.notices))


def _client_for(client: ZenodoClient | None, server: str) -> ZenodoClient:
    """``client`` itself, or a copy of its settings pointed at ``server``."""
    if client is None:
        return ZenodoClient(zenodo_url=server)
    if client.zenodo_url == server.rstrip("/"):
        return client
    return ZenodoClient(zenodo_url=server, transport=client.transport, max_retries=client.max_retries,
                        max_wait_seconds=client.max_wait_seconds, sleep=client.sleep, on_notice=client.on_notice,
                        notices=client.notices)


# -- fetching ------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/vitrine`` or ``~/.cache/vitrine``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vitrine"


@dataclass
class ModelCache:
    """Downloaded model files on disk, keyed by record id + MD5 (so a new version never reuses an
    old file). Every read re-verifies the MD5; a corrupt entry is deleted and reported."""

    root: Path = field(default_factory=default_cache_dir)
    on_notice: Callable[[str], None] | None = None

    def path_for(self, record_id: int, md5: str, key: str) -> Path:
        safe_key = re.sub(r"[^A-Za-z0-9._-]", "_", key) or "model"
        return Path(self.root) / f"zenodo-{int(record_id)}-{md5}" / safe_key

    def get(self, record_id: int, md5: str, key: str) -> bytes | None:
        path = self.path_for(record_id, md5, key)
        if not path.is_file():
            return None
        data = path.read_bytes()
        if hashlib.md5(data).hexdigest() != md5:
            path.unlink()
            if self.on_notice:
                self.on_notice(f"cached copy of {key} ({path}) was corrupt and has been deleted; downloading again")
            return None
        return data

    def put(self, record_id: int, md5: str, key: str, data: bytes) -> Path:
        path = self.path_for(record_id, md5, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + f".part-{os.getpid()}")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        return path


def fetch(resolved: ResolvedModel, *, client: ZenodoClient | None = None, on_progress: ProgressCallback | None = None,
          cancel: CancelCheck | None = None, cache: ModelCache | None = None) -> bytes:
    """The bytes of the chosen file (a zip or a ``.tflite``), MD5-verified. Local folders have no
    single file: use :func:`unpack` / :func:`open_model` on them directly."""
    if resolved.kind == "local":
        if resolved.path.is_dir():
            raise ModelSourceError(f"{resolved.path} is a folder; it is read by open_model/unpack, not fetched as one file")
        try:
            return resolved.path.read_bytes()
        except OSError as exc:
            raise ModelSourceError(f"cannot read model file {resolved.path}: {exc.strerror}") from exc
    record, file = resolved.record, resolved.file
    if cache is not None and file.md5:
        cached = cache.get(record.id, file.md5, file.key)
        if cached is not None:
            if on_progress is not None:
                on_progress(len(cached), len(cached))
            return cached
    client = _client_for(client, resolved.zenodo_url)
    data = client.download(file, on_progress=on_progress, cancel=cancel)
    if cache is not None and file.md5:
        try:
            cache.put(record.id, file.md5, file.key, data)
        except OSError as exc:  # the model is in memory and verified; only reuse is lost
            if cache.on_notice:
                cache.on_notice(f"could not write the model cache {cache.root}: {exc.strerror or exc}; continuing without it")
    return data


# -- unpacking -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelPackage:
    """A model ready for the engine. ``format`` is ``"tfjs-layers"`` (``files``: name -> bytes,
    relative to ``model.json``) or ``"tflite"`` (``tflite``: the flatbuffer bytes). ``card`` is the
    ``model-card.json`` found beside the model, if any."""

    format: str
    name: str
    files: Mapping[str, bytes] | None = None
    tflite: bytes | None = None
    card: ModelCard | None = None

    @property
    def engine_input(self):
        """What ``app.load_model`` takes for this package."""
        return self.tflite if self.format == "tflite" else dict(self.files)


_IGNORED_ENTRY = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$)")
_NOT_RUNNABLE_SUFFIXES = (".h5", ".hdf5", ".keras", ".pb", ".onnx", ".pt", ".pth", ".ckpt")


def is_tflite(data: bytes) -> bool:
    """TFLite flatbuffers carry the file identifier ``TFL3`` at bytes 4..8."""
    return len(data) >= 8 and data[4:8] == b"TFL3"


def unpack(data: bytes | None, name: str, *, path: Path | None = None) -> ModelPackage:
    """Detect what ``data`` (a zip or ``.tflite``; or the folder / ``model.json`` at ``path``) holds."""
    if path is not None and path.is_dir():
        return _package_from_files(_read_folder(path), str(path))
    if path is not None and path.suffix.lower() == ".json":
        return _package_from_files(_read_folder(path.parent), str(path), model_json=path.name)
    if data is None:
        raise ModelSourceError(f"no bytes to unpack for {name}")
    if is_tflite(data) or name.lower().endswith(".tflite"):
        if not is_tflite(data):
            raise ModelFormatError(f"{name} is not a TFLite flatbuffer (no 'TFL3' identifier at byte 4)")
        return ModelPackage("tflite", name, tflite=data)
    if data[:4] != b"PK\x03\x04" and data[:4] != b"PK\x05\x06":
        raise ModelFormatError(f"{name} is neither a zip archive nor a TFLite model (starts with {data[:8]!r})")
    from .archive import read_zip  # the engine helper's zip reader (with zip-bomb caps)

    return _package_from_files(read_zip(data, name), name)


def _read_folder(folder: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            files[path.relative_to(folder).as_posix()] = path.read_bytes()
    return files


def _package_from_files(entries: Mapping[str, bytes], name: str, *, model_json: str | None = None) -> ModelPackage:
    entries = {k: v for k, v in entries.items() if not _IGNORED_ENTRY.search(k) and not k.endswith("/")}
    listing = ", ".join(sorted(entries)) or "(empty)"
    if model_json is not None:
        json_names = [model_json]
    else:
        json_names = [k for k in entries if k.rsplit("/", 1)[-1] == "model.json"]
        if not json_names:  # a converter output renamed by its author: look inside the JSON files
            json_names = [k for k in entries if k.lower().endswith(".json") and _looks_like_tfjs(entries[k])]
    tflite_names = [k for k in entries if k.lower().endswith(".tflite")]
    if json_names and tflite_names:
        raise ModelFormatError(f"{name} holds both a TF.js model ({', '.join(json_names)}) and a TFLite model "
                               f"({', '.join(tflite_names)}); keep only one in the archive")
    if len(json_names) > 1 or len(tflite_names) > 1:
        raise ModelFormatError(f"{name} holds several models ({', '.join(json_names + tflite_names)}); "
                               f"one model per archive is expected")
    if tflite_names:
        key = tflite_names[0]
        folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        return ModelPackage("tflite", name, tflite=entries[key], card=_card_beside(entries, folder, name))
    if json_names:
        key = json_names[0]
        folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        _check_tfjs_format(entries[key], f"{name}:{key}")
        files = {k[len(folder):]: v for k, v in entries.items() if k.startswith(folder)}
        if key != folder + "model.json":  # the engine looks for model.json
            files["model.json"] = files.pop(key[len(folder):])
        return ModelPackage("tfjs-layers", name, files=files, card=_card_beside(entries, folder, name))
    unrunnable = [k for k in entries if k.lower().endswith(_NOT_RUNNABLE_SUFFIXES)]
    if unrunnable:
        raise UnsupportedFormatError(
            f"{name} holds {', '.join(unrunnable)}, a format Vitrine cannot run in the browser; convert it to "
            f"TF.js (tensorflowjs_converter --input_format keras --output_format tfjs_layers_model) or TFLite"
        )
    raise ModelFormatError(f"{name} holds no model.json (TF.js) or .tflite model; entries: {listing}. A runnable "
                           f"zip holds a TF.js layers-model (model.json with its weight files) or one .tflite file")


def _looks_like_tfjs(data: bytes) -> bool:
    return b'"modelTopology"' in data and b'"weightsManifest"' in data


def _check_tfjs_format(data: bytes, where: str) -> None:
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{where} is not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise ModelFormatError(f"{where} must be a JSON object, got {type(obj).__name__}")
    topology = obj.get("modelTopology")
    fmt = obj.get("format")
    if fmt == "graph-model" or (fmt is None and isinstance(topology, dict) and "node" in topology):
        raise UnsupportedFormatError(
            f"{where} is a TF.js graph-model, which Vitrine does not support yet; export a layers-model "
            f"(tensorflowjs_converter --output_format tfjs_layers_model) or a TFLite model instead"
        )
    if fmt not in (None, "layers-model"):
        raise UnsupportedFormatError(f"{where} has TF.js format {fmt!r}; Vitrine runs 'layers-model'")


def _card_beside(entries: Mapping[str, bytes], folder: str, name: str) -> ModelCard | None:
    for candidate in (folder + CARD_FILENAME, CARD_FILENAME):
        if candidate in entries:
            return load_card(entries[candidate], f"{name}:{candidate}")
    return None


# -- all together --------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpenedModel:
    """A loaded model with its card (may be ``None`` when neither the zip nor the catalog has
    one) and provenance."""

    model: object
    card: ModelCard | None
    package: ModelPackage
    resolved: ResolvedModel
    md5: str


def open_model(resolved: ResolvedModel, *, data: bytes | None = None, **fetch_options) -> OpenedModel:
    """Fetch (unless ``data`` is given), unpack and load ``resolved``. The card is the zip's own
    ``model-card.json`` if present, else the catalog's; its ``source`` is filled in."""
    from . import load_model

    is_folder = resolved.kind == "local" and (resolved.path.is_dir() or resolved.path.suffix.lower() == ".json")
    if data is None and not is_folder:
        data = fetch(resolved, **fetch_options)
    if resolved.kind == "local":
        package = unpack(data, str(resolved.path), path=resolved.path if is_folder else None)
    else:
        package = unpack(data, f"Zenodo record {resolved.record.id} file {resolved.file.key}")
    md5 = hashlib.md5(data).hexdigest() if data is not None else _folder_digest(package)
    if resolved.file is not None and resolved.file.md5:
        verify_md5(data, resolved.file.md5, name=resolved.file.key)
    card = package.card or resolved.card
    if card is not None:
        if resolved.record is not None:
            card = card.with_source(zenodo_id=resolved.record.id, doi=resolved.record.doi, md5=md5,
                                    version=resolved.record.version, file=resolved.file.key)
        else:
            card = card.with_source(md5=md5, file=str(resolved.path))
    model = load_model(package.engine_input, name=package.name)  # errors name the file, not "<tflite bytes>"
    return OpenedModel(model=model, card=card, package=package, resolved=resolved, md5=md5)


def _folder_digest(package: ModelPackage) -> str:
    digest = hashlib.md5()
    for key in sorted(package.files or {}):
        digest.update(key.encode())
        digest.update(package.files[key])
    return digest.hexdigest()
