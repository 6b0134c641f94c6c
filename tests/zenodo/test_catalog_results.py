"""The shipped catalog (facts match WebIPred, prose is our own) and the CSV / JSON export."""

import csv
import io
import json
import re
from pathlib import Path

import pytest

from app.catalog import CatalogEntry, load_catalog, parse_catalog
from app.errors import ModelFormatError, ModelSourceError, VitrineError
from app.modelcard import ModelCard, html_to_text
from app.results import PredictionResult, rows_for_export, to_csv, to_json

ANCHORS = Path(__file__).resolve().parents[2].parent / "shared" / "anchors" / "webipred"
needs_anchors = pytest.mark.skipif(not (ANCHORS / "catalog-all.json").is_file(),
                                   reason=f"WebIPred anchors not present at {ANCHORS}")
AUCMEDI_RECORDS = {7785982, 7785986, 7785989, 7785992, 7785993, 7785996, 7786001, 7786002, 7786009}


def test_catalog_has_the_nine_aucmedi_records():
    catalog = load_catalog()
    assert {e.zenodo_record for e in catalog} == AUCMEDI_RECORDS
    assert all(e.format == "tfjs-layers" and e.builtin for e in catalog)
    assert len({e.id for e in catalog}) == 9


@needs_anchors
def test_catalog_facts_match_webipred_and_descriptions_are_our_own():
    webipred = {m["zenodoDepositID"]: m for m in json.loads((ANCHORS / "catalog-all.json").read_text())["models"]}
    for entry in load_catalog():
        source = webipred[entry.zenodo_record]
        card = entry.card
        assert list(card.classes) == [c["name"] for c in sorted(source["classes"], key=lambda c: c["index"])]
        assert card.input_size == (source["resizeHeight"], source["resizeWidth"])
        assert card.resize_mode == source["resizeMode"] and card.standardize == source["standardizeMode"]
        assert card.multi_label == source["isMultiLabel"]
        assert card.discipline == source["medicalDiscipline"] and card.modality == source["medicalProcedure"]
        # no run of 8 consecutive words taken from WebIPred's description
        theirs = re.findall(r"[a-z0-9]+", html_to_text(source["description"]).lower())
        ours = " ".join(re.findall(r"[a-z0-9]+", card.description.lower()))
        copied = [" ".join(theirs[i:i + 8]) for i in range(len(theirs) - 7) if " ".join(theirs[i:i + 8]) in ours]
        assert copied == [], f"{entry.id}: description copies WebIPred: {copied[:2]}"
        assert card.name != source["name"]


@needs_anchors
def test_catalog_input_size_matches_the_published_topology():
    """WebIPred's converted DenseNet121 for the chest X-ray model (record 7785993)."""
    topology = json.loads((ANCHORS / "model16-model.json").read_text())["modelTopology"]["model_config"]["config"]
    input_layer = next(layer for layer in topology["layers"] if layer["class_name"] == "InputLayer")
    _, height, width, channels = input_layer["config"]["batch_input_shape"]
    card = load_catalog().by_zenodo_record(7785993).card
    assert card.input_size == (height, width)
    assert card.channels in (None, channels)
    dense_units = [layer["config"]["units"] for layer in topology["layers"] if layer["class_name"] == "Dense"]
    assert dense_units[-1] == len(card.classes)  # the classifier head: one output per class
    assert topology["layers"][-1]["config"]["activation"] == "softmax" and not card.multi_label


def test_search_and_filters():
    catalog = load_catalog()
    assert [e.zenodo_record for e in catalog.search("pneumonia x-ray")] == [7785993]
    assert {e.zenodo_record for e in catalog.filter(discipline="radiology")} == {7785993, 7786001}
    assert [e.zenodo_record for e in catalog.filter(modality="MRI")] == [7786009]
    assert [e.zenodo_record for e in catalog.search("glioma")] == [7786009]
    assert {e.zenodo_record for e in catalog.filter(modality="endoscopy")} == {7785986, 7785989}
    assert catalog.search("no such thing anywhere") == []
    assert len(catalog.filter(format="tfjs-layers")) == 9 and catalog.filter(format="tflite") == []


def test_lookup_errors_list_ids():
    catalog = load_catalog()
    assert catalog.get("aucmedi-brain-tumor-mri").zenodo_record == 7786009
    with pytest.raises(ModelSourceError, match=r"no catalog model with id 'brain'; known ids: aucmedi-skin-lesion-isic2019, "):
        catalog.get("brain")
    assert catalog.get("brain", default=None) is None


def test_user_models_are_added_in_memory_only():
    catalog = load_catalog()
    entry = catalog.add_reference("https://zenodo.org/records/555")
    assert (entry.id, entry.zenodo_record, entry.builtin) == ("zenodo-555", 555, False)
    assert catalog.get("zenodo-555") is entry and len(catalog) == 10
    assert len(load_catalog()) == 9
    with pytest.raises(ModelSourceError, match="catalog already has a model with id 'zenodo-555'"):
        catalog.add_reference("zenodo:555")
    card = ModelCard(name="Mine", classes=("a", "b"), modality="X-ray")
    mine = catalog.add(CatalogEntry("mine", card, "tflite"))
    assert mine.builtin is False and catalog.search("mine") == [mine]


@pytest.mark.parametrize("obj, message", [
    ({"schema": "other"}, r"expected an object with schema 'vitrine-catalog/1', got 'other'"),
    ({"schema": "vitrine-catalog/1", "models": {}}, r"field 'models' must be a list"),
    ({"schema": "vitrine-catalog/1", "models": [{"card": {}}]}, r"model 0: needs a non-empty string 'id'"),
    ({"schema": "vitrine-catalog/1", "models": [{"id": "a", "format": "onnx", "card": {}}]},
     r"model 'a': field 'format' must be one of tfjs-layers, tflite, got 'onnx'"),
    ({"schema": "vitrine-catalog/1", "models": [{"id": "a", "zenodo_record": -1, "card": {}}]},
     r"model 'a': field 'zenodo_record' must be a positive integer"),
    ({"schema": "vitrine-catalog/1", "models": [{"id": "a", "card": {"name": "x", "classes": []}}]},
     r"model 'a' card: field 'classes' must be a non-empty list"),
])
def test_catalog_validation(obj, message):
    with pytest.raises(ModelFormatError, match=message):
        parse_catalog(obj, filename="user.json")


# -- export -----------------------------------------------------------------------------------------

CARD = ModelCard(name="Three", classes=("cat", "dog", "=cmd"))
ML_CARD = ModelCard(name="Multi", classes=("a", "b", "c"), multi_label=True)
INFO = {"name": "Three v1", "source": "zenodo:1/m.zip", "md5": "ab" * 16}


def test_csv_columns_and_values():
    results = [PredictionResult("x.png", [0.1, 0.7, 0.2]), PredictionResult("bad.png", error="bad.png: truncated PNG")]
    text = to_csv(results, CARD, INFO, date="2026-01-02T03:04:05+00:00")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["file", "predicted", "P(cat)", "P(dog)", "P(=cmd)", "model", "model_source", "model_md5", "date", "error"]
    assert rows[1][:2] == ["x.png", "dog"]
    assert rows[1][5:] == ["Three v1", "zenodo:1/m.zip", "ab" * 16, "2026-01-02T03:04:05+00:00", ""]
    assert [float(v) for v in rows[1][2:5]] == pytest.approx([0.1, 0.7, 0.2], abs=1e-8)
    assert rows[2] == ["bad.png", "", "", "", "", "Three v1", "zenodo:1/m.zip", "ab" * 16, "2026-01-02T03:04:05+00:00",
                       "bad.png: truncated PNG"]
    assert text.endswith("\r\n")


def test_csv_neutralises_spreadsheet_formulas():
    text = to_csv([PredictionResult("=HYPERLINK(1).png", [0.0, 0.0, 1.0])], CARD, INFO, date="d")
    row = list(csv.reader(io.StringIO(text)))[1]
    assert row[0] == "'=HYPERLINK(1).png" and row[1] == "'=cmd"


def test_multi_label_uses_threshold():
    results = [PredictionResult("e.png", [0.9, 0.5, 0.49])]
    assert rows_for_export(results, ML_CARD, INFO, date="d")[0]["predicted"] == "a; b"
    assert rows_for_export(results, ML_CARD, INFO, threshold=0.8, date="d")[0]["predicted"] == "a"
    assert rows_for_export([PredictionResult("n.png", [0.1, 0.1, 0.1])], ML_CARD, INFO, date="d")[0]["predicted"] == ""


def test_json_export():
    results = [PredictionResult("e.png", [0.9, 0.6, 0.1]), {"file": "f.png", "error": "f.png: empty"}]
    doc = json.loads(to_json(results, ML_CARD, INFO, date="2026-01-01"))
    assert doc["model"] == {"name": "Three v1", "source": "zenodo:1/m.zip", "md5": "ab" * 16}
    assert doc["classes"] == ["a", "b", "c"] and doc["multi_label"] is True and doc["threshold"] == 0.5
    assert doc["predictions"][0] == {"file": "e.png", "predicted": ["a", "b"],
                                     "probabilities": {"a": 0.9, "b": 0.6, "c": 0.1}, "error": None}
    assert doc["predictions"][1] == {"file": "f.png", "predicted": [], "probabilities": None, "error": "f.png: empty"}


def test_export_rejects_wrong_output_count_and_nan():
    with pytest.raises(VitrineError, match=r"x.png: the model gave 2 outputs but the model card lists 3 classes \(cat, dog, =cmd\)"):
        to_csv([PredictionResult("x.png", [0.5, 0.5])], CARD, INFO)
    with pytest.raises(VitrineError, match="x.png: the model produced NaN probabilities"):
        to_csv([PredictionResult("x.png", [float("nan"), 0.5, 0.5])], CARD, INFO)


def test_export_default_date_is_utc_iso():
    row = rows_for_export([PredictionResult("x.png", [1, 0, 0])], CARD, INFO)[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", row["date"])
    assert row["model"] == "Three v1"
    assert rows_for_export([PredictionResult("x.png", [1, 0, 0])], CARD, None, date="d")[0]["model"] == "Three"
