"""A deliberately small HTTP transport interface, so the same Zenodo code runs in CPython and in
a browser worker.

Everything Vitrine needs from HTTP is ``GET url -> (status, headers, body chunks)``. The Zenodo
client (:mod:`app.zenodo`) talks only to a :class:`Transport`; CPython uses
:class:`UrllibTransport`, tests use the same class against a local fake server, and the browser
worker supplies its own implementation (see :class:`Transport` for the contract it must meet).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Protocol

from .errors import DownloadError

DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_CHUNK_BYTES = 256 * 1024


@dataclass
class Response:
    """One HTTP response. ``headers`` keys are lower-case. ``chunks`` is called once and yields
    the body as ``bytes`` pieces; a transport that cannot stream may yield the body in one piece.
    A body that ends early must simply stop yielding (the caller compares against the expected
    size and raises :class:`~app.errors.DownloadError`); a network failure mid-body must raise
    :class:`~app.errors.DownloadError`."""

    status: int
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    chunks: Callable[[], Iterable[bytes]] = lambda: iter(())
    close: Callable[[], None] = lambda: None

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def iter_chunks(self) -> Iterator[bytes]:
        try:
            yield from self.chunks()
        finally:
            self.close()

    def read(self) -> bytes:
        return b"".join(self.iter_chunks())


class Transport(Protocol):
    """What a transport must do (CPython: :class:`UrllibTransport`; browser: the worker glue).

    ``get(url, *, headers=None) -> Response``

    * Perform a plain ``GET`` with the given extra request headers. No cookies, no credentials.
    * Return a :class:`Response` for **every** HTTP status, including 4xx/5xx (do not raise on
      them): the Zenodo client needs the status, the ``Retry-After`` header of a 429 and the
      body of an error.
    * Lower-case the header names. In a browser only CORS-exposed headers are visible; that is
      fine, the client treats a missing ``Retry-After`` / ``Content-Length`` as unknown.
    * Follow redirects (``fetch`` does by default).
    * Raise :class:`~app.errors.DownloadError` (naming the URL and the reason) when no response
      arrives at all: DNS failure, connection refused, timeout, CORS rejection (which a browser
      reports as an opaque network ``TypeError``).
    * ``Response.chunks()`` yields the body as ``bytes`` (a Pyodide implementation converts each
      ``Uint8Array`` from ``response.body.getReader()`` with ``.to_bytes()``, or yields the whole
      ``arrayBuffer()`` at once if it cannot stream); it stops early, without raising, if the
      server closes the connection before the end, and raises ``DownloadError`` on a read error.
    * It must not import anything at module import time that CPython lacks: the browser
      implementation lives in the worker glue, never in this module.

    Because a synchronous ``get`` is awkward over JavaScript's promise-based ``fetch``, the glue
    may instead do the fetching itself and feed the chunks to
    :func:`app.zenodo.read_verified`, which applies the same size / MD5 / progress / cancel
    checks.
    """

    def get(self, url: str, *, headers: Mapping[str, str] | None = None) -> Response: ...


class UrllibTransport:
    """CPython transport built on :mod:`urllib.request` with a per-request timeout."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT_SECONDS, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 user_agent: str | None = None):
        self.timeout = timeout
        self.chunk_bytes = chunk_bytes
        if user_agent is None:
            from . import __version__

            user_agent = f"vitrine/{__version__}"
        self.user_agent = user_agent

    def get(self, url: str, *, headers: Mapping[str, str] | None = None) -> Response:
        # imported here: urllib.request pulls in http.client, email and ssl, which the browser
        # worker (its own transport) would otherwise compile at every start
        import urllib.error
        import urllib.request

        request_headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
        request_headers.update(headers or {})
        request = urllib.request.Request(url, headers=request_headers, method="GET")
        try:
            raw = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:  # a real response with an error status
            raw = exc
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DownloadError(f"could not reach {url}: {reason}") from exc
        response_headers = {name.lower(): value for name, value in raw.headers.items()}
        return Response(
            status=int(raw.status if hasattr(raw, "status") and raw.status is not None else raw.code),
            url=raw.geturl() or url,
            headers=response_headers,
            chunks=lambda: self._iter_body(raw, url),
            close=raw.close,
        )

    def _iter_body(self, raw, url: str) -> Iterator[bytes]:
        import http.client

        while True:
            try:
                chunk = raw.read(self.chunk_bytes)
            except http.client.IncompleteRead as exc:
                # the server closed early: hand over what arrived, the caller checks the size
                if exc.partial:
                    yield exc.partial
                return
            except (socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
                raise DownloadError(f"download from {url} failed while reading the body: {exc}") from exc
            if not chunk:
                return
            yield chunk
