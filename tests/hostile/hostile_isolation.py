"""Run one hostile input in a forked child with a wall-clock and an address-space bound.

A decompression bomb that slips past a check must not take the test run down with it: the child
gets ``RLIMIT_AS`` = (its address space at fork) + ``memory_bytes`` and is SIGKILLed after
``timeout`` seconds. The parent learns what happened as an :class:`Outcome`.

Also the entry points of the hostile corpus (``ENTRY_CALLS``): which public API each kind of
file goes through. Shared by tests/hostile and tests/fuzz (which puts this folder on sys.path).
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CORPUS = Path(__file__).resolve().parent / "corpus"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MEMORY = 2 << 30  # 2 GiB on top of what the parent already maps
FORK_AVAILABLE = hasattr(os, "fork")


@dataclass
class Outcome:
    """What one call did in the child: ``kind`` is ``returned``, ``raised``, ``timeout`` or
    ``crashed`` (killed by a signal / died without reporting)."""

    kind: str
    error_type: str = ""
    error_mro: tuple[str, ...] = ()
    message: str = ""
    traceback: str = ""
    seconds: float = 0.0
    peak_extra_mb: float | None = None
    detail: str = ""

    def describe(self) -> str:
        if self.kind == "raised":
            return f"raised {self.error_type}: {self.message[:300]} ({self.seconds:.2f} s)"
        if self.kind == "returned":
            return f"returned without error ({self.detail}) in {self.seconds:.2f} s"
        return f"{self.kind}: {self.detail} after {self.seconds:.2f} s"

    def is_vitrine_error(self) -> bool:
        return self.kind == "raised" and "app.errors.VitrineError" in self.error_mro


def _vm_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_isolated(function: Callable, *args, timeout: float = DEFAULT_TIMEOUT,
                 memory_bytes: int = DEFAULT_MEMORY) -> Outcome:
    """Call ``function(*args)`` in a forked child bounded in time and address space."""
    read_end, write_end = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        os.close(read_end)
        report: dict
        try:
            limit = _vm_bytes() + memory_bytes
            _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
            try:  # reset the peak-RSS counter so the figure is this call's, not pytest's
                with open("/proc/self/clear_refs", "w") as clear:
                    clear.write("5")
                baseline = _rss_kb("VmRSS")
            except OSError:
                baseline = None
            begin = time.monotonic()
            try:
                result = function(*args)
                report = {"kind": "returned", "detail": type(result).__name__}
            except BaseException as exc:  # the child reports everything; the test judges it
                report = {"kind": "raised", "error_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                          "error_mro": [f"{k.__module__}.{k.__qualname__}" for k in type(exc).__mro__],
                          "message": str(exc)[:4000],
                          "traceback": "".join(traceback.format_exception(exc))[-6000:]}
            report["seconds"] = time.monotonic() - begin
            peak = _rss_kb("VmHWM")
            if baseline is not None and peak is not None:
                report["peak_extra_mb"] = max(0, peak - baseline) / 1024
            payload = json.dumps(report).encode()
        except BaseException as exc:  # noqa: BLE001 - last resort so the parent hears something
            payload = json.dumps({"kind": "crashed", "detail": f"child setup failed: {exc!r}"}).encode()
        try:
            view = memoryview(payload)
            while view:
                written = os.write(write_end, view)
                view = view[written:]
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    deadline = started + timeout
    timed_out = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_end], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    elapsed = time.monotonic() - started
    if timed_out:
        return Outcome("timeout", seconds=elapsed, detail=f"no answer within {timeout} s (killed)")
    if not chunks:
        reason = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                  else f"exit status {os.WEXITSTATUS(status)}")
        return Outcome("crashed", seconds=elapsed, detail=reason)
    report = json.loads(b"".join(chunks))
    report["error_mro"] = tuple(report.get("error_mro", ()))
    return Outcome(**report)


# ------------------------------------------------------------------------------ entry points

def call_decode_image(path: str):
    """decode_image, then preprocess to a model-sized float array (what a batch does per file)."""
    from app.imaging import PreprocessSpec, decode_image, preprocess

    image = decode_image(Path(path).read_bytes(), Path(path).name)
    return preprocess(image, PreprocessSpec(size=(24, 24), channels=3))


def call_load_model_path(path: str):
    import app

    return app.load_model(path)


def call_read_zip(path: str):
    from app.archive import read_zip

    return read_zip(Path(path).read_bytes(), Path(path).name)


def call_tflite_load(path: str):
    from app.tflite import load

    return load(Path(path).read_bytes(), Path(path).name)


def call_tflite_interpreter(path: str):
    from app.tflite import Interpreter

    interpreter = Interpreter(model_content=Path(path).read_bytes(), model_name=Path(path).name)
    interpreter.allocate_tensors()
    return interpreter


def call_load_card(path: str):
    from app.modelcard import load_card

    return load_card(Path(path).read_bytes(), Path(path).name)


#: corpus entry kind -> [(label, function(path))]; every function must raise the expected error.
ENTRY_CALLS: dict[str, list[tuple[str, Callable]]] = {
    "image": [("decode_image+preprocess", call_decode_image)],
    "model": [("app.load_model(path)", call_load_model_path)],
    "zip": [("read_zip", call_read_zip), ("app.load_model(path)", call_load_model_path)],
    "tflite": [("app.load_model(path)", call_load_model_path), ("app.tflite.load", call_tflite_load),
               ("app.tflite.Interpreter", call_tflite_interpreter)],
    "card": [("load_card", call_load_card)],
}


def load_manifest() -> dict:
    return json.loads((CORPUS / "MANIFEST.json").read_text())
