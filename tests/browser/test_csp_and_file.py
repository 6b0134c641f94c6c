"""Security and failure behaviour of the built page: CSP, file:// notice, broken runtime."""

import base64
import hashlib
import json
import re
import shutil

import pytest

pytestmark = pytest.mark.browser


def csp_directives(page) -> dict[str, list[str]]:
    content = page.get_attribute('meta[http-equiv="Content-Security-Policy"]', "content")
    assert content, "the page has no Content-Security-Policy meta tag"
    return {name: values for name, *values in (d.split() for d in content.split(";") if d.strip())}


def test_csp_meta_allows_only_own_origin_and_model_host(engine_page, built_site):
    csp = csp_directives(engine_page.page)  # engine_page booted under exactly this policy
    assert csp["default-src"] == ["'none'"]
    assert csp["connect-src"] == ["'self'", built_site.model_origin]
    # the only inline script allowed is the import map, by its hash
    assert csp["script-src"][:2] == ["'self'", "'wasm-unsafe-eval'"]
    importmap = engine_page.page.locator('script[type="importmap"]').text_content()
    digest = base64.b64encode(hashlib.sha256(importmap.encode()).digest()).decode()
    assert csp["script-src"][2:] == [f"'sha256-{digest}'"]
    assert csp["worker-src"] == ["'self'", "blob:"]
    assert "'unsafe-eval'" not in " ".join(sum(csp.values(), []))
    assert engine_page.page.get_attribute("body", "data-engine-state") == "ready"


FETCH = """async (url) => {
  try { const r = await fetch(url); return "status " + r.status + " " + (await r.text()); }
  catch (e) { return "blocked " + e.name; }
}"""


def test_csp_blocks_fetch_to_another_origin_but_allows_the_model_host(engine_page, built_site, static_server, tmp_path):
    (tmp_path / "secret.txt").write_text("exfiltration target")
    other_origin = static_server(tmp_path, cors=True)
    page = engine_page.page
    # Chromium reports the blocked request itself as console errors; only those are tolerated.
    engine_page.allow_console_error(re.escape(other_origin + "/secret.txt") + r".*(violates|Refused to connect)")
    errors_before = len(engine_page.console_errors)
    assert page.evaluate(FETCH, built_site.model_origin + "/probe.txt") == "status 200 model host reachable"
    assert page.evaluate(FETCH, other_origin + "/secret.txt") == "blocked TypeError"
    page.wait_for_timeout(200)  # console events arrive asynchronously
    violations = [e for e in engine_page.console_errors[errors_before:] if "Content Security Policy" in e]
    assert any(other_origin in v for v in violations), engine_page.console_errors[errors_before:]


def test_file_url_shows_the_serve_notice(blank_page, built_site):
    page = blank_page.page
    # Module scripts cannot load from file:// (CORS); that is the failure the notice explains.
    blank_page.allow_console_error(r"CORS policy|ERR_FAILED|Failed to load module script|net::ERR")
    page.goto((built_site.dist / "index.html").as_uri())
    page.wait_for_selector("#file-notice", state="visible", timeout=10_000)
    notice = page.inner_text("#file-notice")
    assert "python3 build.py serve" in notice and "http://127.0.0.1:8000/" in notice
    assert page.get_attribute("body", "data-engine-state") == "error"
    assert "file://" in page.inner_text("#engine-status")


def test_served_page_hides_the_file_notice(engine_page):
    assert engine_page.page.is_hidden("#file-notice")


@pytest.mark.parametrize("damage", ["missing", "tampered"])
def test_broken_runtime_wheel_turns_into_a_visible_error(blank_page, built_site, static_server, tmp_path, damage):
    broken = tmp_path / "dist"
    shutil.copytree(built_site.dist, broken)
    lock = json.loads((broken / "pyodide" / "pyodide-lock.json").read_text())
    wheel = broken / "pyodide" / lock["packages"]["numpy"]["file_name"]
    if damage == "missing":
        wheel.unlink()
    else:  # same size, one flipped byte: only Pyodide's sha256 check (from the lock) can notice
        data = bytearray(wheel.read_bytes())
        data[-100] ^= 0x01
        wheel.write_bytes(bytes(data))
    origin = static_server(broken)
    blank_page.allow_console_error(r".")  # the failure itself is logged; we assert on the page
    page = blank_page.page
    page.goto(origin + "/index.html")
    page.wait_for_selector("body[data-engine-state='error']", state="attached", timeout=120_000)
    status = page.inner_text("#engine-status")
    assert status.startswith("The engine failed to start"), status


def test_import_map_pins_every_pyscript_module(built_site):
    page = (built_site.dist / "index.html").read_text()
    importmap = json.loads(page.split('<script type="importmap">')[1].split("</script>")[0])
    modules = sorted(f"./pyscript/{p.name}" for p in (built_site.dist / "pyscript").glob("*.js"))
    assert sorted(k for k in importmap["integrity"] if k.startswith("./pyscript/")) == modules
    for url, expected in importmap["integrity"].items():
        data = (built_site.dist / url[2:]).read_bytes()
        assert expected == "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def test_tampered_pyscript_chunk_is_refused_and_explained(blank_page, built_site, static_server, tmp_path):
    broken = tmp_path / "dist"
    shutil.copytree(built_site.dist, broken)
    chunk = next(p for p in (broken / "pyscript").glob("core-*.js"))
    chunk.write_bytes(chunk.read_bytes() + b"\n/* tampered */\n")
    origin = static_server(broken)
    blank_page.allow_console_error(r"[Ii]ntegrity|Failed to fetch dynamically imported module|core-")
    page = blank_page.page
    page.goto(origin + "/index.html")
    page.wait_for_selector("body[data-engine-state='error']", state="attached", timeout=60_000)
    assert "integrity" in page.inner_text("#engine-status")
    assert any("ntegrity" in e for e in blank_page.console_errors), blank_page.console_errors


def test_boot_timeout_says_so_instead_of_spinning(blank_page, built_site, static_server, tmp_path):
    impatient = tmp_path / "dist"
    shutil.copytree(built_site.dist, impatient)
    page_file = impatient / "index.html"
    page_file.write_text(page_file.read_text().replace('data-boot-timeout-ms="90000"', 'data-boot-timeout-ms="1"'))
    origin = static_server(impatient)
    page = blank_page.page
    page.goto(origin + "/index.html")
    page.wait_for_selector("body[data-engine-state='error']", state="attached", timeout=30_000)
    assert page.inner_text("#engine-status").startswith("The engine did not start within 0 s.")


def test_browser_without_wasm_simd_is_told_in_words(blank_page, built_site):
    page = blank_page.page
    # Pretend WebAssembly SIMD is unsupported (init scripts run before the page's own scripts).
    page.add_init_script("WebAssembly.validate = () => false;")
    blank_page.allow_console_error(r".")  # PyScript may still try to start; the page must say why it cannot
    page.goto(built_site.url)
    page.wait_for_selector("body[data-engine-state='error']", state="attached", timeout=30_000)
    assert "lacks WebAssembly SIMD" in page.inner_text("#engine-status")


def test_damaged_pillow_leaves_the_engine_ready_and_image_calls_say_why(blank_page, built_site, static_server, tmp_path):
    # Pillow is installed after the boot (app.boot): a damaged wheel must not stop the engine from
    # taking a model, and every call that needs Pillow must say what went wrong
    broken = tmp_path / "dist"
    shutil.copytree(built_site.dist, broken)
    lock = json.loads((broken / "pyodide" / "pyodide-lock.json").read_text())
    wheel = broken / "pyodide" / lock["packages"]["pillow"]["file_name"]
    data = bytearray(wheel.read_bytes())
    data[-100] ^= 0x01  # same size: only Pyodide's sha256 check (from the lock) can notice
    wheel.write_bytes(bytes(data))
    origin = static_server(broken)
    blank_page.allow_console_error(r".")  # Pyodide logs the refused wheel; we assert on the replies
    page = blank_page.page
    page.goto(origin + "/index.html")
    page.wait_for_selector("body[data-engine-state='ready']", state="attached", timeout=120_000)
    demo = (built_site.dist / "static" / "demo" / "demo-model.zip").read_bytes()

    def call(request, payload=None):
        return json.loads(page.evaluate(
            "([request, payload]) => window.vitrineEngine.call(request, payload === null ? null : new Uint8Array(payload))",
            [json.dumps(request), None if payload is None else list(payload)]))

    opened = call({"call": "open_model", "args": {"name": "demo-model.zip"}}, demo)
    assert opened["ok"], opened
    image = (built_site.dist / "static" / "demo" / "samples" / "mr_abdomen.png").read_bytes()
    reply = call({"call": "classify", "args": {"model": opened["result"]["model"], "name": "mr_abdomen.png"}}, image)
    assert reply["ok"] is False and reply["error"]["type"] == "EngineBootError"
    assert "Pillow" in reply["error"]["message"] and "damaged" in reply["error"]["message"]
    assert call({"call": "info"})["result"]["deferred_packages"]["state"] == "failed"
