"""Parity with AUCMEDI's own preprocessing functions (slow: AUCMEDI imports TensorFlow).

Run in an environment with aucmedi==0.11.0 and TensorFlow installed, e.g.
``/opt/aucmedienv/bin/python -m pytest -m slow tests/imaging/test_aucmedi_parity.py``
(the environment also needs numpy, Pillow, pytest and this repository on ``sys.path``).
Reference pipeline = AUCMEDI ``image_loader`` -> ``Padding`` -> ``Resize(interpolation=k)`` ->
``Standardize(mode)`` exactly as ``DataGenerator.preprocess_image`` chains them.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def aucmedi_parts():
    pytest.importorskip("tensorflow", reason="TensorFlow is not importable here (AUCMEDI needs it)")
    pytest.importorskip("aucmedi", reason="aucmedi is not installed (pip install aucmedi==0.11.0)")
    from aucmedi.data_processing.io_loader import image_loader
    from aucmedi.data_processing.subfunctions import Padding, Resize, Standardize

    return image_loader, Padding, Resize, Standardize


@pytest.mark.parametrize("name", ["retina.jpg", "ihc.png", "chelsea.png", "camera.png", "logo.png"])
@pytest.mark.parametrize("mode", ["torch", "tf", "caffe", "z-score", "minmax", "grayscale"])
@pytest.mark.parametrize("interpolation", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("pad", [False, True])
def test_matches_aucmedi_pipeline(aucmedi_parts, photo_dir, name, mode, interpolation, pad):
    image_loader, Padding, Resize, Standardize = aucmedi_parts
    from app.imaging import PreprocessSpec, decode_image, preprocess

    reference = image_loader(name, str(photo_dir), image_format=None, grayscale=False)
    if pad:
        reference = Padding(mode="square").transform(reference)
    reference = Resize(shape=(224, 200), interpolation=interpolation).transform(reference)
    reference = np.asarray(Standardize(mode=mode).transform(reference), dtype=np.float32)

    spec = PreprocessSpec(size=(224, 200), resize_mode=interpolation, standardize=mode, channels=3, pad_square=pad)
    ours = preprocess(decode_image((photo_dir / name).read_bytes(), name), spec)[0]
    assert ours.shape == reference.shape
    if interpolation == 2:
        # cubic: OpenCV's SIMD/IPP cubic rounds a few pixels differently -> at most 1 grey level
        diff = np.abs(ours - reference)
        scale = np.abs(np.diff(np.unique(reference))).min() if np.unique(reference).size > 1 else 1.0
        assert diff.max() <= max(scale, 1 / 255 / 0.225) * 1.01 + 1e-4 or mode in ("z-score", "minmax")
        assert np.mean(diff < 1e-4) > 0.95
    else:
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["ihc.png", "camera.png"])
def test_matches_aucmedi_grayscale_loader(aucmedi_parts, photo_dir, name):
    image_loader, _Padding, Resize, Standardize = aucmedi_parts
    from app.imaging import PreprocessSpec, decode_image, preprocess

    reference = image_loader(name, str(photo_dir), image_format=None, grayscale=True)
    reference = Resize(shape=(64, 96), interpolation=1).transform(reference)
    reference = np.asarray(Standardize(mode="z-score").transform(reference), dtype=np.float32)
    ours = preprocess(decode_image((photo_dir / name).read_bytes(), name),
                      PreprocessSpec(size=(64, 96), resize_mode=1, standardize="z-score", channels=1))[0]
    np.testing.assert_allclose(ours, reference.reshape(ours.shape), rtol=1e-5, atol=1e-5)
