"""Real pretrained TF.js layers-models shipped inside an npm package (nsfwjs 4.4.0, MIT), run end to
end: the model files are fetched at test set-up by ``tools/fetch_npm_models.py --fetch-only``
(``npm pack`` of the pinned tarball, checked against its sha256) into ``.cache/fixtures/npm/``;
the expected outputs in ``tests/fixtures/npm/<case>/io.npz`` were recorded from TF.js 4.22 itself
(and agree with TensorFlow, see each meta.json)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import app

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = ROOT / "tests" / "fixtures" / "npm"
CACHE = ROOT / ".cache" / "fixtures" / "npm"
CASES = sorted(p.name for p in EXPECTED.iterdir() if (p / "io.npz").is_file())


@pytest.fixture(scope="module")
def fetched_models():
    missing = [name for name in CASES if not (CACHE / name / "model.json").is_file()]
    if missing:
        if shutil.which("npm") is None or shutil.which("node") is None:
            pytest.skip("npm and node are needed to fetch the pretrained npm models (tools/fetch_npm_models.py)")
        subprocess.run([sys.executable, str(ROOT / "tools" / "fetch_npm_models.py"), "--fetch-only"],
                       check=True, cwd=ROOT, timeout=900)
    return CACHE


@pytest.mark.parametrize("name", CASES)
def test_pretrained_npm_model_matches_tfjs(fetched_models, name):
    meta = json.loads((EXPECTED / name / "meta.json").read_text())
    with np.load(EXPECTED / name / "io.npz") as io:
        x, expected = io["input_0"], io["output_0"]
    model = app.load_model(str(fetched_models / name))
    assert model.input_shape == (None, *x.shape[1:])
    got = model.predict(x)
    assert meta["kind"] == "probabilities"
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
