"""The page's TFLite files through the worker's calls on plain CPython (the same calls the browser
test makes in Pyodide): LiteRT's outputs on real image files.

Expected values: ``tests/fixtures/tflite/page/expected.npz`` from
``tools/make_tflite_page_fixtures.py`` (ai-edge-litert 2.3.0 BUILTIN_REF, run in /opt/litertenv),
on the inputs tools/make_demo_model.py computed with Pillow / pydicom / OpenCV; never from Vitrine.
Tolerances (issue #8): float 1e-4 relative to the output scale, int8 one quantization step (here the
int8 outputs are bit-exact, which is asserted too: LiteRT BUILTIN_REF is the reference).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.service import EngineService

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "tests" / "fixtures" / "tflite" / "page"
SAMPLES = REPO / "static" / "demo" / "samples"
UNET_IMAGE = REPO / "tests" / "fixtures" / "gradcam" / "ui_unet" / "image.png"
META = json.loads((PAGE / "meta.json").read_text())
FLOAT_RTOL = 1e-4
DEMO_MODELS = ("demo_float32.tflite", "demo_int8.tflite", "demo_tflite.zip")


@pytest.fixture(scope="module")
def expected():
    with np.load(PAGE / "expected.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture
def service():
    return EngineService()


def _open(service, name):
    reply = service.handle({"call": "open_model", "args": {"name": name}}, (PAGE / name).read_bytes())
    assert reply["ok"], reply
    return reply["result"]


def test_fixture_files_are_the_ones_the_generator_recorded():
    for name, entry in {**META["models"], **META["bad"]}.items():
        assert hashlib.sha256((PAGE / name).read_bytes()).hexdigest() == entry["sha256"], name
    assert hashlib.sha256((PAGE / "unet_tflite.zip").read_bytes()).hexdigest() == META["unet"]["zip_sha256"]
    assert hashlib.sha256((PAGE / "unet_int8.zip").read_bytes()).hexdigest() == META["unet"]["int8_zip_sha256"]


@pytest.mark.parametrize("model_file", DEMO_MODELS)
def test_classify_matches_litert_on_real_image_files(service, expected, model_file):
    opened = _open(service, model_file)
    assert opened["format"] == "tflite"
    key = model_file.split(".")[0]
    reference = expected[f"{key}__output"]
    output_scale = float(np.abs(reference).max())
    step, zero_point = META["models"][model_file]["output_quantization"]
    for i, name in enumerate(str(f) for f in expected["files"]):
        reply = service.handle({"call": "classify", "args": {"model": opened["model"], "name": name}},
                               (SAMPLES / name).read_bytes())
        assert reply["ok"], reply
        shown = np.asarray(reply["result"]["probabilities"])
        if step:  # full int8: one output quantization step at most (observed: bit-exact)
            np.testing.assert_allclose(shown, reference[i], rtol=0, atol=step * 1.0001, err_msg=name)
            np.testing.assert_array_equal(np.round(shown / step + zero_point).astype(np.int64), expected[f"{key}__output_q"][i])
        else:
            np.testing.assert_allclose(shown, reference[i], rtol=0, atol=FLOAT_RTOL * output_scale, err_msg=name)


def test_bare_tflite_gets_numbered_classes_and_the_zip_its_card(service):
    bare = _open(service, "demo_float32.tflite")
    assert bare["card"]["classes"] == [f"class {i}" for i in range(6)]
    assert bare["card"]["input_size"] == [64, 64] and bare["card"].get("standardize") is None
    assert bare["has_card"] is False
    zipped = _open(service, "demo_tflite.zip")
    assert zipped["has_card"] is True
    assert zipped["card"]["classes"] == ["CT", "MR", "ultrasound", "fundus photo", "microscopy", "other photo"]
    assert zipped["card"]["standardize"] == "tf"
    int8 = _open(service, "demo_int8.tflite")
    assert int8["summary"]["inputs"][0]["shape"] == [None, 64, 64, 3]
    assert int8["summary"]["outputs"][0]["shape"] == [None, 6]


@pytest.mark.parametrize("model_file, masks_key", [("unet_tflite.zip", "unet__masks"), ("unet_int8.zip", "unet_int8__masks")])
def test_tflite_unet_masks_equal_litert_argmax(service, expected, model_file, masks_key):
    opened = _open(service, model_file)
    reply = service.handle({"call": "segment", "args": {"model": opened["model"], "name": "image.png"}},
                           UNET_IMAGE.read_bytes())
    assert reply["ok"], reply
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(reply["result"]["mask_png"]))))
    np.testing.assert_array_equal(mask, expected[masks_key][0])
    counts = np.bincount(expected[masks_key][0].ravel(), minlength=3).tolist()
    assert [c["pixels"] for c in reply["result"]["classes"]] == counts


def test_tflite_unet_float_masks_are_tensorflows():
    """The float LiteRT masks the tests use are TensorFlow's own (the ui_unet fixture)."""
    with np.load(PAGE / "expected.npz") as data, np.load(UNET_IMAGE.parent / "io.npz") as tf_data:
        np.testing.assert_array_equal(data["unet__masks"], tf_data["masks"])


@pytest.mark.parametrize("model_file, words", [
    ("truncated.tflite", ["truncated.tflite", "outside the file"]),
    ("corrupt.tflite", ["corrupt.tflite", "outside the file"]),
    ("custom_op.tflite", ["custom_op.tflite", "custom operator", "FlexRGBToHSV", "SELECT_TF_OPS"]),
    ("unsupported_op.tflite", ["unsupported_op.tflite", "CUMSUM", "not supported"]),
])
def test_bad_tflite_files_are_refused_naming_the_file_and_the_op(service, model_file, words):
    reply = service.handle({"call": "open_model", "args": {"name": model_file}}, (PAGE / model_file).read_bytes())
    assert reply["ok"] is False
    assert reply["error"]["internal"] is False
    for word in words:
        assert word in reply["error"]["message"], (word, reply["error"])
    if model_file in ("custom_op.tflite", "unsupported_op.tflite"):
        # the op the message names is one LiteRT lists for the file
        named = next(w for w in words if w in META["bad"][model_file]["ops"])
        assert named in reply["error"]["message"]
    # the engine stays usable: the next model opens and classifies
    opened = _open(service, "demo_tflite.zip")
    reply = service.handle({"call": "classify", "args": {"model": opened["model"], "name": "ct_head.png"}},
                           (SAMPLES / "ct_head.png").read_bytes())
    assert reply["ok"], reply


@pytest.mark.parametrize("model_file, atol", [
    ("demo_float32.tflite", 1e-3),   # the demo's float32 weights: observed 3e-7
    ("demo_tflite.zip", 2e-3),       # float16-rounded weights move the map: observed 2.9e-4
])
def test_gradcam_through_a_float_tflite_matches_tensorflow_on_the_keras_model(service, model_file, atol):
    """The float .tflite becomes an engine graph (app.tflite.to_ir), so Grad-CAM runs on it; the
    reference is TensorFlow GradientTape on the Keras demo model (tests/fixtures/gradcam/demo_model),
    whose last conv layer is the TFLite model's CONV_2D + fused RELU."""
    with np.load(REPO / "tests" / "fixtures" / "gradcam" / "demo_model" / "io.npz") as data:
        ref = {key: data[key] for key in data.files}
    opened = _open(service, model_file)
    for i, name in enumerate(str(f) for f in ref["files"]):
        for class_index, key in ((int(ref["class_index"][i]), "heatmap_upsampled"),
                                 (int(ref["runner_up_class"][i]), "runner_up_heatmap_upsampled")):
            reply = service.handle({"call": "explain", "args": {"model": opened["model"], "name": name,
                                                                "class": class_index}},
                                   (SAMPLES / name).read_bytes())
            assert reply["ok"], reply
            assert reply["result"]["class_index"] == class_index
            assert "block4_conv" in reply["result"]["layer"]
            heatmap = reply["result"]["heatmap"]
            values = np.frombuffer(base64.b64decode(heatmap["base64"]), dtype="<f4").reshape(heatmap["shape"])
            np.testing.assert_allclose(values, ref[key][i], atol=atol, err_msg=f"{name} class {class_index}")


def test_gradcam_on_an_int8_tflite_says_why_it_cannot(service):
    opened = _open(service, "demo_int8.tflite")
    reply = service.handle({"call": "explain", "args": {"model": opened["model"], "name": "ct_head.png"}},
                           (SAMPLES / "ct_head.png").read_bytes())
    assert reply["ok"] is False and reply["error"]["type"] == "UnsupportedLayerError"
    message = reply["error"]["message"]
    assert message.startswith("demo_int8.tflite: Grad-CAM needs the model's layer graph")
    assert "TFLite interpreter" in message and "INT8" in message and "float32 / float16 .tflite" in message


@pytest.mark.parametrize("model_file, masks_key", [("unet_tflite.zip", "unet__masks"), ("unet_int8.zip", "unet_int8__masks")])
def test_app_explain_segment_on_a_tflite_unet(model_file, masks_key, expected):
    """app.explain.segment straight on the loaded TFLite U-Net (float: engine graph with
    TRANSPOSE_CONV / RESIZE_NEAREST_NEIGHBOR / CONCATENATION; int8: the interpreter), on the
    fixture's float input: LiteRT's argmax masks exactly (int8 ties included)."""
    import app
    from app.explain import segment

    with np.load(UNET_IMAGE.parent / "io.npz") as data:
        x = data["input"]
    model = app.load_model(str(PAGE / model_file))
    assert model.output_shape == (None, 48, 48, 3)
    np.testing.assert_array_equal(segment(model, x), expected[masks_key])


# ---- the same files through the command line ------------------------------------------------------

def test_cli_predict_on_the_tflite_zip_matches_litert(tmp_path, expected):
    import csv

    from app.cli import main

    out = tmp_path / "out.csv"
    files = [str(SAMPLES / str(f)) for f in expected["files"]]
    assert main(["predict", "--model", str(PAGE / "demo_tflite.zip"), *files, "--csv", str(out)]) == 0
    card_classes = ["CT", "MR", "ultrasound", "fundus photo", "microscopy", "other photo"]
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [row["file"] for row in rows] == files
    reference = expected["demo_tflite__output"]
    for i, row in enumerate(rows):
        shown = [float(row[f"P({c})"]) for c in card_classes]
        np.testing.assert_allclose(shown, reference[i], rtol=0, atol=FLOAT_RTOL * float(np.abs(reference).max()))


@pytest.mark.parametrize("model_file, words", [
    ("truncated.tflite", ["outside the file"]),
    ("custom_op.tflite", ["FlexRGBToHSV", "SELECT_TF_OPS"]),
    ("unsupported_op.tflite", ["CUMSUM"]),
])
def test_cli_refuses_bad_tflite_naming_the_file(model_file, words, capsys):
    from app.cli import main

    code = main(["predict", "--model", str(PAGE / model_file), str(SAMPLES / "ct_head.png")])
    err = capsys.readouterr().err
    assert code != 0
    assert f"{PAGE / model_file}:" in err and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_cli_explain_on_an_int8_tflite_says_why_it_cannot(tmp_path, capsys):
    from app.cli import main

    code = main(["explain", "--model", str(PAGE / "demo_int8.tflite"), str(SAMPLES / "ct_head.png"),
                 "--out", str(tmp_path / "overlay.png")])
    err = capsys.readouterr().err
    assert code != 0 and not (tmp_path / "overlay.png").exists()
    assert "demo_int8.tflite: Grad-CAM needs the model's layer graph" in err and "Traceback" not in err, err


# ---- a real pretrained uint8 classifier (PyPI, cached by tests/tflite/real_models.py) -----------------

REAL = PAGE / "real"
REAL_MODEL = REPO / ".cache" / "fixtures" / "tflite-real" / "efficientnet_lite0_uint8.tflite"
PHOTOS = REPO / ".cache" / "samples" / "skimage"


def _real_reference():
    meta = json.loads((REAL / "efficientnet_lite0_uint8.json").read_text())
    missing = [p for p in (REAL_MODEL, *(PHOTOS / n for n in meta["photos"])) if not p.is_file()]
    if missing:
        pytest.skip(f"not cached: {missing} (python -c 'import tests.tflite.real_models as r; "
                    f"r.fetch(packages=r.QUANTIZED_PACKAGES)'; python tools/fetch_sample_images.py)")
    assert hashlib.sha256(REAL_MODEL.read_bytes()).hexdigest() == meta["model_sha256"]
    for name, digest in meta["photos"].items():
        assert hashlib.sha256((PHOTOS / name).read_bytes()).hexdigest() == digest, name
    with np.load(REAL / "efficientnet_lite0_uint8.npz") as data:
        return meta, {key: data[key] for key in data.files}


def test_real_uint8_classifier_takes_raw_pixels_like_litert(service):
    """EfficientNet-Lite0 (uint8 input, scale 0.0126, zero point 131) opened without a card: the
    page's pipeline feeds the resized pixels as uint8, as TFLite image classifiers expect, and the
    scores equal LiteRT's on the same OpenCV-resized photos (Egyptian cat, tripod)."""
    meta, ref = _real_reference()
    opened = _open_bytes(service, "efficientnet_lite0_uint8.tflite", REAL_MODEL.read_bytes())
    step, zero_point = meta["output_quantization"]
    for i, name in enumerate(str(f) for f in ref["files"]):
        reply = service.handle({"call": "classify", "args": {"model": opened["model"], "name": name}},
                               (PHOTOS / name).read_bytes())
        assert reply["ok"], reply
        shown = np.asarray(reply["result"]["probabilities"])
        np.testing.assert_array_equal(np.round(shown / step + zero_point).astype(np.int64),
                                      ref[f"output_q_{i}"].astype(np.int64), err_msg=name)
        assert int(np.argmax(shown)) == meta["top5"][name][0]["index"]


def test_image_input_rule():
    """uint8 input and no standardisation: raw pixels; anything else is left to predict()."""
    import app
    from app.tflite import image_input

    pixels = np.array([[[[0.0, 127.0, 255.0]]]], np.float32)
    uint8_model = app.load_model(str(REPO / "tests" / "fixtures" / "tflite" / "cnn_uint8" / "model.tflite"))
    assert uint8_model.input_dtype == np.uint8
    fed = image_input(uint8_model, pixels, None)
    assert fed.dtype == np.uint8 and fed.tolist() == [[[[0, 127, 255]]]]
    assert image_input(uint8_model, pixels, "tf") is pixels          # the card standardises: quantize
    int8_model = app.load_model(str(PAGE / "demo_int8.tflite"))
    assert image_input(int8_model, pixels, None) is pixels           # int8 cannot hold 0..255
    float_model = app.load_model(str(PAGE / "demo_float32.tflite"))
    assert image_input(float_model, pixels, None) is pixels


def _open_bytes(service, name, data):
    reply = service.handle({"call": "open_model", "args": {"name": name}}, data)
    assert reply["ok"], reply
    return reply["result"]


def test_cli_predict_real_uint8_classifier(tmp_path):
    import csv

    from app.cli import main

    meta, ref = _real_reference()
    out = tmp_path / "out.csv"
    files = [str(PHOTOS / str(f)) for f in ref["files"]]
    assert main(["predict", "--model", str(REAL_MODEL), *files, "--csv", str(out)]) == 0
    step, zero_point = meta["output_quantization"]
    for i, row in enumerate(csv.DictReader(out.open(encoding="utf-8"))):
        shown = np.array([float(row[f"P(class {k})"]) for k in range(1000)])
        np.testing.assert_array_equal(np.round(shown / step + zero_point).astype(np.int64),
                                      ref[f"output_q_{i}"].astype(np.int64), err_msg=row["file"])
