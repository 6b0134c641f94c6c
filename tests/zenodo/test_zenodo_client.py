"""Zenodo client and model-source resolution against the fake Zenodo server."""

import hashlib
import json
import time
import urllib.request

import pytest

from app.errors import CancelledError, ChecksumError, DownloadError, ModelSourceError
from app.http import UrllibTransport
from app.sources import ModelCache, fetch, parse_reference, resolve
from app.zenodo import (
    AmbiguousModelFileError,
    NoRunnableFileError,
    RateLimitedError,
    RecordNotFoundError,
    ZenodoClient,
    ZenodoFile,
    ZenodoRecord,
    choose_model_file,
    read_verified,
)
from fake_zenodo import make_zip

# incompressible "weights" so the zip spans many download chunks
WEIGHTS = b"".join(hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(300))
MODEL_ZIP = make_zip({"model.json": b'{"format": "layers-model"}', "group1-shard1of1.bin": WEIGHTS})


def client_for(server, waits=None, **kwargs):
    return ZenodoClient(zenodo_url=server.url, sleep=(waits.append if waits is not None else lambda s: None), **kwargs)


# -- records ---------------------------------------------------------------------------------------

def test_record_fields_follow_the_zenodo_json(fake_zenodo):
    fake_zenodo.add_record(123, {"model.tfjs.zip": MODEL_ZIP, "model.h5.zip": b"h5"}, title="Chest X-ray", version="1.2")
    record = client_for(fake_zenodo).get_record(123)
    assert (record.id, record.title, record.version, record.doi) == (123, "Chest X-ray", "1.2", "10.5281/zenodo.123")
    assert record.license == "cc-by-4.0"
    by_key = {f.key: f for f in record.files}
    assert by_key["model.tfjs.zip"].md5 == hashlib.md5(MODEL_ZIP).hexdigest()
    assert by_key["model.tfjs.zip"].size == len(MODEL_ZIP)
    # always the CORS-enabled API download URL
    assert by_key["model.tfjs.zip"].url == f"{fake_zenodo.url}/api/records/123/files/model.tfjs.zip/content"


def test_unknown_record_says_not_found(fake_zenodo):
    with pytest.raises(RecordNotFoundError, match=r"Zenodo record 999 not found \(HTTP 404") as info:
        client_for(fake_zenodo).get_record(999)
    assert info.value.record == 999


def test_concept_id_resolves_to_newest_version_and_says_so(fake_zenodo):
    fake_zenodo.add_record(201, {"m.tflite": b"x"}, version="1.0", concept_id=200)
    fake_zenodo.add_record(202, {"m.tflite": b"y"}, version="1.1", concept_id=200)
    notices = []
    record = client_for(fake_zenodo, on_notice=notices.append).get_record(200)
    assert record.id == 202
    expected = "200 is a Zenodo concept id (all versions); using the newest version 1.1: record 202 (of 2 versions)"
    assert notices == [expected]
    assert record.notices == (expected,)
    search = [r.path for r in fake_zenodo.requests if r.path.startswith("/api/records?")]
    assert search and "conceptrecid%3A200" in search[0] and "all_versions=true" in search[0] and "sort=-version" in search[0]


def test_rate_limit_is_retried_after_retry_after(fake_zenodo):
    fake_zenodo.add_record(123, {"m.tflite": b"x"})
    fake_zenodo.rate_limit(times=2, retry_after=3)
    waits, notices = [], []
    record = client_for(fake_zenodo, waits, on_notice=notices.append).get_record(123)
    assert record.id == 123
    assert waits == [3.0, 3.0]
    assert notices[0] == "Zenodo rate-limited the request for record 123; retrying in 3 s (retry 1 of 3)"
    assert "retry 2 of 3" in notices[1]


def test_rate_limit_without_retry_after_backs_off_exponentially_and_is_capped(fake_zenodo):
    fake_zenodo.add_record(123, {"m.tflite": b"x"})
    fake_zenodo.rate_limit(times=3, retry_after=None)
    waits = []
    client_for(fake_zenodo, waits, max_retries=3).get_record(123)
    assert waits == [1.0, 2.0, 4.0]
    fake_zenodo.rate_limit(times=1, retry_after=3600)
    waits.clear()
    client_for(fake_zenodo, waits, max_wait_seconds=5).get_record(123)
    assert waits == [5.0]


@pytest.mark.parametrize("header, expected_wait", [
    ("garbage", 1.0),                               # unreadable: back-off
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),         # an HTTP date in the past
    ("2.5", 2.5),
])
def test_retry_after_forms(fake_zenodo, header, expected_wait):
    fake_zenodo.add_record(123, {"m.tflite": b"x"})
    fake_zenodo.rate_limit(times=1, retry_after=header)
    waits = []
    client_for(fake_zenodo, waits).get_record(123)
    assert waits == [expected_wait]


def test_cancel_while_waiting_for_a_retry(fake_zenodo):
    fake_zenodo.add_record(123, {"m.tflite": b"x"})
    client = client_for(fake_zenodo)
    file = client.get_record(123).files[0]
    fake_zenodo.rate_limit(times=5, retry_after=0)
    calls = []
    with pytest.raises(CancelledError, match="file m.tflite: cancelled while waiting to retry"):
        client.download(file, cancel=lambda: calls.append(1) or len(calls) > 1)


def test_persistent_rate_limit_gives_up_with_a_clear_message(fake_zenodo):
    fake_zenodo.add_record(123, {"m.tflite": b"x"})
    fake_zenodo.rate_limit(times=10, retry_after=0)
    waits = []
    with pytest.raises(RateLimitedError, match=r"rate-limited the request for record 123 \(HTTP 429\) and still did after 2 retries"):
        client_for(fake_zenodo, waits, max_retries=2).get_record(123)
    assert len(waits) == 2


def test_server_error_is_reported_with_status(fake_zenodo):
    fake_zenodo.add_record(123, {"m.tflite": b"x"})
    fake_zenodo.fail(500, path="/api/records/123")
    with pytest.raises(DownloadError, match=r"Zenodo answered HTTP 500 for record 123"):
        client_for(fake_zenodo).get_record(123)


def test_503_is_retried(fake_zenodo):
    fake_zenodo.add_record(123, {"m.tflite": b"x"})
    fake_zenodo.fail(503, times=1)
    notices = []
    assert client_for(fake_zenodo, on_notice=notices.append).get_record(123).id == 123
    assert "answered HTTP 503" in notices[0]


def test_unreachable_server_names_the_url():
    client = ZenodoClient(zenodo_url="http://127.0.0.1:9", transport=UrllibTransport(timeout=2))
    with pytest.raises(DownloadError, match=r"could not reach http://127\.0\.0\.1:9/api/records/1"):
        client.get_record(1)


def test_a_server_that_never_answers_is_given_up_after_the_timeout_naming_the_url(fake_zenodo):
    fake_zenodo.add_record(123, {"model.tfjs.zip": MODEL_ZIP})
    fake_zenodo.hang(times=1, path="/api/records/123")
    client = ZenodoClient(zenodo_url=fake_zenodo.url, transport=UrllibTransport(timeout=1))
    with pytest.raises(DownloadError, match=rf"could not reach {fake_zenodo.url}/api/records/123: .*timed out"):
        client.get_record(123)
    # the client went away (the fake saw the connection close) and the next request is answered
    for _ in range(100):
        if fake_zenodo.unanswered:
            break
        time.sleep(0.05)
    assert fake_zenodo.unanswered == [("/api/records/123", "client closed")]
    assert client.get_record(123).id == 123


def test_a_body_that_stalls_is_given_up_after_the_timeout(fake_zenodo):
    fake_zenodo.add_record(123, {"model.tfjs.zip": MODEL_ZIP})
    client = ZenodoClient(zenodo_url=fake_zenodo.url, transport=UrllibTransport(timeout=1, chunk_bytes=1024))
    file = client.get_record(123).files[0]
    fake_zenodo.slow_body(123, "model.tfjs.zip", chunk_bytes=1024, delay_seconds=0, stall_after=4096)
    progress = []
    with pytest.raises(DownloadError, match=rf"download of model.tfjs.zip was truncated: received 4096 of {len(MODEL_ZIP)} "
                                            r"bytes before the connection failed \(download from .* failed while reading the body: timed out\)"):
        client.download(file, on_progress=lambda done, total: progress.append(done))
    assert progress[-1] == 4096


# -- downloads ------------------------------------------------------------------------------------

def test_download_reports_progress_and_verifies(fake_zenodo):
    fake_zenodo.add_record(123, {"model.tfjs.zip": MODEL_ZIP})
    client = ZenodoClient(zenodo_url=fake_zenodo.url, transport=UrllibTransport(chunk_bytes=1024))
    record = client.get_record(123)
    progress = []
    data = client.download(record.files[0], on_progress=lambda done, total: progress.append((done, total)))
    assert data == MODEL_ZIP
    assert progress[0] == (0, len(MODEL_ZIP)) and progress[-1] == (len(MODEL_ZIP), len(MODEL_ZIP))
    assert len(progress) > 3 and all(a[0] <= b[0] for a, b in zip(progress, progress[1:]))


def test_truncated_download_says_so(fake_zenodo):
    fake_zenodo.add_record(123, {"model.tfjs.zip": MODEL_ZIP})
    fake_zenodo.truncate(123, "model.tfjs.zip", after_bytes=100)
    client = client_for(fake_zenodo)
    with pytest.raises(DownloadError, match=rf"download of model.tfjs.zip was truncated: received 100 of {len(MODEL_ZIP)} bytes"):
        client.download(client.get_record(123).files[0])


def test_checksum_mismatch_shows_both_hashes(fake_zenodo):
    fake_zenodo.add_record(123, {"model.tfjs.zip": MODEL_ZIP})
    published = fake_zenodo.wrong_checksum(123, "model.tfjs.zip")
    actual = hashlib.md5(MODEL_ZIP).hexdigest()
    client = client_for(fake_zenodo)
    with pytest.raises(ChecksumError, match=rf"model.tfjs.zip is corrupt: its MD5 is {actual} but Zenodo publishes md5:{published}"):
        client.download(client.get_record(123).files[0])


def test_cancel_between_chunks(fake_zenodo):
    fake_zenodo.add_record(123, {"model.tfjs.zip": MODEL_ZIP})
    client = ZenodoClient(zenodo_url=fake_zenodo.url, transport=UrllibTransport(chunk_bytes=1024))
    record = client.get_record(123)
    received = []
    with pytest.raises(CancelledError, match=r"download of model.tfjs.zip cancelled after 2048 bytes"):
        client.download(record.files[0], on_progress=lambda done, total: received.append(done),
                        cancel=lambda: len(received) >= 3)  # (0), 1024, 2048 -> stop


def test_cancel_before_start_sends_no_request(fake_zenodo):
    file = ZenodoFile("m.zip", 10, None, f"{fake_zenodo.url}/api/records/1/files/m.zip/content")
    with pytest.raises(CancelledError, match="before it started"):
        client_for(fake_zenodo).download(file, cancel=lambda: True)
    assert fake_zenodo.requests == []


def test_missing_file_download_is_404(fake_zenodo):
    file = ZenodoFile("gone.zip", 10, None, f"{fake_zenodo.url}/api/records/1/files/gone.zip/content")
    with pytest.raises(DownloadError, match=r"file gone.zip not found on Zenodo \(HTTP 404"):
        client_for(fake_zenodo).download(file)


def test_read_verified_rejects_oversized_body():
    with pytest.raises(DownloadError, match="larger than the published 3 bytes"):
        read_verified([b"ab", b"cd"], name="x.zip", expected_size=3, expected_md5=None)


# -- the fake itself mirrors Zenodo's CORS behaviour (the browser tests rely on this) ------------

def test_fake_sends_cors_on_api_only(fake_zenodo):
    fake_zenodo.add_record(5, {"a.zip": b"abc"})
    api = urllib.request.urlopen(f"{fake_zenodo.url}/api/records/5/files/a.zip/content")
    assert api.headers["Access-Control-Allow-Origin"] == "*" and api.read() == b"abc"
    html = urllib.request.urlopen(f"{fake_zenodo.url}/records/5/files/a.zip")
    assert html.headers["Access-Control-Allow-Origin"] is None and html.read() == b"abc"
    preflight = urllib.request.Request(f"{fake_zenodo.url}/api/records/5", method="OPTIONS",
                                       headers={"Origin": "http://x", "Access-Control-Request-Method": "GET",
                                                "Access-Control-Request-Headers": "accept"})
    response = urllib.request.urlopen(preflight)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "accept"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(urllib.request.Request(f"{fake_zenodo.url}/records/5/files/a.zip", method="OPTIONS"))
    assert info.value.headers["Access-Control-Allow-Origin"] is None


def test_fake_search_shape(fake_zenodo):
    fake_zenodo.add_record(11, {"a.zip": b"1"}, concept_id=10, version="1")
    fake_zenodo.add_record(12, {"a.zip": b"2"}, concept_id=10, version="2")
    body = json.loads(urllib.request.urlopen(
        f"{fake_zenodo.url}/api/records?q=conceptrecid:10&all_versions=true&sort=-version").read())
    assert body["hits"]["total"] == 2
    assert [h["id"] for h in body["hits"]["hits"]] == [12, 11]


# -- choosing the file -----------------------------------------------------------------------------

def record_with(*keys):
    return ZenodoRecord(123, 122, "10.5281/zenodo.123", "t", None, None, "", None, (),
                        tuple(ZenodoFile(k, 1, None, f"http://x/{k}") for k in keys))


def test_choose_prefers_the_converted_tfjs_zip_over_h5_and_evaluations():
    record = record_with("model.h5.zip", "model.tfjs.zip", "metrics-python.json", "metrics-javascript.json")
    assert choose_model_file(record).key == "model.tfjs.zip"


@pytest.mark.parametrize("keys, chosen", [
    (("model.zip", "model_js.zip"), "model_js.zip"),
    (("weights.zip", "web-model.zip", "eval.json"), "web-model.zip"),
    (("model.h5.zip", "converted.zip"), "converted.zip"),
    (("jsonl-data.zip", "m.tflite"), "m.tflite"),
])
def test_choose_by_name_words(keys, chosen):
    assert choose_model_file(record_with(*keys)).key == chosen


def test_choose_tflite():
    assert choose_model_file(record_with("weights.h5", "classifier.tflite", "README.md")).key == "classifier.tflite"


def test_choose_single_unnamed_zip():
    assert choose_model_file(record_with("export.zip", "eval.json")).key == "export.zip"


def test_choose_ambiguous_lists_candidates():
    with pytest.raises(AmbiguousModelFileError, match=r"several files that could be the model: a.tflite, b_tfjs.zip; choose one") as info:
        choose_model_file(record_with("a.tflite", "b_tfjs.zip", "c.h5"))
    assert info.value.candidates == ("a.tflite", "b_tfjs.zip") and info.value.record == 123
    assert choose_model_file(record_with("a.tflite", "b_tfjs.zip"), file="b_tfjs.zip").key == "b_tfjs.zip"


def test_choose_ambiguous_unnamed_zips():
    with pytest.raises(AmbiguousModelFileError) as info:
        choose_model_file(record_with("one.zip", "two.zip"))
    assert info.value.candidates == ("one.zip", "two.zip")


def test_no_runnable_file_lists_files():
    with pytest.raises(NoRunnableFileError, match=r"Zenodo record 123 has no TF.js or TFLite model .*; files found: a.h5, b.json") as info:
        choose_model_file(record_with("a.h5", "b.json"))
    assert info.value.files == ("a.h5", "b.json")
    with pytest.raises(NoRunnableFileError, match="files found: model.h5.zip, dataset.zip"):
        choose_model_file(record_with("model.h5.zip", "dataset.zip"))


def test_explicit_missing_file_lists_files():
    with pytest.raises(ModelSourceError, match=r"record 123 has no file named 'x.zip'; files found: a.tflite"):
        choose_model_file(record_with("a.tflite"), file="x.zip")


# -- references --------------------------------------------------------------------------------------

@pytest.mark.parametrize("reference, record_id, file", [
    ("https://zenodo.org/records/7785993", 7785993, None),
    ("https://zenodo.org/record/7785993", 7785993, None),
    ("https://zenodo.org/records/7785993/files/model.tfjs.zip?download=1", 7785993, "model.tfjs.zip"),
    ("https://zenodo.org/api/records/7785993/files/a%20b.zip/content", 7785993, "a b.zip"),
    ("10.5281/zenodo.7785993", 7785993, None),
    ("doi:10.5281/zenodo.7785993", 7785993, None),
    ("https://doi.org/10.5281/zenodo.7785993", 7785993, None),
    ("https://zenodo.org/doi/10.5281/zenodo.7785993", 7785993, None),
    ("zenodo:7785993", 7785993, None),
    ("7785993", 7785993, None),
])
def test_parse_zenodo_references(reference, record_id, file):
    parsed = parse_reference(reference)
    assert (parsed.kind, parsed.record_id, parsed.file, parsed.zenodo_url) == ("zenodo", record_id, file, None)


def test_parse_url_of_another_server_keeps_its_origin():
    parsed = parse_reference("https://sandbox.zenodo.org/records/42")
    assert (parsed.record_id, parsed.zenodo_url) == (42, "https://sandbox.zenodo.org")


def test_parse_foreign_doi_and_local_path(tmp_path):
    assert parse_reference("10.1000/xyz.1").kind == "doi"
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    assert parse_reference(str(model)).path == model


@pytest.mark.parametrize("reference, message", [
    ("", "empty model reference"),
    ("zenodo:abc", "after 'zenodo:' a record number is expected"),
    ("doi:banana", "'banana' is not a DOI"),
    ("10.5281/zenodo.abc", "a Zenodo DOI ends in a record number"),
    ("https://example.org/page", "is not a Zenodo record URL"),
    ("/nope/model.zip", "model file /nope/model.zip does not exist"),
    ("chest-xray", "is not understood"),
])
def test_parse_reference_errors(reference, message):
    with pytest.raises(ModelSourceError, match=message):
        parse_reference(reference)


def test_resolve_url_with_file_on_the_fake(fake_zenodo):
    fake_zenodo.add_record(123, {"a.tflite": b"1", "b.tflite": b"2"})
    resolved = resolve(f"{fake_zenodo.url}/records/123/files/b.tflite")
    assert (resolved.record.id, resolved.file.key, resolved.zenodo_url) == (123, "b.tflite", fake_zenodo.url)
    with pytest.raises(AmbiguousModelFileError):
        resolve("zenodo:123", zenodo_url=fake_zenodo.url)
    assert resolve("zenodo:123", zenodo_url=fake_zenodo.url, file="a.tflite").file.key == "a.tflite"


def test_resolve_catalog_id_and_zenodo_url_override(fake_zenodo):
    from app.catalog import load_catalog

    fake_zenodo.add_record(7785993, {"model.h5.zip": b"h5", "model.tfjs.zip": MODEL_ZIP, "metrics.json": b"{}"})
    resolved = resolve("aucmedi-chest-xray-pneumonia", zenodo_url=fake_zenodo.url, catalog=load_catalog())
    assert resolved.file.key == "model.tfjs.zip"
    assert resolved.card.classes == ("NORMAL", "PNEUMONIA")
    assert resolved.catalog_id == "aucmedi-chest-xray-pneumonia"
    # a zenodo.org URL is served from the configured server
    assert resolve("https://zenodo.org/records/7785993", zenodo_url=fake_zenodo.url).record.id == 7785993


def test_resolve_foreign_doi_by_search(fake_zenodo):
    fake_zenodo.add_record(55, {"m.tflite": b"x"}, metadata={"doi": "10.1000/journal.55"})
    assert resolve("10.1000/journal.55", zenodo_url=fake_zenodo.url).record.id == 55
    with pytest.raises(ModelSourceError, match=r"DOI 10.1000/other is not a Zenodo DOI and no record on .* carries it"):
        resolve("10.1000/other", zenodo_url=fake_zenodo.url)


def test_fetch_uses_and_verifies_the_cache(fake_zenodo, tmp_path):
    fake_zenodo.add_record(123, {"model.tfjs.zip": MODEL_ZIP})
    resolved = resolve("zenodo:123", zenodo_url=fake_zenodo.url)
    notices = []
    cache = ModelCache(tmp_path, on_notice=notices.append)
    assert fetch(resolved, cache=cache) == MODEL_ZIP
    downloads = lambda: sum(r.path.endswith("/content") for r in fake_zenodo.requests)  # noqa: E731
    assert downloads() == 1
    assert fetch(resolved, cache=cache) == MODEL_ZIP
    assert downloads() == 1  # served from the cache
    cached = cache.path_for(123, hashlib.md5(MODEL_ZIP).hexdigest(), "model.tfjs.zip")
    assert cached.is_file() and cached.parent.name == f"zenodo-123-{hashlib.md5(MODEL_ZIP).hexdigest()}"
    cached.write_bytes(b"bit rot")
    assert fetch(resolved, cache=cache) == MODEL_ZIP
    assert downloads() == 2
    assert "was corrupt and has been deleted" in notices[0]


def test_unwritable_cache_is_reported_and_the_download_still_used(fake_zenodo, tmp_path):
    fake_zenodo.add_record(123, {"model.tfjs.zip": MODEL_ZIP})
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    notices = []
    data = fetch(resolve("zenodo:123", zenodo_url=fake_zenodo.url), cache=ModelCache(blocker, on_notice=notices.append))
    assert data == MODEL_ZIP
    assert notices and notices[0].startswith(f"could not write the model cache {blocker}:")
