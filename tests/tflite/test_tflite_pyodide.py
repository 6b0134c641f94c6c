"""The TFLite fixtures inside Pyodide 0.27.7 under Node.js (``pyodide_check.py``).

Needs node and Pyodide assets ($VITRINE_PYODIDE_DIR, default /tmp/vitrine-pyodide-0.27.7, from
``tools/pyodide_node/prepare_assets.py``) with the numpy wheel; skips naming what is missing.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PYODIDE_DIR = Path(os.environ.get("VITRINE_PYODIDE_DIR", "/tmp/vitrine-pyodide-0.27.7"))
RUNNER = REPO_ROOT / "tools" / "pyodide_node" / "run_in_pyodide.mjs"
CHECK = Path(__file__).resolve().parent / "pyodide_check.py"


def test_tflite_fixtures_inside_pyodide(tmp_path):
    if shutil.which("node") is None:
        pytest.skip("node not installed: cannot run Pyodide under Node.js")
    if not (PYODIDE_DIR / "pyodide.mjs").is_file() or not RUNNER.is_file():
        pytest.skip(f"no Pyodide 0.27.7 assets in {PYODIDE_DIR} (or no {RUNNER})")
    wheels = [p for d in (PYODIDE_DIR, REPO_ROOT / ".cache" / "pyodide") for p in d.glob("*.whl")]
    if not any(p.name.startswith("numpy-") for p in wheels):
        pytest.skip(f"numpy Pyodide wheel not found in {PYODIDE_DIR} or .cache/pyodide")
    index = tmp_path / "pyodide"
    index.mkdir()
    for path in [*PYODIDE_DIR.iterdir(), *wheels]:
        if not (index / path.name).exists():
            (index / path.name).symlink_to(path.resolve())
    proc = subprocess.run(["node", str(RUNNER), "--index-url", str(index), "--repo", str(REPO_ROOT),
                           "--packages", "numpy", "--script", str(CHECK)],
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON report from Pyodide (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert report["failures"] == []
    assert report["platform"] == "emscripten" and report["cases"] >= 14
    assert proc.returncode == 0, proc.stderr[-3000:]
