"""Shared fixtures for the whole suite (owned by the site/foundation area).

Available in every test folder:

* ``repo_root`` / ``shared_anchors`` (../shared/anchors, skips when absent).
* ``built_site``: the static site built ONCE per session (per xdist worker) into a temp dir and
  served on ``http://127.0.0.1:<random port>``; its model host (CSP connect-src) is a second local
  server, ``built_site.model_origin``, that serves ``built_site.model_dir`` with CORS.
* ``static_server``: factory ``static_server(directory, cors=False) -> origin`` for more servers.
* ``browser``: headless Debian Chromium (/usr/bin/chromium) through Playwright, session-scoped.
* ``site_page``: a fresh context + page whose console errors / page errors FAIL the test at
  teardown unless allowed with ``site_page.allow_console_error(regex)``; every request URL is
  recorded in ``site_page.requests``. Open the site with ``site_page.open_site()``.
* ``engine_page``: the same kind of object, already open with the engine ready, shared by the
  whole session (saves a Pyodide boot per test); ``engine_page.engine_call(request, payload)``.
* ``blank_page``: like ``site_page`` without a site (file:// pages, tampered copies).

The page's CSP forbids string eval, so Playwright's ``wait_for_function`` (which evals in the
page) does not work on it: wait with selectors, e.g. ``site_page.wait_engine_ready()``.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ENGINE_BOOT_TIMEOUT_MS = 120_000

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_anchors() -> Path:
    """../shared/anchors (WebIPred facts); skips the test when the folder is not beside the repo."""
    anchors = SHARED_DIR / "anchors"
    if not anchors.is_dir():
        pytest.skip(f"{anchors} is absent (the read-only shared facts live beside the repo)")
    return anchors


# ---------------------------------------------------------------------------- static servers
class _CorsHandler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 - base-class signature
        pass


@pytest.fixture(scope="session")
def static_server():
    """Factory: serve a directory on 127.0.0.1 (random port) in a daemon thread; returns the origin."""
    import build

    servers = []

    def start(directory: Path, cors: bool = False) -> str:
        if cors:
            handler = functools.partial(_CorsHandler, directory=str(directory))
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        else:
            server = build.make_server(directory)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@dataclass
class BuiltSite:
    dist: Path
    origin: str
    model_dir: Path
    model_origin: str
    manifest: dict

    @property
    def url(self) -> str:
        return self.origin + "/index.html"


@pytest.fixture(scope="session")
def built_site(tmp_path_factory, static_server) -> BuiltSite:
    """Build dist/ once per session with a local model host, serve it, return where it lives."""
    import build

    root = tmp_path_factory.mktemp("site")
    dist = root / "dist"
    model_dir = root / "models"
    model_dir.mkdir()
    (model_dir / "probe.txt").write_text("model host reachable")
    dist.mkdir()  # the server needs the directory to exist; build() replaces it
    origin = static_server(dist)
    model_origin = static_server(model_dir, cors=True)
    try:
        manifest = build.build(dist, model_host=model_origin, use_cdn=not os.environ.get("VITRINE_NO_CDN"))
    except build.BuildError as exc:
        pytest.fail(f"building the site failed: {exc}")
    return BuiltSite(dist=dist, origin=origin, model_dir=model_dir, model_origin=model_origin, manifest=manifest)


# ---------------------------------------------------------------------------- browser
@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium via Playwright (never Playwright's downloaded browsers)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (CI must install the chromium package)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (./dev.sh test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@dataclass
class SitePage:
    """A Playwright page plus what it logged; see the module docstring."""

    page: object
    site: BuiltSite | None
    console_errors: list[str] = field(default_factory=list)
    console_warnings: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    allowed_errors: list[re.Pattern] = field(default_factory=list)

    def allow_console_error(self, pattern: str) -> None:
        """Tolerate console/page errors matching ``pattern`` (for tests that provoke them)."""
        self.allowed_errors.append(re.compile(pattern))

    def open_site(self, path: str = "/index.html"):
        assert self.site is not None, "site_page was created without a built site"
        self.page.goto(self.site.origin + path)
        return self.page

    def wait_engine_ready(self, timeout_ms: int = ENGINE_BOOT_TIMEOUT_MS) -> None:
        """Wait until the engine leaves "booting"; fail with the status line unless it is "ready"."""
        self.page.wait_for_selector("body:not([data-engine-state='booting'])", state="attached", timeout=timeout_ms)
        state = self.page.get_attribute("body", "data-engine-state")
        if state != "ready":
            status = self.page.inner_text("#engine-status")
            pytest.fail(f"engine state is {state!r}, status line: {status!r}; console errors: {self.console_errors}")

    def engine_call(self, request: dict, payload: bytes | None = None) -> dict:
        """Call the engine through the page's handle (window.vitrineEngine) and return the reply."""
        import json

        reply = self.page.evaluate(
            "([request, payload]) => window.vitrineEngine.call(request, payload === null ? null : new Uint8Array(payload))",
            [json.dumps(request), None if payload is None else list(payload)],
        )
        return json.loads(reply)

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.console_errors if not any(p.search(e) for p in self.allowed_errors)]


def _site_page(browser, site):
    context = browser.new_context()
    page = context.new_page()
    session = SitePage(page=page, site=site)
    page.on("console", lambda message: (
        session.console_errors.append(f"console.error: {message.text}") if message.type == "error"
        else session.console_warnings.append(message.text) if message.type == "warning" else None))
    page.on("pageerror", lambda error: session.console_errors.append(f"pageerror: {error}"))
    page.on("request", lambda request: session.requests.append(request.url))
    return context, session


@pytest.fixture
def site_page(browser, built_site):
    """A fresh page on the built site; console errors fail the test (see SitePage)."""
    context, session = _site_page(browser, built_site)
    yield session
    context.close()
    unexpected = session.unexpected_errors()
    if unexpected:
        pytest.fail("browser console errors:\n" + "\n".join(unexpected))


@pytest.fixture(scope="session")
def _booted_engine_session(browser, built_site):
    context, session = _site_page(browser, built_site)
    session.open_site()
    session.wait_engine_ready()
    yield session
    context.close()


@pytest.fixture
def engine_page(_booted_engine_session):
    """A page whose engine is already ready, SHARED by all tests of the session (each boot costs
    seconds). Use it when booting is not what the test checks and the test leaves no state behind
    that others could trip on. Console errors logged during the test still fail it."""
    session = _booted_engine_session
    first_new = len(session.console_errors)
    session.allowed_errors.clear()
    yield session
    unexpected = [e for e in session.console_errors[first_new:] if not any(p.search(e) for p in session.allowed_errors)]
    session.allowed_errors.clear()
    if unexpected:
        pytest.fail("browser console errors:\n" + "\n".join(unexpected))


@pytest.fixture
def blank_page(browser):
    """Like ``site_page`` but without building the site (for file:// and other local pages)."""
    context, session = _site_page(browser, None)
    yield session
    context.close()
    unexpected = session.unexpected_errors()
    if unexpected:
        pytest.fail("browser console errors:\n" + "\n".join(unexpected))


def copy_tree(source: Path, target: Path) -> Path:
    """Copy a built site (e.g. to tamper with one file) and return the copy."""
    shutil.copytree(source, target)
    return target
