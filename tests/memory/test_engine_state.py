"""The engine keeps no per-image state (issue #9, memory), checked under CPython with the same
EngineService the worker runs; tests/browser/test_memory.py checks it again inside Pyodide.

The census (app.diagnostics) is first shown to see what it must see -- bytes, bytearrays, numpy
arrays and views held in tracked and untracked containers, closures and suspended generators --
and to forget what was dropped. Then a batch of real images goes through ``inspect_image`` and
``classify``; afterwards no live buffer has an image's file length or decoded shape, and the
buffers alive after a second, different batch are exactly those alive after the first.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import numpy as np
import pytest

from app.diagnostics import heap_census, live_buffers
from app.service import EngineService

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "static" / "demo" / "samples"
SEEDS = REPO / "tests" / "hostile" / "corpus" / "good"
MIN_BYTES = 512


def _shapes(min_bytes=MIN_BYTES, roots=None):
    return [(b["type"], tuple(b["shape"]), b["dtype"]) for b in live_buffers(min_bytes, roots)]


def _engine_roots(service):
    """What the engine can reach: the service and every module of the app and of the libraries it
    decodes with (module-level caches and stored exceptions included). Not the whole process:
    under pytest it also holds other tests' images."""
    prefixes = ("app", "PIL", "pydicom", "nibabel", "numpy")
    modules = [vars(m) for name, m in list(sys.modules.items()) if m is not None and name.split(".")[0] in prefixes]
    return [service, *modules]


# ---------------------------------------------------------------------------- the census itself
def test_the_census_sees_buffers_wherever_python_holds_them_and_forgets_dropped_ones():
    marker = 7919  # an odd length nothing else in the process has
    assert ("bytes", (marker,), "uint8") not in _shapes()
    held = {
        "bytes in an untracked dict": {"data": bytes(marker)},          # dicts of atoms are untracked
        "bytes in an untracked tuple": (bytes(marker + 1), 1),
        "bytearray in a list": [bytearray(marker + 2)],
        "array": np.zeros((marker + 3,), np.uint8),
        "view only": np.zeros((2, marker + 4), np.uint8)[1],            # its base is reachable via the view
    }

    def closure(captured=bytes(marker + 5)):
        return captured

    def generator():
        local = bytes(marker + 6)
        yield len(local)

    suspended = generator()
    next(suspended)
    found = _shapes()
    for expected in [("bytes", (marker,), "uint8"), ("bytes", (marker + 1,), "uint8"),
                     ("bytearray", (marker + 2,), "uint8"), ("ndarray", (marker + 3,), "uint8"),
                     ("ndarray", (marker + 4,), "uint8"), ("ndarray", (2, marker + 4), "uint8"),
                     ("bytes", (marker + 5,), "uint8"), ("bytes", (marker + 6,), "uint8")]:
        assert expected in found, expected
    census = heap_census(MIN_BYTES)
    view = next(b for b in census["buffers"] if b["shape"] == [marker + 4])
    assert view["owns_data"] is False  # the view is listed but its memory is counted once, via its base

    del held, closure, suspended
    gc.collect()
    left = [s for s in _shapes() if any(marker <= d <= marker + 6 for d in s[1])]
    assert left == [], left


# ---------------------------------------------------------------------------- the engine
def _images() -> list[Path]:
    images = sorted(p for p in SAMPLES.iterdir() if p.name != "corrupt.png")
    images += [SEEDS / n for n in ("camera.png", "chelsea.png", "retina.jpg", "resampled_anat_moved.nii", "standard.nii.gz")]
    return images


@pytest.fixture(scope="module")
def service_with_model():
    pytest.importorskip("pydicom")
    pytest.importorskip("nibabel")
    service = EngineService()
    reply = service.handle({"call": "open_model", "args": {"name": "demo-model.zip"}}, (REPO / "static" / "demo" / "demo-model.zip").read_bytes())
    assert reply["ok"], reply
    return service, reply["result"]["model"]


def _batch(service, handle, images) -> dict:
    """inspect_image + classify per image, like the page; returns {name: decoded shape}."""
    shapes = {}
    for path in images:
        data = path.read_bytes()
        inspected = service.handle({"call": "inspect_image", "args": {"name": path.name}}, data)
        assert inspected["ok"], inspected
        shapes[path.name] = tuple(inspected["result"]["shape"])
        classified = service.handle({"call": "classify", "args": {"model": handle, "name": path.name}}, data)
        assert classified["ok"], classified
    return shapes


def test_after_a_batch_no_buffer_has_an_image_length_or_shape(service_with_model):
    service, handle = service_with_model
    images = _images()
    _batch(service, handle, images[:1])  # warm-up: lazily built kernels and caches exist from here on
    shapes = _batch(service, handle, images)
    lengths = {p.stat().st_size: p.name for p in images}
    found = live_buffers(MIN_BYTES, _engine_roots(service))
    by_length = [(b, lengths[b["bytes"]]) for b in found if b["type"] in ("bytes", "bytearray") and b["bytes"] in lengths]
    assert by_length == [], f"file bytes still alive: {by_length}"
    decoded = {shape: name for name, shape in shapes.items()}
    by_shape = [(b, decoded[tuple(b["shape"])]) for b in found if tuple(b["shape"]) in decoded]
    assert by_shape == [], f"decoded pixels still alive: {by_shape}"


def test_a_second_batch_leaves_exactly_the_buffers_the_first_left(service_with_model):
    service, handle = service_with_model
    images = _images()
    _batch(service, handle, images[:8])
    after_first = sorted(_shapes(roots=_engine_roots(service)))
    _batch(service, handle, images[8:] + images[:8])
    after_second = sorted(_shapes(roots=_engine_roots(service)))
    print(f"\nlive buffers >= {MIN_BYTES} B reachable from the engine after 8 images: {len(after_first)}; "
          f"after {len(images)} more: {len(after_second)}")
    assert after_second == after_first
