"""The same kernel checks inside Pyodide 0.27.7 under Node.js, against the wasm side module.

Needs node, clang-16 + wasm-ld-16 and a prepared Pyodide directory
(``python tools/pyodide_node/prepare_assets.py``; location from $VITRINE_PYODIDE_DIR, default
/tmp/vitrine-pyodide-0.27.7). Skips with the missing piece named otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
KERNEL_CACHE = REPO_ROOT / ".cache" / "kernels"
PYODIDE_DIR = Path(os.environ.get("VITRINE_PYODIDE_DIR", "/tmp/vitrine-pyodide-0.27.7"))
RUNNER = REPO_ROOT / "tools" / "pyodide_node" / "run_in_pyodide.mjs"
CHECKS = REPO_ROOT / "tools" / "pyodide_node" / "check_kernels.py"


@pytest.fixture(scope="module")
def wasm_library(build_tool) -> Path:
    if not (shutil.which("clang-16") and shutil.which("wasm-ld-16")):
        pytest.skip("clang-16 / wasm-ld-16 not installed: cannot build the wasm side module")
    return build_tool.build_kernels(KERNEL_CACHE, "wasm")


def test_kernels_inside_pyodide(wasm_library):
    if shutil.which("node") is None:
        pytest.skip("node not installed: cannot run Pyodide under Node.js")
    if not (PYODIDE_DIR / "pyodide.mjs").is_file() or not list(PYODIDE_DIR.glob("numpy-*.whl")):
        pytest.skip(f"no Pyodide 0.27.7 assets in {PYODIDE_DIR}: run `python tools/pyodide_node/prepare_assets.py`")
    library_in_pyodide = "/repo/" + wasm_library.relative_to(REPO_ROOT).as_posix()
    proc = subprocess.run(
        ["node", str(RUNNER), "--index-url", str(PYODIDE_DIR), "--repo", str(REPO_ROOT),
         "--packages", "numpy,openblas", "--script", str(CHECKS), "--", library_in_pyodide],
        capture_output=True, text=True, timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON report from Pyodide (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert report["failures"] == [], report["failures"][:20]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["platform"] == "emscripten" and report["numpy"] == "2.0.2"
    assert report["backend"].startswith("simd (vitrine_kernels.")
    assert report["library"].startswith("/tmp/vitrine_kernels.")  # loaded from bytes via the in-memory FS
    assert report["openblas"] == "openblas (libopenblas.so)"
    # 540 small + 30 K/N sweep + 8 large + 32 activation + 6 leading-dim + 4 depthwise + 8 conv2d + 5 Winograd
    # + 3 conv2d prologue + 8 pooling + 4 scale_shift (SIMD), the GEMM grid again for OpenBLAS, and the
    # engine hook when app.kernels.gemm exists
    assert report["checks"] >= 2 * (540 + 30 + 8 + 32 + 6) + 4 + 8 + 5 + 3 + 8 + 4


SHIPPED_CHECK = """
import sys
sys.path.remove("/repo")  # import the installed wheel, not the mounted checkout
from app import fastpath
backend = fastpath.select_backend()
print("RESULT", fastpath.__file__, backend.name, fastpath.backend_report()["skipped"])
"""


def test_wheel_with_shipped_library_selects_simd_in_pyodide(wasm_library, build_tool, tmp_path):
    """The shipping path: the side module inside the app wheel, installed by Pyodide's loadPackage,
    found next to app/fastpath/__init__.py by select_backend() with no explicit path."""
    if shutil.which("node") is None or not (PYODIDE_DIR / "pyodide.mjs").is_file():
        pytest.skip(f"node or Pyodide assets ({PYODIDE_DIR}) missing: run tools/pyodide_node/prepare_assets.py")
    source = tmp_path / "src"
    shutil.copytree(REPO_ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copyfile(REPO_ROOT / "pyproject.toml", source / "pyproject.toml")
    subprocess.run([os.sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q", "-w",
                    str(tmp_path / "wheel"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("vitrine-*.whl")
    build_tool.add_library_to_wheel(wheel, wasm_library)
    script = tmp_path / "shipped.py"
    script.write_text(SHIPPED_CHECK)
    proc = subprocess.run(
        ["node", str(RUNNER), "--index-url", str(PYODIDE_DIR), "--repo", str(REPO_ROOT),
         "--packages", f"numpy,{wheel}", "--script", str(script)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = [row for row in proc.stdout.splitlines() if row.startswith("RESULT")]
    assert line == ("RESULT /lib/python3.12/site-packages/app/fastpath/__init__.py "
                    "simd (vitrine_kernels.wasm.so) []")
