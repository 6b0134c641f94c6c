"""The imaging code inside Pyodide 0.27.7 under Node.js gives bit-identical display images and
model tensors to CPython, and refuses JPEG 2000 DICOM there (no OpenJPEG in Pyodide's Pillow).

Needs node, Pyodide assets ($VITRINE_PYODIDE_DIR, default /tmp/vitrine-pyodide-0.27.7, from
``tools/pyodide_node/prepare_assets.py``) with the numpy / Pillow / packaging Pyodide wheels
(there or in .cache/pyodide) and the pure-Python pydicom / nibabel wheels in .cache/wheels or
dist/wheels. Skips naming the missing piece otherwise.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PYODIDE_DIR = Path(os.environ.get("VITRINE_PYODIDE_DIR", "/tmp/vitrine-pyodide-0.27.7"))
RUNNER = REPO_ROOT / "tools" / "pyodide_node" / "run_in_pyodide.mjs"
CHECK = Path(__file__).resolve().parent / "pyodide_imaging_check.py"


def _wheel(prefix, folders):
    for folder in folders:
        found = sorted(folder.glob(f"{prefix}-*.whl")) if folder.is_dir() else []
        if found:
            return found[-1]
    return None


def test_same_results_in_pyodide(tmp_path, dicom_dir, nifti_dir, photo_dir):
    if shutil.which("node") is None:
        pytest.skip("node not installed: cannot run Pyodide under Node.js")
    if not (PYODIDE_DIR / "pyodide.mjs").is_file() or not RUNNER.is_file():
        pytest.skip(f"no Pyodide 0.27.7 assets in {PYODIDE_DIR} (or no {RUNNER})")
    pyodide_wheels = [p for d in (PYODIDE_DIR, REPO_ROOT / ".cache" / "pyodide") if d.is_dir() for p in d.glob("*")]
    for needed in ("numpy-", "pillow-", "packaging-"):
        if not any(p.name.startswith(needed) for p in pyodide_wheels):
            pytest.skip(f"Pyodide wheel {needed}* not found in {PYODIDE_DIR} or .cache/pyodide")
    pure = [_wheel(n, [REPO_ROOT / ".cache" / "wheels", REPO_ROOT / "dist" / "wheels"])
            for n in ("pydicom", "nibabel", "typing_extensions")]
    if None in pure:
        pytest.skip("pydicom / nibabel / typing_extensions wheels not found in .cache/wheels or dist/wheels")
    index = tmp_path / "pyodide"
    index.mkdir()
    for path in pyodide_wheels:
        if not (index / path.name).exists():
            (index / path.name).symlink_to(path.resolve())

    # files must live under the repository (mounted at /repo); PNG rather than JPEG because
    # Pyodide's libjpeg decodes JPEG with slightly different rounding than the CPython wheel's
    samples = [dicom_dir / n for n in ("MR_small.dcm", "CT_small.dcm", "MR_small_RLE.dcm", "image_dfl.dcm",
                                        "SC_rgb_jpeg_dcmtk.dcm", "examples_palette.dcm", "MR_small_jp2klossless.dcm")]
    samples += [nifti_dir / "example4d.nii.gz", nifti_dir / "functional.nii", photo_dir / "ihc.png", photo_dir / "logo.png"]
    try:
        inside = ["/repo/" + str(p.resolve().relative_to(REPO_ROOT)) for p in samples]
    except ValueError:
        pytest.skip("sample files are not inside the repository folder (needed for the /repo mount)")

    proc = subprocess.run(
        ["node", str(RUNNER), "--index-url", str(index), "--repo", str(REPO_ROOT), "--script", str(CHECK),
         "--packages", ",".join(["numpy", "pillow", "packaging", *map(str, pure)]), "--", *inside],
        capture_output=True, text=True, timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON report from Pyodide (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    browser = json.loads(lines[-1])
    assert browser["platform"] == "emscripten" and browser["jpg_2000"] is False

    sys.path.insert(0, str(CHECK.parent))
    try:
        from pyodide_imaging_check import summarise
    finally:
        sys.path.pop(0)
    cpython = summarise([str(p) for p in samples])
    jp2 = "MR_small_jp2klossless.dcm"
    assert "needs a JPEG 2000 decoder, which this Pillow build lacks" in browser["files"][jp2]["error"]
    assert "error" not in cpython["files"][jp2]  # CPython's Pillow has OpenJPEG
    for name, result in cpython["files"].items():
        if name != jp2:
            assert browser["files"][name] == result, name
