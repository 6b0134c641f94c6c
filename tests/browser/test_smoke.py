"""The built site boots offline in headless Chromium and its engine worker computes for the page."""

import hashlib
import json
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser


def expected_selftest(seed: int, size: int) -> dict:
    # Same recipe as the engine's selftest call, computed here with CPython's numpy / Pillow.
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((size, size))
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return {
        "gram_trace": float(np.sum(matrix * matrix)),  # trace(M M^T) = sum of squares
        "singular_values": np.linalg.svd(matrix, compute_uv=False),
        # a lossless PNG round trip must give back exactly the generated pixels
        "decoded_pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
    }


def test_engine_boots_and_computes_numpy_and_pillow_results_for_the_page(site_page, built_site):
    page = site_page.open_site()
    assert page.get_attribute("body", "data-engine-state") in ("booting", "ready")
    site_page.wait_engine_ready()

    status = page.inner_text("#engine-status")
    assert "ready" in status.lower()
    info_text = page.inner_text("#engine-info")
    assert "2.0.2" in info_text and "10.2.0" in info_text and "0.27.7" in info_text

    reply = site_page.engine_call({"call": "selftest", "id": "smoke", "args": {"seed": 20240601, "size": 96}})
    assert reply["ok"], reply
    result = reply["result"]
    expected = expected_selftest(20240601, 96)
    assert result["gram_trace"] == pytest.approx(expected["gram_trace"], rel=1e-12)
    np.testing.assert_allclose(result["singular_values"], expected["singular_values"], rtol=1e-10)
    assert result["decoded_pixels_sha256"] == expected["decoded_pixels_sha256"]

    info = site_page.engine_call({"call": "info", "id": "i"})["result"]
    assert info["in_pyodide"] is True and info["platform"] == "emscripten"
    assert (info["pyodide"], info["numpy"], info["pillow"], info["python"][:4]) == ("0.27.7", "2.0.2", "10.2.0", "3.12")
    # the SIMD kernels built into the app wheel load in Pyodide and pass app.fastpath's self-test
    assert info["gemm_backend"].startswith("simd"), info["gemm_report"]
    assert info["gemm_backend"] in page.inner_text("#engine-info")

    # Offline: every request went to the site's own origin. The worker's own fetches are in the
    # record too (so this covers the engine, not only the page).
    assert built_site.origin + "/pyodide/pyodide.asm.wasm" in site_page.requests
    assert any(url.startswith(built_site.origin + "/wheels/vitrine-") for url in site_page.requests)
    foreign = [url for url in site_page.requests
               if urlsplit(url).scheme in ("http", "https") and not url.startswith(built_site.origin + "/")]
    assert foreign == []


def test_engine_errors_come_back_in_the_protocol_shape(engine_page):
    reply = engine_page.engine_call({"call": "selftest", "id": "bad", "args": {"seed": 1, "size": 1}})
    assert reply["ok"] is False
    assert reply["error"]["type"] == "ServiceRequestError"
    assert "size must be in [2, 512], received 1" in reply["error"]["message"]
    reply = engine_page.engine_call({"call": "ping", "id": "p", "args": {"echo": "x"}}, payload=bytes(range(7)))
    assert reply == {"ok": True, "id": "p", "call": "ping", "result": {"pong": True, "echo": "x", "payload_bytes": 7}}


def test_page_screenshot_is_not_blank(engine_page, tmp_path):
    page = engine_page.page
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    image = np.asarray(Image.open(shot).convert("L"))
    assert image.shape[0] > 300 and image.std() > 10  # header, panels and text rendered


def test_worker_loads_a_model_zip_and_predicts(engine_page):
    from tests.service.tiny_models import dense_softmax_zip, softmax_reference

    kernel = np.array([[0.3, -0.2], [0.1, 0.7], [-0.4, 0.2]], dtype=np.float32)
    bias = np.array([0.1, 0.0], dtype=np.float32)
    loaded = engine_page.engine_call({"call": "load_model", "id": "L", "args": {"name": "tiny.zip"}}, dense_softmax_zip(kernel, bias))
    assert loaded["ok"], loaded
    x = np.array([[0.5, -1.0, 2.0]], dtype=np.float32)
    handle = loaded["result"]["model"]
    reply = engine_page.engine_call({"call": "predict", "id": "P", "args": {"model": handle, "shape": [1, 3]}}, x.tobytes())
    engine_page.engine_call({"call": "unload_model", "args": {"model": handle}})  # leave the shared engine clean
    assert reply["ok"], reply
    np.testing.assert_allclose(np.reshape(reply["result"]["outputs"][0]["values"], (1, 2)), softmax_reference(x, kernel, bias), rtol=1e-5)


def test_medical_wheels_install_on_demand_and_import(site_page):
    page = site_page.open_site()
    site_page.wait_engine_ready()
    before = site_page.engine_call({"call": "info"})["result"]["optional_modules"]
    assert before == {"pydicom": False, "nibabel": False}
    reply = page.evaluate("() => window.vitrineEngine.load_optional('medical', document.baseURI)")
    assert '"ok": true' in reply, reply
    after = site_page.engine_call({"call": "info"})["result"]["optional_modules"]
    assert after == {"pydicom": True, "nibabel": True}
    # nibabel's runtime imports (numpy, packaging, typing_extensions) resolve inside Pyodide:
    # a NIfTI round trip through the engine's decode_image proves it.
    import gzip
    import io

    nibabel = pytest.importorskip("nibabel")
    volume = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)
    image = nibabel.Nifti1Image(volume, np.eye(4))
    buffer = io.BytesIO(image.to_bytes())
    decoded = site_page.engine_call({"call": "decode_image", "args": {"name": "volume.nii.gz"}},
                                    gzip.compress(buffer.getvalue()))
    assert decoded["ok"], decoded
    assert decoded["result"]["metadata"].get("format", "").lower().startswith("nifti")


def test_hard_cancel_replaces_the_engine_worker(site_page):
    page = site_page.open_site("/index.html?workers=1")  # one engine worker (the pool: test_pool.py)
    site_page.wait_engine_ready()
    page.wait_for_selector("body[data-model-state='ready']", state="attached", timeout=120_000)
    loaded = site_page.engine_call({"call": "load_model", "args": {"name": "tiny.zip"}},
                                   __import__("tests.service.tiny_models", fromlist=["x"]).dense_softmax_zip(
                                       np.ones((3, 2), np.float32), np.zeros(2, np.float32)))
    assert loaded["ok"], loaded
    # a long call is in flight when the user cancels; its reply must simply never arrive
    page.evaluate("""() => { window.pendingReply = 'none';
        window.vitrineEngine.call(JSON.stringify({call: 'selftest', args: {seed: 1, size: 512}}), null)
            .then(() => { window.pendingReply = 'arrived'; }); }""")
    page.evaluate("() => document.dispatchEvent(new Event('vitrine:restart-engine'))")
    page.wait_for_selector("body[data-engine-generation='1'][data-engine-state='ready']", state="attached", timeout=120_000)
    assert page.get_attribute("body", "data-engine-name") == "engine-1"
    assert page.locator('script[type="py"][worker]').count() == 1
    # the page loads its model into the fresh worker again, from page memory
    page.wait_for_selector("body[data-pool-ready='1']", state="attached", timeout=120_000)
    info = site_page.engine_call({"call": "info"})["result"]
    assert info["models_loaded"] == 1  # a fresh interpreter: the page's model only, the tiny one is gone
    assert site_page.engine_call({"call": "ping", "args": {"echo": 1}})["result"]["echo"] == 1


def test_boot_imports_come_from_the_shipped_bytecode_and_pillow_follows_the_boot(site_page):
    # build.py compiles what a boot + first classification import (tools/compile_bytecode.py);
    # boot_report says, per imported module, whether Python used a shipped pyc or compiled the source.
    # A fresh page: the shared engine_page has run other calls (explain, ...) that import more.
    page = site_page.open_site()
    site_page.wait_engine_ready()
    site_page.engine_call({"call": "selftest", "args": {"seed": 1, "size": 8}})  # needs Pillow: waits for it
    report = json.loads(page.evaluate("() => window.vitrineEngine.boot_report()"))
    modules = report["modules"]
    ours = {name: m for name, m in modules.items() if name.split(".")[0] in ("numpy", "app", "PIL")}
    assert {"numpy", "app.service", "app.runtime", "PIL.Image"} <= set(ours)
    assert [name for name, m in ours.items() if not m["bytecode"]] == []
    stdlib = {name: m for name, m in modules.items() if "/python312.zip/" in m["origin"]}
    assert len(stdlib) > 100 and [name for name, m in stdlib.items() if not m["bytecode"]] == []
    # Pillow is not part of the boot: installed after select_gemm_backend answered
    marks = report["marks"]
    gemm_end = next(c["end"] for c in report["calls"] if c["call"] == "select_gemm_backend")
    assert gemm_end <= marks["deferred_install_start"] < marks["deferred_install_done"]
    assert report["deferred"] == {"packages": {"pillow": "10.2.0", "pillow-bytecode": "10.2.0"}, "state": "ready"}
    assert site_page.engine_call({"call": "info"})["result"]["deferred_packages"]["state"] == "ready"
