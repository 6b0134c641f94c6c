"""Zenodo REST API client: records, concept (all-versions) ids, file choice and verified download.

Only the public, anonymous API is used:

* ``GET {base}/api/records/{id}`` -> record JSON (``id``, ``conceptrecid``, ``doi``,
  ``metadata``, ``files[] = {key, size, checksum: "md5:<hex>", links.self}``).
* A concept id answers 404 there; it is resolved with
  ``GET {base}/api/records?q=conceptrecid:{id}&all_versions=true&sort=-version`` and the newest
  version is used (the record says so in ``notices``).
* Files are downloaded from ``{base}/api/records/{id}/files/{key}/content``: unlike
  ``/records/{id}/files/{key}`` it sends CORS headers, so the browser can use the same URL.
* Anonymous use is rate-limited (HTTP 429); the client waits ``Retry-After`` seconds (bounded)
  and retries a bounded number of times, reporting each wait through ``on_notice``.

The pure helpers (:func:`record_from_json`, :func:`choose_model_file`, :func:`read_verified`)
take no transport, so browser glue that fetches with JavaScript can reuse them.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from .errors import CancelledError, ChecksumError, DownloadError, ModelSourceError
from .http import Transport, UrllibTransport

DEFAULT_ZENODO_URL = "https://zenodo.org"
ZENODO_DOI_PREFIX = "10.5281/zenodo."

ProgressCallback = Callable[[int, "int | None"], None]
CancelCheck = Callable[[], bool]

# Answers worth retrying after a wait: rate limiting and a gateway / server that is briefly away.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class RecordNotFoundError(ModelSourceError):
    """No Zenodo record (nor concept) has this id (``record``)."""

    def __init__(self, message: str, record: int | None = None):
        super().__init__(message)
        self.record = record


class RateLimitedError(DownloadError):
    """Zenodo kept answering 429 after the bounded retries."""


class NoRunnableFileError(ModelSourceError):
    """The record holds no file Vitrine can run; ``files`` lists what it does hold."""

    def __init__(self, message: str, files: Sequence[str], record: int | None = None):
        super().__init__(message)
        self.files = tuple(files)
        self.record = record


class AmbiguousModelFileError(ModelSourceError):
    """Several files could be the model; ``candidates`` lists their keys so a UI can ask the user,
    who then passes ``file=<key>``. ``record`` is the record id."""

    def __init__(self, message: str, record_id: int, candidates: Sequence[str]):
        super().__init__(message)
        self.record_id = self.record = record_id
        self.candidates = tuple(candidates)


@dataclass(frozen=True)
class ZenodoFile:
    key: str
    size: int | None
    md5: str | None
    url: str


@dataclass(frozen=True)
class ZenodoRecord:
    id: int
    concept_id: int | None
    doi: str | None
    title: str
    version: str | None
    publication_date: str | None
    description: str
    license: str | None
    creators: tuple[str, ...]
    files: tuple[ZenodoFile, ...]
    notices: tuple[str, ...] = ()

    def file(self, key: str) -> ZenodoFile:
        for f in self.files:
            if f.key == key:
                return f
        raise ModelSourceError(
            f"Zenodo record {self.id} has no file named {key!r}; files found: {_names(self.files)}"
        )


def _names(files: Iterable[ZenodoFile]) -> str:
    return ", ".join(f.key for f in files) or "(none)"


def record_from_json(obj: Mapping, *, zenodo_url: str = DEFAULT_ZENODO_URL, notices: Sequence[str] = ()) -> ZenodoRecord:
    """Build a :class:`ZenodoRecord` from the JSON of ``/api/records/{id}``. File URLs are always
    the CORS-enabled ``/api/records/{id}/files/{key}/content`` form under ``zenodo_url``."""
    try:
        record_id = int(obj["id"])
        metadata = obj.get("metadata") or {}
        raw_files = obj.get("files") or []
        if isinstance(raw_files, Mapping):  # the newer API may nest: {"entries": {...}}
            entries = raw_files.get("entries") or {}
            raw_files = list(entries.values()) if isinstance(entries, Mapping) else list(entries)
        files = []
        for item in raw_files:
            key = item["key"]
            checksum = item.get("checksum") or ""
            md5 = checksum[4:].lower() if checksum.startswith("md5:") else None
            size = item.get("size")
            files.append(ZenodoFile(
                key=key,
                size=int(size) if size is not None else None,
                md5=md5,
                url=file_content_url(zenodo_url, record_id, key),
            ))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelSourceError(f"Zenodo answered with an unexpected record layout ({exc!r}); is {zenodo_url} a Zenodo server?") from exc
    license_field = metadata.get("license")
    if isinstance(license_field, Mapping):
        license_field = license_field.get("id")
    concept = obj.get("conceptrecid")
    return ZenodoRecord(
        id=record_id,
        concept_id=int(concept) if concept not in (None, "") else None,
        doi=obj.get("doi") or metadata.get("doi"),
        title=metadata.get("title") or f"Zenodo record {record_id}",
        version=metadata.get("version"),
        publication_date=metadata.get("publication_date"),
        description=metadata.get("description") or "",
        license=license_field,
        creators=tuple(c.get("name", "") for c in metadata.get("creators") or [] if isinstance(c, Mapping)),
        files=tuple(files),
        notices=tuple(notices),
    )


def api_base(zenodo_url: str) -> str:
    return zenodo_url.rstrip("/") + "/api"


def file_content_url(zenodo_url: str, record_id: int, key: str) -> str:
    return f"{api_base(zenodo_url)}/records/{record_id}/files/{urllib.parse.quote(key, safe='')}/content"


# -- choosing the runnable file ------------------------------------------------------------------

_TFJS_HINTS = ("tfjs", "tensorflowjs", "tensorflow.js", "tf_js", "tf-js", "tensorflow-js")
_TFJS_TOKENS = {"js", "web", "browser"}  # whole words: "model_js.zip", "web-model.zip"
# Zips whose name says they hold something else than a runnable model.
_NOT_A_MODEL_HINTS = ("h5", "keras", "savedmodel", "saved_model", "pytorch", "torch", "onnx", "data",
                      "dataset", "eval", "metric", "result", "log", "source", "code", "notebook", "weights_only")


def _name_tokens(key: str) -> set[str]:
    import re

    return set(re.split(r"[^a-z0-9]+", key.lower()))


def classify_file(key: str) -> str:
    """``"model"`` (surely runnable: ``.tflite`` or a zip named like TF.js), ``"maybe"`` (a zip
    whose name does not say what it holds) or ``"other"``."""
    lower = key.lower()
    if lower.endswith(".tflite"):
        return "model"
    if lower.endswith(".zip"):
        if any(hint in lower for hint in _TFJS_HINTS) or _name_tokens(key[: -len(".zip")]) & _TFJS_TOKENS:
            return "model"
        if _name_tokens(key[: -len(".zip")]) & set(_NOT_A_MODEL_HINTS):
            return "other"
        return "maybe"
    return "other"


def choose_model_file(record: ZenodoRecord, file: str | None = None) -> ZenodoFile:
    """Pick the runnable file of ``record``: the explicit ``file`` key if given, else the single
    ``.tflite`` / TF.js-named zip, else the single zip of unknown content. Raises
    :class:`AmbiguousModelFileError` (with ``candidates``) or :class:`NoRunnableFileError`."""
    if file is not None:
        return record.file(file)
    sure = [f for f in record.files if classify_file(f.key) == "model"]
    maybe = [f for f in record.files if classify_file(f.key) == "maybe"]
    pool = sure or maybe
    if len(pool) == 1:
        return pool[0]
    if not record.files:
        raise NoRunnableFileError(
            f"Zenodo record {record.id} has no public files (restricted, embargoed or metadata-only record)", [],
            record.id)
    if not pool:
        raise NoRunnableFileError(
            f"Zenodo record {record.id} has no TF.js or TFLite model (a .tflite file or a zip holding "
            f"model.json); files found: {_names(record.files)}",
            [f.key for f in record.files],
            record.id,
        )
    raise AmbiguousModelFileError(
        f"Zenodo record {record.id} has several files that could be the model: {_names(pool)}; "
        f"choose one",
        record.id,
        [f.key for f in pool],
    )


# -- verified download ---------------------------------------------------------------------------

def read_verified(chunks: Iterable[bytes], *, name: str, expected_size: int | None, expected_md5: str | None,
                  on_progress: ProgressCallback | None = None, cancel: CancelCheck | None = None) -> bytes:
    """Collect a body chunk by chunk, reporting ``on_progress(done, total)`` and checking
    ``cancel()`` between chunks; then check the size (truncation) and the MD5 (Zenodo publishes
    MD5 only; WebCrypto has none, hence :mod:`hashlib`). A DownloadError from the chunks (the
    connection failed mid-body) is re-raised naming the file and the bytes received."""
    digest = hashlib.md5()
    parts = []
    done = 0
    if on_progress is not None:
        on_progress(0, expected_size)
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            break
        except DownloadError as exc:  # the transport lost the connection mid-body (e.g. timed out)
            raise interrupted_error(name, received=done, expected_size=expected_size, reason=str(exc)) from exc
        if cancel is not None and cancel():
            raise CancelledError(f"download of {name} cancelled after {done} bytes")
        if expected_size is not None and done + len(chunk) > expected_size:
            raise DownloadError(f"download of {name} is larger than the published {expected_size} bytes")
        digest.update(chunk)
        parts.append(chunk)
        done += len(chunk)
        if on_progress is not None:
            on_progress(done, expected_size)
    if cancel is not None and cancel():
        raise CancelledError(f"download of {name} cancelled after {done} bytes")
    if expected_size is not None and done != expected_size:
        raise DownloadError(
            f"download of {name} was truncated: received {done} of {expected_size} bytes; try again"
        )
    data = b"".join(parts)
    if expected_md5 is not None:
        verify_md5(data, expected_md5, name=name, digest=digest.hexdigest())
    return data


def verify_md5(data: bytes, expected_md5: str, *, name: str, digest: str | None = None) -> None:
    actual = digest or hashlib.md5(data).hexdigest()
    if actual != expected_md5.lower():
        raise ChecksumError(
            f"{name} is corrupt: its MD5 is {actual} but Zenodo publishes md5:{expected_md5.lower()}"
        )


# -- retrying after 429 / 5xx (shared by the client and the browser worker's download) -----------

def retry_wait_seconds(retry_after: str | None, attempt: int, *, max_wait: float = 60.0) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): the ``Retry-After`` header
    (delta-seconds or an HTTP date) when readable, else 1, 2, 4, ... s; always within
    ``0..max_wait``."""
    wait = None
    if retry_after:
        try:
            wait = float(retry_after)
        except ValueError:
            try:  # the other allowed form: an HTTP date
                wait = email.utils.parsedate_to_datetime(retry_after).timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                wait = None  # unreadable: fall back to exponential back-off
    if wait is None or wait != wait:  # NaN from float("nan")
        wait = 2.0 ** (attempt - 1)
    return min(max(wait, 0.0), max_wait)


def retry_notice(status: int, *, what: str, wait: float, attempt: int, max_retries: int) -> str:
    """What the user is told while Vitrine waits to retry, e.g. "Zenodo rate-limited the request
    for file model.zip; retrying in 3 s (retry 1 of 3)"."""
    reason = "rate-limited the request" if status == 429 else f"answered HTTP {status}"
    return f"Zenodo {reason} for {what}; retrying in {wait:g} s (retry {attempt} of {max_retries})"


def retries_exhausted_error(status: int, *, what: str, url: str, max_retries: int) -> DownloadError:
    """The error once ``max_retries`` retries still met ``status`` (429: :class:`RateLimitedError`)."""
    if status == 429:
        return RateLimitedError(
            f"Zenodo rate-limited the request for {what} (HTTP 429) and still did after "
            f"{max_retries} retries; anonymous use allows about 60 requests per minute, "
            f"wait a minute and try again"
        )
    return DownloadError(f"Zenodo is unavailable (HTTP {status}) for {what} after {max_retries} retries: {url}",
                         status=status)


def interrupted_error(name: str, *, received: int, expected_size: int | None, reason: str) -> DownloadError:
    """A body whose connection failed mid-way (browser fetch: the reader rejects; offline, server
    gone, a Content-Length the server did not honour). Worded like a truncation, because that is
    what happened to the file."""
    of = f" of {expected_size}" if expected_size is not None else ""
    return DownloadError(
        f"download of {name} was truncated: received {received}{of} bytes before the connection failed "
        f"({reason}); check the network connection and try again"
    )


OFFLINE_REASON = "the browser reports that it is offline"


def stalled_error(name: str, *, received: int, expected_size: int | None, seconds: float) -> DownloadError:
    """A body that stopped arriving: no byte for ``seconds`` while the connection stayed open
    (a dead link that never reports itself; the browser would wait for it indefinitely)."""
    of = f" of {expected_size}" if expected_size is not None else ""
    return DownloadError(
        f"download of {name} stalled: no data arrived for {seconds:g} s after {received}{of} bytes, "
        f"so the connection was given up; check the network connection and try again"
    )


def no_answer_error(name: str, *, url: str, seconds: float) -> DownloadError:
    """A request that got no answer (not even the headers) within ``seconds``."""
    return DownloadError(
        f"could not download {name}: {url} sent no answer within {seconds:g} s; "
        f"check the network connection and try again"
    )


# -- the client ----------------------------------------------------------------------------------

@dataclass
class ZenodoClient:
    """Talks to one Zenodo server (``zenodo_url`` without ``/api``) through a :class:`Transport`.

    ``max_retries`` bounds the retries after HTTP 429 / 502 / 503 / 504; each wait is
    ``Retry-After`` (or exponential back-off when absent) capped at ``max_wait_seconds``.
    ``sleep`` is injectable (tests, browser workers); ``on_notice`` receives human-readable
    messages such as "Zenodo rate-limited us; retrying in 2 s (retry 1 of 3)"; they are also
    kept in ``notices``.
    """

    zenodo_url: str = DEFAULT_ZENODO_URL
    transport: Transport | None = None
    max_retries: int = 3
    max_wait_seconds: float = 60.0
    sleep: Callable[[float], None] | None = None  # None: time.sleep, looked up when needed
    on_notice: Callable[[str], None] | None = None
    notices: list = field(default_factory=list)

    def __post_init__(self):
        self.zenodo_url = self.zenodo_url.rstrip("/")
        if self.transport is None:
            self.transport = UrllibTransport()

    def notice(self, message: str) -> None:
        self.notices.append(message)
        if self.on_notice is not None:
            self.on_notice(message)

    # .. HTTP with bounded retries ..

    def _get(self, url: str, *, what: str, accept_json: bool = True, cancel: CancelCheck | None = None):
        headers = {"Accept": "application/json"} if accept_json else {}
        attempt = 0
        while True:
            response = self.transport.get(url, headers=headers)
            if response.status not in RETRY_STATUSES:
                return response
            response.close()
            if attempt >= self.max_retries:
                raise retries_exhausted_error(response.status, what=what, url=url, max_retries=self.max_retries)
            attempt += 1
            wait = retry_wait_seconds(response.header("retry-after"), attempt, max_wait=self.max_wait_seconds)
            self.notice(retry_notice(response.status, what=what, wait=wait, attempt=attempt, max_retries=self.max_retries))
            (self.sleep or time.sleep)(wait)
            if cancel is not None and cancel():
                raise CancelledError(f"{what}: cancelled while waiting to retry")

    def _get_json(self, url: str, *, what: str):
        response = self._get(url, what=what)
        body = response.read()
        if response.status != 200:
            return response.status, body
        try:
            return 200, json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelSourceError(f"Zenodo answered {what} with invalid JSON ({exc}); URL {url}") from exc

    # .. records ..

    def get_record(self, record_id: int) -> ZenodoRecord:
        """The record ``record_id``; a concept (all-versions) id resolves to its newest version."""
        url = f"{api_base(self.zenodo_url)}/records/{int(record_id)}"
        status, payload = self._get_json(url, what=f"record {record_id}")
        if status == 200:
            return record_from_json(payload, zenodo_url=self.zenodo_url)
        if status in (404, 410):
            newest = self.newest_version(record_id)
            if newest is not None:
                return newest
            raise RecordNotFoundError(
                f"Zenodo record {record_id} not found (HTTP {status} from {url}, and it is not a concept id "
                f"either); check the number, and that the record is public",
                record_id,
            )
        raise DownloadError(f"Zenodo answered HTTP {status} for record {record_id} ({url}): {_snippet(payload)}",
                            status=status)

    def newest_version(self, concept_id: int) -> ZenodoRecord | None:
        """The newest version of concept ``concept_id``, or ``None`` if no record has it."""
        query = urllib.parse.urlencode(
            {"q": f"conceptrecid:{int(concept_id)}", "all_versions": "true", "sort": "-version", "size": "1"}
        )
        url = f"{api_base(self.zenodo_url)}/records?{query}"
        status, payload = self._get_json(url, what=f"versions of concept {concept_id}")
        if status != 200:
            raise DownloadError(
                f"Zenodo answered HTTP {status} when searching the versions of {concept_id} ({url}): {_snippet(payload)}",
                status=status,
            )
        try:
            hits = payload["hits"]["hits"]
            total = payload["hits"].get("total")
        except (KeyError, TypeError) as exc:
            raise ModelSourceError(f"Zenodo search answered an unexpected layout ({exc!r}); URL {url}") from exc
        if isinstance(total, Mapping):  # Elasticsearch style {"value": n}
            total = total.get("value")
        if not hits:
            return None
        newest = hits[0]
        version = (newest.get("metadata") or {}).get("version")
        version_text = f" {version}" if version else ""
        count_text = f" (of {total} {_plural(total, 'version')})" if total else ""
        message = (f"{concept_id} is a Zenodo concept id (all versions); using the newest version{version_text}: "
                   f"record {newest.get('id')}{count_text}")
        self.notice(message)
        return record_from_json(newest, zenodo_url=self.zenodo_url, notices=[message])

    def find_by_doi(self, doi: str) -> ZenodoRecord | None:
        """A record carrying a DOI not minted by Zenodo (search ``doi:"..."``)."""
        query = urllib.parse.urlencode({"q": f'doi:"{doi}"', "all_versions": "true", "size": "1"})
        url = f"{api_base(self.zenodo_url)}/records?{query}"
        status, payload = self._get_json(url, what=f"DOI {doi}")
        if status != 200:
            raise DownloadError(f"Zenodo answered HTTP {status} when searching DOI {doi} ({url}): {_snippet(payload)}",
                                status=status)
        hits = (payload.get("hits") or {}).get("hits") or []
        return record_from_json(hits[0], zenodo_url=self.zenodo_url) if hits else None

    # .. files ..

    def download(self, file: ZenodoFile, *, on_progress: ProgressCallback | None = None,
                 cancel: CancelCheck | None = None) -> bytes:
        """Download ``file`` with progress, cancellation, size and MD5 checks."""
        if cancel is not None and cancel():
            raise CancelledError(f"download of {file.key} cancelled before it started")
        response = self._get(file.url, what=f"file {file.key}", accept_json=False, cancel=cancel)
        if response.status != 200:
            body = response.read()
            if response.status == 404:
                raise DownloadError(f"file {file.key} not found on Zenodo (HTTP 404 from {file.url})", status=404)
            raise DownloadError(f"download of {file.key} failed: HTTP {response.status} from {file.url}: {_snippet(body)}",
                                status=response.status)
        expected = file.size
        if expected is None:
            length = response.header("content-length")
            expected = int(length) if length and length.isdigit() else None
        try:
            return read_verified(response.iter_chunks(), name=file.key, expected_size=expected,
                                 expected_md5=file.md5, on_progress=on_progress, cancel=cancel)
        finally:
            response.close()


def _plural(count: int, noun: str) -> str:
    return noun if count == 1 else noun + "s"


def _snippet(payload, limit: int = 200) -> str:
    if isinstance(payload, (bytes, bytearray)):
        payload = payload.decode("utf-8", "replace")
    text = payload if isinstance(payload, str) else json.dumps(payload)
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")
