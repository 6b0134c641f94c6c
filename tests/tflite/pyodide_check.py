"""Every TFLite fixture run *inside Pyodide 0.27.7* (CPython 3.12, numpy 2.0.2), no pytest there.

    node tools/pyodide_node/run_in_pyodide.mjs --index-url DIR --repo . --packages numpy \\
        --script tests/tflite/pyodide_check.py

Also checks ``app.tflite.install_alias()`` makes ``tflite_runtime.interpreter`` importable.
Prints one JSON line {platform, cases, failures}; exits 1 on any failure.
"""

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path("/repo") if Path("/repo/app").is_dir() else Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
FIXTURES = REPO / "tests" / "fixtures" / "tflite"

from app.tflite import install_alias  # noqa: E402

failures = []
install_alias()
from tflite_runtime.interpreter import Interpreter  # noqa: E402

cases = sorted(p.name for p in FIXTURES.iterdir() if (p / "model.tflite").exists())
for case in cases:
    try:
        io = np.load(FIXTURES / case / "io.npz")
        interp = Interpreter(model_path=str(FIXTURES / case / "model.tflite"))
        details = interp.get_input_details()
        for i, d in enumerate(details):
            interp.resize_tensor_input(d["index"], io[f"input_{i}"].shape)
        interp.allocate_tensors()
        for i, d in enumerate(details):
            interp.set_tensor(d["index"], io[f"input_{i}"])
        interp.invoke()
        for i, d in enumerate(interp.get_output_details()):
            got, want = interp.get_tensor(d["index"]), io[f"output_{i}"]
            if want.dtype.kind == "f":
                bad = np.abs(got - want).max() > 1e-4 * max(np.abs(want).max(), 1e-6)
            else:
                bad = np.abs(got.astype(np.int64) - want).max() > 0
            if bad:
                failures.append(f"{case} output {i} differs from LiteRT")
    except Exception as exc:  # noqa: BLE001 - report every case, not just the first
        failures.append(f"{case}: {type(exc).__name__}: {exc}")

# Pretrained models, when tests/tflite/real_models.py already fetched them into .cache.
import hashlib  # noqa: E402
import time  # noqa: E402

real_dir = REPO / ".cache" / "fixtures" / "tflite-real"
expected_dir = FIXTURES / "real"
timings = {}
if real_dir.is_dir() and expected_dir.is_dir():
    from app.tflite import load  # noqa: E402
    for folder in sorted(expected_dir.iterdir()):
        path = real_dir / f"{folder.name}.tflite"
        if not path.exists():
            continue
        meta = json.loads((folder / "meta.json").read_text())
        x = np.random.default_rng(meta["input_seed"]).uniform(
            *meta["input_range"], tuple(meta["input_shape"])).astype(np.float32)
        if hashlib.sha256(x.tobytes()).hexdigest() != meta["sha256_input"]:
            failures.append(f"{folder.name}: input generator differs in Pyodide")
            continue
        want = np.load(folder / "io.npz")["output_0"]
        for engine in ("interpreter", "auto"):
            loaded = load(path.read_bytes(), folder.name, engine=engine)
            if engine == "auto":
                from app.model import Model  # noqa: E402
                loaded = Model(loaded, format="tflite")
            start = time.perf_counter()
            got = loaded.predict(x)
            timings[f"{folder.name}/{engine}"] = round(time.perf_counter() - start, 3)
            got = got[0] if isinstance(got, list) else got
            if np.abs(got - want).max() > 1e-4 * max(np.abs(want).max(), 1e-6):
                failures.append(f"{folder.name} ({engine}) differs from LiteRT")

print(json.dumps({"platform": sys.platform, "cases": len(cases), "real_seconds": timings,
                  "failures": failures}))
sys.exit(1 if failures else 0)
