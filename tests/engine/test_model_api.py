"""Model API: sources (folder, zip path, zip bytes, mapping), shapes, trace, run_until, summary,
model card, optimisation equivalence. Expected numbers come from TensorFlow fixtures or from the
layer definitions written here."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import app
import app.errors
from app.errors import ModelFormatError
from app.runtime import TraceRow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tfjs"
TFLITE_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"


def fixture(case):
    folder = FIXTURES / case
    if not (folder / "model.json").is_file():
        pytest.skip(f"fixture {case} not present in {FIXTURES}")
    arrays = np.load(folder / "io.npz")
    return folder, arrays


def folder_files(folder: Path, prefix=""):
    return {prefix + p.name: p.read_bytes() for p in folder.iterdir() if p.name in ("model.json",) or p.suffix == ".bin"}


def zip_bytes(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_all_source_kinds_give_the_same_predictions(tmp_path):
    folder, arrays = fixture("k2_functional_classifier")
    files = folder_files(folder)
    path = tmp_path / "model.zip"
    path.write_bytes(zip_bytes({f"nested/dir/{k}": v for k, v in files.items()}))
    sources = [folder, str(folder / "model.json"), files, zip_bytes(files), path, str(path)]
    expected = arrays["output_0"]
    for source in sources:
        got = app.load_model(source).predict(arrays["input_0"])
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"source {type(source).__name__}")


def test_multi_input_multi_output_shapes_are_lists():
    folder, arrays = fixture("k2_two_inputs_two_outputs")
    model = app.load_model(folder)
    assert isinstance(model.input_shape, list) and len(model.input_shape) == 2
    assert isinstance(model.output_shape, list) and len(model.output_shape) == 2
    for shape in model.input_shape + model.output_shape:
        assert shape[0] is None
    outputs = model.predict([arrays["input_0"], arrays["input_1"]])
    assert isinstance(outputs, list)
    for index, out in enumerate(outputs):
        assert out.shape[1:] == model.output_shape[index][1:]
        np.testing.assert_allclose(out, arrays[f"output_{index}"], atol=1e-4)


def test_trace_rows_cover_every_layer_and_end_with_the_output():
    folder, arrays = fixture("k2_functional_classifier")
    model = app.load_model(folder)
    rows = model.trace(arrays["input_0"])
    assert rows and all(isinstance(r, TraceRow) for r in rows)
    assert len(rows) == len(model.source_graph.nodes)
    last = rows[-1]
    expected = arrays["output_0"]
    assert last.shape == expected.shape
    assert abs(last.max - float(expected.max())) < 1e-4 and abs(last.min - float(expected.min())) < 1e-4
    text = str(rows[0])
    assert rows[0].layer in text and rows[0].op in text
    out, rows2 = model.predict(arrays["input_0"], trace=True)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert [r.layer for r in rows2] == [r.layer for r in rows]


def test_run_until_first_layer_matches_its_definition():
    folder, arrays = fixture("k2_functional_classifier")
    model = app.load_model(folder)
    config = {l["name"]: l["config"] for l in
              json.loads((folder / "model.json").read_text())["modelTopology"]["model_config"]["config"]["layers"]}
    rescale = config["rescale"]
    x = arrays["input_0"]
    got = model.run_until(x, "rescale")
    np.testing.assert_allclose(got, x * np.float32(rescale["scale"]) + np.float32(rescale["offset"]), rtol=1e-6)
    # by index: layer_names[0] is the input itself
    np.testing.assert_array_equal(model.run_until(x, 0), x)
    # the last layer's output is the model output
    np.testing.assert_allclose(model.run_until(x, "probs"), arrays["output_0"], atol=1e-4)
    np.testing.assert_allclose(model.run_until(x, -1), arrays["output_0"], atol=1e-4)


def test_nested_model_layers_are_addressable():
    folder, arrays = fixture("k2_nested_application_head")
    model = app.load_model(folder)
    names = model.layer_names
    assert "base" in names and "base/base_conv" in names and "base_conv" in names
    feature = model.run_until(arrays["input_0"], "base")
    assert feature.shape[0] == arrays["input_0"].shape[0] and feature.ndim == 4
    # global average of the nested model's output feeds the head: check the gap layer against it
    np.testing.assert_allclose(model.run_until(arrays["input_0"], "gap"), feature.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_optimised_graph_is_smaller_and_agrees_with_the_source_graph():
    folder, arrays = fixture("k2_conv_bn_relu")
    model = app.load_model(folder)
    assert len(model.graph.nodes) < len(model.source_graph.nodes)
    ops = [n.op for n in model.graph.nodes]
    assert "batch_norm" not in ops and "scale_shift" not in ops and "relu" not in ops
    fused = [n for n in model.graph.nodes if n.op == "conv2d"]
    assert fused and fused[0].attrs["activation"] == "relu"
    out, _ = model.predict(arrays["input_0"], trace=True)  # trace runs the unoptimised graph
    np.testing.assert_allclose(model.predict(arrays["input_0"]), out, atol=1e-5)
    np.testing.assert_allclose(out, arrays["output_0"], atol=1e-4)


def test_summary_lists_layers_ops_shapes_and_params():
    folder, _ = fixture("k2_functional_classifier")
    model = app.load_model(folder)
    text = model.summary()
    assert "conv1" in text and "conv2d" in text and "parameters" in text
    model_json = json.loads((folder / "model.json").read_text())
    total = sum(int(np.prod(w["shape"])) for g in model_json["weightsManifest"] for w in g["weights"])
    # plus constants that live in layer configs (Rescaling scale + offset)
    layers = model_json["modelTopology"]["model_config"]["config"]["layers"]
    total += sum(np.size(l["config"]["scale"]) + np.size(l["config"]["offset"]) for l in layers if l["class_name"] == "Rescaling")
    assert model.param_count == total
    assert f"{total:,} parameters" in text


def test_card_is_none_without_a_card_file():
    folder, _ = fixture("k2_flatten")
    assert app.load_model(folder).card is None


def test_card_is_parsed_when_present():
    folder, arrays = fixture("k2_functional_classifier")
    files = folder_files(folder, "pkg/")
    card = {"schema_version": 1, "name": "Test classifier", "classes": [f"c{i}" for i in range(arrays["output_0"].shape[-1])]}
    files["pkg/model-card.json"] = json.dumps(card).encode()
    model = app.load_model(zip_bytes(files))
    assert model.card is not None and model.card.name == "Test classifier"


def test_broken_card_is_reported():
    folder, _ = fixture("k2_functional_classifier")
    files = folder_files(folder)
    files["model-card.json"] = b"{not json"
    with pytest.raises(ModelFormatError, match=r"model-card.json: not valid JSON"):
        app.load_model(files)


def test_tflite_is_dispatched_by_identifier():
    path = TFLITE_FIXTURES / "cnn_float32" / "model.tflite"
    if not path.is_file():
        pytest.skip(f"no TFLite fixture at {path}")
    data = path.read_bytes()
    assert data[4:8] == b"TFL3"
    arrays = np.load(path.parent / "io.npz")
    for source in (data, path, zip_bytes({"m/model.tflite": data})):
        model = app.load_model(source)
        np.testing.assert_allclose(model.predict(arrays["input_0"]), arrays["output_0"], atol=1e-4)


def test_batch_of_one_and_many_agree():
    folder, arrays = fixture("k2_functional_classifier")
    model = app.load_model(folder)
    x = arrays["input_0"]
    whole = model.predict(x)
    singles = np.concatenate([model.predict(x[i:i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(whole, singles, atol=1e-6)


def test_unoptimised_model_gives_the_same_answer():
    folder, arrays = fixture("k2_conv_bn_relu")
    plain = app.load_model(folder, optimize=False)
    assert plain.graph is plain.source_graph
    np.testing.assert_allclose(plain.predict(arrays["input_0"]), arrays["output_0"], atol=1e-4)


def test_unknown_load_option_is_refused():
    folder, _ = fixture("k2_conv_bn_relu")
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['fast'\]"):
        app.load_model(folder, fast=True)


def test_predict_in_chunks_matches_whole_batch():
    folder, arrays = fixture("k2_two_inputs_two_outputs")
    model = app.load_model(folder)
    x = [arrays["input_0"], arrays["input_1"]]
    whole = model.predict(x)
    chunked = model.predict(x, batch_size=1)
    for w, c in zip(whole, chunked):
        np.testing.assert_allclose(c, w, atol=1e-6)
    with pytest.raises(app.errors.ModelInputError, match=r"batch_size must be a positive int, received 0"):
        model.predict(x, batch_size=0)


def test_run_from_a_layer_continues_the_model():
    folder, arrays = fixture("k2_nested_application_head")
    model = app.load_model(folder)
    x = arrays["input_0"]
    features = model.run_until(x, "gap")
    np.testing.assert_allclose(model.run_from("gap", features), arrays["output_0"], atol=1e-4)
    # zero features: the head is then just activation(bias) of the final Dense layer
    layers = json.loads((folder / "model.json").read_text())["modelTopology"]["model_config"]["config"]["layers"]
    probs = next(l for l in layers if l["name"] == "probs")["config"]
    bias = model.source_graph.weights["probs/bias"]
    expected = np.exp(bias - bias.max()) / np.exp(bias - bias.max()).sum() if probs["activation"] == "softmax" else bias
    got = model.run_from("gap", np.zeros_like(features))
    np.testing.assert_allclose(got, np.broadcast_to(expected, got.shape), rtol=1e-5, atol=1e-6)
    with pytest.raises(app.errors.ModelInputError, match=r"layer 'gap': expected shape \(None, 10\), received \(2, 3\)"):
        model.run_from("gap", np.zeros((2, 3), np.float32))


def test_run_from_needs_x_when_a_path_bypasses_the_layer():
    folder, arrays = fixture("k2_functional_classifier")
    model = app.load_model(folder)
    x = arrays["input_0"]
    res_conv_a = model.run_until(x, "res_conv_a")
    with pytest.raises(app.errors.ModelInputError, match=r"bypasses layer 'res_conv_a'; pass x as well"):
        model.run_from("res_conv_a", res_conv_a)
    np.testing.assert_allclose(model.run_from("res_conv_a", res_conv_a, x=x), arrays["output_0"], atol=1e-4)
