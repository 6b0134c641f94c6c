"""``vitrine explain`` end to end on the committed fixtures (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.cli.explain import class_index_from_arg
from app.errors import ModelInputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gradcam"


@pytest.fixture()
def image(tmp_path):
    path = tmp_path / "scan.png"
    pixels = np.random.default_rng(7).uniform(0, 255, (40, 56, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_gradcam_overlay_and_raw_map(tmp_path, image, capsys):
    out, raw = tmp_path / "overlay.png", tmp_path / "map.npy"
    code = main(["explain", "--model", str(FIXTURES / "small_cnn"), str(image), "--out", str(out),
                 "--raw", str(raw), "--class", "2", "--layer", "conv1", "--no-cache"])
    assert code == 0
    heat = np.load(raw)
    assert heat.shape == (20, 28) and heat.dtype == np.float32 and 0 <= heat.min() and heat.max() == pytest.approx(1)
    overlay = Image.open(out)
    assert overlay.size == (28, 20) and overlay.mode == "RGB"
    printed = capsys.readouterr().out
    assert "Grad-CAM for class 2" in printed and "'conv1'" in printed


def test_segmentation_mask_and_areas(tmp_path, image, capsys):
    out, mask_path, raw = tmp_path / "overlay.png", tmp_path / "mask.png", tmp_path / "mask.npy"
    code = main(["explain", "--model", str(FIXTURES / "unet_softmax"), str(image), "--out", str(out),
                 "--mask", str(mask_path), "--raw", str(raw), "--no-cache"])
    assert code == 0
    mask = np.load(raw)
    decoded = Image.open(mask_path)
    assert decoded.mode == "P"
    np.testing.assert_array_equal(np.asarray(decoded), mask)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4
    assert sum(int(line.split()[3]) for line in printed) == 32 * 32
    assert int(printed[1].split()[3]) == int(np.sum(mask == 1))


def test_bad_layer_is_reported(tmp_path, image, capsys):
    code = main(["explain", "--model", str(FIXTURES / "small_cnn"), str(image), "--out", str(tmp_path / "o.png"),
                 "--layer", "nope", "--no-cache"])
    assert code == 2
    assert "has no layer 'nope'; spatial layers: conv1, pool1, last_conv" in capsys.readouterr().err


def test_class_option_on_a_segmentation_model_is_refused(tmp_path, image, capsys):
    code = main(["explain", "--model", str(FIXTURES / "unet_sigmoid"), str(image), "--out", str(tmp_path / "o.png"),
                 "--class", "1", "--no-cache"])
    assert code == 2
    assert "--class and --layer apply to Grad-CAM on classifiers" in capsys.readouterr().err


def test_bad_alpha(tmp_path, image, capsys):
    code = main(["explain", "--model", str(FIXTURES / "small_cnn"), str(image), "--out", str(tmp_path / "o.png"),
                 "--alpha", "2", "--no-cache"])
    assert code == 2
    assert "--alpha must be in [0, 1], received 2.0" in capsys.readouterr().err


def test_class_from_name_or_index():
    classes = ("Normal", "Pneumonia")
    assert class_index_from_arg("pneumonia", classes) == 1
    assert class_index_from_arg("0", classes) == 0
    assert class_index_from_arg(None, classes) is None
    with pytest.raises(ModelInputError, match=r"--class 'covid' is neither a class name nor an index; classes: "
                                              r"Normal, Pneumonia"):
        class_index_from_arg("covid", classes)
    with pytest.raises(ModelInputError, match=r"--class 2 is out of range: the model has 2 classes"):
        class_index_from_arg("2", classes)


# -- numbers against TensorFlow: the demo model's runner-up class -----------------------------------

REPO = Path(__file__).resolve().parents[2]
DEMO_ZIP = REPO / "static" / "demo" / "demo-model.zip"
DEMO_SAMPLES = REPO / "static" / "demo" / "samples"
DEMO_CASE = FIXTURES / "demo_model"


def _demo_reference():
    """TensorFlow's Grad-CAM of the demo model (tools/make_gradcam_fixtures.py, generate_demo_gradcam):
    per sample PNG, the runner-up class and its map upsampled to the 64x64 input."""
    with np.load(DEMO_CASE / "io.npz") as data:
        return ([str(f) for f in data["files"]], data["runner_up_class"].tolist(),
                data["runner_up_heatmap_upsampled"], str(data["layer"]))


@pytest.mark.skipif(not (DEMO_CASE / "io.npz").is_file() or not DEMO_ZIP.is_file(),
                    reason="demo model or its Grad-CAM fixture is not committed")
@pytest.mark.parametrize("sample", range(4))
def test_runner_up_class_by_name_matches_tensorflow(tmp_path, capsys, sample):
    """``--class NAME`` through main(): the (64, 64) map written by ``--raw`` equals TensorFlow's
    runner-up heatmap for the same PNG (the fixture's input is that PNG preprocessed independently,
    with Pillow / OpenCV, by tools/make_demo_model.py)."""
    import json
    import zipfile

    files, runner_up, expected, layer = _demo_reference()
    with zipfile.ZipFile(DEMO_ZIP) as archive:
        classes = json.loads(archive.read("model-card.json"))["classes"]
    name = classes[runner_up[sample]]
    out, raw = tmp_path / "overlay.png", tmp_path / "map.npy"
    code = main(["explain", "--model", str(DEMO_ZIP), str(DEMO_SAMPLES / files[sample]), "--out", str(out),
                 "--class", name.upper(), "--raw", str(raw), "--no-cache"])
    printed = capsys.readouterr().out
    assert code == 0
    assert f"Grad-CAM for class {runner_up[sample]} ({name}," in printed and f"at layer {layer!r}" in printed
    heat = np.load(raw)
    assert heat.shape == (64, 64) and heat.dtype == np.float32
    np.testing.assert_allclose(heat, expected[sample], atol=1e-3)
    assert Image.open(out).size == (64, 64)
