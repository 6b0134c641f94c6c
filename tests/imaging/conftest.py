"""Fixtures for the imaging tests: real sample files shipped inside registry packages.

* DICOM: pydicom's wheel ships ``pydicom/data/test_files/`` (read in place from the installed
  package, never downloaded through pydicom's data manager).
* NIfTI: nibabel ships ``nibabel/tests/data/``.
* Photos: scikit-image's wheel, fetched and sha256-checked by ``tools/fetch_sample_images.py``
  into ``.cache/samples/skimage`` (skipped with a reason when that cannot run).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


@pytest.fixture(scope="session")
def dicom_dir() -> Path:
    base = _package_dir("pydicom")
    if base is None or not (base / "data" / "test_files" / "MR_small.dcm").is_file():
        pytest.skip("pydicom (with its shipped test_files) is not installed")
    return base / "data" / "test_files"


@pytest.fixture(scope="session")
def nifti_dir() -> Path:
    base = _package_dir("nibabel")
    if base is None or not (base / "tests" / "data" / "anatomical.nii").is_file():
        pytest.skip("nibabel (with its shipped tests/data) is not installed")
    return base / "tests" / "data"


@pytest.fixture(scope="session")
def photo_dir() -> Path:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import fetch_sample_images
    finally:
        sys.path.pop(0)
    try:
        return fetch_sample_images.fetch()
    except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
        pytest.skip(f"scikit-image sample photos unavailable (tools/fetch_sample_images.py failed: {exc})")


@pytest.fixture
def read_bytes():
    return lambda path: Path(path).read_bytes()
