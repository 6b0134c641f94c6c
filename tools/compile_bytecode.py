"""Python side of tools/compile_bytecode.mjs (runs inside Pyodide 0.27.7 under Node.js).

Pyodide's stdlib zip and the numpy / Pillow / app wheels carry only ``.py`` sources, so the
browser compiles every module it imports on every page load (about 120 stdlib modules before the
engine script even starts, ~80 for ``import numpy``); that compiling was most of the engine's
start-up (docs/build.md, "Start-up"). This script

1. runs the worker glue (``workers/engine.py``) exactly as the browser worker does, then the
   calls of a boot and of a first classification: ``info``, ``select_gemm_backend``,
   ``open_model`` (the demo model), ``inspect_image`` / ``classify`` (the demo images), ``catalog``;
2. compiles every module imported by then whose source is in the stdlib zip or in site-packages,
   with this interpreter (the browser's, byte for byte), into *unchecked hash-based* pycs (PEP 552:
   the import system loads them without re-reading the source, which never changes: it is the
   sha256-verified file they were compiled from);
3. writes ``python_stdlib.zip`` = the original stdlib zip (every entry, same order) plus
   ``<module>.pyc`` entries where ``zipimport`` looks for them, and per site package a zip of
   ``__pycache__/<module>.cpython-312.pyc`` files that Pyodide unpacks into site-packages.

Sources stay in place, so tracebacks still show source lines. The job file (JSON, from build.py):
``packages``, ``engine``, ``demo_model``, ``images``, ``stdlib_zip``, ``site_archives``
(top-level import name -> archive name) and ``out``. ``out/report.json`` lists the modules compiled.
"""

import importlib.util
import inspect
import json
import sys
import zipfile
from importlib._bootstrap_external import _code_to_hash_pyc
from pathlib import Path

from pyodide.ffi import to_js

STDLIB_PREFIX = f"/lib/python{sys.version_info.major}{sys.version_info.minor}.zip/"
SITE_PREFIX = f"/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages/"
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # as build.py: fixed dates make the archives reproducible


class ProbeError(Exception):
    """The engine did not boot or a probe call failed: the site would not work either."""


def unchecked_pyc(source: bytes, filename: str) -> bytes:
    # the filename is what the import system would give the code object (tracebacks show it)
    code = compile(source, filename, "exec", dont_inherit=True)
    return bytes(_code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False))


async def probe(job: dict) -> None:
    """Boot the worker glue and make the calls of a start-up and a first classification."""
    engine_path = job["engine"]
    namespace = {"__name__": "vitrine_engine_probe"}
    exec(compile(Path(engine_path).read_text(), engine_path, "exec"), namespace)
    if namespace.get("_boot_error") is not None:
        raise ProbeError(f"workers/engine.py did not boot: {namespace['_boot_error']!r}")
    engine_call = namespace["call"]

    async def request(name, args=None, payload=None):
        reply = engine_call(json.dumps({"call": name, "id": f"probe-{name}", "args": args or {}}),
                            None if payload is None else to_js(payload))
        if inspect.isawaitable(reply):
            reply = await reply
        reply = json.loads(reply)
        if not reply["ok"]:
            raise ProbeError(f"probe call {name} failed: {reply['error']['type']}: {reply['error']['message']}")
        return reply["result"]

    await request("info")
    await request("select_gemm_backend")
    model = (await request("open_model", {"name": "demo-model.zip"}, Path(job["demo_model"]).read_bytes()))["model"]
    for image in job["images"]:
        data = Path(image).read_bytes()
        await request("inspect_image", {"name": Path(image).name}, data)
        await request("classify", {"model": model, "name": Path(image).name}, data)
    await request("catalog")


def imported_sources() -> dict[str, str]:
    """origin path -> module name of every imported module loaded from a .py file."""
    found = {}
    for name, module in list(sys.modules.items()):
        origin = getattr(getattr(module, "__spec__", None), "origin", None)
        if isinstance(origin, str) and origin.endswith(".py"):
            found[origin] = name
    return found


def write_zip(target: Path, entries: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
    with zipfile.ZipFile(target, "w") as archive:
        for info, data in entries:
            archive.writestr(info, data, compresslevel=9 if info.compress_type == zipfile.ZIP_DEFLATED else None)


def new_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.external_attr = 0o644 << 16
    info.create_system = 3
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def stdlib_archive(source_zip: Path, target: Path, origins: list[str]) -> list[str]:
    with zipfile.ZipFile(source_zip) as original:
        entries = []
        for info in original.infolist():
            copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            copy.compress_type, copy.external_attr, copy.create_system = info.compress_type, info.external_attr, info.create_system
            entries.append((copy, original.read(info)))
        members = set(original.namelist())
        compiled = []
        for origin in sorted(origins):
            member = origin[len(STDLIB_PREFIX):]
            if member not in members:
                continue
            # zipimport normalizes line endings before compiling; so do we
            source = original.read(member).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            entries.append((new_entry(member[:-3] + ".pyc"), unchecked_pyc(source, origin)))
            compiled.append(member)
    write_zip(target, entries)
    return compiled


def site_archive(target: Path, origins: list[str]) -> list[str]:
    entries = []
    for origin in sorted(origins):
        cached = importlib.util.cache_from_source(origin)  # .../__pycache__/x.cpython-312.pyc
        entries.append((new_entry(cached[len(SITE_PREFIX):]), unchecked_pyc(Path(origin).read_bytes(), origin)))
    write_zip(target, entries)
    return [origin[len(SITE_PREFIX):] for origin in sorted(origins)]


async def main() -> None:
    job = json.loads(Path(job_path).read_text())  # noqa: F821 - set by compile_bytecode.mjs
    await probe(job)
    origins = imported_sources()
    out = Path(job["out"])
    report = {"stdlib": stdlib_archive(Path(job["stdlib_zip"]), out / "python_stdlib.zip",
                                       [o for o in origins if o.startswith(STDLIB_PREFIX)])}
    for top_level, archive in job["site_archives"].items():
        mine = [o for o in origins if o.startswith(f"{SITE_PREFIX}{top_level}/")]
        report[archive] = site_archive(out / f"{archive}.zip", mine)
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True))


await main()  # noqa: F704 - runPythonAsync runs this file as top-level async code
