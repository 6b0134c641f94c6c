"""Build Vitrine's SIMD kernel library from ``csrc/`` for the browser (wasm) or the host (native).

    python tools/build_kernels.py --target wasm   --out dist/kernels   # -> vitrine_kernels.wasm.so
    python tools/build_kernels.py --target native --out .cache/kernels # -> vitrine_kernels.native.so

The wasm target is an emscripten-compatible *side module* (a wasm file with a ``dylink.0``
section) built with plain clang + wasm-ld (no emsdk needed); Pyodide loads it with
``ctypes.CDLL`` through emscripten's ``dlopen``. The native target is an ordinary shared library
for CPython tests, built at portable baseline ISA (no ``-march=native``) so results and speed do
not depend on the build machine.

Output is deterministic: fixed flags, no debug info, ``-ffile-prefix-map`` for paths, sources
compiled from a temporary directory named after their content hash, and the file is written
atomically. ``build_kernels`` is the function the site build (``build.py``) calls.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CSRC = REPO_ROOT / "csrc"
SOURCES = ("vitrine_kernels.c",)
HEADERS = ("vitrine_kernels.h",)

#: File names of the built libraries; ``app.fastpath`` looks for exactly these.
OUTPUT_NAMES = {"wasm": "vitrine_kernels.wasm.so", "native": "vitrine_kernels.native.so"}

WASM_CLANG = "clang-16"
WASM_LD = "wasm-ld-16"

# -ffp-contract=off: no FMA contraction on either target, so wasm and native round identically.
COMMON_CFLAGS = ["-O3", "-std=c11", "-fPIC", "-ffp-contract=off", "-fno-math-errno", "-Wall", "-Wextra", "-Werror"]


class KernelBuildError(RuntimeError):
    """The kernel library could not be built (missing compiler, compiler error)."""


def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KernelBuildError(f"build_kernels: `{name}` not found on PATH; {hint}")
    return path


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KernelBuildError(
            f"build_kernels: command failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        )


def source_digest() -> str:
    """SHA-256 over the kernel sources and headers (names and bytes); identifies a build input."""
    digest = hashlib.sha256()
    for name in SOURCES + HEADERS:
        digest.update(name.encode() + b"\0" + (CSRC / name).read_bytes() + b"\0")
    return digest.hexdigest()


def wasm_commands(work: Path, output: Path) -> list[list[str]]:
    """The exact commands of a wasm build (also printed by ``--print-commands``)."""
    clang = _require_tool(WASM_CLANG, "install clang-16 and lld-16 (Debian: apt-get install clang-16 lld-16)")
    resource_dir = subprocess.run([clang, "-print-resource-dir"], capture_output=True, text=True, check=True).stdout.strip()
    objects = [Path(src).stem + ".o" for src in SOURCES]  # relative to the work dir (cwd)
    cmds = [
        [
            WASM_CLANG, "--target=wasm32-unknown-emscripten", "-msimd128", *COMMON_CFLAGS,
            "-ffreestanding", "-nostdlib", "-nostdinc", "-isystem", f"{resource_dir}/include",
            "-c", src, "-o", obj,
        ]
        for src, obj in zip(SOURCES, objects)
    ]
    # Side module: position independent, imports memory/table/__memory_base from Pyodide's main
    # module, exports the API; the name/producers sections are stripped for a smaller file.
    cmds.append([WASM_LD, "--experimental-pic", "-shared", "--export-dynamic", "--strip-all", "-o", output.name, *objects])
    return cmds


def native_commands(work: Path, output: Path) -> list[list[str]]:
    """The exact commands of a native build: $CC, else clang-16, else gcc, else cc."""
    candidates = [os.environ.get("CC"), "clang-16", "gcc", "cc"]
    compiler = next((c for c in candidates if c and shutil.which(c)), None)
    if compiler is None:
        raise KernelBuildError("build_kernels: no C compiler found (tried $CC, clang-16, gcc, cc)")
    return [[compiler, *COMMON_CFLAGS, "-shared", "-o", output.name, *SOURCES]]


def build_kernels(out_dir: str | os.PathLike, target: str = "wasm") -> Path:
    """Build the kernel library for ``target`` ("wasm" or "native") into ``out_dir``.

    Returns the path of the library (``vitrine_kernels.wasm.so`` / ``vitrine_kernels.native.so``).
    Raises :class:`KernelBuildError` naming the missing tool or the failing command. Rebuilds every
    time (about a second); the output is byte-identical for identical sources and toolchain.
    """
    if target not in OUTPUT_NAMES:
        raise KernelBuildError(f"build_kernels: target must be one of {sorted(OUTPUT_NAMES)}, got {target!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / OUTPUT_NAMES[target]
    # A content-named work dir keeps any path that leaks into the output identical across builds.
    work = Path(tempfile.gettempdir()) / f"vitrine-kernels-{target}-{source_digest()[:16]}-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    try:
        for name in SOURCES + HEADERS:
            shutil.copyfile(CSRC / name, work / name)
        temp_output = work / OUTPUT_NAMES[target]
        commands = wasm_commands(work, temp_output) if target == "wasm" else native_commands(work, temp_output)
        for cmd in commands:
            _run(cmd, cwd=work)
        data = temp_output.read_bytes()
        if target == "wasm" and not data.startswith(b"\0asm"):
            raise KernelBuildError(f"build_kernels: {temp_output} is not a wasm module")
        tmp_final = final.with_suffix(final.suffix + ".tmp")
        tmp_final.write_bytes(data)
        os.replace(tmp_final, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


#: Where app.fastpath looks for the wasm library inside an installed ``app`` package.
WHEEL_ARCNAME = "app/fastpath/" + OUTPUT_NAMES["wasm"]


def add_library_to_wheel(wheel: str | os.PathLike, library: str | os.PathLike, arcname: str = WHEEL_ARCNAME) -> Path:
    """Put ``library`` into the wheel at ``arcname`` (replacing any previous copy) and update the
    wheel's RECORD, rewriting the file in place. Returns the wheel path.

    Shipping the side module inside the ``app`` wheel means Pyodide installs it next to
    ``app/fastpath/__init__.py``, where :func:`app.fastpath.select_backend` finds it with no
    extra fetch. Entry order and timestamps are kept, so the rewrite is deterministic."""
    import base64
    import zipfile

    wheel = Path(wheel)
    data = Path(library).read_bytes()
    with zipfile.ZipFile(wheel) as source:
        entries = [(info, source.read(info.filename)) for info in source.infolist() if info.filename != arcname]
    records = [info.filename for info, _ in entries if info.filename.endswith(".dist-info/RECORD")]
    if len(records) != 1:
        raise KernelBuildError(f"add_library_to_wheel: {wheel} has {len(records)} RECORD files, expected 1")
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    line = f"{arcname},sha256={digest},{len(data)}"
    template = entries[0][0]
    new_info = zipfile.ZipInfo(arcname, date_time=template.date_time)
    new_info.compress_type = zipfile.ZIP_DEFLATED
    new_info.external_attr = 0o644 << 16
    rewritten = []
    for info, content in entries:
        if info.filename == records[0]:
            lines = [row for row in content.decode().splitlines() if row and not row.startswith(arcname + ",")]
            content = ("\n".join([line, *lines]) + "\n").encode()
            rewritten.append((new_info, data))
        rewritten.append((info, content))
    temp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(temp, "w") as target:
        for info, content in rewritten:
            target.writestr(info, content, compress_type=info.compress_type)
    os.replace(temp, wheel)
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=sorted(OUTPUT_NAMES), default="wasm")
    parser.add_argument("--out", default=str(REPO_ROOT / ".cache" / "kernels"), help="output directory")
    parser.add_argument("--print-commands", action="store_true", help="print the build commands, then build")
    args = parser.parse_args(argv)
    if args.print_commands:
        work, out = Path("<work>"), Path("<work>") / OUTPUT_NAMES[args.target]
        cmds = wasm_commands(work, out) if args.target == "wasm" else native_commands(work, out)
        for cmd in cmds:
            print(" ".join(cmd))
    try:
        path = build_kernels(args.out, args.target)
    except KernelBuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{path} ({path.stat().st_size} bytes, sha256 {hashlib.sha256(path.read_bytes()).hexdigest()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
