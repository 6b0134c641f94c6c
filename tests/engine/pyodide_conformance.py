"""Run inside Pyodide (by test_pyodide.py): every TF.js fixture through app.load_model, compared
with TensorFlow's outputs; prints one JSON line."""

import json
import sys
from pathlib import Path

import numpy as np

import app

root = Path(sys.argv[1])
passed, failed = [], []
for folder in sorted(root.iterdir()):
    if not (folder / "io.npz").is_file():
        continue
    meta = json.loads((folder / "meta.json").read_text())
    arrays = np.load(folder / "io.npz")
    inputs = [arrays[f"input_{i}"] for i in range(sum(k.startswith("input_") for k in arrays.files))]
    expected = [arrays[f"output_{i}"] for i in range(sum(k.startswith("output_") for k in arrays.files))]
    try:
        got = app.load_model(folder).predict(inputs if len(inputs) > 1 else inputs[0])
        got = got if isinstance(got, list) else [got]
        for g, e in zip(got, expected):
            tolerance = 1e-4 if meta.get("kind") == "probabilities" else 1e-4 * max(1.0, float(np.abs(e).max()))
            diff = float(np.abs(g - e).max()) if e.size else 0.0
            if g.shape != e.shape or diff > tolerance:
                raise AssertionError(f"shape {g.shape} vs {e.shape}, max diff {diff}")
        passed.append(folder.name)
    except Exception as exc:  # noqa: BLE001 - report every failure, not just the first
        failed.append([folder.name, f"{type(exc).__name__}: {str(exc)[:300]}"])
print(json.dumps({"platform": sys.platform, "numpy": np.__version__, "passed": len(passed), "failed": failed}))
