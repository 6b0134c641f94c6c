"""A fake Zenodo server for tests (CPython CLI tests and browser tests alike). Stdlib only.

It answers in the JSON shape of Zenodo's public REST API for the records you register, with
Zenodo's CORS behaviour: everything under ``/api/`` carries ``Access-Control-Allow-Origin: *``
(and ``OPTIONS`` preflights are answered), the non-API download URL
``/records/{id}/files/{key}`` carries no CORS header (so a browser cannot read it).

Usage::

    with FakeZenodo() as zenodo:                      # 127.0.0.1, random free port
        zenodo.add_record(123, {"model.tfjs.zip": zip_bytes}, title="Demo", version="1.0")
        zenodo.add_record(124, {...}, concept_id=100, version="1.1")   # 100 -> newest version
        zenodo.rate_limit(times=2, retry_after=0)     # the next 2 requests answer 429
        zenodo.fail(500, times=1, path="/api/records/123")
        zenodo.hang(times=1, path="/api/records/123")  # no answer at all until drop/release
        zenodo.truncate(123, "model.tfjs.zip", after_bytes=100)            # every download
        zenodo.truncate(123, "model.tfjs.zip", after_bytes=100, times=1)   # the next one only
        zenodo.corrupt(123, "model.tfjs.zip", times=1)  # next body: right length, wrong bytes
        zenodo.slow_body(123, "model.tfjs.zip", chunk_bytes=4096, delay_seconds=0.05,
                         stall_after=50_000)  # throttled; holds the connection open at 50 000 B
        zenodo.release_stalled()                      # a stalled body sends the rest
        zenodo.drop_stalled()                         # ... or closes: connection lost mid-body
        zenodo.reset_faults()                         # forget all failures and body faults
        zenodo.wrong_checksum(123, "model.tfjs.zip")  # publish a wrong md5
        zenodo.url          # "http://127.0.0.1:PORT"  (pass as --zenodo-url / zenodo_url=)
        zenodo.requests     # [RequestLog(method, path, headers, at), ...] for assertions
        zenodo.transfers    # [TransferLog(path, sent, total, outcome), ...] one per file body
        zenodo.wait_for_transfer(lambda t: t.outcome == "client closed")   # blocks, with a timeout

A record id that was never registered answers 404 (``{"status": 404, "message": ...}``), like
Zenodo does for concept ids on ``/api/records/{id}``. ``python fake_zenodo.py --port 8765
--record 123=model.zip`` serves files by hand for manual browser checks.

Pytest: ``tests/zenodo/conftest.py`` provides the ``fake_zenodo`` fixture. Other test folders
(the root conftest puts the repo root on ``sys.path``) use::

    from tests.zenodo.fake_zenodo import FakeZenodo, make_zip, fake_zenodo_fixture
    fake_zenodo = pytest.fixture(fake_zenodo_fixture)

In a browser test the page must be served from another origin (the root conftest's
``static_server``) so that CORS applies; ``test_fake_zenodo_browser.py`` shows Chromium reading
``/api/...`` and being refused ``/records/{id}/files/{key}``. A page with a Content-Security-Policy
must list ``fake.url`` in ``connect-src``.
"""

from __future__ import annotations

import hashlib
import io
import json
import select
import socket
import threading
import time
import urllib.parse
import uuid
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Type, Retry-After, X-RateLimit-Limit, "
                                     "X-RateLimit-Remaining, X-RateLimit-Reset",
}


@dataclass
class RequestLog:
    method: str
    path: str
    headers: dict
    at: float = field(default_factory=time.monotonic)  # time.monotonic() when it arrived


@dataclass
class TransferLog:
    """One file body as the server sent it. ``outcome``: ``"complete"``, ``"truncated"`` (the
    server closed early on purpose), ``"client closed"`` (the browser / client went away: a
    cancelled or failed download) or ``"dropped"`` (:meth:`FakeZenodo.drop_stalled`)."""

    path: str
    sent: int
    total: int
    outcome: str = "sending"


@dataclass
class _BodyFault:
    """How the next ``times`` bodies of one file misbehave (``times`` None: every body)."""

    times: int | None
    truncate_after: int | None = None
    corrupt: bool = False
    chunk_bytes: int | None = None
    delay_seconds: float = 0.0
    stall_after: int | None = None

    def take(self) -> bool:
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


@dataclass
class _File:
    key: str
    data: bytes
    md5: str
    file_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    faults: list = field(default_factory=list)  # [_BodyFault], first one with times left applies


@dataclass
class _Record:
    id: int
    concept_id: int
    title: str
    version: str | None
    files: dict
    metadata: dict
    order: int


@dataclass
class _Failure:
    status: int | None  # None: no answer at all (hang)
    times: int
    path: str | None
    retry_after: str | None


def make_zip(files: dict) -> bytes:
    """Zip ``{name: bytes}`` in memory (deflated)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class FakeZenodo:
    """See the module docstring. Thread-safe enough for tests: configuration happens before the
    requests it affects."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._records: dict[int, _Record] = {}
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._drop = threading.Event()
        self.requests: list[RequestLog] = []
        self.transfers: list[TransferLog] = []
        self.unanswered: list[tuple[str, str]] = []  # (path, how it ended) per hang()ed request
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # .. lifecycle ..

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeZenodo":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._drop.set()  # a stalled body must not keep its handler thread alive
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeZenodo":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # .. configuration ..

    def add_record(self, record_id: int, files: dict, *, title: str | None = None, version: str | None = None,
                   concept_id: int | None = None, metadata: dict | None = None) -> dict:
        """Register a published record holding ``files`` (``{key: bytes}``). Records sharing a
        ``concept_id`` are versions of one concept, newest = registered last. Returns its JSON."""
        with self._lock:
            record = _Record(
                id=int(record_id),
                concept_id=int(concept_id) if concept_id is not None else int(record_id) - 1,
                title=title or f"Record {record_id}",
                version=version,
                files={key: _File(key, data, hashlib.md5(data).hexdigest()) for key, data in files.items()},
                metadata=dict(metadata or {}),
                order=len(self._records),
            )
            self._records[record.id] = record
        return self.record_json(record.id)

    def rate_limit(self, *, times: int = 1, retry_after: float | str | None = 0, path: str | None = None) -> None:
        """The next ``times`` matching requests answer 429 with ``Retry-After`` (omitted if None)."""
        self.fail(429, times=times, path=path, retry_after=retry_after)

    def fail(self, status: int, *, times: int = 1, path: str | None = None, retry_after: float | str | None = None) -> None:
        """The next ``times`` requests whose path starts with ``path`` (any if None) answer ``status``."""
        with self._lock:
            self._failures.append(_Failure(status, times, path, None if retry_after is None else str(retry_after)))

    def hang(self, *, times: int = 1, path: str | None = None) -> None:
        """The next ``times`` requests whose path starts with ``path`` get no answer at all (not
        even a status line): the server holds the connection like a stalled body (released,
        dropped or closed by the client, see :meth:`slow_body`); ``unanswered`` logs how each ended."""
        with self._lock:
            self._failures.append(_Failure(None, times, path, None))
            self._release.clear()
            self._drop.clear()

    def truncate(self, record_id: int, key: str, *, after_bytes: int, times: int | None = None) -> None:
        """Downloads of this file announce the full Content-Length but the server closes the
        connection after ``after_bytes`` (the next ``times`` downloads; every one if None)."""
        self._add_fault(record_id, key, _BodyFault(times, truncate_after=after_bytes))

    def corrupt(self, record_id: int, key: str, *, times: int | None = 1) -> None:
        """The next ``times`` downloads send the full length with one byte flipped in the middle
        (the published MD5 stays right, so the client sees a checksum mismatch)."""
        self._add_fault(record_id, key, _BodyFault(times, corrupt=True))

    def slow_body(self, record_id: int, key: str, *, chunk_bytes: int = 4096, delay_seconds: float = 0.05,
                  stall_after: int | None = None, times: int | None = 1) -> None:
        """The next ``times`` downloads are throttled: ``chunk_bytes`` every ``delay_seconds``.
        With ``stall_after`` the server stops sending at that many bytes and holds the connection
        open until :meth:`release_stalled` (then it sends the rest), :meth:`drop_stalled` (then it
        closes: a connection lost mid-download) or the client goes away (logged as
        ``"client closed"``), so a test can act mid-download without racing the transfer."""
        self._add_fault(record_id, key, _BodyFault(times, chunk_bytes=chunk_bytes, delay_seconds=delay_seconds,
                                                   stall_after=stall_after))

    def release_stalled(self) -> None:
        """Let every stalled body (now and later) send its remaining bytes."""
        self._release.set()

    def drop_stalled(self) -> None:
        """Close every stalled body's connection (now and later) without sending the rest."""
        self._drop.set()

    def _add_fault(self, record_id: int, key: str, fault: _BodyFault) -> None:
        with self._lock:
            self._records[record_id].files[key].faults.append(fault)
            self._release.clear()
            self._drop.clear()

    def _take_fault(self, f: _File) -> _BodyFault | None:
        with self._lock:
            for fault in f.faults:
                if fault.take():
                    return fault
        return None

    def wait_for_transfer(self, predicate, *, timeout: float = 60.0) -> TransferLog:
        """Block until a logged transfer satisfies ``predicate`` (e.g. the browser closed the
        connection after a cancel); AssertionError naming the transfers seen after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for transfer in list(self.transfers):
                if predicate(transfer):
                    return transfer
            time.sleep(0.05)
        raise AssertionError(f"no matching transfer within {timeout} s; transfers: {self.transfers}")

    def wrong_checksum(self, record_id: int, key: str) -> str:
        """Publish a wrong MD5 for this file (the bytes stay right); returns the published value."""
        f = self._records[record_id].files[key]
        f.md5 = hashlib.md5(f.data + b"tampered").hexdigest()
        return f.md5

    def reset_faults(self) -> None:
        """Forget every configured failure and body fault (a test that failed half-way may leave
        some behind); stalled bodies are dropped."""
        with self._lock:
            self._failures.clear()
            for record in self._records.values():
                for f in record.files.values():
                    f.faults.clear()
        self._drop.set()

    def clear_log(self) -> None:
        self.requests.clear()
        self.transfers.clear()
        self.unanswered.clear()

    # .. JSON in Zenodo's shape ..

    def record_json(self, record_id: int) -> dict:
        record = self._records[record_id]
        api = f"{self.url}/api"
        versions = sorted((r for r in self._records.values() if r.concept_id == record.concept_id), key=lambda r: r.order)
        metadata = {
            "title": record.title,
            "doi": f"10.5281/zenodo.{record.id}",
            "publication_date": "2023-03-30",
            "description": f"<p>{record.title}</p>",
            "creators": [{"name": "Tester, Ada", "affiliation": "Vitrine tests"}],
            "license": {"id": "cc-by-4.0"},
            "resource_type": {"title": "Other", "type": "other"},
            "relations": {"version": [{"index": versions.index(record), "is_last": versions[-1] is record}]},
        }
        if record.version is not None:
            metadata["version"] = record.version
        metadata.update(record.metadata)
        return {
            "id": record.id,
            "recid": str(record.id),
            "conceptrecid": str(record.concept_id),
            "doi": f"10.5281/zenodo.{record.id}",
            "conceptdoi": f"10.5281/zenodo.{record.concept_id}",
            "doi_url": f"https://doi.org/10.5281/zenodo.{record.id}",
            "created": "2023-03-30T14:35:08.970747+00:00",
            "updated": "2023-03-30T14:35:08.970747+00:00",
            "title": record.title,
            "state": "done",
            "submitted": True,
            "metadata": metadata,
            "files": [
                {
                    "id": f.file_id,
                    "key": f.key,
                    "size": len(f.data),
                    "checksum": f"md5:{f.md5}",
                    "links": {"self": f"{api}/records/{record.id}/files/{urllib.parse.quote(f.key)}/content"},
                }
                for f in record.files.values()
            ],
            "links": {
                "self": f"{api}/records/{record.id}",
                "self_html": f"{self.url}/records/{record.id}",
                "doi": f"https://doi.org/10.5281/zenodo.{record.id}",
                "files": f"{api}/records/{record.id}/files",
                "latest": f"{api}/records/{versions[-1].id}/versions/latest",
            },
        }

    def _search(self, params: dict) -> dict:
        query = params.get("q", [""])[0]
        all_versions = params.get("all_versions", ["false"])[0].lower() in ("true", "1", "")
        size = int(params.get("size", ["10"])[0])
        records = list(self._records.values())
        if query.startswith("conceptrecid:"):
            wanted = int(query.split(":", 1)[1].strip('"'))
            records = [r for r in records if r.concept_id == wanted]
        elif query.startswith("recid:"):
            wanted = int(query.split(":", 1)[1].strip('"'))
            records = [r for r in records if r.id == wanted]
        elif query.startswith("doi:"):
            wanted = query.split(":", 1)[1].strip('"').lower()
            records = [r for r in records if str(r.metadata.get("doi", f"10.5281/zenodo.{r.id}")).lower() == wanted]
        elif query:
            records = [r for r in records if query.lower() in r.title.lower()]
        if not all_versions:
            latest = {}
            for r in sorted(records, key=lambda r: r.order):
                latest[r.concept_id] = r
            records = list(latest.values())
        sort = params.get("sort", ["bestmatch"])[0]
        if sort in ("-version", "mostrecent"):
            records.sort(key=lambda r: r.order, reverse=True)
        elif sort == "version":
            records.sort(key=lambda r: r.order)
        hits = [self.record_json(r.id) for r in records[:size]]
        return {"hits": {"hits": hits, "total": len(records)}, "links": {"self": f"{self.url}/api/records"}, "aggregations": {}}

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.times > 0 and (failure.path is None or path.startswith(failure.path)):
                    failure.times -= 1
                    return failure
        return None


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeZenodo
    protocol_version = "HTTP/1.0"  # one request per connection: a truncated body is a closed socket

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    # .. plumbing ..

    def _send(self, status: int, body: bytes, *, content_type: str, cors: bool, headers: dict | None = None,
              declared_length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if declared_length is None else declared_length))
        if cors:
            for name, value in CORS_HEADERS.items():
                self.send_header(name, value)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, *, cors: bool = True, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), content_type="application/json", cors=cors, headers=headers)

    def _not_found(self, message: str, *, cors: bool) -> None:
        self._json(404, {"status": 404, "message": message}, cors=cors)

    # .. verbs ..

    def do_OPTIONS(self):
        self._log()
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/api/"):
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
            self.send_header("Access-Control-Allow-Headers",
                             self.headers.get("Access-Control-Request-Headers") or "Accept, Content-Type")
            self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:  # like zenodo.org's non-API pages: no CORS, so the preflight fails in a browser
            self._send(405, b"Method Not Allowed", content_type="text/plain", cors=False)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self._log()
        fake = self.server_fake
        parts = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parts.path)
        is_api = path.startswith("/api/")
        failure = fake._take_failure(path)
        if failure is not None and failure.status is None:  # hang(): no answer until released
            outcome = self._stall()
            fake.unanswered.append((path, outcome or "released"))
            if outcome is not None:
                self.close_connection = True
                return
            failure = None
        if failure is not None:
            headers = {}
            if failure.status == 429:
                headers = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0"}
                if failure.retry_after is not None:
                    headers["Retry-After"] = failure.retry_after
            message = "Too many requests" if failure.status == 429 else "Internal server error"
            self._json(failure.status, {"status": failure.status, "message": message}, cors=is_api, headers=headers)
            return
        segments = [s for s in path.split("/") if s]
        if is_api:
            self._api(fake, segments[1:], urllib.parse.parse_qs(parts.query, keep_blank_values=True))
        else:
            self._html(fake, segments)

    def _api(self, fake: FakeZenodo, segments: list, params: dict) -> None:
        if segments == ["records"]:
            self._json(200, fake._search(params))
            return
        if len(segments) >= 2 and segments[0] == "records" and segments[1].isdigit():
            record = fake._records.get(int(segments[1]))
            if record is None:
                self._not_found("The persistent identifier does not exist.", cors=True)
                return
            rest = segments[2:]
            if not rest:
                self._json(200, fake.record_json(record.id))
                return
            if rest[0] == "files" and len(rest) >= 2:
                content = rest[-1] == "content"
                key = "/".join(rest[1:-1] if content else rest[1:])
                f = record.files.get(key)
                if f is None:
                    self._not_found(f"File {key} not found.", cors=True)
                elif content:
                    self._file(f, cors=True)
                else:
                    entry = next(e for e in fake.record_json(record.id)["files"] if e["key"] == key)
                    self._json(200, entry)
                return
        self._not_found("Not found.", cors=True)

    def _html(self, fake: FakeZenodo, segments: list) -> None:
        # /records/{id} and /records/{id}/files/{key}: no CORS headers, like zenodo.org
        if len(segments) >= 2 and segments[0] in ("records", "record") and segments[1].isdigit():
            record = fake._records.get(int(segments[1]))
            if record is not None and len(segments) == 2:
                page = f"<html><body><h1>{record.title}</h1></body></html>".encode()
                self._send(200, page, content_type="text/html; charset=utf-8", cors=False)
                return
            if record is not None and len(segments) >= 4 and segments[2] == "files":
                f = record.files.get("/".join(segments[3:]))
                if f is not None:
                    self._file(f, cors=False)
                    return
        self._send(404, b"<html><body>Not found</body></html>", content_type="text/html", cors=False)

    def _file(self, f: _File, *, cors: bool) -> None:
        fault = self.server_fake._take_fault(f)
        body = f.data
        if fault is not None and fault.corrupt and body:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
        end = len(body) if fault is None or fault.truncate_after is None else min(fault.truncate_after, len(body))
        self._send(200, b"", content_type="application/octet-stream", cors=cors, declared_length=len(body),
                   headers={"Content-Disposition": f'attachment; filename="{f.key}"'})
        if self.command == "HEAD":
            return
        transfer = TransferLog(path=self.path, sent=0, total=len(body))
        self.server_fake.transfers.append(transfer)
        chunk = (fault.chunk_bytes if fault is not None and fault.chunk_bytes else None) or len(body) or 1
        stall_at = fault.stall_after if fault is not None else None
        try:
            while transfer.sent < end:
                if stall_at is not None and transfer.sent >= stall_at:
                    outcome = self._stall()
                    stall_at = None
                    if outcome is not None:
                        transfer.outcome = outcome
                        return
                limit = end if stall_at is None else min(end, stall_at)
                piece = body[transfer.sent: min(limit, transfer.sent + chunk)]
                self.wfile.write(piece)
                self.wfile.flush()
                transfer.sent += len(piece)
                if fault is not None and fault.delay_seconds and transfer.sent < end:
                    time.sleep(fault.delay_seconds)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            transfer.outcome = "client closed"
            self.close_connection = True
            return
        transfer.outcome = "complete" if end == len(body) else "truncated"
        self.close_connection = True

    def _stall(self) -> str | None:
        """Hold the connection: None once released, else why it ended."""
        fake = self.server_fake
        while True:
            if fake._release.is_set():
                return None
            if fake._drop.is_set():
                self.connection.shutdown(socket.SHUT_RDWR)
                return "dropped"
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:  # a client that went away makes the socket readable with EOF (or a reset)
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return "client closed"
                except OSError:
                    return "client closed"
                time.sleep(0.05)  # unexpected bytes from the client: keep holding, without spinning

    def _log(self) -> None:
        self.server_fake.requests.append(RequestLog(self.command, self.path, dict(self.headers.items())))


def fake_zenodo_fixture():
    """Generator usable as a pytest fixture body: ``fake_zenodo = pytest.fixture(fake_zenodo_fixture)``."""
    with FakeZenodo() as server:
        yield server


def main(argv=None) -> None:  # pragma: no cover - manual use
    import argparse
    import pathlib
    import time

    parser = argparse.ArgumentParser(description="Serve files as fake Zenodo records.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--record", action="append", default=[], metavar="ID=FILE[,FILE...]")
    args = parser.parse_args(argv)
    server = FakeZenodo(args.host, args.port)
    for spec in args.record:
        record_id, _, paths = spec.partition("=")
        files = {pathlib.Path(p).name: pathlib.Path(p).read_bytes() for p in paths.split(",") if p}
        server.add_record(int(record_id), files)
    with server:
        print(f"fake Zenodo on {server.url}; Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
