"""Fuzzing the loader: damaged model.json / shards / zips must either load or raise a VitrineError
(an explained refusal), never a raw KeyError / TypeError / IndexError from deep inside."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app
from app.errors import VitrineError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tfjs"
CASES = ["k2_functional_classifier", "k3_functional_classifier", "k2_mobilenetv3_block", "k2_nested_application_head",
         "k3_nested_application_head", "k2_tfoplambda_ops", "k2_two_inputs_two_outputs"]


def _load_case(case):
    folder = FIXTURES / case
    if not (folder / "model.json").is_file():
        pytest.skip(f"fixture {case} not present")
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name == "model.json" or p.suffix == ".bin"}
    return files, json.loads(files["model.json"])


def _try_load(files):
    try:
        model = app.load_model(files)
    except VitrineError:
        return
    # if it loads it must run on well-formed input or refuse it with a VitrineError
    feeds = []
    for shape in model.input_shapes:
        feeds.append(np.zeros((1, *(4 if d is None else d for d in shape[1:])), np.float32))
    try:
        model.predict(feeds if len(feeds) > 1 else feeds[0])
    except VitrineError:
        pass


# A JSON path into the topology and a replacement value
_junk = st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=False, width=32), st.text(max_size=4),
                  st.lists(st.integers(-1, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from _paths(value, prefix + (index,))


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_model_json_is_loaded_or_refused_with_vitrine_error(case, data):
    files, model_json = _load_case(case)
    paths = [p for p in _paths(model_json) if p]
    path = data.draw(st.sampled_from(paths))
    mutated = copy.deepcopy(model_json)
    target = mutated
    for key in path[:-1]:
        target = target[key]
    if data.draw(st.booleans()):
        target[path[-1]] = data.draw(_junk)
    elif isinstance(target, dict):
        del target[path[-1]]
    else:
        target.pop(path[-1])
    files = dict(files, **{"model.json": json.dumps(mutated).encode()})
    _try_load(files)


@settings(max_examples=80, deadline=None, database=None)
@given(cut=st.integers(0, 4000), flips=st.lists(st.integers(0, 10_000), max_size=4))
def test_damaged_zip_is_loaded_or_refused_with_vitrine_error(cut, flips):
    files, _ = _load_case("k2_functional_classifier")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(f"model/{name}", data)
    data = bytearray(buffer.getvalue())
    for position in flips:
        data[position % len(data)] ^= 0x5A
    data = bytes(data[: max(4, len(data) - cut)])
    try:
        app.load_model(data)
    except VitrineError:
        pass


@settings(max_examples=40, deadline=None, database=None)
@given(raw=st.binary(max_size=300))
def test_random_model_json_bytes_are_refused_with_vitrine_error(raw):
    try:
        app.load_model({"model.json": raw})
    except VitrineError:
        pass
