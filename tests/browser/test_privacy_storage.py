"""Browser proof that a session leaves no image data behind (issue #9, storage).

A full session (model from a local fake Zenodo, 20 real images checked, classified, exported)
runs in Chromium with a *persistent* profile on disk. Before and after "End session" every
storage the page's origin can write is read back, from the page and from inside the engine
worker: localStorage, sessionStorage, cookies, IndexedDB, Cache Storage, the origin-private file
system (OPFS) and service-worker registrations, plus the DevTools protocol's per-origin usage
(``Storage.getUsageAndQuota``). They must be empty, except the Cache Storage entry of the model
when (and only when) the user ticked "Keep downloaded models". Finally the browser is closed and
every file of the profile directory is searched for the images' file names, byte windows (raw,
hex, base64) and the probabilities the page showed.

A control test plants one image in each of these storages and checks that the probes and the
profile search find every one of them. Figures: docs/robustness.md, "Privacy in the browser".
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.browser.test_privacy_network import (  # noqa: F401 - privacy_site is a fixture
    FILE_KEY, RECORD, engine_worker, needles_for, privacy_site, real_images, result_needles, run_session,
    search_haystacks)
from tests.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

MODEL_CACHE = "vitrine-models-v1"
REPO_SEEDS = Path(__file__).resolve().parents[2] / "tests" / "hostile" / "corpus" / "good"


def pyscript_databases(site) -> set[str]:
    """IndexedDB databases PyScript 0.6.66 opens on every page load, before any of our code runs:
    @pyscript.fs (pyscript.fs's directory-handle store, opened when its module is evaluated) and
    Pyodide's package-lock cache, named after the folder of the engine's interpreter module and
    the Pyodide version (polyscript's interpreter/pyodide.js; our engine.json sets packages_cache
    "passthrough", which clears it). They may exist; they must hold no record."""
    import urllib.parse

    config_url = f"{site.origin}/config/engine.json"
    interpreter = json.loads((site.dist / "config" / "engine.json").read_text())["interpreter"]
    folder = urllib.parse.urljoin(config_url, interpreter).rsplit("/", 1)[0]
    version = json.loads((site.dist / "build-manifest.json").read_text())["pyodide"]
    return {"IDBMap/@pyscript.fs", f"IDBMap/{folder}@{version}"}

# Reads every storage API the global scope has; runs unchanged in the page and in a worker.
STORAGE_PROBE = """async () => {
  const out = {};
  const hex = buf => Array.from(new Uint8Array(buf)).map(b => b.toString(16).padStart(2, '0')).join('');
  if (typeof localStorage !== 'undefined') {
    out.localStorage = Object.entries(localStorage);
    out.sessionStorage = Object.entries(sessionStorage);
    out.cookie = document.cookie;
    out.serviceWorkers = navigator.serviceWorker ? (await navigator.serviceWorker.getRegistrations()).map(r => r.scope) : [];
  }
  // every record of every database (PyScript itself opens two at boot; see pyscript_databases)
  out.indexedDB = {};
  for (const {name} of await indexedDB.databases()) {
    const db = await new Promise((resolve, reject) => {
      const open = indexedDB.open(name);  // no version: never upgrades or creates a store
      open.onsuccess = () => resolve(open.result); open.onerror = () => reject(open.error);
    });
    out.indexedDB[name] = {};
    for (const store of Array.from(db.objectStoreNames)) {
      const records = await new Promise((resolve, reject) => {
        const all = db.transaction(store, 'readonly').objectStore(store).getAllKeys();
        all.onsuccess = () => resolve(all.result.map(String)); all.onerror = () => reject(all.error);
      });
      out.indexedDB[name][store] = records;
    }
    db.close();
  }
  out.caches = {};
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    out.caches[name] = [];
    for (const request of await cache.keys()) {
      const body = await (await cache.match(request)).arrayBuffer();
      out.caches[name].push({url: request.url, bytes: body.byteLength,
                             sha256: hex(await crypto.subtle.digest('SHA-256', body))});
    }
  }
  out.opfs = [];
  const walk = async (dir, prefix) => {
    for await (const [name, handle] of dir.entries()) {
      if (handle.kind === 'directory') { out.opfs.push(prefix + name + '/'); await walk(handle, prefix + name + '/'); }
      else { out.opfs.push(prefix + name + ' (' + (await handle.getFile()).size + ' bytes)'); }
    }
  };
  await walk(await navigator.storage.getDirectory(), '');
  const estimate = await navigator.storage.estimate();
  out.estimate = {usage: estimate.usage, usageDetails: estimate.usageDetails || null};
  return out;
}"""


def read_storage(context, page, origin: str) -> dict:
    """Everything the origin stores, seen from the page, from the engine worker and through
    the DevTools protocol (bytes used per storage type)."""
    from_page = page.evaluate(STORAGE_PROBE)
    from_worker = engine_worker(page).evaluate(STORAGE_PROBE)
    cdp = context.new_cdp_session(page)
    usage = cdp.send("Storage.getUsageAndQuota", {"origin": origin})
    cdp.detach()
    return {"page": from_page, "worker": from_worker, "cookies": context.cookies(),
            "usage": usage["usage"], "breakdown": {b["storageType"]: b["usage"] for b in usage["usageBreakdown"] if b["usage"]}}


def assert_no_session_data(found: dict, model_cache: list[dict] | None, when: str, site) -> None:
    """Nothing stored but, with ``model_cache``, exactly those Cache Storage entries (and
    PyScript's own IndexedDB databases, empty)."""
    allowed_databases = pyscript_databases(site)
    for where in ("page", "worker"):
        seen = found[where]
        assert set(seen["indexedDB"]) <= allowed_databases, f"{when}, {where}: IndexedDB databases {seen['indexedDB']}"
        records = {(db, store): keys for db, stores in seen["indexedDB"].items() for store, keys in stores.items() if keys}
        assert not records, f"{when}, {where}: IndexedDB records {records}"
        assert seen["opfs"] == [], f"{when}, {where}: OPFS entries {seen['opfs']}"
        expected_caches = {MODEL_CACHE: model_cache} if model_cache else {}
        caches = {name: entries for name, entries in seen["caches"].items() if entries or name != MODEL_CACHE}
        assert caches == expected_caches, f"{when}, {where}: Cache Storage {seen['caches']}"
    page = found["page"]
    assert page["localStorage"] == [] and page["sessionStorage"] == [], f"{when}: web storage {page}"
    assert page["cookie"] == "" and found["cookies"] == [], f"{when}: cookies {found['cookies']}"
    assert page["serviceWorkers"] == [], f"{when}: service workers {page['serviceWorkers']}"
    kinds = set(found["breakdown"])
    # "indexeddb": the empty PyScript databases' files (a few KB), checked record by record above
    assert kinds <= ({"cache_storage", "indexeddb"} if model_cache else {"indexeddb"}), f"{when}: storage in use {found['breakdown']}"


PUBLIC_COPY_MIN_BYTES = 256  # shorter files are not cut out: their bytes could occur by chance


def public_files(site) -> list[bytes]:
    """What the servers send to every visitor: each file of the built site and the model zip.
    The demo samples are site files (11 of the 20 test images), and pydicom's wheel holds the
    names of its test files (MR_small.dcm, CT_small.dcm), so the browser's HTTP cache rightly
    holds those bytes and names; they say nothing about what the user opened."""
    files = [p.read_bytes() for p in sorted(site.dist.rglob("*")) if p.is_file()]
    return sorted((data for data in [*files, site.model] if len(data) >= PUBLIC_COPY_MIN_BYTES), key=len, reverse=True)


def without_public_copies(data: bytes, public: list[bytes]) -> tuple[bytes, int]:
    """``data`` with every exact, whole copy of a public file cut out; (rest, bytes cut)."""
    cut = 0
    for blob in public:
        if len(blob) <= len(data) and blob[:64] in data and blob in data:
            before = len(data)
            data = data.replace(blob, b"")
            cut += before - len(data)
    return data, cut


def search_profile(profile: Path, needles: dict[str, bytes], public: list[bytes]) -> dict:
    """Every file of a closed browser profile, searched for the needles after exact copies of
    public files (the HTTP cache's bodies) are cut out: hits, files and bytes searched, bytes cut."""
    haystacks = []
    total = public_bytes = 0
    for path in sorted(profile.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            total += len(data)
            rest, cut = without_public_copies(data, public)
            public_bytes += cut
            haystacks.append((str(path.relative_to(profile)), rest))
    return {"hits": search_haystacks(haystacks, needles), "files": len(haystacks), "bytes": total,
            "public_bytes": public_bytes}


def persistent_browser(browser, profile: Path):
    return browser.browser_type.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, accept_downloads=True)


def run_and_read(browser, privacy_site, tmp_path, cache_opt_in: bool):
    images = real_images()
    profile = tmp_path / "profile"
    context = persistent_browser(browser, profile)
    page = context.pages[0] if context.pages else context.new_page()
    readings = {}
    session = run_session(page, privacy_site, images, cache_opt_in=cache_opt_in,
                          before_end=lambda: readings.update(during=read_storage(context, page, privacy_site.origin)))
    readings["ended"] = read_storage(context, page, privacy_site.origin)
    context.close()
    needles = {**needles_for(images), **result_needles(session["shown"], session["percents"])}
    return readings, search_profile(profile, needles, public_files(privacy_site)), len(needles)


def report_profile(searched: dict, needle_count: int) -> None:
    print(f"profile on disk: {searched['files']} files, {searched['bytes'] / 1e6:.1f} MB "
          f"({searched['public_bytes'] / 1e6:.1f} MB of them exact copies of site files or the model) "
          f"searched for {needle_count} needles: {len(searched['hits'])} hits")


def test_a_session_stores_nothing_before_or_after_end_session(browser, privacy_site, tmp_path):
    readings, searched, needle_count = run_and_read(browser, privacy_site, tmp_path, cache_opt_in=False)
    for when, found in readings.items():
        print(f"\n{when}: origin storage usage {found['usage']} bytes {found['breakdown']}; "
              f"navigator.storage.estimate {found['page']['estimate']}")
        assert_no_session_data(found, None, when, privacy_site)
    report_profile(searched, needle_count)
    assert not searched["hits"], searched["hits"]


def test_models_are_kept_only_when_opted_in_and_images_never(browser, privacy_site, tmp_path):
    model = privacy_site.model
    readings, searched, needle_count = run_and_read(browser, privacy_site, tmp_path, cache_opt_in=True)
    for when, found in readings.items():
        print(f"\n{when} (opted in): origin storage usage {found['usage']} bytes {found['breakdown']}")
        entries = found["page"]["caches"].get(MODEL_CACHE, [])
        assert len(entries) == 1, entries
        assert entries[0]["url"].endswith(f"/model-cache/zenodo-{RECORD}-{hashlib.md5(model).hexdigest()}/{FILE_KEY}")
        assert (entries[0]["bytes"], entries[0]["sha256"]) == (len(model), hashlib.sha256(model).hexdigest())
        assert_no_session_data(found, entries, when, privacy_site)
    report_profile(searched, needle_count)
    assert not searched["hits"], searched["hits"]


# Puts one image into each storage the page can write, the way a careless app would: its bytes
# (base64 text in web storage, raw bytes elsewhere) under its file name.
PLANT = """async (items) => {
  const bytes = b64 => Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const [local, session, idb, cache, opfs] = items;
  localStorage.setItem(local.name, local.b64);
  sessionStorage.setItem(session.name, session.b64);
  const db = await new Promise((resolve, reject) => {
    const open = indexedDB.open('planted', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('images');
    open.onsuccess = () => resolve(open.result); open.onerror = () => reject(open.error);
  });
  await new Promise((resolve, reject) => {
    const tx = db.transaction('images', 'readwrite');
    tx.objectStore('images').put(bytes(idb.b64).buffer, idb.name);
    tx.oncomplete = resolve; tx.onerror = () => reject(tx.error);
  });
  db.close();
  await (await caches.open('planted')).put('/planted/' + encodeURIComponent(cache.name), new Response(bytes(cache.b64)));
  const file = await (await navigator.storage.getDirectory()).getFileHandle(opfs.name, {create: true});
  const writable = await file.createWritable();
  await writable.write(bytes(opfs.b64));
  await writable.close();
}"""


def test_the_storage_probes_and_the_profile_search_find_an_image_that_is_stored(browser, privacy_site, tmp_path):
    """Control for the two tests above: a page that does store images is caught, by the probes
    and in the profile on disk, for every storage the page can write (so "0 hits" above means
    nothing was stored, not that the search cannot see it)."""
    import base64

    seeds = REPO_SEEDS
    images = [seeds / n for n in ("camera.png", "chelsea.png", "retina.jpg", "resampled_anat_moved.nii", "standard.nii.gz")]
    storages = ["localStorage", "sessionStorage", "IndexedDB", "Cache Storage", "OPFS"]
    profile = tmp_path / "profile"
    context = persistent_browser(browser, profile)
    page = context.pages[0] if context.pages else context.new_page()
    page.goto(privacy_site.url)
    page.evaluate(PLANT, [{"name": p.name, "b64": base64.b64encode(p.read_bytes()).decode()} for p in images])
    found = page.evaluate(STORAGE_PROBE)
    context.close()

    assert [k for k, _ in found["localStorage"]] == ["camera.png"]
    assert [k for k, _ in found["sessionStorage"]] == ["chelsea.png"]
    assert found["indexedDB"]["planted"] == {"images": ["retina.jpg"]}
    assert [e["url"].rsplit("/", 1)[1] for e in found["caches"]["planted"]] == ["resampled_anat_moved.nii"]
    assert found["opfs"] == [f"standard.nii.gz ({images[4].stat().st_size} bytes)"]

    needles = needles_for(images)
    searched = search_profile(profile, needles, public_files(privacy_site))
    report_profile(searched, len(needles))
    caught = {}
    for storage, image in zip(storages, images):
        # a hit reads "<needle description> in <profile file>"; each description names its image
        caught[storage] = sorted({hit.rsplit(" in ", 1)[1] for hit in searched["hits"]
                                  if image.name in hit.rsplit(" in ", 1)[0].split()})
        print(f"{storage}: {image.name} found in {caught[storage]}")
    missed = [s for s in storages if not caught[s]]
    assert not missed, f"the profile search does not see images stored in {missed}: {caught}"
