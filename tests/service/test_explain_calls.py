"""The worker's ``explain`` (Grad-CAM) and ``segment`` calls on plain CPython, against TensorFlow.

References (tools/make_gradcam_fixtures.py, run in /opt/tfenv):
* ``tests/fixtures/gradcam/demo_model``: TensorFlow GradientTape Grad-CAM of the bundled demo model
  (static/demo/demo-model.zip) on its PNG samples, from the inputs tools/make_demo_model.py made.
* ``tests/fixtures/gradcam/ui_unet``: a tiny U-Net zip with a model card, a PNG image, TensorFlow's
  argmax mask and its pixel count per class.
Also the two service bugs the fuzzers found (#9): model errors name the file; workflow calls work
on a model opened with ``load_model``.
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
DEMO = REPO / "static" / "demo"
GRADCAM = REPO / "tests" / "fixtures" / "gradcam"
DEMO_REF = GRADCAM / "demo_model"
UNET = GRADCAM / "ui_unet"
ATOL = 1e-3


def _jet(values):
    """The Grad-CAM jet colour map written out per channel (red peaks at 0.75, green 0.5, blue 0.25)."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0, 1)
    red = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    green = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    blue = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return np.stack([red, green, blue], axis=-1) * 255


def _png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def _heatmap(result) -> np.ndarray:
    data = result["heatmap"]
    assert data["dtype"] == "float32"
    return np.frombuffer(base64.b64decode(data["base64"]), dtype="<f4").reshape(data["shape"])


@pytest.fixture(scope="module")
def demo_ref():
    with np.load(DEMO_REF / "io.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture
def service():
    return EngineService()


def _open(service, path: Path) -> dict:
    reply = service.handle({"call": "open_model", "args": {"name": path.name}}, path.read_bytes())
    assert reply["ok"], reply
    return reply["result"]


def _call(service, call, args, payload=None):
    return service.handle({"call": call, "id": "t", "args": args}, payload)


@pytest.fixture
def demo(service):
    return _open(service, DEMO / "demo-model.zip")


@pytest.fixture
def unet(service):
    return _open(service, UNET / "model.zip")


# ---------------------------------------------------------------------------------------- explain

def test_explain_matches_tensorflow_gradcam_on_the_demo_samples(service, demo, demo_ref):
    classes = demo["card"]["classes"]
    for i, name in enumerate(demo_ref["files"]):
        reply = _call(service, "explain", {"model": demo["model"], "name": str(name)}, (DEMO / "samples" / str(name)).read_bytes())
        assert reply["ok"], reply
        result = reply["result"]
        assert result["layer"] == str(demo_ref["layer"]) and result["layer"] == result["layers"][-1]
        assert result["class_index"] == int(demo_ref["class_index"][i])
        assert result["class_name"] == classes[result["class_index"]]
        assert result["logit"] == pytest.approx(float(demo_ref["logits"][i, result["class_index"]]), abs=1e-3)
        layer_map = np.asarray(result["layer_heatmap"]["values"]).reshape(result["layer_heatmap"]["shape"])
        np.testing.assert_allclose(layer_map, demo_ref["heatmap"][i], atol=ATOL)
        np.testing.assert_allclose(_heatmap(result), demo_ref["heatmap_upsampled"][i], atol=ATOL)


def test_explain_by_class_name_and_index_gives_the_runner_up_map(service, demo, demo_ref):
    classes = demo["card"]["classes"]
    name = str(demo_ref["files"][0])
    data = (DEMO / "samples" / name).read_bytes()
    runner_up = int(demo_ref["runner_up_class"][0])
    by_name = _call(service, "explain", {"model": demo["model"], "name": name, "class": classes[runner_up].upper()}, data)
    by_index = _call(service, "explain", {"model": demo["model"], "name": name, "class": runner_up}, data)
    for reply in (by_name, by_index):
        assert reply["ok"], reply
        assert reply["result"]["class_index"] == runner_up
        np.testing.assert_allclose(_heatmap(reply["result"]), demo_ref["runner_up_heatmap_upsampled"][0], atol=ATOL)


def test_explain_pngs_show_the_resized_image_and_the_jet_coloured_map(service, demo, demo_ref):
    truth = json.loads((DEMO / "expected.json").read_text())
    name = str(demo_ref["files"][1])
    reply = _call(service, "explain", {"model": demo["model"], "name": name, "alpha": 0.3}, (DEMO / "samples" / name).read_bytes())
    result = reply["result"]
    background = np.asarray(_png(result["image_png"]).convert("RGB"))
    # the background is the image the model saw before standardisation (make_demo_model.py's digest)
    assert hashlib.sha256(np.ascontiguousarray(background).tobytes()).hexdigest() == truth["samples"][name]["resized_uint8_sha256"]
    expected_colours = _jet(demo_ref["heatmap_upsampled"][1])
    shown = np.asarray(_png(result["heatmap_png"]).convert("RGB"), dtype=np.float64)
    assert shown.shape == (64, 64, 3)
    assert np.abs(shown - expected_colours).max() <= 3  # 1e-3 in the map moves jet by ~1 level
    overlay = np.asarray(_png(result["overlay_png"]).convert("RGB"), dtype=np.float64)
    assert np.abs(overlay - (0.7 * background + 0.3 * expected_colours)).max() <= 3
    scale = np.asarray(_png(result["scale_png"]).convert("RGB"), dtype=np.float64)
    np.testing.assert_allclose(scale[0, [0, -1]], _jet([0.0, 1.0]), atol=1)


@pytest.mark.parametrize("args, error_type, message", [
    ({"class": "tumour"}, "ModelInputError", r"class 'tumour' is not one of the model's classes: CT, MR"),
    ({"class": 9}, "ModelInputError", r"class index 9 is out of range: the model has 6 classes \(0..5"),
    ({"class": [1]}, "ModelInputError", r"class must be a class index \(int\) or a class name \(str\), received list"),
    ({"layer": "nope"}, "ModelInputError", r"has no layer 'nope'; spatial layers: .*block4_conv"),
    ({"layer": 3}, "ServiceRequestError", r"argument 'layer' must be a layer name \(str\)"),
    ({"alpha": 1.5}, "ServiceRequestError", r"'alpha' \(overlay opacity\) must be a number in \[0, 1\], received 1.5"),
])
def test_explain_rejects_bad_arguments_clearly(service, demo, args, error_type, message):
    import re

    reply = _call(service, "explain", {"model": demo["model"], "name": "ct_head.png", **args},
                  (DEMO / "samples" / "ct_head.png").read_bytes())
    assert reply["ok"] is False and reply["error"]["type"] == error_type, reply["error"]
    assert re.search(message, reply["error"]["message"]), reply["error"]["message"]


def test_explain_at_an_earlier_layer(service, demo):
    reply = _call(service, "explain", {"model": demo["model"], "name": "ct_head.png", "layer": "block3_relu"},
                  (DEMO / "samples" / "ct_head.png").read_bytes())
    assert reply["ok"], reply
    assert reply["result"]["layer"] == "block3_relu"
    assert reply["result"]["layer_heatmap"]["shape"] == [16, 16] and reply["result"]["heatmap"]["shape"] == [64, 64]


def test_explain_refuses_a_segmentation_model(service, unet):
    reply = _call(service, "explain", {"model": unet["model"], "name": "image.png"}, (UNET / "image.png").read_bytes())
    assert reply["ok"] is False and reply["error"]["type"] == "ModelInputError"
    assert "segmentation model (output shape (None, 48, 48, 3))" in reply["error"]["message"]


def test_explain_needs_the_image(service, demo):
    reply = _call(service, "explain", {"model": demo["model"], "name": "ct_head.png"})
    assert reply["error"]["type"] == "ServiceRequestError"
    assert "image 'ct_head.png' needs its bytes as the payload" in reply["error"]["message"]


def test_explain_reports_a_corrupt_image_by_name(service, demo):
    reply = _call(service, "explain", {"model": demo["model"], "name": "corrupt.png"}, (DEMO / "samples" / "corrupt.png").read_bytes())
    assert reply["ok"] is False and reply["error"]["internal"] is False
    assert "corrupt.png" in reply["error"]["message"]


# ---------------------------------------------------------------------------------------- segment

def test_segment_mask_equals_tensorflow_argmax_and_areas(service, unet):
    with np.load(UNET / "io.npz") as data:
        masks, areas = data["masks"][0], data["areas"]
    reply = _call(service, "segment", {"model": unet["model"], "name": "image.png"}, (UNET / "image.png").read_bytes())
    assert reply["ok"], reply
    result = reply["result"]
    exported = _png(result["mask_png"])
    assert exported.mode == "P"
    np.testing.assert_array_equal(np.asarray(exported), masks)
    assert result["shape"] == [48, 48] and result["mask_filename"] == "image_mask.png"
    assert [c["name"] for c in result["classes"]] == ["background", "lesion", "organ"]
    assert [c["pixels"] for c in result["classes"]] == areas.tolist()
    assert [c["fraction"] for c in result["classes"]] == pytest.approx((areas / masks.size).tolist())
    colours = [c["colour"] for c in result["classes"]]
    assert colours[0] == "#000000" and len(set(colours)) == 3
    # the exported palette and the legend agree on the colours
    palette = np.asarray(exported.getpalette()[:9]).reshape(3, 3)
    assert ["#%02x%02x%02x" % tuple(rgb) for rgb in palette] == colours


def test_segment_layers_paint_each_class_in_its_colour(service, unet):
    with np.load(UNET / "io.npz") as data:
        masks, image = data["masks"][0], data["image"]
    result = _call(service, "segment", {"model": unet["model"], "name": "image.png", "alpha": 0.25},
                   (UNET / "image.png").read_bytes())["result"]
    rgba = np.asarray(_png(result["mask_rgba_png"]).convert("RGBA"))
    np.testing.assert_array_equal(rgba[..., 3], np.where(masks > 0, 255, 0))
    colours = np.array([[int(c["colour"][i:i + 2], 16) for i in (1, 3, 5)] for c in result["classes"]])
    np.testing.assert_array_equal(rgba[..., :3][masks > 0], colours[masks[masks > 0]])
    np.testing.assert_array_equal(np.asarray(_png(result["image_png"]).convert("RGB")), image)
    overlay = np.asarray(_png(result["overlay_png"]).convert("RGB"), dtype=np.float64)
    expected = np.where((masks > 0)[..., None], 0.75 * image + 0.25 * colours[masks], image)
    assert np.abs(overlay - expected).max() <= 1


def test_classify_on_a_segmentation_model_reports_area_fractions(service, unet):
    with np.load(UNET / "io.npz") as data:
        areas = data["areas"]
    reply = _call(service, "classify", {"model": unet["model"], "name": "image.png"}, (UNET / "image.png").read_bytes())
    assert reply["ok"], reply
    result = reply["result"]
    assert result["kind"] == "segmentation"
    assert result["probabilities"] == pytest.approx((areas / areas.sum()).tolist())
    assert [a["pixels"] for a in result["areas"]] == areas.tolist()
    assert result["predicted"] == ["lesion", "organ"]


def test_segment_refuses_a_classifier(service, demo):
    reply = _call(service, "segment", {"model": demo["model"], "name": "ct_head.png"}, (DEMO / "samples" / "ct_head.png").read_bytes())
    assert reply["ok"] is False and reply["error"]["type"] == "ModelInputError"
    assert "segmentation needs an output of shape (N, H, W, classes), received (1, 6)" in reply["error"]["message"]


@pytest.mark.parametrize("args, message", [
    ({"alpha": -0.1}, r"'alpha' \(overlay opacity\) must be a number in \[0, 1\]"),
    ({"threshold": "high"}, r"'threshold' must be a number, received 'high'"),
    ({"threshold": 1.0}, r"threshold must be between 0 and 1, received 1.0"),
])
def test_segment_rejects_bad_arguments(service, unet, args, message):
    import re

    reply = _call(service, "segment", {"model": unet["model"], "name": "image.png", **args}, (UNET / "image.png").read_bytes())
    assert reply["ok"] is False and reply["error"]["internal"] is False
    assert re.search(message, reply["error"]["message"]), reply["error"]["message"]


def test_the_calls_are_listed_by_info(service):
    calls = _call(service, "info", {})["result"]["calls"]
    assert "explain" in calls and "segment" in calls


# ------------------------------------------------------------------ bugs found by fuzzing (#9)

def test_load_model_errors_name_the_file(service):
    reply = _call(service, "load_model", {"name": "my_model.zip"}, b"PK\x03\x04 this is not a real zip")
    assert reply["ok"] is False and reply["error"]["internal"] is False
    assert "my_model.zip" in reply["error"]["message"]


def test_workflow_calls_work_on_a_model_loaded_with_load_model(service, demo_ref):
    loaded = _call(service, "load_model", {"name": "demo-model.zip"}, (DEMO / "demo-model.zip").read_bytes())
    assert loaded["ok"], loaded
    handle = loaded["result"]["model"]
    chart = _call(service, "chart", {"model": handle, "kind": "bars", "probabilities": [0.1, 0.1, 0.1, 0.1, 0.1, 0.5]})
    assert chart["ok"], chart
    assert "<svg" in chart["result"]["svg"]
    export = _call(service, "export_results", {"model": handle, "format": "csv",
                                               "results": [{"file": "a.png", "probabilities": [0.1] * 5 + [0.5]}]})
    assert export["ok"], export
    assert "a.png" in export["result"]["text"] and "demo-model.zip" in export["result"]["text"]
    name = str(demo_ref["files"][0])
    explained = _call(service, "explain", {"model": handle, "name": name}, (DEMO / "samples" / name).read_bytes())
    np.testing.assert_allclose(_heatmap(explained["result"]), demo_ref["heatmap_upsampled"][0], atol=ATOL)


def test_chart_with_the_wrong_number_of_probabilities_is_a_request_error(service, demo):
    reply = _call(service, "chart", {"model": demo["model"], "kind": "bars", "probabilities": [0.5, 0.5]})
    assert reply["ok"] is False and reply["error"]["type"] == "ServiceRequestError"
    assert "2 probabilities for 6 classes" in reply["error"]["message"]


def test_unload_model_forgets_its_card(service, demo):
    _call(service, "unload_model", {"model": demo["model"]})
    reply = _call(service, "chart", {"model": demo["model"], "kind": "bars", "probabilities": [0.5] * 6})
    assert reply["error"]["type"] == "ServiceRequestError" and "no loaded model" in reply["error"]["message"]


def _upsampling_head_zip() -> bytes:
    """Conv2D -> UpSampling2D -> GAP -> Dense(softmax), 6x6 RGB, with a card."""
    import zipfile

    def layer(class_name, **config):
        return {"class_name": class_name, "config": {"trainable": True, "dtype": "float32", **config}}

    conv = {"filters": 2, "kernel_size": [3, 3], "strides": [1, 1], "padding": "same", "data_format": "channels_last",
            "dilation_rate": [1, 1], "groups": 1, "activation": "relu", "use_bias": True}
    layers = [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 6, 6, 3], "dtype": "float32", "name": "image"}},
        layer("Conv2D", name="conv", **conv),
        layer("UpSampling2D", name="up", size=[2, 2], data_format="channels_last", interpolation="nearest"),
        layer("GlobalAveragePooling2D", name="gap", data_format="channels_last"),
        layer("Dense", name="scores", units=2, activation="softmax", use_bias=True),
    ]
    topology = {"class_name": "Sequential", "config": {"name": "odd_head", "layers": layers},
                "keras_version": "2.15.0", "backend": "tensorflow"}
    rng = np.random.default_rng(3)
    weights = [("conv/kernel", (3, 3, 3, 2)), ("conv/bias", (2,)), ("scores/kernel", (2, 2)), ("scores/bias", (2,))]
    manifest = [{"paths": ["group1-shard1of1.bin"],
                 "weights": [{"name": n, "shape": list(s), "dtype": "float32"} for n, s in weights]}]
    shard = b"".join(rng.standard_normal(s).astype("<f4").tobytes() for _, s in weights)
    card = {"schema_version": 1, "name": "odd head", "classes": ["a", "b"], "input_size": [6, 6], "channels": 3}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.json", json.dumps({"format": "layers-model", "modelTopology": topology,
                                                   "weightsManifest": manifest}))
        archive.writestr("group1-shard1of1.bin", shard)
        archive.writestr("model-card.json", json.dumps(card))
    return buffer.getvalue()


def test_explain_goes_back_through_upsampling2d(service):
    """GAP(UpSampling2D(A)) = GAP(A) for nearest 2x: the map at 'conv' (backward through the resize)
    repeated 2x must equal the map at 'up' (no resize in its head), on the service's own input."""
    opened = _call(service, "open_model", {"name": "up_head.zip"}, _upsampling_head_zip())
    assert opened["ok"], opened
    image = io.BytesIO()
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(image, "PNG")
    args = {"model": opened["result"]["model"], "name": "scan.png"}
    at_conv = _call(service, "explain", {**args, "layer": "conv"}, image.getvalue())
    default = _call(service, "explain", args, image.getvalue())
    assert at_conv["ok"] and default["ok"], (at_conv, default)
    assert default["result"]["layer"] == "up" and default["result"]["layers"] == ["conv", "up"]
    conv_map = np.reshape(at_conv["result"]["layer_heatmap"]["values"], at_conv["result"]["layer_heatmap"]["shape"])
    up_map = np.reshape(default["result"]["layer_heatmap"]["values"], default["result"]["layer_heatmap"]["shape"])
    assert conv_map.shape == (6, 6) and up_map.shape == (12, 12)
    np.testing.assert_allclose(np.repeat(np.repeat(conv_map, 2, axis=0), 2, axis=1), up_map, atol=1e-6)

