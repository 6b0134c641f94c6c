"""Fixtures of the fuzz tests (the harness itself is fuzz_harness.py)."""

from __future__ import annotations

import resource

import pytest

from fuzz_harness import EXTRA_ADDRESS_SPACE, vm_bytes


@pytest.fixture(autouse=True)
def bounded_address_space():
    """RLIMIT_AS = current address space + 3 GiB for the duration of one fuzz test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm_bytes() + EXTRA_ADDRESS_SPACE
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def pytest_terminal_summary(terminalreporter):
    """One line with the settings and how often each already-reported bug was met again."""
    from fuzz_harness import EXAMPLE_SECONDS, FUZZ_EXAMPLES, known_bug_hits

    hits = ", ".join(f"{name} x{count}" for name, count in sorted(known_bug_hits.items())) or "none"
    terminalreporter.write_line(f"fuzz: {FUZZ_EXAMPLES} examples per target, {EXAMPLE_SECONDS} s per example; "
                                f"known bugs met again: {hits}")
