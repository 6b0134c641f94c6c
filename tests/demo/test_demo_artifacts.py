"""Integrity of the committed demo bundle in static/demo/ (no TensorFlow needed).

The artefacts are produced by tools/make_demo_model.py (TensorFlow 2.21 + tensorflowjs 4.22);
these tests check that what is committed is complete, self-consistent and honestly labelled,
and that the sample files still decode to the exact model inputs recorded in expected.json.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DEMO = Path(__file__).resolve().parents[2] / "static" / "demo"
SAMPLES = DEMO / "samples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@pytest.fixture(scope="module")
def zip_bytes() -> bytes:
    return (DEMO / "demo-model.zip").read_bytes()


@pytest.fixture(scope="module")
def archive(zip_bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


@pytest.fixture(scope="module")
def model_json(archive) -> dict:
    return json.loads(archive["model.json"])


@pytest.fixture(scope="module")
def card(archive) -> dict:
    return json.loads(archive["model-card.json"])


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((DEMO / "expected.json").read_text())


# -- the zip -------------------------------------------------------------------------------------


def test_zip_is_small_and_holds_exactly_a_tfjs_model_and_a_card(zip_bytes, archive, model_json):
    assert len(zip_bytes) < 500_000
    shard_paths = [p for group in model_json["weightsManifest"] for p in group["paths"]]
    assert sorted(archive) == sorted(["model.json", "model-card.json", *shard_paths])


def test_zip_entries_are_sorted_with_a_fixed_timestamp(zip_bytes):
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert all(i.date_time == ZIP_DATE for i in infos)
    assert all("/" not in i.filename and not i.filename.startswith(".") for i in infos)


def test_model_json_is_a_keras2_layers_model(model_json):
    assert model_json["format"] == "layers-model"
    topology = model_json["modelTopology"]
    assert topology["keras_version"].startswith("2."), topology["keras_version"]
    config = topology["model_config"]
    assert config["class_name"] in ("Functional", "Model")
    layers = config["config"]["layers"]
    assert layers[0]["class_name"] == "InputLayer"
    assert layers[0]["config"]["batch_input_shape"] == [None, 64, 64, 3]
    assert layers[-1]["class_name"] == "Dense"
    assert layers[-1]["config"]["activation"] == "softmax"


def test_weight_shards_hold_exactly_the_manifest_bytes(archive, model_json):
    dtype_sizes = {"float32": 4, "int32": 4}
    for group in model_json["weightsManifest"]:
        declared = sum(int(np.prod(w["shape"])) * dtype_sizes[w["dtype"]] for w in group["weights"])
        stored = sum(len(archive[p]) for p in group["paths"])
        assert declared == stored, group["paths"]


def test_weights_are_finite(archive, model_json):
    for group in model_json["weightsManifest"]:
        data = np.frombuffer(b"".join(archive[p] for p in group["paths"]), dtype="<f4")
        assert np.all(np.isfinite(data))
        assert np.any(data != 0)


# -- the model card --------------------------------------------------------------------------------


def test_card_is_honestly_labelled(card):
    assert "not for clinical use" in card["name"].lower()
    assert "not for clinical use" in card["description"].lower()
    assert card["discipline"] == "demo"
    assert card["x-not-for-clinical-use"] is True


def test_card_preprocessing_fields(card):
    assert card["input_size"] == [64, 64]
    assert card["channels"] == 3
    assert card["resize_mode"] == 1
    assert card["standardize"] == "tf"
    assert card["pad_square"] is False
    assert card["multi_label"] is False


def test_card_classes_match_the_network_output_and_expected_json(card, model_json, expected):
    dense_units = model_json["modelTopology"]["model_config"]["config"]["layers"][-1]["config"]["units"]
    assert len(card["classes"]) == dense_units
    assert card["classes"] == expected["model"]["classes"]
    assert len(set(card["classes"])) == len(card["classes"])


def test_card_metrics_are_fractions_named_by_class(card):
    assert set(card["metrics"]) >= {"accuracy_fresh_views_same_sources"}
    for per_class in card["metrics"].values():
        assert set(per_class) <= set(card["classes"])
        assert all(0.0 <= v <= 1.0 for v in per_class.values())
    assert set(card["x-training"]["metric_notes"]) == set(card["metrics"])


def test_card_passes_the_apps_own_card_parser(archive):
    modelcard = pytest.importorskip("app.modelcard", reason="app.modelcard not importable")
    parsed = modelcard.load_card(archive["model-card.json"], "demo-model.zip:model-card.json")
    assert parsed.standardize == "tf"
    assert parsed.input_size == (64, 64)
    assert len(parsed.classes) == 6


# -- expected.json and the samples ----------------------------------------------------------------


def test_expected_json_names_this_exact_zip(expected, zip_bytes):
    assert expected["model"]["md5"] == hashlib.md5(zip_bytes).hexdigest()
    assert expected["model"]["sha256"] == hashlib.sha256(zip_bytes).hexdigest()


def test_every_sample_file_is_covered_and_only_corrupt_ones_lack_expectations(expected):
    files = sorted(p.name for p in SAMPLES.iterdir())
    assert 8 <= len(files) <= 13
    assert sorted([*expected["samples"], *expected["corrupt"]]) == files
    assert expected["corrupt"] == ["corrupt.png"]
    assert all((SAMPLES / name).stat().st_size < 300_000 for name in files)


def test_corrupt_png_is_a_truncated_png_that_pillow_rejects():
    data = (SAMPLES / "corrupt.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert b"IEND" not in data
    with pytest.raises((OSError, SyntaxError)):
        with Image.open(io.BytesIO(data)) as im:
            im.load()


@pytest.mark.parametrize("name", ["ct_small.dcm", "mr_small.dcm"])
def test_dicom_samples_are_real_dicom_parts_10_files(name):
    data = (SAMPLES / name).read_bytes()
    assert data[128:132] == b"DICM"


def test_probabilities_are_distributions_over_the_classes(expected):
    n_classes = len(expected["model"]["classes"])
    for name, entry in expected["samples"].items():
        p = np.asarray(entry["probabilities"])
        assert p.shape == (n_classes,), name
        assert np.all((p >= 0) & (p <= 1)), name
        assert abs(p.sum() - 1.0) < 1e-5, name
        assert expected["model"]["classes"][int(np.argmax(p))] == entry["predicted"], name


def test_tfjs_check_recorded_and_passed(expected):
    check = expected.get("tfjs_check")
    if check is None:
        pytest.skip("expected.json has no tfjs_check (generated without --check-tfjs)")
    assert check["passed"] is True
    assert check["max_abs_diff"] <= 1e-4
    assert sorted(check["per_sample_max_abs_diff"]) == sorted(expected["samples"])


def test_inputs_npz_matches_recorded_hashes(expected):
    if "inputs_file" not in expected:
        pytest.skip("expected.json records no inputs file")
    with np.load(DEMO / expected["inputs_file"]) as npz:
        assert sorted(npz.files) == sorted(expected["samples"])
        for name, entry in expected["samples"].items():
            x = npz[name]
            assert x.dtype == np.float32 and x.shape == (1, 64, 64, 3), name
            assert -1.0 <= x.min() and x.max() <= 1.0, name
            assert hashlib.sha256(np.ascontiguousarray(x, dtype="<f4").tobytes()).hexdigest() == entry["input_sha256"]


# -- a naive re-implementation of the documented preprocessing, to keep samples and
# -- expected.json in sync (written from the text in expected.json["preprocessing"]) ------------


def _decode_reference(path: Path) -> np.ndarray:
    data = path.read_bytes()
    if data[128:132] == b"DICM":
        pydicom = pytest.importorskip("pydicom", reason="pydicom not installed")
        ds = pydicom.dcmread(io.BytesIO(data))
        x = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        if "WindowCenter" in ds and "WindowWidth" in ds:
            c = ds.WindowCenter
            w = ds.WindowWidth
            c = float(c[0] if isinstance(c, pydicom.multival.MultiValue) else c)
            w = float(w[0] if isinstance(w, pydicom.multival.MultiValue) else w)
            y = np.empty_like(x)
            for index, value in np.ndenumerate(x):
                if value <= c - 0.5 - (w - 1) / 2:
                    y[index] = 0.0
                elif value > c - 0.5 + (w - 1) / 2:
                    y[index] = 255.0
                else:
                    y[index] = ((value - (c - 0.5)) / (w - 1) + 0.5) * 255.0
        else:
            y = (x - x.min()) / (x.max() - x.min()) * 255.0
        gray = np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            gray = 255 - gray
        return np.stack([gray] * 3, axis=-1)
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def test_samples_decode_to_the_recorded_tensors(expected):
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless not installed")
    for name, entry in expected["samples"].items():
        rgb = _decode_reference(SAMPLES / name)
        assert list(rgb.shape) == entry["decoded_shape"], name
        assert hashlib.sha256(rgb.tobytes()).hexdigest() == entry["decoded_rgb_sha256"], name
        resized = cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_LINEAR)
        assert hashlib.sha256(resized.tobytes()).hexdigest() == entry["resized_uint8_sha256"], name
        x = (resized.astype(np.float32) / np.float32(127.5) - np.float32(1.0))[None]
        assert hashlib.sha256(x.astype("<f4").tobytes()).hexdigest() == entry["input_sha256"], name


def test_sources_md_names_every_sample_and_the_clinical_disclaimer(expected):
    text = (DEMO / "SOURCES.md").read_text()
    assert "NOT for clinical use" in text
    for name in [*expected["samples"], *expected["corrupt"]]:
        assert f"`{name}`" in text, name


# -- the app's own engine against TensorFlow's recorded outputs ----------------------------------


def test_app_engine_reproduces_tensorflow_on_the_demo_model(expected):
    """End to end: Vitrine's loader + numpy kernels on the committed zip, fed the recorded
    float32 inputs, must give TensorFlow's probabilities (the ones TF.js matched to 1e-4)."""
    if "inputs_file" not in expected:
        pytest.skip("expected.json records no inputs file")
    app = pytest.importorskip("app", reason="the app package is not importable")
    model = app.load_model(str(DEMO / "demo-model.zip"))
    assert list(model.card.classes) == expected["model"]["classes"]
    with np.load(DEMO / expected["inputs_file"]) as npz:
        names = sorted(expected["samples"])
        batch = np.concatenate([npz[name] for name in names])
    got = np.asarray(model.predict(batch))
    want = np.asarray([expected["samples"][name]["probabilities"] for name in names])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
