"""app.runtime.memory_report: the engine's memory high-water mark (CPython side; the Pyodide side
is checked in the browser by tests/browser/test_bench_harness.py)."""

import numpy as np

from app.runtime import memory_report


def test_cpython_peak_covers_a_touched_allocation():
    block = np.ones(64 * 1024 * 1024 // 4, dtype=np.float32)  # 64 MiB, every page written
    report = memory_report()
    assert report["heap_bytes"] >= block.nbytes
    assert "resident" in report["measure"]


def test_peak_never_decreases_after_freeing():
    block = np.ones(32 * 1024 * 1024 // 4, dtype=np.float32)
    before = memory_report()["heap_bytes"]
    del block
    assert memory_report()["heap_bytes"] >= before
