"""The engine inside Pyodide 0.27.7 (under Node.js): all TF.js fixtures must still match TensorFlow.

Needs node and a prepared Pyodide directory (``python tools/pyodide_node/prepare_assets.py``;
location from $VITRINE_PYODIDE_DIR, default /tmp/vitrine-pyodide-0.27.7); skips naming the
missing piece otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PYODIDE_DIR = Path(os.environ.get("VITRINE_PYODIDE_DIR", "/tmp/vitrine-pyodide-0.27.7"))
RUNNER = REPO_ROOT / "tools" / "pyodide_node" / "run_in_pyodide.mjs"
SCRIPT = Path(__file__).with_name("pyodide_conformance.py")
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "tfjs"


def test_all_tfjs_fixtures_inside_pyodide():
    if shutil.which("node") is None:
        pytest.skip("node not installed: cannot run Pyodide under Node.js")
    if not RUNNER.is_file():
        pytest.skip(f"{RUNNER} missing")
    if not (PYODIDE_DIR / "pyodide.mjs").is_file() or not list(PYODIDE_DIR.glob("numpy-*.whl")):
        pytest.skip(f"no Pyodide 0.27.7 assets in {PYODIDE_DIR}: run `python tools/pyodide_node/prepare_assets.py`")
    cases = [p for p in FIXTURES.iterdir() if (p / "io.npz").is_file()] if FIXTURES.is_dir() else []
    if not cases:
        pytest.skip(f"no fixtures in {FIXTURES}")
    proc = subprocess.run(
        ["node", str(RUNNER), "--index-url", str(PYODIDE_DIR), "--repo", str(REPO_ROOT), "--packages", "numpy",
         "--script", str(SCRIPT), "--", "/repo/tests/fixtures/tfjs"],
        capture_output=True, text=True, timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report from Pyodide (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    report = json.loads(lines[-1])
    assert report["platform"] == "emscripten" and report["numpy"] == "2.0.2"
    assert report["failed"] == []
    assert report["passed"] == len(cases)
