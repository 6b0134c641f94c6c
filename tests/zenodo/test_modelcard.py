"""Model card schema: round trip, every validation message, WebIPred's catalog format."""

import json
from pathlib import Path

import pytest

from app.errors import ModelFormatError
from app.modelcard import ModelCard, load_card, metrics_from_webipred_eval

ANCHORS = Path(__file__).resolve().parents[2].parent / "shared" / "anchors" / "webipred"
needs_anchors = pytest.mark.skipif(not (ANCHORS / "catalog-all.json").is_file(),
                                   reason=f"WebIPred anchors not present at {ANCHORS}")

FULL_CARD = {
    "schema_version": 1,
    "name": "Chest X-ray",
    "classes": ["NORMAL", "PNEUMONIA"],
    "multi_label": False,
    "threshold": 0.5,
    "input_size": [224, 200],
    "channels": 3,
    "resize_mode": 2,
    "standardize": "torch",
    "pad_square": True,
    "modality": "X-ray",
    "discipline": "Radiology",
    "description": "A test card.",
    "references": [{"citation": "Someone (2020).", "link": "https://example.org"}, {"citation": "No link."}],
    "license": "cc-by-4.0",
    "source": {"zenodo_id": 123, "doi": "10.5281/zenodo.123", "md5": "0" * 32, "version": "1.0", "file": "m.zip"},
    "metrics": {"auc": {"NORMAL": 0.99, "PNEUMONIA": 0.98}},
}


def test_round_trip_keeps_every_field():
    card = ModelCard.from_json(FULL_CARD)
    assert card.input_size == (224, 200) and card.classes == ("NORMAL", "PNEUMONIA")
    assert card.resize_mode == 2 and card.standardize == "torch" and card.pad_square is True
    assert card.source.zenodo_id == 123 and card.references[1].link is None
    assert card.to_json() == FULL_CARD
    assert ModelCard.from_json(json.loads(json.dumps(card.to_json()))) == card


def test_minimal_card_defaults():
    card = ModelCard.from_json({"name": "m", "classes": ["a", "b"]})
    assert (card.multi_label, card.threshold, card.input_size, card.channels, card.resize_mode,
            card.standardize, card.pad_square, card.source) == (False, 0.5, None, None, 1, None, False, None)


def test_card_is_frozen():
    card = ModelCard.from_json(FULL_CARD)
    with pytest.raises(AttributeError):
        card.classes = ("x",)
    with pytest.raises(TypeError):
        card.metrics["auc"]["NORMAL"] = 0.0


def test_license_object_from_zenodo_and_custom_x_fields():
    card = ModelCard.from_json({"name": "m", "classes": ["a"], "license": {"id": "mit"}, "x-notes": "mine"})
    assert card.license == "mit"


@pytest.mark.parametrize("change, message", [
    ({"classes": []}, r"field 'classes' must be a non-empty list"),
    ({"classes": ["a", "a", "b"]}, r"field 'classes' has duplicate names: a"),
    ({"classes": ["a", 3]}, r"field 'classes' entry 1 must be a non-empty string, got 3"),
    ({"input_size": [224]}, r"field 'input_size' must be \[height, width\] with two positive integers, got \[224\]"),
    ({"input_size": [224, 0]}, r"field 'input_size' must be \[height, width\]"),
    ({"channels": 2}, r"field 'channels' must be one of 1, 3 or null, got 2"),
    ({"channels": 4}, r"field 'channels' must be one of 1, 3 or null, got 4"),
    ({"channels": 1, "standardize": "torch"}, r"field 'standardize' 'torch' works on RGB images and needs channels 3 \(or null\), got channels 1"),
    ({"resize_mode": 7}, r"field 'resize_mode' must be an OpenCV interpolation code \(0=nearest, 1=linear, 2=cubic, 3=area, 4=lanczos4\), got 7"),
    ({"resize_mode": True}, r"field 'resize_mode' must be an OpenCV interpolation code"),
    ({"standardize": "imagenet"}, r"field 'standardize' must be one of torch, tf, caffe, z-score, minmax, grayscale or null, got 'imagenet'"),
    ({"threshold": 1.5}, r"field 'threshold' must be a number strictly between 0 and 1, got 1.5"),
    ({"multi_label": "yes"}, r"field 'multi_label' must be true or false, got 'yes'"),
    ({"pad_square": 1}, r"field 'pad_square' must be true or false, got 1"),
    ({"name": ""}, r"field 'name' must be a non-empty string"),
    ({"standardise": "torch"}, r"unknown field\(s\) 'standardise'; known fields are"),
    ({"schema_version": 2}, r"field 'schema_version' must be 1 \(this Vitrine reads schema 1\), got 2"),
    ({"references": [{"link": "x"}]}, r"field 'references' entry 0 must be a string or an object with a 'citation' string"),
    ({"source": {"zenodo_id": "123"}}, r"field 'source' 'zenodo_id' must be a positive integer, got '123'"),
    ({"source": {"md5": "XYZ"}}, r"field 'source' 'md5' must be 32 lower-case hex digits, got 'XYZ'"),
    ({"source": {"record": 1}}, r"field 'source' has unknown key\(s\) record"),
    ({"metrics": {"auc": {"a": "high"}}}, r"field 'metrics' 'auc' value for 'a' must be a number, got 'high'"),
    ({"metrics": {"auc": 0.9}}, r"field 'metrics' 'auc' must map class names to numbers"),
])
def test_validation_messages_name_file_and_field(change, message):
    with pytest.raises(ModelFormatError, match=r"^model.zip:model-card.json: " + message):
        ModelCard.from_json({**FULL_CARD, **change}, filename="model.zip:model-card.json")


@pytest.mark.parametrize("missing", ["name", "classes"])
def test_missing_required_field(missing):
    card = {k: v for k, v in FULL_CARD.items() if k != missing}
    with pytest.raises(ModelFormatError, match=rf"^card.json: missing required field '{missing}'"):
        ModelCard.from_json(card, filename="card.json")


def test_not_an_object():
    with pytest.raises(ModelFormatError, match="card.json: a model card must be a JSON object, got list"):
        ModelCard.from_json([], filename="card.json")


def test_load_card_reports_json_errors_with_position():
    with pytest.raises(ModelFormatError, match=r"^m.zip:model-card.json: not valid JSON \(.* at line 2, column 1\)"):
        load_card(b'{"name": "x",\n}', "m.zip:model-card.json")
    with pytest.raises(ModelFormatError, match=r"^m.json: not UTF-8 text"):
        load_card(b'{"name": "\xff"}', "m.json")
    assert load_card(json.dumps(FULL_CARD).encode("utf-8-sig"), "x").name == "Chest X-ray"


# -- WebIPred -----------------------------------------------------------------------------------

@needs_anchors
def test_from_webipred_reads_every_catalog_entry_as_is():
    entries = json.loads((ANCHORS / "catalog-all.json").read_text())["models"]
    assert len(entries) == 9
    for entry in entries:
        card = ModelCard.from_webipred(entry)
        assert card.name == entry["name"]
        assert list(card.classes) == [c["name"] for c in sorted(entry["classes"], key=lambda c: c["index"])]
        assert card.multi_label == entry["isMultiLabel"]
        assert card.input_size == (entry["resizeHeight"], entry["resizeWidth"])
        assert card.resize_mode == entry["resizeMode"]
        assert card.standardize == entry["standardizeMode"]
        assert card.channels is None  # WebIPred writes 0 = "not stated"
        assert card.discipline == entry["medicalDiscipline"] and card.modality == entry["medicalProcedure"]
        assert card.source.zenodo_id == entry["zenodoDepositID"]
        assert card.source.doi == f"10.5281/zenodo.{entry['zenodoDepositID']}"
        assert "<" not in card.description and card.description
        assert [r.citation for r in card.references] == [r["citation"] for r in entry["references"]]
    rfmid = next(ModelCard.from_webipred(e) for e in entries if e["zenodoDepositID"] == 7786002)
    assert rfmid.multi_label and len(rfmid.classes) == 29


def test_from_webipred_sorts_by_index_and_rejects_gaps():
    entry = {"id": 1, "name": "m", "resizeWidth": 32, "resizeHeight": 24, "numberOfColorChannels": 1,
             "classes": [{"index": 1, "name": "b"}, {"index": 0, "name": "a"}], "standardizeMode": None}
    card = ModelCard.from_webipred(entry)
    assert card.classes == ("a", "b") and card.input_size == (24, 32) and card.channels == 1 and card.standardize is None
    entry["classes"] = [{"index": 0, "name": "a"}, {"index": 2, "name": "c"}]
    with pytest.raises(ModelFormatError, match=r"WebIPred catalog \(model 1\): field 'classes' indices must be 0..1, got \[0, 2\]"):
        ModelCard.from_webipred(entry)
    with pytest.raises(ModelFormatError, match=r"missing field 'resizeWidth'"):
        ModelCard.from_webipred({"id": 2, "name": "m", "classes": [], "resizeHeight": 1})


@needs_anchors
def test_metrics_from_published_evaluation():
    raw = json.loads((ANCHORS / "model16-metrics-python.json").read_text())
    metrics = metrics_from_webipred_eval(raw)
    assert set(metrics) == {"accuracy", "precision", "recall", "specificity", "f1", "auc"}
    for item in raw["auc"]:
        assert metrics["auc"][item["name"]] == item["series"][0]["value"]
    with pytest.raises(ModelFormatError, match=r"eval.json: metric 'auc' entry .* is malformed"):
        metrics_from_webipred_eval({"auc": [{"name": "a"}]}, filename="eval.json")
