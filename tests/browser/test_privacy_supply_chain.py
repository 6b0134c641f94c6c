"""Supply chain, the parts test_build_supply_chain.py / test_csp_and_file.py do not cover (issue #9).

Those prove that the build refuses runtime files whose sha256 differs from the pins and that a
tampered PyScript chunk is refused through the import map's integrity. Here:

* two builds of the same sources (same cache) are byte-identical, file by file and in the
  bundle zip;
* in a real session (engine boot, medical packages installed on demand, a prediction) every
  script the browser runs, in the page or in a worker, is either integrity-checked by the
  browser against the served bytes (a script tag's ``integrity`` or the import map's) or one of
  the listed exceptions, each with the reason and the build-time pin that covers it instead;
  every wheel the worker installs matches the sha256 of the shipped pyodide-lock.json, which
  Pyodide's loader checks (see test_build_supply_chain for the refusal);
* a tampered ``static/pyscript-setup.js`` (the one module script tag) is refused by the browser
  and the engine never starts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from tests.browser.test_workflow import SAMPLES, wait
from tests.conftest import copy_tree

pytestmark = pytest.mark.browser

# Scripts the browser runs without an integrity check, why, and what pins them instead.
UNCHECKED_SCRIPTS = {
    "/static/boot.js": "classic script that explains file:// pages; SRI needs CORS, which file:// lacks "
                       "(index.html); its sha256 is in build-manifest.json",
    "/pyodide/pyodide.mjs": "imported inside the engine worker; workers have no import maps, so no SRI; "
                            "pinned at build time (build.PYODIDE_CORE_SHA256)",
    "/pyodide/pyodide.asm.js": "loaded by pyodide.mjs inside the worker; pinned at build time (build.PYODIDE_CORE_SHA256)",
    "/static/engine-pyodide.mjs": "the worker's Pyodide loader wrapper (config/engine.json interpreter), imported "
                                  "inside the worker: no import map there; our own source, its sha256 is in "
                                  "build-manifest.json",
}


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_builds_of_the_same_sources_are_byte_identical(tmp_path):
    import build

    use_cdn = not os.environ.get("VITRINE_NO_CDN")
    first, second = tmp_path / "first", tmp_path / "second"
    build.build(first, use_cdn=use_cdn)
    build.build(second, use_cdn=use_cdn)
    a, b = file_hashes(first), file_hashes(second)
    assert a.keys() == b.keys()
    differing = sorted(name for name in a if a[name] != b[name])
    print(f"\ntwo builds: {len(a)} files, {sum(p.stat().st_size for p in first.rglob('*') if p.is_file()) / 1e6:.1f} MB, "
          f"{len(differing)} differ")
    assert differing == []
    # and the manifest's sha256 are the bytes shipped
    manifest = json.loads((first / "build-manifest.json").read_text())["files"]
    assert {name: entry["sha256"] for name, entry in manifest.items()} == {n: h for n, h in a.items() if n != "build-manifest.json"}
    bundles = [build.bundle_site(site, tmp_path / f"{site.name}.zip") for site in (first, second)]
    assert bundles[0].read_bytes() == bundles[1].read_bytes()
    with zipfile.ZipFile(bundles[0]) as archive:
        print(f"bundle: {len(archive.namelist())} entries, {bundles[0].stat().st_size / 1e6:.1f} MB, identical")


def test_every_script_the_page_runs_is_integrity_checked_or_a_listed_exception(site_page, built_site):
    page = site_page.page
    scripts, downloads = [], []
    page.context.on("request", lambda r: (scripts if r.resource_type == "script" else downloads).append(r.url))
    site_page.open_site()
    site_page.wait_engine_ready()
    wait(page, "body[data-model-state='ready']")
    # a DICOM makes the worker install the optional medical wheels (pydicom, nibabel, ...)
    page.set_input_files("#image-files", [str(SAMPLES / "mr_small.dcm"), str(SAMPLES / "ct_head.png")])
    wait(page, "body[data-images-checking='0'][data-images-ready='2']")
    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='1']")

    html = (built_site.dist / "index.html").read_text()
    import_map = json.loads(re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1))["integrity"]
    tagged = {re.search(r'src="([^"]+)"', tag).group(1): re.search(r'integrity="([^"]+)"', tag).group(1)
              for tag in re.findall(r"<script[^>]*\bintegrity=[^>]*>", html)}
    checked = {path.lstrip("."): value for path, value in {**import_map, **tagged}.items()}
    # the pins are right: each is the SRI of the file served
    for path, value in checked.items():
        assert value == sri((built_site.dist / path.lstrip("/")).read_bytes()), path

    ran = sorted({urllib.parse.urlsplit(u).path for u in scripts if u.startswith(built_site.origin)})
    foreign = sorted({u for u in scripts if not u.startswith((built_site.origin, "blob:", "data:"))})
    assert foreign == []
    unchecked = [path for path in ran if path not in checked]
    print(f"\nscripts run: {len(ran)} from the site ({len(ran) - len(unchecked)} integrity-checked by the browser), "
          f"{len([u for u in scripts if u.startswith('blob:')])} blob: workers; unchecked: {unchecked}")
    assert set(unchecked) <= set(UNCHECKED_SCRIPTS), f"scripts run without an integrity check: {set(unchecked) - set(UNCHECKED_SCRIPTS)}"
    manifest = built_site.manifest["files"]
    import build

    for path in unchecked:
        data = (built_site.dist / path.lstrip("/")).read_bytes()
        assert manifest[path.lstrip("/")]["sha256"] == hashlib.sha256(data).hexdigest(), path
        name = path.rsplit("/", 1)[1]
        if path.startswith("/pyodide/"):
            assert build.PYODIDE_CORE_SHA256[name] == hashlib.sha256(data).hexdigest(), path

    lock = json.loads((built_site.dist / "pyodide" / "pyodide-lock.json").read_text())["packages"]
    by_file = {entry["file_name"].rsplit("/", 1)[-1]: entry["sha256"] for entry in lock.values()}
    wheels = sorted({urllib.parse.urlsplit(u).path for u in downloads if u.endswith(".whl")})
    assert any("pydicom" in w for w in wheels), wheels  # the on-demand install happened
    for path in wheels:
        name = path.rsplit("/", 1)[1]
        assert name in by_file, f"{path} is not in the shipped pyodide-lock.json"
        assert by_file[name] == hashlib.sha256((built_site.dist / path.lstrip("/")).read_bytes()).hexdigest(), path
    print(f"wheels installed: {len(wheels)}, each matching its sha256 in pyodide-lock.json")


def test_a_tampered_setup_module_is_refused_and_the_engine_never_starts(blank_page, built_site, static_server, tmp_path):
    site = copy_tree(built_site.dist, tmp_path / "site")
    setup = site / "static" / "pyscript-setup.js"
    setup.write_text(setup.read_text() + "\n// tampered: one more line\n")
    origin = static_server(site)
    blank_page.allow_console_error(r"integrity|digest")
    page = blank_page.page
    page.goto(origin + "/index.html")
    wait(page, "body:not([data-engine-state='booting'])")  # boot.js's own watch says it failed
    status = page.inner_text("#engine-status")
    print(f"\ntampered pyscript-setup.js: engine state {page.get_attribute('body', 'data-engine-state')!r}, status {status!r}")
    assert page.get_attribute("body", "data-engine-state") == "error"
    assert any("integrity" in e and "pyscript-setup.js" in e for e in blank_page.console_errors), blank_page.console_errors
    assert page.evaluate("() => typeof window.vitrineEngine") == "undefined"
