"""Hostile-input tests: the committed corpus (tools/make_hostile_corpus.py) and its MANIFEST.

Heavy optional modules are imported once here, in the parent, so that each forked child of
:func:`hostile_isolation.run_isolated` measures the hostile file and not an import.
"""

from __future__ import annotations

import importlib

import pytest

from hostile_isolation import CORPUS, load_manifest

for _module in ("app.imaging", "app.imaging.dicom", "app.imaging.nifti", "pydicom", "nibabel", "app.loaders.tfjs",
                "app.model", "app.tflite", "app.tflite.to_ir", "app.modelcard", "app.archive"):
    try:
        importlib.import_module(_module)
    except ImportError:  # optional extras: the tests that need them skip with a reason
        pass


@pytest.fixture(scope="session")
def manifest() -> dict:
    if not (CORPUS / "MANIFEST.json").is_file():
        pytest.skip("tests/hostile/corpus/MANIFEST.json missing: run tools/make_hostile_corpus.py")
    return load_manifest()
