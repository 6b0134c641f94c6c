"""The fake Zenodo's CORS behaviour as a real browser sees it (Chromium via Playwright).

Browser tests of the model download rely on the fake behaving like zenodo.org: the ``/api/``
URLs readable cross-origin (including after a preflight and with ``Retry-After`` visible on a
429), the non-API file URL not readable.
"""

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser, static_server, tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>origin</title>")
    origin = static_server(tmp_path)
    context = browser.new_context()
    page = context.new_page()
    page.goto(origin + "/index.html")
    yield page
    context.close()


FETCH = """async ([url, headers]) => {
  try {
    const response = await fetch(url, {headers: headers || {}});
    const body = new Uint8Array(await response.arrayBuffer());
    return {ok: true, status: response.status, length: body.length,
            retryAfter: response.headers.get('Retry-After')};
  } catch (error) {
    return {ok: false, error: String(error)};
  }
}"""


def test_browser_reads_api_but_not_the_html_download_url(fake_zenodo, page):
    fake_zenodo.add_record(5, {"model.tfjs.zip": b"z" * 1234})
    record = page.evaluate(FETCH, [f"{fake_zenodo.url}/api/records/5", None])
    assert record["ok"] and record["status"] == 200
    content = page.evaluate(FETCH, [f"{fake_zenodo.url}/api/records/5/files/model.tfjs.zip/content", None])
    assert content == {"ok": True, "status": 200, "length": 1234, "retryAfter": None}
    blocked = page.evaluate(FETCH, [f"{fake_zenodo.url}/records/5/files/model.tfjs.zip", None])
    assert blocked["ok"] is False and "Failed to fetch" in blocked["error"]


def test_browser_preflight_and_rate_limit_header(fake_zenodo, page):
    fake_zenodo.add_record(5, {"m.tflite": b"t"})
    with_custom_header = page.evaluate(FETCH, [f"{fake_zenodo.url}/api/records/5", {"X-Vitrine-Test": "1"}])
    assert with_custom_header["ok"] and with_custom_header["status"] == 200
    assert any(r.method == "OPTIONS" and r.path == "/api/records/5" for r in fake_zenodo.requests)
    fake_zenodo.rate_limit(times=1, retry_after=7)
    limited = page.evaluate(FETCH, [f"{fake_zenodo.url}/api/records/5", None])
    assert limited["ok"] and limited["status"] == 429 and limited["retryAfter"] == "7"
