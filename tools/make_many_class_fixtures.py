"""Committed many-class TF.js models for the page's many-class views (issue #6), with TensorFlow's
outputs on the demo's sample images. Run ONLY inside /opt/tfenv (bash tools/fixture_env.sh):

    /opt/tfenv/bin/python tools/make_many_class_fixtures.py

Writes ``tests/fixtures/many_classes/<case>/``:

* ``model.zip``     TF.js layers model (tensorflowjs converter output) + ``model-card.json``;
                    deterministic bytes (sorted entries, fixed timestamps).
* ``expected.npz``  ``files`` (sample names) and ``probabilities`` (float32, one row per file):
                    TensorFlow's outputs of the model REBUILT from the written model.json + shards
                    (the artifacts, not the in-memory model) on ``static/demo/expected_inputs.npz``,
                    the float32 inputs tools/make_demo_model.py computed for the samples with
                    Pillow / pydicom / OpenCV (the page decodes these PNG / DICOM files
                    bit-identically, docs/imaging.md).
* ``meta.json``     versions, seed, the classes, and per image the gap between the k-th and the
                    (k+1)-th highest probability for the k the page offers: the seed is chosen so
                    every gap is at least MIN_GAP, so "the top k" is one set whatever the last
                    float32 bits (the browser test compares the page's top k with this file's).

The cases are made up (seeded weights, not trained): ``softmax_120`` is a single-label model with
120 classes, ``multilabel_24`` a multi-label (sigmoid) model with 24, like the 14+ findings of
chest X-ray models. Not for any clinical use; the class names say "finding".
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tfjs_fixture_lib as lib  # noqa: E402  (TensorFlow, tf_keras, tensorflowjs)

np = lib.np
tf_keras = lib.tf_keras

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "many_classes"
DEMO = REPO / "static" / "demo"
# PNG and DICOM only: their decoding in Pyodide is bit-identical to CPython's, JPEG's is not
# (tests/browser/test_workflow.py JPEG_TOLERANCE)
SAMPLES = ["ct_head.png", "ct_small.dcm", "microscopy_cell.png", "mr_abdomen.png", "mr_small.dcm", "photo_camera.png"]
TOP_KS = (5, 10, 20)        # the page's "Classes shown" choices (index.html #class-limit)
MIN_GAP = 2e-4              # twice the browser tests' 1e-4 tolerance on a probability
CASES = {
    "softmax_120": {"classes": 120, "multi_label": False},
    "multilabel_24": {"classes": 24, "multi_label": True},
}


def build_model(case: str, classes: int, multi_label: bool, seed: int):
    """A small conv net on the demo's 64x64 RGB input; the head's bias is a shuffled ramp, so the
    probabilities are spread out (no two classes alike) and the image reorders them a little."""
    inputs = tf_keras.Input((64, 64, 3))
    x = tf_keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv1")(inputs)
    x = tf_keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = tf_keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = tf_keras.layers.Dense(classes, activation="sigmoid" if multi_label else "softmax", name="head")(x)
    model = tf_keras.Model(inputs, outputs, name=case)
    lib.seed_weights(model, seed, gain=4.0)
    rng = np.random.default_rng(seed + 1)
    head = model.get_layer("head")
    kernel, _ = head.get_weights()
    ramp = np.linspace(1.0, -4.0, classes) if multi_label else np.linspace(2.0, -4.0, classes)
    # the image's part of the logits is a tenth of the seeded kernel's: enough to give each image
    # its own top 10, small enough that neighbouring probabilities stay MIN_GAP apart
    head.set_weights([kernel * 0.1, rng.permutation(ramp).astype(np.float32)])
    return model


def top_k_gaps(probabilities: np.ndarray) -> dict[str, list[float]]:
    ordered = -np.sort(-probabilities, axis=1)
    return {str(k): [float(row[k - 1] - row[k]) for row in ordered] for k in TOP_KS if k < probabilities.shape[1]}


def deterministic_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def card(case: str, classes: list[str], multi_label: bool) -> dict:
    return {"schema_version": 1, "name": f"Vitrine test: {len(classes)} classes ({case}, not for clinical use)",
            "classes": classes, "multi_label": multi_label, **({"threshold": 0.5} if multi_label else {}),
            "input_size": [64, 64], "channels": 3, "resize_mode": 1, "standardize": "tf",
            "description": "Seeded random weights, not trained: a fixture for the page's many-class views "
                           "(tools/make_many_class_fixtures.py). Its outputs mean nothing.",
            "x-not-for-clinical-use": True}


def make_case(case: str, spec: dict, inputs: np.ndarray) -> dict:
    names = [f"finding {i:03d}" for i in range(spec["classes"])]
    base_seed = zlib.crc32(case.encode())
    for attempt in range(200):  # the first seed whose top-k sets are unambiguous (MIN_GAP)
        seed = base_seed + attempt
        model = build_model(case, spec["classes"], spec["multi_label"], seed)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / case
            lib.convert(model, "2", folder)
            rebuilt = lib.load_tfjs_into_tf_keras(folder)
            probabilities = np.asarray(rebuilt(inputs, training=False), dtype=np.float32)
            in_memory = np.asarray(model(inputs, training=False), dtype=np.float32)
            gaps = top_k_gaps(probabilities)
            if min(min(v) for v in gaps.values()) < MIN_GAP:
                continue
            entries = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
        entries["model-card.json"] = (json.dumps(card(case, names, spec["multi_label"]), indent=1) + "\n").encode()
        target = OUT / case
        target.mkdir(parents=True, exist_ok=True)
        (target / "model.zip").write_bytes(deterministic_zip(entries))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, files=np.array(SAMPLES), probabilities=probabilities)
        (target / "expected.npz").write_bytes(buffer.getvalue())
        meta = {"case": case, "generator": "tools/make_many_class_fixtures.py", "tensorflow": lib.TF_VERSION,
                "tf_keras": lib.TF_KERAS_VERSION, "tensorflowjs": lib.TFJS_VERSION, "seed": seed,
                "classes": spec["classes"], "multi_label": spec["multi_label"], "inputs": "static/demo/expected_inputs.npz",
                "reference": "TensorFlow, tf_keras model rebuilt from the written model.json + shards",
                "max_abs_diff_rebuilt_vs_in_memory": float(np.abs(probabilities - in_memory).max()),
                "min_gap": MIN_GAP, "top_k_gaps": gaps,
                "top_10": {name: [int(i) for i in np.argsort(-row, kind="stable")[:10]] for name, row in zip(SAMPLES, probabilities)}}
        (target / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"{case}: seed {seed} (attempt {attempt + 1}), smallest top-k gap {min(min(v) for v in gaps.values()):.2e}, "
              f"max probability per image {np.round(probabilities.max(axis=1), 3).tolist()}")
        return meta
    raise SystemExit(f"{case}: no seed in 200 gives top-k gaps >= {MIN_GAP}")


def main() -> int:
    with np.load(DEMO / "expected_inputs.npz") as data:
        inputs = np.concatenate([data[name] for name in SAMPLES]).astype(np.float32)
    for case, spec in CASES.items():
        make_case(case, spec, inputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
