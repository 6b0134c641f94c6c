"""WebIPred's catalog read as-is: ``app.catalog.load_catalog(path)`` (shape detection, errors that
name the file), ``vitrine models --catalog FILE`` and ``vitrine predict --catalog FILE --model
webipred-<id>`` against the fake Zenodo.

Facts are checked against the raw JSON of WebIPred's real ``catalog-all.json`` (the anchor, read
only); predictions against TensorFlow's outputs in ``data/cli_png/expected.npz`` (see
``test_zenodo_cli.py``).
"""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from app.catalog import FORMATS, load_catalog
from app.cli import main
from app.errors import ModelFormatError, ModelSourceError
from app.modelcard import ModelCard
from test_zenodo_cli import CASE, CLASSES, PNG_DIR, model_zip, needs_case, needs_engine, require_fresh_ground_truth

ANCHOR = Path(__file__).resolve().parents[2].parent / "shared" / "anchors" / "webipred" / "catalog-all.json"
needs_anchor = pytest.mark.skipif(not ANCHOR.is_file(), reason=f"WebIPred's catalog not present at {ANCHOR}")


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def webipred_entry(**overrides):
    """A hand-written entry in WebIPred's shape describing the committed tiny CNN (16x16x3, no standardisation)."""
    entry = {"id": 7, "name": "Tiny CNN (WebIPred shape)", "description": "<b>Tiny</b> test model",
             "isMultiClass": True, "isMultiLabel": False, "resizeWidth": 16, "resizeHeight": 16,
             "numberOfColorChannels": 3, "zenodoDepositID": 321, "standardizeMode": None, "resizeMode": 1,
             "medicalDiscipline": "Testing", "medicalProcedure": "Synthetic",
             "classes": [{"index": i, "name": name} for i, name in reversed(list(enumerate(CLASSES)))],
             "references": [{"id": 1, "citation": "Nobody (2026). A tiny model."}]}
    entry.update(overrides)
    return entry


def write_json(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


# -- the real catalog --------------------------------------------------------------------------------

@needs_anchor
def test_load_catalog_reads_webipreds_file_as_is():
    raw = json.loads(ANCHOR.read_text(encoding="utf-8"))["models"]
    catalog = load_catalog(ANCHOR)
    assert [e.id for e in catalog] == [f"webipred-{m['id']}" for m in raw]
    for entry, source in zip(catalog, raw):
        assert entry.zenodo_record == source["zenodoDepositID"] and entry.format == "tfjs-layers" in FORMATS
        assert entry.name == source["name"]
        assert list(entry.card.classes) == [c["name"] for c in sorted(source["classes"], key=lambda c: c["index"])]
        assert entry.card.input_size == (source["resizeHeight"], source["resizeWidth"])
        assert entry.card.standardize == source["standardizeMode"] and entry.card.multi_label == source["isMultiLabel"]
        assert entry.discipline == source["medicalDiscipline"] and entry.modality == source["medicalProcedure"]
    assert [e.id for e in catalog.search("pneumonia")] == ["webipred-16", "webipred-18"]  # 18 describes pneumonia CT
    assert [e.id for e in catalog.search("pneumonia x-ray")] == ["webipred-16"]
    assert [e.zenodo_record for e in catalog.filter(discipline="radiology")] == [7785993, 7786001]


@needs_anchor
def test_models_command_lists_searches_filters_and_shows_the_file(capsys):
    raw = {m["id"]: m for m in json.loads(ANCHOR.read_text(encoding="utf-8"))["models"]}
    code, out, _ = run_cli(capsys, "models", "--catalog", ANCHOR)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["id", "discipline", "modality"] and len(lines) == 1 + len(raw)
    assert [line.split()[0] for line in lines[1:]] == [f"webipred-{i}" for i in raw]
    assert "aucmedi-" not in out  # the file replaces the shipped catalog
    row = next(line for line in lines if line.startswith("webipred-19 "))
    assert "29 (multi-label)" in row and str(raw[19]["zenodoDepositID"]) in row
    code, out, _ = run_cli(capsys, "models", "--catalog", ANCHOR, "--modality", "MRI")
    assert code == 0 and [line.split()[0] for line in out.strip().splitlines()[1:]] == ["webipred-20"]
    code, out, _ = run_cli(capsys, "models", "--catalog", ANCHOR, "--discipline", "gastro", "--json")
    assert code == 0 and [e["zenodo_record"] for e in json.loads(out)] == [7785986, 7785989]
    code, out, _ = run_cli(capsys, "models", "--catalog", ANCHOR, "--search", "breast ultrasound")
    assert code == 0 and [line.split()[0] for line in out.strip().splitlines()[1:]] == ["webipred-17"]
    code, out, _ = run_cli(capsys, "models", "--catalog", ANCHOR, "--show", "webipred-16")
    shown = json.loads(out)
    assert code == 0 and shown["zenodo_record"] == 7785993 and shown["card"]["classes"] == ["NORMAL", "PNEUMONIA"]
    assert shown["card"]["source"] == {"zenodo_id": 7785993, "doi": "10.5281/zenodo.7785993"}
    code, _, err = run_cli(capsys, "models", "--catalog", ANCHOR, "--show", "16")
    assert code == 2 and "no catalog model with id '16'; known ids: webipred-12, webipred-13" in err


@needs_anchor
@needs_engine
@needs_case
def test_predict_resolves_an_entry_of_webipreds_file(fake_zenodo, capsys, tmp_path):
    """webipred-16 -> its zenodoDepositID 7785993 on the (fake) Zenodo; the zip's own card wins over
    the catalog's (the stand-in model is the tiny CNN, not WebIPred's DenseNet)."""
    require_fresh_ground_truth("meta.json", CASE, "make_cli_expected.py (in /opt/tfenv)")
    fake_zenodo.add_record(7785993, {"model.h5.zip": b"keras", "model.tfjs.zip": model_zip(),
                                     "metrics-python.json": b"{}"}, version="1.0")
    code, _, err = run_cli(capsys, "predict", "--catalog", ANCHOR, "--model", "webipred-16", "--zenodo-url",
                           fake_zenodo.url, "--no-cache", PNG_DIR / "img_b.png", "--json", tmp_path / "o.json")
    assert code == 0, err
    assert "model: Zenodo record 7785993 version 1.0, file model.tfjs.zip" in err
    doc = json.loads((tmp_path / "o.json").read_text())
    with np.load(PNG_DIR / "expected.npz") as data:
        truth = data["img_b.png"]
    np.testing.assert_allclose([doc["predictions"][0]["probabilities"][c] for c in CLASSES], truth, atol=1e-5)


@needs_anchor
def test_bare_number_with_a_webipred_catalog_is_ambiguous(fake_zenodo, capsys, tmp_path):
    code, _, err = run_cli(capsys, "predict", "--catalog", ANCHOR, "--model", "16", "--zenodo-url", fake_zenodo.url,
                           tmp_path / "x.png")
    assert code == 2
    assert (f"--model 16 is ambiguous: Zenodo record 16, or entry webipred-16 of {ANCHOR}; write --model webipred-16 "
            f"for the catalog entry or --model zenodo:16 for the record") in err
    assert fake_zenodo.requests == []  # refused before any request


@needs_anchor
def test_unknown_entry_lists_the_files_ids(capsys, tmp_path):
    code, _, err = run_cli(capsys, "predict", "--catalog", ANCHOR, "--model", "webipred-99", tmp_path / "x.png")
    assert code == 2 and "model reference 'webipred-99' is not understood" in err
    assert "(catalog ids: webipred-12, webipred-13, webipred-14," in err


# -- a hand-written WebIPred-shaped file: the catalog's card drives preprocessing and names ------------

@needs_engine
@needs_case
def test_predict_with_the_catalog_card_of_a_webipred_entry(fake_zenodo, capsys, tmp_path):
    """The zip has no card: class names (given out of index order) and preprocessing come from the
    WebIPred entry; the probabilities are TensorFlow's."""
    require_fresh_ground_truth("meta.json", CASE, "make_cli_expected.py (in /opt/tfenv)")
    catalog = write_json(tmp_path / "catalog-all.json", {"models": [webipred_entry()], "pagination_links": {}})
    fake_zenodo.add_record(321, {"model.tfjs.zip": model_zip(card=None)})
    pngs = [PNG_DIR / name for name in ("img_a.png", "img_c.png")]
    code, _, err = run_cli(capsys, "predict", "--catalog", catalog, "--model", "webipred-7", "--zenodo-url",
                           fake_zenodo.url, "--no-cache", *pngs, "--csv", tmp_path / "o.csv")
    assert code == 0, err
    assert "no model card" not in err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "o.csv").read_text(encoding="utf-8"))))
    with np.load(PNG_DIR / "expected.npz") as data:
        for row, png in zip(rows, pngs):
            np.testing.assert_allclose([float(row[f"P({c})"]) for c in CLASSES], data[png.name], atol=1e-5)
            assert row["model"] == "Tiny CNN (WebIPred shape)"


def test_a_bare_list_of_entries_and_vitrines_own_format_are_read(tmp_path):
    catalog = load_catalog(write_json(tmp_path / "list.json", [webipred_entry(), webipred_entry(id="x2", zenodoDepositID=None)]))
    assert [(e.id, e.zenodo_record) for e in catalog] == [("webipred-7", 321), ("webipred-x2", None)]
    assert catalog.get("webipred-7").card.classes == tuple(CLASSES) and catalog.get("webipred-7").card.description == "Tiny test model"
    own = {"schema": "vitrine-catalog/1",
           "models": [{"id": "mine", "format": "tflite", "zenodo_record": 5, "card": {"name": "Mine", "classes": ["a", "b"]}}]}
    catalog = load_catalog(write_json(tmp_path / "own.json", own))
    assert [(e.id, e.format, e.zenodo_record, e.card.classes) for e in catalog] == [("mine", "tflite", 5, ("a", "b"))]


def test_entry_without_a_record_cannot_be_downloaded(capsys, tmp_path):
    catalog = write_json(tmp_path / "c.json", {"models": [webipred_entry(zenodoDepositID=None)]})
    code, _, err = run_cli(capsys, "predict", "--catalog", catalog, "--model", "webipred-7", tmp_path / "x.png")
    assert code == 2 and "catalog entry 'webipred-7' has no Zenodo record to download" in err


# -- bad catalog files: the file and the reason ---------------------------------------------------------

BAD_FILES = [
    ("not JSON", b'{"models": [', r"{path}: not valid JSON \(Expecting value at line 1, column 13\)"),
    ("not UTF-8", b'{"models": "\xff"}', r"{path}: not UTF-8 text \(invalid start byte at byte 12\)"),
    ("other object", b'{"records": []}', r"{path}: not a model catalog: expected Vitrine's format .* or WebIPred's "
                                            r"catalog-all.json .*; got an object with keys 'records'"),
    ("entries not WebIPred's", b'{"models": [{"title": "x"}]}',
     r"{path}: not a model catalog: .*got 1 model entries without any of those fields \(first entry's keys: 'title'\)"),
    ("numbers", b'[1, 2]', r"{path}: not a model catalog: .*\(the entries are not objects\)"),
    ("a string", b'"catalog"', r"{path}: not a model catalog: .*got a JSON str"),
    ("empty", b'{"models": []}', r"{path}: the catalog lists no models"),
    ("wrong Vitrine schema", b'{"schema": "vitrine-catalog/9", "models": []}',
     r"{path}: expected an object with schema 'vitrine-catalog/1', got 'vitrine-catalog/9'"),
]


@pytest.mark.parametrize("label, data, message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_catalog_file_names_file_and_reason(tmp_path, capsys, label, data, message):
    path = tmp_path / "catalog-all.json"
    path.write_bytes(data)
    expected = message.format(path=str(path).replace("\\", "\\\\"))
    with pytest.raises(ModelFormatError, match=expected):
        load_catalog(path)
    code, out, err = run_cli(capsys, "models", "--catalog", path)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith(f"vitrine: error: {path}: ")


BAD_ENTRIES = [
    ("no resizeWidth", {"resizeWidth": None}, r"{path} \(model 7\): missing field 'resizeWidth'"),
    ("class gap", {"classes": [{"index": 0, "name": "a"}, {"index": 2, "name": "b"}]},
     r"{path} \(model 7\): field 'classes' indices must be 0..1, got \[0, 2\]"),
    ("bad mode", {"resizeMode": 9}, r"{path} \(model 7\): field 'resize_mode' must be an OpenCV interpolation code"),
    ("bad standardisation", {"standardizeMode": "imagenet"}, r"{path} \(model 7\): field 'standardize'"),
    ("record as text", {"zenodoDepositID": "7785993"},
     r"{path} \(model 7\): field 'zenodoDepositID' must be a positive integer, got '7785993'"),
    ("no id", {"id": None}, r"{path} model 0: needs an 'id' \(number or text\), got None"),
]


@pytest.mark.parametrize("label, change, message", BAD_ENTRIES, ids=[b[0] for b in BAD_ENTRIES])
def test_bad_webipred_entry_names_file_entry_and_field(tmp_path, label, change, message):
    entry = webipred_entry(**change)
    entry = {k: v for k, v in entry.items() if not (k == "resizeWidth" and v is None)}
    path = write_json(tmp_path / "catalog-all.json", {"models": [entry]})
    with pytest.raises(ModelFormatError, match=message.format(path=str(path).replace("\\", "\\\\"))):
        load_catalog(path)


def test_duplicate_ids_and_non_object_entries(tmp_path):
    path = write_json(tmp_path / "dup.json", {"models": [webipred_entry(), webipred_entry(name="again")]})
    with pytest.raises(ModelFormatError, match=rf"{path}: models 0 and 1 both have id 7"):
        load_catalog(path)
    path = write_json(tmp_path / "mixed.json", {"models": [webipred_entry(), "x"]})
    with pytest.raises(ModelFormatError, match=rf"{path} model 1: a WebIPred entry must be an object, got str"):
        load_catalog(path)


def test_missing_catalog_file(tmp_path, capsys):
    path = tmp_path / "nowhere.json"
    with pytest.raises(ModelSourceError, match=rf"catalog file {path}: cannot read it \(No such file or directory\)"):
        load_catalog(path)
    code, _, err = run_cli(capsys, "predict", "--catalog", path, "--model", "webipred-1", tmp_path / "x.png")
    assert code == 2 and f"vitrine: error: catalog file {path}: cannot read it" in err


def test_from_webipred_refuses_a_non_object():
    with pytest.raises(ModelFormatError, match=r"WebIPred catalog: a model entry must be an object, got list"):
        ModelCard.from_webipred([1, 2])
