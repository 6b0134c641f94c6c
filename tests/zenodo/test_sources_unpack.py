"""Unpacking fetched bytes (format detection, model cards) and the TFLite path from Zenodo."""

import json
from pathlib import Path

import numpy as np
import pytest

from app.catalog import load_catalog
from app.cli.predict import format_table
from app.errors import ArchiveError, ModelFormatError, UnsupportedFormatError
from app.modelcard import ModelCard
from app.results import PredictionResult
from app.sources import open_model, resolve, unpack
from app.zenodo import NoRunnableFileError, ZenodoRecord, choose_model_file
from fake_zenodo import make_zip

ROOT = Path(__file__).resolve().parents[2]
TFLITE_CASE = ROOT / "tests" / "fixtures" / "tflite" / "cnn_float32"
LAYERS_JSON = b'{"format": "layers-model", "modelTopology": {}, "weightsManifest": []}'
CARD = {"name": "n", "classes": ["a", "b"]}


def test_unpack_tfjs_in_subfolder_strips_the_folder_and_reads_the_card():
    data = make_zip({"export/model.json": LAYERS_JSON, "export/group1-shard1of1.bin": b"w",
                     "export/model-card.json": json.dumps(CARD).encode(), "__MACOSX/._model.json": b"x", "README": b"r"})
    package = unpack(data, "m.zip")
    assert package.format == "tfjs-layers"
    assert set(package.files) == {"model.json", "group1-shard1of1.bin", "model-card.json"}
    assert package.card.classes == ("a", "b")


def test_unpack_finds_a_renamed_model_json():
    package = unpack(make_zip({"densenet.json": LAYERS_JSON, "group1-shard1of1.bin": b"w"}), "m.zip")
    assert package.files["model.json"] == LAYERS_JSON and "densenet.json" not in package.files


def test_unpack_tflite_bytes_and_zipped_tflite():
    tflite = b"\x1c\x00\x00\x00TFL3" + bytes(32)
    assert unpack(tflite, "x.bin").format == "tflite"
    package = unpack(make_zip({"m/net.tflite": tflite, "m/model-card.json": json.dumps(CARD).encode()}), "z.zip")
    assert package.format == "tflite" and package.tflite == tflite and package.card.name == "n"


@pytest.mark.parametrize("files, error, message", [
    ({"model.json": LAYERS_JSON, "m.tflite": b"x"}, ModelFormatError, r"holds both a TF.js model \(model.json\) and a TFLite model \(m.tflite\)"),
    ({"a/model.json": LAYERS_JSON, "b/model.json": LAYERS_JSON}, ModelFormatError, r"holds several models \(a/model.json, b/model.json\)"),
    ({"model.json": b"{nope"}, ModelFormatError, r"m.zip:model.json is not valid JSON"),
    ({"model.json": b'{"format": "graph-model"}'}, UnsupportedFormatError, r"m.zip:model.json is a TF.js graph-model, which Vitrine does not support yet"),
    ({"model.json": b'{"modelTopology": {"node": []}}'}, UnsupportedFormatError, r"is a TF.js graph-model"),
    ({"model.json": b'{"format": "weird"}'}, UnsupportedFormatError, r"has TF.js format 'weird'; Vitrine runs 'layers-model'"),
    ({"saved_model.pb": b"x", "variables/v": b"y"}, UnsupportedFormatError, r"m.zip holds saved_model.pb, a format Vitrine cannot run"),
    ({"notes.txt": b"x"}, ModelFormatError, r"m.zip holds no model.json \(TF.js\) or .tflite model; entries: notes.txt"),
    ({"model.json": LAYERS_JSON, "model-card.json": b'{"name": "x"}'}, ModelFormatError,
     r"m.zip:model-card.json: missing required field 'classes'"),
])
def test_unpack_errors(files, error, message):
    with pytest.raises(error, match=message):
        unpack(make_zip(files), "m.zip")


def test_unpack_rejects_non_model_bytes():
    with pytest.raises(ModelFormatError, match=r"m.bin is neither a zip archive nor a TFLite model"):
        unpack(b"GIF89a....", "m.bin")
    with pytest.raises(ModelFormatError, match=r"x.tflite is not a TFLite flatbuffer \(no 'TFL3' identifier at byte 4\)"):
        unpack(b"12345678", "x.tflite")
    with pytest.raises(ArchiveError, match="m.zip"):
        unpack(make_zip({"model.json": LAYERS_JSON})[:40], "m.zip")


def test_restricted_record_without_files():
    record = ZenodoRecord(9, None, None, "t", None, None, "", None, (), ())
    with pytest.raises(NoRunnableFileError, match=r"Zenodo record 9 has no public files \(restricted, embargoed or metadata-only record\)"):
        choose_model_file(record)


def test_user_catalog_entry_without_card_resolves_through_its_reference(fake_zenodo):
    fake_zenodo.add_record(77, {"m.tflite": b"x"})
    catalog = load_catalog()
    entry = catalog.add_reference(f"{fake_zenodo.url}/records/77", entry_id="mine")
    assert entry.card is None and entry.zenodo_record == 77
    resolved = resolve("mine", catalog=catalog, zenodo_url="http://127.0.0.1:9")
    assert (resolved.record.id, resolved.file.key, resolved.card) == (77, "m.tflite", None)


@pytest.mark.skipif(not (TFLITE_CASE / "model.tflite").is_file(), reason=f"TFLite fixture {TFLITE_CASE} not committed")
def test_tflite_from_zenodo_matches_litert(fake_zenodo):
    """Numbers: the fixture's io.npz outputs come from LiteRT (tools/make_tflite_fixtures.py)."""
    pytest.importorskip("app.tflite")
    tflite = (TFLITE_CASE / "model.tflite").read_bytes()
    fake_zenodo.add_record(88, {"classifier.tflite": tflite, "model.h5": b"h5", "eval.json": b"{}"}, version="3")
    opened = open_model(resolve("https://zenodo.org/records/88", zenodo_url=fake_zenodo.url))
    assert opened.package.format == "tflite" and opened.resolved.file.key == "classifier.tflite"
    with np.load(TFLITE_CASE / "io.npz") as io:
        got = opened.model.predict(io["input_0"])
        got = got[0] if isinstance(got, (list, tuple)) else got
        np.testing.assert_allclose(got, io["output_0"], atol=1e-4)


# -- the CLI's printed table ------------------------------------------------------------------------

def test_table_few_classes_one_row_per_image():
    card = ModelCard(name="m", classes=("cat", "dog"))
    text = format_table([PredictionResult("a.png", [0.25, 0.75]), PredictionResult("b.png", error="b.png: broken")], card)
    assert text.splitlines() == [
        "file   predicted      cat     dog",
        "a.png  dog            0.2500  0.7500",
        "b.png  ERROR (below)",
        "ERROR b.png: b.png: broken",
    ]


def test_table_many_classes_one_block_per_image_sorted():
    card = ModelCard(name="m", classes=tuple(f"c{i}" for i in range(9)), multi_label=True)
    probabilities = [0.1, 0.9, 0.0, 0.2, 0.6, 0.0, 0.0, 0.0, 0.3]
    text = format_table([PredictionResult("x.png", probabilities), PredictionResult("y.png", [0.1] * 9)], card)
    lines = text.splitlines()
    assert lines[0] == "x.png: c1; c4"
    assert lines[1:4] == ["  c1  0.9000", "  c4  0.6000", "  c8  0.3000"]
    assert lines[10] == "y.png: (none above threshold)"
