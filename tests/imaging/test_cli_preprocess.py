"""``vitrine preprocess``: writes the exact tensor and a preview; flag handling and errors."""

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.cli.preprocess import add_image_options, decode_options_from_args


def test_writes_tensor_matching_opencv_reference_and_preview(photo_dir, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is not installed")
    out, png = tmp_path / "x.npy", tmp_path / "p.png"
    rc = main(["preprocess", str(photo_dir / "retina.jpg"), "--size", "224", "224", "--resize-mode", "3",
               "--standardize", "torch", "--channels", "3", "--out", str(out), "--png", str(png)])
    assert rc == 0
    tensor = np.load(out)
    assert tensor.shape == (1, 224, 224, 3) and tensor.dtype == np.float32
    rgb = cv2.resize(np.asarray(Image.open(photo_dir / "retina.jpg").convert("RGB")), (224, 224), interpolation=3)
    expected = (rgb.astype(np.float32) / np.float32(255) - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])
    assert np.abs(tensor[0] - expected).max() <= 1 / 255 / 0.225 + 1e-5
    preview = Image.open(png)
    assert preview.size == (224, 224) and preview.mode == "RGB"
    assert np.abs(np.asarray(preview).astype(int) - rgb.astype(int)).max() <= 1
    assert "tensor (1, 224, 224, 3) float32" in capsys.readouterr().out


def test_dicom_options_reach_the_decoder(dicom_dir, tmp_path):
    out = tmp_path / "ct.npy"
    rc = main(["preprocess", str(dicom_dir / "CT_small.dcm"), "--size", "64", "64", "--resize-mode", "0",
               "--standardize", "none", "--channels", "1", "--window", "40", "400", "--out", str(out)])
    assert rc == 0
    tensor = np.load(out)
    assert tensor.shape == (1, 64, 64, 1)
    assert tensor.min() >= 0 and tensor.max() <= 255 and tensor.max() == 255  # windowed display, 8-bit


def test_nifti_slice_option(nifti_dir, tmp_path):
    out = tmp_path / "n.npy"
    assert main(["preprocess", str(nifti_dir / "anatomical.nii"), "--size", "32", "32", "--resize-mode", "1",
                 "--standardize", "minmax", "--channels", "1", "--slice", "0:5", "--out", str(out)]) == 0
    assert np.load(out).shape == (1, 32, 32, 1)


def test_missing_flags_without_model(photo_dir, capsys):
    rc = main(["preprocess", str(photo_dir / "camera.png"), "--size", "8", "8"])
    assert rc == 2
    assert "without --model these options are required: --resize-mode, --standardize, --channels" in capsys.readouterr().err


def test_bad_file_and_bad_flags(tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    rc = main(["preprocess", str(text), "--size", "8", "8", "--resize-mode", "1", "--standardize", "none", "--channels", "3"])
    assert rc == 2 and "notes.png: not a recognised image" in capsys.readouterr().err
    rc = main(["preprocess", str(tmp_path / "missing.png"), "--size", "8", "8", "--resize-mode", "1", "--standardize", "none", "--channels", "3"])
    assert rc == 2 and "missing.png: cannot read the file" in capsys.readouterr().err
    rc = main(["preprocess", str(text), "--size", "8", "8", "--resize-mode", "1", "--standardize", "imagenet", "--channels", "3"])
    assert rc == 2 and "standardize must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["preprocess", str(text), "--resize-mode", "9"])
    with pytest.raises(SystemExit):
        main(["preprocess", str(text), "--slice", "2"])


def test_shared_image_options_for_predict():
    parser = argparse.ArgumentParser()
    add_image_options(parser)
    args = parser.parse_args(["--frame", "3", "--window", "40", "400", "--slice", "2:17"])
    assert decode_options_from_args(args) == {"frame": 3, "window": (40.0, 400.0), "slice_": (2, 17)}
    assert decode_options_from_args(parser.parse_args([])) == {"frame": None, "window": None, "slice_": None}


TINY_CNN = Path(__file__).resolve().parents[1] / "fixtures" / "tfjs" / "k2_sequential_cnn"  # input (None, 16, 16, 3)
PNG_16 = Path(__file__).resolve().parents[1] / "zenodo" / "data" / "cli_png" / "img_a.png"  # 16x16 RGB
needs_tiny_cnn = pytest.mark.skipif(not (TINY_CNN / "model.json").is_file() or not PNG_16.is_file(),
                                    reason=f"TF.js fixture {TINY_CNN} or {PNG_16} not committed")


def _tiny_cnn_zip(card=None) -> bytes:
    from tests.zenodo.fake_zenodo import make_zip

    files = {p.name: p.read_bytes() for p in TINY_CNN.iterdir() if p.name == "model.json" or p.suffix == ".bin"}
    if card is not None:
        files["model-card.json"] = json.dumps(card).encode()
    return make_zip(files)


TINY_CARD = {"name": "tiny", "classes": ["a", "b", "c", "d", "e"], "input_size": [16, 16], "channels": 3,
             "resize_mode": 1, "standardize": "tf"}


@needs_tiny_cnn
def test_model_option_uses_the_card_and_flags_override_it(photo_dir, tmp_path, capsys):
    archive = tmp_path / "model.zip"
    archive.write_bytes(_tiny_cnn_zip({**TINY_CARD, "input_size": [40, 30], "resize_mode": 0, "pad_square": True}))
    out = tmp_path / "m.npy"
    assert main(["preprocess", str(photo_dir / "chelsea.png"), "--model", str(archive), "--channels", "1",
                 "--standardize", "none", "--out", str(out)]) == 0
    assert np.load(out).shape == (1, 40, 30, 1)  # size from the card, channels from the flag
    printed = capsys.readouterr().out
    assert "(resize_mode=0, standardize=None, channels=1, pad_square=True)" in printed


@pytest.fixture
def fake_zenodo():
    from tests.zenodo.fake_zenodo import FakeZenodo

    with FakeZenodo() as server:
        yield server


@needs_tiny_cnn
def test_model_from_zenodo_through_zenodo_url(fake_zenodo, tmp_path, capsys):
    """``--model zenodo:N --zenodo-url`` (the fake server): the zip's card gives the preprocessing.
    The PNG is already 16x16, so the tensor is its pixels in AUCMEDI's "tf" mode, x / 127.5 - 1."""
    fake_zenodo.add_record(4242, {"model.h5.zip": b"keras original", "model.tfjs.zip": _tiny_cnn_zip(TINY_CARD)},
                           version="1.1")
    out, cache = tmp_path / "z.npy", tmp_path / "cache"
    argv = ["preprocess", str(PNG_16), "--model", "zenodo:4242", "--zenodo-url", fake_zenodo.url,
            "--cache-dir", str(cache), "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "model: Zenodo record 4242 version 1.1, file model.tfjs.zip" in captured.err
    pixels = np.asarray(Image.open(PNG_16).convert("RGB"), dtype=np.float64)
    np.testing.assert_allclose(np.load(out)[0], pixels / 127.5 - 1.0, atol=1e-6)
    assert "standardize=tf, channels=3" in captured.out
    downloads = sum(r.path.endswith("/content") for r in fake_zenodo.requests)
    assert downloads == 1
    assert main(argv) == 0  # the cache serves the second run
    assert sum(r.path.endswith("/content") for r in fake_zenodo.requests) == downloads


@needs_tiny_cnn
def test_model_from_zenodo_without_card_needs_the_flags(fake_zenodo, tmp_path, capsys):
    """No card in the zip: size and channels come from the model's input shape; the modes must be given."""
    fake_zenodo.add_record(4243, {"model.tfjs.zip": _tiny_cnn_zip(None)})
    base = ["preprocess", str(PNG_16), "--model", "zenodo:4243", "--zenodo-url", fake_zenodo.url, "--no-cache",
            "--out", str(tmp_path / "n.npy")]
    assert main(base) == 2
    assert "zenodo:4243: the model has no card; give --resize-mode, --standardize" in capsys.readouterr().err
    assert main(base + ["--resize-mode", "1", "--standardize", "none"]) == 0
    pixels = np.asarray(Image.open(PNG_16).convert("RGB"), dtype=np.float32)
    np.testing.assert_array_equal(np.load(tmp_path / "n.npy")[0], pixels)


@needs_tiny_cnn
def test_model_from_zenodo_failure_is_reported(fake_zenodo, tmp_path, capsys):
    assert main(["preprocess", str(PNG_16), "--model", "zenodo:999", "--zenodo-url", fake_zenodo.url]) == 2
    err = capsys.readouterr().err
    assert "vitrine: error: Zenodo record 999 not found" in err and "Traceback" not in err


def test_model_option_with_a_real_model_and_card(dicom_dir, tmp_path):
    """A committed TF.js fixture plus a model card written by app.modelcard: size and channels the
    card leaves open come from the model's input shape."""
    import json
    import shutil
    from pathlib import Path

    import app
    from app.errors import VitrineError

    modelcard = pytest.importorskip("app.modelcard", reason="app.modelcard (model cards) is not available yet")
    fixture = _image_like_tfjs_fixture(Path(__file__).resolve().parents[1] / "fixtures" / "tfjs")
    if fixture is None:
        pytest.skip("no committed TF.js fixture with an (H, W, 1|3) image input")
    model_dir = tmp_path / "model"
    shutil.copytree(fixture, model_dir)
    try:
        card = modelcard.ModelCard(name="fixture", classes=("a", "b", "c"), standardize="tf", resize_mode=2)
        (model_dir / "model-card.json").write_text(json.dumps(card.to_json()))
        model = app.load_model(str(model_dir))
    except (VitrineError, TypeError, AttributeError) as exc:
        pytest.skip(f"model + card loading is not usable yet: {exc}")
    _, height, width, channels = model.input_shape
    out = tmp_path / "m.npy"
    assert main(["preprocess", str(dicom_dir / "MR_small.dcm"), "--model", str(model_dir), "--out", str(out)]) == 0
    tensor = np.load(out)
    assert tensor.shape == (1, height, width, channels)
    assert tensor.min() >= -1 and tensor.max() <= 1  # tf mode


def _image_like_tfjs_fixture(root):
    """First fixture folder whose model.json declares a (None, H, W, 1 or 3) input."""
    import json

    for model_json in sorted(root.glob("*/model.json")) if root.is_dir() else []:
        try:
            topology = json.loads(model_json.read_text())["modelTopology"]
            config = topology.get("model_config", topology)["config"]
            first = config["layers"][0]["config"]
            shape = first.get("batch_input_shape") or first.get("batch_shape")
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if shape and len(shape) == 4 and shape[3] in (1, 3) and all(isinstance(v, int) for v in shape[1:]):
            return model_json.parent
    return None
