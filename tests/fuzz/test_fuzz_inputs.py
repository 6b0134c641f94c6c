"""Only :class:`app.errors.VitrineError` may escape the public entry points when their input is a
mutated real file (issue 9). Everything else (IndexError, struct.error, MemoryError, a hang, ...)
is a bug: hypothesis shrinks it to a minimal example and the test fails.

Seeds: tests/hostile/corpus/good/ (made by tools/make_hostile_corpus.py from real files).
Examples per target: ``VITRINE_FUZZ_EXAMPLES`` (default 200; see docs/robustness.md).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import app
from app.archive import read_zip
from app.errors import VitrineError
from app.imaging import PreprocessSpec, decode_image, preprocess
from app.modelcard import load_card
from fuzz_harness import FUZZ_SETTINGS, GOOD, is_known_bug, is_known_internal_error, mutations, time_limit

SPEC = PreprocessSpec(size=(24, 24), channels=3)

GOOD_CARD = json.dumps({
    "name": "Chest X-ray pneumonia (fuzz seed)",
    "classes": ["normal", "pneumonia"],
    "multi_label": False,
    "threshold": 0.5,
    "input_size": [224, 224],
    "channels": 3,
    "resize_mode": 1,
    "standardize": "torch",
    "modality": "X-ray",
    "description": "A valid card used as the seed of the load_card fuzzer.",
    "metrics": {"AUC": {"normal": 0.91, "pneumonia": 0.93}},
}).encode()


def _seed(name: str) -> bytes:
    path = GOOD / name
    if not path.is_file():
        pytest.skip(f"{path} missing: run tools/make_hostile_corpus.py")
    return path.read_bytes()


def only_vitrine_errors(function, *args):
    """Run ``function(*args)`` under the alarm; a VitrineError is the one acceptable failure
    (besides an already-reported bug of fuzz_harness.KNOWN_BUGS)."""
    with time_limit():
        try:
            return function(*args)
        except VitrineError:
            return None
        except Exception as exc:
            if is_known_bug(exc):
                return None
            raise


def _decode_and_preprocess(data: bytes, name: str):
    image = decode_image(data, name)
    return preprocess(image, SPEC)


# ------------------------------------------------------------------------------------- images

@pytest.mark.parametrize("name", ["camera.png", "retina.jpg", "MR_small.dcm", "resampled_anat_moved.nii",
                                  "standard.nii.gz"])
def test_fuzz_decode_image(name):
    if name.endswith(".dcm"):
        pytest.importorskip("pydicom")
    if ".nii" in name:
        pytest.importorskip("nibabel")
    seed = _seed(name)
    header = 1024 if name.endswith(".dcm") else 512

    @FUZZ_SETTINGS
    @given(mutations(seed, header_bytes=header))
    def run(data):
        only_vitrine_errors(_decode_and_preprocess, data, name)

    run()


# ------------------------------------------------------------------------------------- archives / models

def test_fuzz_read_zip():
    seed = _seed("model.zip")

    @FUZZ_SETTINGS
    @given(mutations(seed, header_bytes=len(seed)))
    def run(data):
        only_vitrine_errors(read_zip, data, "fuzz.zip")

    run()


def test_fuzz_load_model_zip_bytes():
    seed = _seed("model.zip")

    @FUZZ_SETTINGS
    @given(mutations(seed, header_bytes=len(seed)))
    def run(data):
        only_vitrine_errors(app.load_model, data)

    run()


def _load_and_predict(files: dict[str, bytes]):
    model = app.load_model(files)
    return model.predict(np.zeros((1, 24, 24, 3), np.float32))


def _model_files() -> tuple[dict, bytes]:
    members = read_zip(_seed("model.zip"), "model.zip")
    return json.loads(members["model.json"]), members["group1-shard1of1.bin"]


def test_fuzz_model_json_text():
    """Byte mutations of model.json's text (shard intact), then load and predict."""
    model_json, shard = _model_files()
    text = json.dumps(model_json).encode()

    @FUZZ_SETTINGS
    @given(mutations(text, header_bytes=len(text)))
    def run(data):
        only_vitrine_errors(_load_and_predict, {"model.json": data, "group1-shard1of1.bin": shard})

    run()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.sampled_from([0, 1, -1, 3, 2**31, 2**63, 10**12, -(2**31)])
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


def test_fuzz_model_json_structure():
    """One node of the real model.json tree replaced by an arbitrary JSON value (huge ints, NaN,
    wrong types, nested junk), then load and predict."""
    model_json, shard = _model_files()
    paths = [p for p in _paths(model_json) if p]

    @FUZZ_SETTINGS
    @given(st.sampled_from(paths), JSON_VALUES)
    def run(path, value):
        tree = json.loads(json.dumps(model_json))
        node = tree
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        files = {"model.json": json.dumps(tree).encode(), "group1-shard1of1.bin": shard}
        only_vitrine_errors(_load_and_predict, files)

    run()


# ------------------------------------------------------------------------------------- tflite

def _tflite_load_and_invoke(data: bytes):
    from app.tflite import Interpreter, load

    load(data, "fuzz.tflite")
    interpreter = Interpreter(model_content=data, model_name="fuzz.tflite")
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        shape = [int(d) for d in detail["shape"]]
        if int(np.prod(shape)) > 1 << 22:  # declared inputs this big are refused by their own test
            return None
        interpreter.set_tensor(detail["index"], np.zeros(shape, detail["dtype"]))
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


@pytest.mark.parametrize("name", ["model_quant.tflite", "model_float.tflite"])
def test_fuzz_tflite(name):
    seed = _seed(name)

    @FUZZ_SETTINGS
    @given(mutations(seed, header_bytes=len(seed)))
    def run(data):
        only_vitrine_errors(_tflite_load_and_invoke, data)

    run()


def test_fuzz_load_model_tflite_bytes():
    seed = _seed("model_quant.tflite")

    @FUZZ_SETTINGS
    @given(mutations(seed, header_bytes=len(seed)))
    def run(data):
        only_vitrine_errors(app.load_model, data)

    run()


# ------------------------------------------------------------------------------------- model card

def test_fuzz_card_seed_is_valid():
    card = load_card(GOOD_CARD, "seed-card.json")
    assert card.classes == ("normal", "pneumonia")


def test_fuzz_load_card():
    @FUZZ_SETTINGS
    @given(mutations(GOOD_CARD, header_bytes=len(GOOD_CARD)))
    def run(data):
        only_vitrine_errors(load_card, data, "fuzz-card.json")

    run()


def test_fuzz_load_card_structure():
    card = json.loads(GOOD_CARD)
    paths = [p for p in _paths(card) if p]

    @FUZZ_SETTINGS
    @given(st.sampled_from(paths), JSON_VALUES)
    def run(path, value):
        tree = json.loads(json.dumps(card))
        node = tree
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        only_vitrine_errors(load_card, json.dumps(tree).encode(), "fuzz-card.json")

    run()


# ------------------------------------------------------------------------------------- the harness itself

def test_harness_lets_only_vitrine_errors_pass():
    from app.errors import ImageFormatError

    def refuses():
        raise ImageFormatError("x.png: corrupt")

    def breaks():
        raise IndexError("a bug")

    assert only_vitrine_errors(refuses) is None
    with pytest.raises(IndexError):
        only_vitrine_errors(breaks)


def test_harness_stops_a_hang():
    import time

    from fuzz_harness import ExampleTimeout

    with pytest.raises(ExampleTimeout):
        with time_limit(0.2):
            time.sleep(5)


def test_harness_bounds_memory():
    with pytest.raises(MemoryError):
        np.ones(8 << 30, dtype=np.uint8)  # 8 GiB > the 3 GiB the fixture allows on top


# ------------------------------------------------------------------------------------- the worker service

def test_fuzz_service_requests():
    """Arbitrary requests (real call names, junk arguments, real or mutated payloads) to one
    EngineService holding a good model: every reply is a reply (handle never raises), no failure
    is an ``InternalError``, and the good model answers the same afterwards."""
    from app.service import EngineService

    service = EngineService()
    model_zip = _seed("model.zip")
    loaded = service.handle({"call": "load_model", "args": {"name": "model.zip"}}, model_zip)
    handle = loaded["result"]["model"]
    probe = np.full((1, 24, 24, 3), 100.0, np.float32)
    probe_request = {"call": "predict", "args": {"model": handle, "shape": [1, 24, 24, 3]}}
    reference = service.handle(probe_request, probe.tobytes())["result"]
    payloads = st.one_of(st.none(), st.binary(max_size=64), mutations(_seed("camera.png")), mutations(model_zip),
                         st.just(probe.tobytes()))
    arguments = st.dictionaries(st.sampled_from(["name", "model", "shape", "seed", "size", "echo"]),
                                st.one_of(JSON_VALUES, st.just(handle), st.lists(st.integers(-2, 2**64), max_size=5)),
                                max_size=4)

    # select_gemm_backend swaps the process-wide GEMM (other tests would see it; results change in the
    # last bits by design); resolve_model goes to the network
    calls = sorted(set(service.calls) - {"select_gemm_backend", "resolve_model"}) + ["nope"]

    @FUZZ_SETTINGS
    @given(st.sampled_from(calls), arguments, payloads)
    def run(call, args, payload):
        if call in ("unload_model", "selftest"):  # keep the probe model; selftest args are range-checked
            args = {k: v for k, v in args.items() if k != "model"} if call == "unload_model" else args
        with time_limit():
            reply = service.handle({"call": call, "id": 1, "args": args}, payload)
        assert reply["ok"] or reply["error"]["internal"] is False or is_known_internal_error(reply["error"]), (
            reply["error"])
        for extra in [h for h in list(service._models) if h != handle]:  # drop models the fuzzer loaded
            service.handle({"call": "unload_model", "args": {"model": extra}})

    run()
    assert service.handle(probe_request, probe.tobytes())["result"] == reference
