"""Bad input never breaks a batch (issue 9), through the worker's service API (app/service.py).

A batch of good sample images interleaved with every bad image of the corpus goes through one
:class:`EngineService`: each file is decoded by the service's ``decode_image`` call, and the good
ones are preprocessed and classified by its ``predict`` call. The good images must give exactly the
results they give when classified alone in a fresh service; every bad one must come back as an
error reply of the expected class (never ``InternalError``); the service must answer after each.
Bad models go through ``load_model`` the same way while a good model stays loaded and usable.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import app.errors
from app.imaging import PreprocessSpec, decode_image, preprocess
from app.service import EngineService
from hostile_isolation import CORPUS

GOOD = CORPUS / "good"
GOOD_IMAGES = ["camera.png", "retina.jpg", "chelsea.png", "MR_small.dcm", "resampled_anat_moved.nii",
               "standard.nii.gz"]
#: k2_functional_classifier takes (1, 24, 24, 3) values in 0..255 (it rescales itself)
SPEC = PreprocessSpec(size=(24, 24), channels=3)
#: Kept out of the in-process batch: before ef3b13a it inflated 1.1 GB inside the caller; a regression
#: must not take pytest down (test_corpus runs it in a bounded child).
UNSAFE_IN_PROCESS = {"zip_bomb_lying_header.zip"}


def _subclass_names(class_name: str) -> set[str]:
    root = getattr(app.errors, class_name)
    names, stack = set(), [root]
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return names


def _ok(reply: dict) -> dict:
    assert reply.get("ok") is True, f"expected success, got {reply}"
    return reply["result"]


def _load_good_model(service: EngineService) -> str:
    reply = service.handle({"call": "load_model", "id": "good-model", "args": {"name": "model.zip"}},
                           (GOOD / "model.zip").read_bytes())
    return _ok(reply)["model"]


def _classify(service: EngineService, handle: str, name: str, data: bytes) -> dict:
    """One file of a batch the way the page runs it: decode in the worker, then predict."""
    reply = service.handle({"call": "decode_image", "id": name, "args": {"name": name}}, data)
    if not reply["ok"]:
        return reply
    x = preprocess(decode_image(data, name), SPEC)
    return service.handle({"call": "predict", "id": name, "args": {"model": handle, "shape": list(x.shape)}},
                          x.astype("<f4").tobytes())


def _assert_service_alive(service: EngineService, handle: str, reference: list[float], after: str) -> None:
    assert _ok(service.handle({"call": "ping", "args": {"echo": after}}))["echo"] == after
    probe = _ok(_classify(service, handle, "camera.png", (GOOD / "camera.png").read_bytes()))
    assert probe["outputs"][0]["values"] == reference, f"the good model answers differently after {after}"


@pytest.fixture(scope="module")
def alone_results() -> dict[str, list[float]]:
    """Each good image classified on its own, in a fresh service."""
    pytest.importorskip("pydicom")
    pytest.importorskip("nibabel")
    results = {}
    for name in GOOD_IMAGES:
        service = EngineService()
        handle = _load_good_model(service)
        reply = _classify(service, handle, name, (GOOD / name).read_bytes())
        values = _ok(reply)["outputs"][0]["values"]
        assert len(values) == 5 and np.all(np.isfinite(values)) and abs(sum(values) - 1) < 1e-5, (name, values)
        results[name] = values
    return results


def test_batch_of_good_and_bad_images(manifest, alone_results):
    bad = [entry for entry in manifest["files"] if entry["entry"] == "image" and entry["file"] not in UNSAFE_IN_PROCESS]
    assert len(bad) >= 30
    service = EngineService()
    handle = _load_good_model(service)
    # interleave: good, bad, bad, ..., good, ... so every good image follows a failure
    batch: list[tuple[str, dict | None]] = []
    good_cycle = iter(GOOD_IMAGES * (len(bad) // len(GOOD_IMAGES) + 2))
    for index, entry in enumerate(bad):
        if index % 3 == 0:
            batch.append((next(good_cycle), None))
        batch.append((entry["file"], entry))
    batch.extend((name, None) for name in GOOD_IMAGES)

    failures, successes = 0, 0
    for name, entry in batch:
        if entry is None:
            reply = _classify(service, handle, name, (GOOD / name).read_bytes())
            assert _ok(reply)["outputs"][0]["values"] == alone_results[name], f"{name} changed inside the batch"
            successes += 1
            continue
        reply = _classify(service, handle, name, (CORPUS / name).read_bytes())
        assert reply["ok"] is False, f"bad image {name} was classified: {reply}"
        error = reply["error"]
        assert error["internal"] is False and error["type"] in _subclass_names(entry["error"]), (name, error)
        assert name in error["message"], (name, error["message"])
        assert reply["id"] == name and reply["call"] == "decode_image"
        failures += 1
        _assert_service_alive(service, handle, alone_results["camera.png"], name)
    assert failures == len(bad) and successes >= len(bad) // 3 + len(GOOD_IMAGES)


def test_bad_models_leave_the_loaded_model_usable(manifest, alone_results):
    bad = [entry for entry in manifest["files"]
           if entry["entry"] in ("model", "zip", "tflite") and entry["file"] not in UNSAFE_IN_PROCESS]
    service = EngineService()
    handle = _load_good_model(service)
    accepted = []
    for entry in bad:
        name = entry["file"]
        reply = service.handle({"call": "load_model", "id": name, "args": {"name": name}}, (CORPUS / name).read_bytes())
        if reply["ok"]:  # reported below, after the service is checked for every file
            accepted.append(name)
            _ok(service.handle({"call": "unload_model", "args": {"model": reply["result"]["model"]}}))
        else:
            error = reply["error"]
            assert error["internal"] is False, (name, error)
            assert error["type"] in _subclass_names(entry["error"]), (name, entry["error"], error)
            # without the file name (see the xfail below) a .tflite with a broken identifier is only bytes
            said_why = re.search(entry["reason"], error["message"], re.IGNORECASE) or (
                entry["entry"] == "tflite" and "neither a zip archive nor a TFLite model" in error["message"])
            assert said_why, (name, error["message"])
        _assert_service_alive(service, handle, alone_results["camera.png"], name)
    assert accepted == [], f"bad models accepted by the service: {accepted}"
    info = _ok(service.handle({"call": "info"}))
    assert info["models_loaded"] == 1


def test_service_model_errors_name_the_file():
    # was a strict xfail: the service's load_model did not pass the file name (errors said '<zip bytes>')
    service = EngineService()
    name = "model_missing_topology.zip"
    reply = service.handle({"call": "load_model", "args": {"name": name}}, (CORPUS / name).read_bytes())
    assert reply["ok"] is False
    assert name in reply["error"]["message"], reply["error"]["message"]
