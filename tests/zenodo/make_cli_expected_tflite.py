"""Ground truth for the TFLite leg of the ``vitrine predict`` test (run ONLY in /opt/litertenv).

    /opt/litertenv/bin/python tests/zenodo/make_cli_expected_tflite.py

Runs the committed fixture ``tests/fixtures/tflite/cnn_float32/model.tflite`` (16x16x3 input,
5 outputs) with LiteRT's reference kernels (``OpResolverType.BUILTIN_REF``, as the fixture
generator does) on the PNGs of ``data/cli_png`` (decoded with TensorFlow, not Vitrine) and writes
``data/cli_png/expected_tflite.npz``. First checks that the interpreter reproduces the fixture's
own ``io.npz``. Vitrine's code is not used.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "tests" / "fixtures" / "tflite" / "cnn_float32"
PNG_DIR = ROOT / "tests" / "zenodo" / "data" / "cli_png"


def run(interpreter: Interpreter, batch: np.ndarray) -> np.ndarray:
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    results = []
    for sample in batch:
        interpreter.set_tensor(inp["index"], sample[None].astype(inp["dtype"]))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(results)


def main() -> int:
    interpreter = Interpreter(model_path=str(CASE / "model.tflite"),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    with np.load(CASE / "io.npz") as io:
        reproduced = run(interpreter, io["input_0"])
        if not np.allclose(reproduced, io["output_0"], atol=1e-6):
            raise SystemExit(f"interpreter disagrees with {CASE}/io.npz: {np.abs(reproduced - io['output_0']).max()}")
    expected = {}
    for name in ("img_a.png", "img_b.png", "img_c.png"):
        pixels = tf.io.decode_png((PNG_DIR / name).read_bytes(), channels=3).numpy().astype(np.float32)
        expected[name] = run(interpreter, pixels[None])[0].astype(np.float32)
        print(name, expected[name])
    np.savez(PNG_DIR / "expected_tflite.npz", **expected)
    # the test refuses stale ground truth if the fixture model changes
    (PNG_DIR / "meta_tflite.json").write_text(json.dumps({
        "case": CASE.name, "reference": "ai-edge-litert Interpreter, OpResolverType.BUILTIN_REF",
        "litert_version": version("ai-edge-litert"), "tf_version": tf.__version__,
        "fixture_sha256": {"model.tflite": hashlib.sha256((CASE / "model.tflite").read_bytes()).hexdigest()},
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
