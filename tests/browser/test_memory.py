"""Memory in the real browser (issue #9): the structural causes of unbounded growth, checked
without timing or thresholds; the figures (peaks over a batch of 500 images) come from
bench/memory.py.

* Every object URL the page creates during a session is revoked (URL.createObjectURL and
  revokeObjectURL are wrapped by an init script before any page script runs).
* After "End session" the page's JavaScript heap (a DevTools heap snapshot after a forced
  garbage collection) soon holds no string naming an image and no thumbnail: nothing of the
  session is kept alive by event-handler proxies, detached DOM nodes or the MicroPython heap's
  references into JavaScript. The same snapshot taken before "End session" finds every image (the
  control). Freed memory is not wiped (neither heap zeroes it): closing the tab is what ends it.
* The engine worker's Python keeps no per-image state: after a batch, no live buffer has an
  image's file length or decoded shape, and a second batch of other images leaves exactly the
  buffers the first one left (``heap_census`` of workers/engine.py, app.diagnostics).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.browser.test_privacy_network import real_images
from tests.browser.test_workflow import wait

pytestmark = pytest.mark.browser

MIN_BYTES = 512

# Runs before any script of the page: records every object URL made and revoked in the page.
OBJECT_URL_RECORDER = """(() => {
  const made = [], revoked = [];
  const create = URL.createObjectURL.bind(URL), revoke = URL.revokeObjectURL.bind(URL);
  URL.createObjectURL = object => { const url = create(object); made.push([url, object && object.type || '', performance.now()]); return url; };
  URL.revokeObjectURL = url => { revoked.push(url); return revoke(url); };
  Object.defineProperty(window, '__objectUrls', {value: () => ({made, revoked})});
})();"""


def open_site(site_page, query="?workers=1"):
    page = site_page.page
    page.set_viewport_size({"width": 1366, "height": 900})
    site_page.open_site("/index.html" + query)
    site_page.wait_engine_ready()
    wait(page, "body[data-model-state='ready']")
    return page


def classify_all(page, images, runs):
    page.set_input_files("#image-files", [str(p) for p in images])
    wait(page, f"body[data-images-checking='0'][data-images-ready='{len(images)}']")
    page.click("#predict")
    wait(page, f"body[data-run-state='done'][data-runs='{runs}']")


def end_session(page):
    page.click("#end-session")
    wait(page, "body[data-runs='0'][data-images-ready='0']")


def heap_strings(page) -> list[str]:
    """Every string of the page's JavaScript heap after a full garbage collection (DevTools
    HeapProfiler snapshot); detached DOM nodes appear as their outer tag, e.g. '<li ... data-image=x>'."""
    cdp = page.context.new_cdp_session(page)
    chunks = []
    cdp.on("HeapProfiler.addHeapSnapshotChunk", lambda event: chunks.append(event["chunk"]))
    cdp.send("HeapProfiler.enable")
    cdp.send("HeapProfiler.collectGarbage")
    cdp.send("HeapProfiler.takeHeapSnapshot", {"reportProgress": False})
    cdp.send("HeapProfiler.disable")
    cdp.detach()
    return json.loads("".join(chunks))["strings"]


def session_traces(strings, names) -> dict[str, list[str]]:
    """{what: [strings]} of the heap strings that name an image or hold a PNG data URL."""
    found = {}
    for name in names:
        hits = [s[:120] for s in strings if name in s]
        if hits:
            found[name] = hits
    thumbs = [s[:60] for s in strings if s.startswith("data:image/png;base64,")]
    if thumbs:
        found["PNG data URLs"] = thumbs
    return found


def test_every_object_url_the_page_creates_is_revoked(site_page):
    site_page.page.add_init_script(OBJECT_URL_RECORDER)
    page = open_site(site_page)
    booted = page.evaluate("() => __objectUrls().made.length")
    images = real_images()[:6]
    classify_all(page, images, runs=1)
    for button in ("#export-csv", "#export-json"):
        with page.expect_download():
            page.click(button)
    end_session(page)
    page.wait_for_timeout(2000)  # export links are revoked 1 s after the click
    urls = page.evaluate("() => __objectUrls()")
    made_in_session = urls["made"][booted:]
    print(f"\nobject URLs: {booted} made while booting, {len(made_in_session)} during the session "
          f"({sorted({m[1] for m in made_in_session})}), {len(urls['revoked'])} revoked")
    assert len(made_in_session) >= 2  # the two exports went through createObjectURL
    kept = [m for m in made_in_session if m[0] not in urls["revoked"]]
    assert kept == [], f"object URLs never revoked: {kept}"


def test_end_session_leaves_nothing_of_the_images_in_the_page_heap(site_page):
    page = open_site(site_page)
    images = real_images()
    names = [p.name for p in images]
    classify_all(page, images, runs=1)
    # an Explain panel too: its heatmap layers are images derived from the patient's image
    # Clicked and watched with page scripts that return plain values: Playwright's element-based
    # calls (click, wait_for on a locator or selector) leave the element in a DevTools object
    # group, which keeps it (and its card) alive until the page closes
    box = f"#result-cards article[data-file='{names[0]}'] .explain-box"
    page.evaluate("(box) => { document.querySelector(box + ' > summary').click(); }", box)
    for _ in range(1200):
        panel = page.evaluate("(box) => document.querySelector(box).dataset.state", box)
        if panel in ("ready", "error"):
            break
        page.wait_for_timeout(100)
    assert panel == "ready", panel

    before = session_traces(heap_strings(page), names)
    assert len(before) == len(names), f"the control found only {sorted(before)}"
    end_session(page)
    # Freeing takes turns between MicroPython's heap and the browser's (ui/main.py collect_soon):
    # the browser collects here once a second, as it would on its own schedule, while End session's
    # follow-up collections run. What is still reachable after 15 turns is kept, not pending.
    for turn in range(1, 16):
        page.wait_for_timeout(1000)
        after = session_traces(heap_strings(page), names)
        if not after:
            break
    print(f"\npage heap: all {len(before)} images traceable before End session, "
          f"{len(after)} after {turn} collection turns")
    assert after == {}, json.dumps(after, indent=1)[:4000]


def census(page, holders_of=None) -> dict:
    reply = json.loads(page.evaluate("([n, h]) => window.vitrineEngine.heap_census(n, h)", [MIN_BYTES, holders_of]))
    assert reply["ok"], reply
    return reply["result"]


def test_the_engine_keeps_no_per_image_state_after_a_batch(site_page):
    page = open_site(site_page)
    images = real_images()
    classify_all(page, images[:2], runs=1)  # warm-up: lazily built kernels exist from here on
    end_session(page)
    first = census(page)

    classify_all(page, images[2:12], runs=1)
    end_session(page)
    second = census(page)
    classify_all(page, images[12:], runs=1)
    shapes = {}
    for index in range(len(images) - 12):  # the decoded shapes the engine reported per image
        status = page.locator(f"#image-list li >> nth={index} >> .image-status").inner_text()
        match = re.search(r", (\d+) x (\d+),", status)
        if match:
            shapes[page.locator(f"#image-list li >> nth={index}").get_attribute("data-image")] = (int(match[2]), int(match[1]))
    end_session(page)
    third = census(page)

    print(f"\nengine live buffers >= {MIN_BYTES} B: warm-up {len(first['buffers'])} ({first['buffer_bytes'] / 1e6:.2f} MB), "
          f"+10 images {len(second['buffers'])} ({second['buffer_bytes'] / 1e6:.2f} MB), "
          f"+8 images {len(third['buffers'])} ({third['buffer_bytes'] / 1e6:.2f} MB); "
          f"gc-tracked objects {first['gc_objects']} / {second['gc_objects']} / {third['gc_objects']}")
    lengths = {p.stat().st_size: p.name for p in images}
    by_length = [(b, lengths[b["bytes"]]) for b in third["buffers"] if b["type"] in ("bytes", "bytearray") and b["bytes"] in lengths]
    assert by_length == [], (f"image file bytes alive in the engine: {by_length}; held by "
                             f"{[census(page, b['bytes'])['holders'] for b, _ in by_length]}")
    assert shapes, "no decoded shape was read from the image list"
    by_shape = [b for b in third["buffers"] if len(b["shape"]) >= 2 and tuple(b["shape"][:2]) in set(shapes.values())]
    assert by_shape == [], f"decoded pixels alive in the engine: {by_shape} (images: {shapes})"
    assert third["groups"] == second["groups"], (second["groups"], third["groups"])


def heap_counts(page, names) -> dict[str, int]:
    """{constructor or V8 internal name: count} of the page's JavaScript heap after a full garbage
    collection (DevTools HeapProfiler snapshot), for ``names`` only."""
    cdp = page.context.new_cdp_session(page)
    chunks = []
    cdp.on("HeapProfiler.addHeapSnapshotChunk", lambda event: chunks.append(event["chunk"]))
    cdp.send("HeapProfiler.enable")
    cdp.send("HeapProfiler.collectGarbage")
    cdp.send("HeapProfiler.takeHeapSnapshot", {"reportProgress": False})
    cdp.send("HeapProfiler.disable")
    cdp.detach()
    snapshot = json.loads("".join(chunks))
    fields = snapshot["snapshot"]["meta"]["node_fields"]
    name_at, width, strings, nodes = fields.index("name"), len(fields), snapshot["strings"], snapshot["nodes"]
    counts = dict.fromkeys(names, 0)
    for i in range(0, len(nodes), width):
        name = strings[nodes[i + name_at]]
        if name in counts:
            counts[name] += 1
    return counts


def settle(page, turns=13):
    """End session's follow-up collections (ui/main.py collect_soon, the last after 12 s) meet a
    browser collection once a second, as in bench/memory.py."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.enable")
    for _ in range(turns):
        page.wait_for_timeout(1000)
        cdp.send("HeapProfiler.collectGarbage")
    cdp.detach()


PROMISE_OBJECTS = ("Promise", "system / PromiseReaction")


def test_engine_calls_leave_no_promise_behind(site_page):
    """Every engine call races the worker's reply against the worker's death (ui/main.py race).
    Racing against one promise per worker, settled only at its death, added a reaction to it per
    call, which kept each call's race promise and reply alive for the worker's life: ~3 promises
    per image, 1 500 per 500-image batch, never freed by End session. After the fix a session of 20
    images leaves exactly as many promises in the page as a session of 2."""
    page = open_site(site_page)
    images = real_images()
    classify_all(page, images[:2], runs=1)  # warm-up: the first batch loads lazily made things
    end_session(page)
    settle(page)
    first = heap_counts(page, PROMISE_OBJECTS)
    classify_all(page, images, runs=1)
    end_session(page)
    settle(page)
    second = heap_counts(page, PROMISE_OBJECTS)
    print(f"\npage heap after End session: {first} after 2 images, {second} after {len(images)} more")
    assert second == first
