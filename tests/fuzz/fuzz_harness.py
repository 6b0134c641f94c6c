"""Fuzzing harness (imported by the fuzz tests; conftest.py holds the fixtures): byte mutations of real good inputs (the hostile corpus's ``good/`` seeds).

Settings (docs/robustness.md): ``VITRINE_FUZZ_EXAMPLES`` examples per target (default 200),
derandomized so CI sees the same inputs every run, no deadline, no example database. Each example
runs under a wall-clock alarm and the test process under an address-space limit, so a bomb or a
hang shows up as a failure instead of taking the run down.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

HOSTILE = Path(__file__).resolve().parents[1] / "hostile"
GOOD = HOSTILE / "corpus" / "good"

FUZZ_EXAMPLES = int(os.environ.get("VITRINE_FUZZ_EXAMPLES", "200"))
#: One example must finish within this many seconds (raises ExampleTimeout inside the call).
EXAMPLE_SECONDS = float(os.environ.get("VITRINE_FUZZ_EXAMPLE_SECONDS", "10"))
#: Address space the fuzzed process may add (a MemoryError instead of an OOM-killed machine).
EXTRA_ADDRESS_SPACE = 3 << 30

FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

#: 32-bit values that break length / offset / count fields.
INTERESTING_U32 = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 20, 1 << 30)


class ExampleTimeout(BaseException):
    """Raised by the alarm; a BaseException so ``except Exception`` in the code under test
    cannot swallow it."""


@contextmanager
def time_limit(seconds: float = EXAMPLE_SECONDS):
    def on_alarm(signum, frame):
        raise ExampleTimeout(f"example took more than {seconds} s (hang?)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def vm_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@st.composite
def mutations(draw, seed: bytes, header_bytes: int = 512, max_ops: int = 4) -> bytes:
    """``seed`` with 1..max_ops byte mutations: bit flip, truncation, insertion, deletion, or an
    interesting 32-bit value written over it. Half the positions fall in the first
    ``header_bytes`` bytes, where the structure lives."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_ops))):
        if not data:
            break
        region = len(data) if draw(st.booleans()) else min(len(data), header_bytes)
        position = draw(st.integers(0, region - 1))
        kind = draw(st.sampled_from(("flip", "truncate", "insert", "delete", "u32")))
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[position:position + draw(st.integers(1, 64))]
        else:
            value = draw(st.sampled_from(INTERESTING_U32))
            order = draw(st.sampled_from(("little", "big")))
            data[position:position + 4] = value.to_bytes(4, order)
    return bytes(data)


#: Bugs the fuzzers already found, tolerated here so the suite keeps looking for new ones; each is
#: pinned by a strict-xfail minimal reproducer in tests/hostile/test_reproducers.py. Entries:
#: (qualified exception class, regex on the message, file the traceback must end in, reproducer test).
KNOWN_BUGS: tuple[tuple[str, str, str, str], ...] = ()
known_bug_hits: dict[str, int] = {}


def _matches(class_name: str, message: str, last_file: str | None) -> str | None:
    import re

    for known_class, pattern, in_file, reproducer in KNOWN_BUGS:
        if class_name in (known_class, known_class.rsplit(".", 1)[-1]) and re.search(pattern, message):
            if in_file and last_file is not None and not last_file.replace("\\", "/").endswith(in_file):
                continue
            known_bug_hits[reproducer] = known_bug_hits.get(reproducer, 0) + 1
            return reproducer
    return None


def is_known_bug(exc: BaseException) -> bool:
    """True (and counted in ``known_bug_hits``) when ``exc`` is one of :data:`KNOWN_BUGS`, raised
    in the file the entry names (the innermost frame of app code)."""
    import traceback

    frames = [f.filename for f in traceback.extract_tb(exc.__traceback__) if "/app/" in f.filename.replace("\\", "/")]
    qualified = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return _matches(qualified, str(exc), frames[-1] if frames else "") is not None


def is_known_internal_error(error: dict) -> bool:
    """Same as :func:`is_known_bug` for a service error reply (``detail`` = "Type: message"; the
    file is checked against the reply's traceback text)."""
    class_name, _, message = str(error.get("detail", "")).partition(": ")
    tb = str(error.get("traceback", ""))
    app_files = [line.split('"')[1] for line in tb.splitlines() if line.strip().startswith('File "') and "/app/" in line]
    return _matches(class_name, message, app_files[-1] if app_files else None) is not None
