"""The workflow calls the browser UI makes (catalog, resolve_model, open_model, inspect_image,
classify, export_results, chart) on plain CPython. Expected probabilities come from TensorFlow
(static/demo/expected.json, recorded by tools/make_demo_model.py)."""

import base64
import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.http import UrllibTransport
from app.service import EngineService
from tests.zenodo.fake_zenodo import FakeZenodo

DEMO = Path(__file__).resolve().parents[2] / "static" / "demo"


@pytest.fixture(scope="module")
def truth():
    return json.loads((DEMO / "expected.json").read_text())


@pytest.fixture
def service():
    return EngineService()


@pytest.fixture
def demo(service):
    reply = service.handle({"call": "open_model", "args": {"name": "demo-model.zip"}}, (DEMO / "demo-model.zip").read_bytes())
    assert reply["ok"], reply
    return reply["result"]


def test_open_model_reads_the_card_and_reports_md5(demo, truth):
    assert demo["md5"] == truth["model"]["md5"]
    assert demo["card"]["classes"] == truth["model"]["classes"]
    assert demo["format"] == "tfjs-layers" and demo["has_card"] is True
    assert demo["card"]["source"]["md5"] == truth["model"]["md5"]


def test_open_model_refuses_a_wrong_md5(service):
    data = (DEMO / "demo-model.zip").read_bytes()
    reply = service.handle({"call": "open_model", "args": {"name": "m.zip", "source": {"md5": "0" * 32}}}, data)
    assert reply["error"]["type"] == "ChecksumError"
    assert "m.zip is corrupt" in reply["error"]["message"]


def test_open_model_explains_a_zip_without_a_model(service):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "nothing here")
    reply = service.handle({"call": "open_model", "args": {"name": "empty.zip"}}, buffer.getvalue())
    assert reply["ok"] is False
    assert "holds no model.json" in reply["error"]["message"] and "notes.txt" in reply["error"]["message"]


def test_classify_matches_tensorflow_on_every_sample(service, demo, truth):
    for name, sample in truth["samples"].items():
        reply = service.handle({"call": "classify", "args": {"model": demo["model"], "name": name}},
                               (DEMO / "samples" / name).read_bytes())
        assert reply["ok"], reply
        np.testing.assert_allclose(reply["result"]["probabilities"], sample["probabilities"], atol=1e-4, err_msg=name)
        assert reply["result"]["predicted"] == [sample["predicted"]]


def test_classify_reports_a_corrupt_file_by_name(service, demo):
    reply = service.handle({"call": "classify", "args": {"model": demo["model"], "name": "corrupt.png"}},
                           (DEMO / "samples" / "corrupt.png").read_bytes())
    assert reply["error"]["type"] == "ImageFormatError"
    assert reply["error"]["message"].startswith("corrupt.png: truncated or corrupt PNG")


def test_classify_needs_a_loaded_model(service):
    reply = service.handle({"call": "classify", "args": {"model": "m9", "name": "x.png"}}, b"x")
    assert reply["error"]["type"] == "ServiceRequestError" and "no loaded model 'm9'" in reply["error"]["message"]


def test_inspect_image_returns_a_decodable_thumbnail(service):
    reply = service.handle({"call": "inspect_image", "args": {"name": "fundus_retina.jpg"}},
                           (DEMO / "samples" / "fundus_retina.jpg").read_bytes())
    result = reply["result"]
    thumbnail = Image.open(io.BytesIO(base64.b64decode(result["thumbnail_png"])))
    assert thumbnail.format == "PNG" and max(thumbnail.size) == 128
    assert result["shape"][:2] == [384, 384] and "phi" not in result


def test_inspect_image_hides_dicom_patient_fields_unless_asked(service):
    pytest.importorskip("pydicom")
    data = (DEMO / "samples" / "ct_small.dcm").read_bytes()
    hidden = service.handle({"call": "inspect_image", "args": {"name": "ct_small.dcm"}}, data)["result"]
    shown = service.handle({"call": "inspect_image", "args": {"name": "ct_small.dcm", "show_phi": True}}, data)["result"]
    assert "phi" not in hidden and "phi" not in json.dumps(hidden["metadata"]).lower()
    assert shown["phi"], "the sample CT carries patient fields"


def test_export_csv_has_the_results_columns(service, demo, truth):
    results = [{"file": "a.png", "probabilities": truth["samples"]["ct_head.png"]["probabilities"]},
               {"file": "bad.png", "error": "bad.png: corrupt"}]
    reply = service.handle({"call": "export_results", "args": {"model": demo["model"], "format": "csv", "results": results}})
    result = reply["result"]
    assert result["filename"].endswith(".csv") and result["mime"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(result["text"])))
    assert [r["file"] for r in rows] == ["a.png", "bad.png"]
    assert rows[0]["predicted"] == "CT" and rows[0]["model_md5"] == truth["model"]["md5"]
    assert rows[1]["error"] == "bad.png: corrupt" and rows[1]["P(CT)"] == ""


def test_export_from_a_card_when_the_model_is_gone(service, demo):
    reply = service.handle({"call": "export_results", "args": {
        "format": "json", "card": demo["card"], "model_info": {"name": "demo", "source": "s", "md5": "m"},
        "results": [{"file": "a.png", "probabilities": [0, 0, 0, 0, 1, 0]}]}})
    assert reply["ok"], reply
    assert reply["result"]["filename"].endswith(".json")
    assert "microscopy" in reply["result"]["text"]


def test_export_rejects_an_unknown_format(service, demo):
    reply = service.handle({"call": "export_results", "args": {"model": demo["model"], "format": "xlsx", "results": []}})
    assert "format must be 'csv' or 'json', received 'xlsx'" in reply["error"]["message"]


def test_chart_call_returns_svg_and_rejects_unknown_kinds(service, demo):
    reply = service.handle({"call": "chart", "args": {"model": demo["model"], "kind": "bars",
                                                      "probabilities": [0.1, 0.5, 0.1, 0.1, 0.1, 0.1]}})
    assert reply["result"]["svg"].startswith("<svg")
    reply = service.handle({"call": "chart", "args": {"model": demo["model"], "kind": "pie"}})
    assert "kind must be 'bars' or 'grouped', received 'pie'" in reply["error"]["message"]


def test_catalog_lists_entries_with_filters(service):
    result = service.handle({"call": "catalog"})["result"]
    assert result["entries"] and result["formats"] == ["tfjs-layers", "tflite"]
    assert all(e["discipline"] in result["disciplines"] for e in result["entries"] if e["discipline"])


def test_dicom_without_pydicom_asks_for_the_optional_group(service, demo, monkeypatch):
    import app.service as service_module

    monkeypatch.setattr(service_module, "find_spec", lambda name: None)
    reply = service.handle({"call": "inspect_image", "args": {"name": "ct_small.dcm"}},
                           (DEMO / "samples" / "ct_small.dcm").read_bytes())
    assert reply["error"]["type"] == "OptionalPackagesNeededError"
    assert reply["error"]["group"] == "medical" and reply["error"]["file"] == "ct_small.dcm"


def test_resolve_model_against_fake_zenodo():
    with FakeZenodo() as zenodo:
        data = (DEMO / "demo-model.zip").read_bytes()
        zenodo.add_record(77, {"model-tfjs.zip": data}, title="Demo", version="2.0")
        zenodo.add_record(78, {"a-tfjs.zip": data, "b-tfjs.zip": data}, title="Two")
        service = EngineService(transport=UrllibTransport(timeout=5))
        reply = service.handle({"call": "resolve_model", "args": {"reference": "10.5281/zenodo.77", "zenodo_url": zenodo.url}})
        result = reply["result"]
        assert (result["record"], result["file"], result["version"], result["size"]) == (77, "model-tfjs.zip", "2.0", len(data))
        assert result["url"] == f"{zenodo.url}/api/records/77/files/model-tfjs.zip/content"
        missing = service.handle({"call": "resolve_model", "args": {"reference": "12345", "zenodo_url": zenodo.url}})
        assert missing["error"]["type"] == "RecordNotFoundError" and "12345 not found" in missing["error"]["message"]
        ambiguous = service.handle({"call": "resolve_model", "args": {"reference": "78", "zenodo_url": zenodo.url}})
        assert ambiguous["error"]["type"] == "AmbiguousModelFileError"
        assert sorted(ambiguous["error"]["candidates"]) == ["a-tfjs.zip", "b-tfjs.zip"]
        chosen = service.handle({"call": "resolve_model", "args": {"reference": "78", "file": "b-tfjs.zip", "zenodo_url": zenodo.url}})
        assert chosen["result"]["file"] == "b-tfjs.zip"
        empty = service.handle({"call": "resolve_model", "args": {"reference": "  "}})
        assert "reference is empty" in empty["error"]["message"]
