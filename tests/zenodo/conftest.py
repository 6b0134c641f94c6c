"""Fixtures for the Zenodo / model-source tests: a running fake Zenodo server."""

import pytest

from fake_zenodo import FakeZenodo


@pytest.fixture
def fake_zenodo():
    with FakeZenodo() as server:
        yield server


@pytest.fixture
def no_sleep():
    """A ``sleep`` replacement that records the requested waits instead of waiting."""
    waits = []
    waits_sleep = waits.append
    return waits, waits_sleep
