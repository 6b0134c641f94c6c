"""Generate the ground truth for the end-to-end ``vitrine predict`` test (run ONLY in /opt/tfenv).

    /opt/tfenv/bin/python tests/zenodo/make_cli_expected.py

Takes the committed TF.js fixture ``tests/fixtures/tfjs/k2_sequential_cnn`` (16x16x3 input,
5-class softmax), loads it with the tensorflowjs converter's Keras loader, writes three small
PNG images (pixel values 0..3, so ``standardize: null`` feeds the model numbers of a useful
magnitude) with TensorFlow's PNG encoder, decodes them again with TensorFlow and records
TensorFlow's predictions for exactly those pixels. Vitrine's own code is not used here.

Output: ``tests/zenodo/data/cli_png/{img_a,img_b,img_c}.png``, ``expected.npz`` (one float32
probability vector per PNG file name) and ``meta.json`` (versions, case).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import _tfjs_fixture_lib  # noqa: E402,F401  (imports TensorFlow + tensorflowjs with the fixture env's stubs)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflowjs  # noqa: E402
from tensorflowjs.converters import keras_tfjs_loader  # noqa: E402


def predict(model, batch: np.ndarray) -> np.ndarray:
    return np.asarray(model(batch, training=False), dtype=np.float32)

CASE = "k2_sequential_cnn"
OUT = ROOT / "tests" / "zenodo" / "data" / "cli_png"
SEED = 20260411


def main() -> int:
    case_dir = ROOT / "tests" / "fixtures" / "tfjs" / CASE
    model = keras_tfjs_loader.load_keras_model(str(case_dir / "model.json"), weights_path_prefix=str(case_dir))
    # the loaded model must reproduce the fixture's own TensorFlow outputs
    io = np.load(case_dir / "io.npz")
    reproduced = predict(model, io["input_0"])
    if not np.allclose(reproduced, io["output_0"], atol=1e-6):
        raise SystemExit(f"loaded model disagrees with {case_dir}/io.npz: {np.abs(reproduced - io['output_0']).max()}")
    height, width, channels = (int(d) for d in model.inputs[0].shape[1:])
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    expected = {}
    for name in ("img_a.png", "img_b.png", "img_c.png"):
        pixels = rng.integers(0, 4, size=(height, width, channels), dtype=np.uint8)
        png = tf.io.encode_png(pixels).numpy()
        (OUT / name).write_bytes(png)
        decoded = tf.io.decode_png((OUT / name).read_bytes(), channels=channels).numpy()
        assert np.array_equal(decoded, pixels)
        probabilities = predict(model, decoded[None].astype(np.float32))[0]
        expected[name] = probabilities.astype(np.float32)
        print(name, probabilities)
    spread = min(float(p.max() - p.min()) for p in expected.values())
    if spread < 0.05:
        raise SystemExit(f"outputs too flat to be a useful test (spread {spread})")
    np.savez(OUT / "expected.npz", **expected)
    (OUT / "meta.json").write_text(json.dumps({
        "case": CASE, "input_size": [height, width], "channels": channels,
        "classes": int(next(iter(expected.values())).shape[0]),
        "pixel_values": "uniform integers 0..3, numpy.random.default_rng(%d)" % SEED,
        "reference": "tf_keras model from tensorflowjs keras_tfjs_loader, predict(training=False) on the decoded PNG pixels as float32",
        "tf_version": tf.__version__, "tfjs_version": tensorflowjs.__version__,
        # the test refuses stale ground truth if the fixture's model files change
        "fixture_sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                           for p in sorted(case_dir.iterdir()) if p.name == "model.json" or p.suffix == ".bin"},
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
