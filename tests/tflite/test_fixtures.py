"""End-to-end: our interpreter against LiteRT 2.3 (BUILTIN_REF kernels) on converter-made models.

Expected outputs were produced by ``tools/make_tflite_fixtures.py`` (run in /opt/litertenv);
nothing here is derived from app.tflite itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.errors import ModelFormatError
from app.tflite import Interpreter, load

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "model.tflite").exists()) if FIXTURES.exists() else []

# Quantized cases whose every output element matched LiteRT bit for bit when the kernels were
# written; a regression to "within one step" there means a rounding rule changed.
BIT_EXACT = {"cnn_int8", "cnn_uint8", "ops_int8", "legacy_uint8", "heads_int8", "div_int8", "sum_int8",
             "acts_int8", "fused_tanh_int8"}


def _run(case: str):
    folder = FIXTURES / case
    io = np.load(folder / "io.npz")
    interp = Interpreter(model_path=folder / "model.tflite")
    details = interp.get_input_details()
    for i, d in enumerate(details):
        interp.resize_tensor_input(d["index"], io[f"input_{i}"].shape)
    interp.allocate_tensors()
    for i, d in enumerate(details):
        interp.set_tensor(d["index"], io[f"input_{i}"])
    interp.invoke()
    outs = interp.get_output_details()
    got = [interp.get_tensor(d["index"]) for d in outs]
    want = [io[f"output_{i}"] for i in range(len(outs))]
    return got, want, json.loads((folder / "meta.json").read_text())


def test_fixtures_present():
    assert CASES, f"no TFLite fixtures under {FIXTURES}; run tools/make_tflite_fixtures.py"


@pytest.mark.parametrize("case", CASES)
def test_matches_litert(case):
    got, want, meta = _run(case)
    assert len(got) == len(want)
    for index, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"{case} output {index}: shape {g.shape} != {w.shape}"
        assert g.dtype == w.dtype, f"{case} output {index}: dtype {g.dtype} != {w.dtype}"
        if np.issubdtype(w.dtype, np.floating):
            tolerance = 1e-4 * max(float(np.abs(w).max()), 1e-6)
            diff = float(np.abs(g.astype(np.float64) - w).max())
            assert diff <= tolerance, f"{case} output {index}: max diff {diff} > {tolerance}"
        else:
            steps = np.abs(g.astype(np.int64) - w.astype(np.int64))
            assert steps.max() <= 1, f"{case} output {index}: off by up to {steps.max()} steps"
            if case in BIT_EXACT:
                assert steps.max() == 0, (f"{case} output {index}: {int((steps > 0).sum())} of "
                                          f"{steps.size} values differ by one step")


@pytest.mark.parametrize("case", [c for c in CASES if "int8" in c or "uint8" in c])
def test_predict_quantizes_floats_and_dequantizes(case):
    """load().predict takes floats for an integer model and returns dequantized floats."""
    folder = FIXTURES / case
    io = np.load(folder / "io.npz")
    interp = Interpreter(model_path=folder / "model.tflite")
    if len(interp.get_input_details()) > 1:  # the classifier interface takes one image tensor
        with pytest.raises(ModelFormatError, match=f"single-input models; this TFLite model has "
                                                   f"{len(interp.get_input_details())} inputs"):
            load((folder / "model.tflite").read_bytes(), name=f"{case}.tflite")
        return
    model = load((folder / "model.tflite").read_bytes(), name=f"{case}.tflite")
    x_int = io["input_0"]
    d_in = interp.get_input_details()[0]
    d_out = interp.get_output_details()[0]
    if np.issubdtype(x_int.dtype, np.integer):
        scale, zp = d_in["quantization"]
        x_float = ((x_int.astype(np.float32) - zp) * scale).astype(np.float32)
    else:
        x_float = x_int
    y = model.predict(x_float)
    expected = io["output_0"]
    if np.issubdtype(expected.dtype, np.integer):
        scale, zp = d_out["quantization"]
        expected = (expected.astype(np.float32) - zp) * scale
        atol = scale * 1.0001
    else:
        atol = 1e-4 * max(float(np.abs(expected).max()), 1e-6)
    assert y.dtype == np.float32
    assert np.abs(y - expected).max() <= atol


def test_model_interface_on_float_fixture():
    data = (FIXTURES / "cnn_float32" / "model.tflite").read_bytes()
    model = load(data, name="cnn.tflite", card={"labels": ["a", "b", "c", "d", "e"]}, engine="interpreter")
    assert model.input_shape == (None, 16, 16, 3)
    assert model.output_shape == (None, 5)
    assert model.card == {"labels": ["a", "b", "c", "d", "e"]}
    io = np.load(FIXTURES / "cnn_float32" / "io.npz")
    y = model.predict(io["input_0"])
    assert np.abs(y - io["output_0"]).max() <= 1e-4 * np.abs(io["output_0"]).max()
    summary = model.summary()
    assert "CONV_2D" in summary and "cnn.tflite" in summary


def test_trace_and_run_until_follow_operators():
    folder = FIXTURES / "cnn_int8"
    io = np.load(folder / "io.npz")
    model = load((folder / "model.tflite").read_bytes(), name="q.tflite")
    x = io["input_0"]
    rows = model.trace(x)
    assert [r.op for r in rows][0] == "CONV_2D"
    assert len(rows) == len(model.layer_names)
    last = model.run_until(x, -1)
    scale, zp = model.interpreter.get_output_details()[0]["quantization"]
    np.testing.assert_allclose(last, (io["output_0"].astype(np.float32) - zp) * scale, atol=1e-7)
    with pytest.raises(Exception, match="no layer 'nope'"):
        model.run_until(x, "nope")


def test_app_load_model_dispatches_tflite_files():
    import app

    model = app.load_model(str(FIXTURES / "legacy_uint8" / "model.tflite"))
    assert model.format == "tflite"
    io = np.load(FIXTURES / "legacy_uint8" / "io.npz")
    d_in = model.interpreter.get_input_details()[0]
    scale, zp = d_in["quantization"]
    x = ((io["input_0"].astype(np.float32) - zp) * scale).astype(np.float32)
    scale_out, zp_out = model.interpreter.get_output_details()[0]["quantization"]
    expected = (io["output_0"].astype(np.float32) - zp_out) * scale_out
    assert np.abs(model.predict(x) - expected).max() <= scale_out * 1.0001


def test_int8_div_by_the_denominator_zero_point_is_refused():
    """The reference kernel only DCHECKs a zero denominator; Vitrine names the operator."""
    folder = FIXTURES / "div_int8"
    io = np.load(folder / "io.npz")
    interp = Interpreter(model_path=folder / "model.tflite", model_name="div_int8.tflite")
    details = interp.get_input_details()
    for i, d in enumerate(details):
        interp.resize_tensor_input(d["index"], io[f"input_{i}"].shape)
    interp.allocate_tensors()
    denominator = io["input_1"].copy()
    denominator[0, 1, 3] = details[1]["quantization"][1]
    interp.set_tensor(details[0]["index"], io["input_0"])
    interp.set_tensor(details[1]["index"], denominator)
    with pytest.raises(ModelFormatError, match=r"DIV.*division by zero: the quantized denominator equals its zero point \(-128\) in 1 element"):
        interp.invoke()


def test_litert_reference_int8_sum_is_not_the_oracle():
    """Why sum_int8 stores LiteRT's builtin-kernel outputs: its BUILTIN_REF int8 SUM (kept as
    ref_output_i) disagrees with the float sum by far more than one step, the builtin kernel
    does not (checked against the dequantized input, independent of Vitrine)."""
    folder = FIXTURES / "sum_int8"
    io = np.load(folder / "io.npz")
    meta = json.loads((folder / "meta.json").read_text())
    interp = Interpreter(model_path=folder / "model.tflite")
    scale_in, zp_in = interp.get_input_details()[0]["quantization"]
    x = (io["input_0"].astype(np.float64) - zp_in) * scale_in
    last = x.sum(axis=-1)
    index = meta["output_names"].index(
        next(d["name"] for d in interp.get_output_details() if list(d["shape"]) == [1, 6, 5]))
    scale_out, zp_out = meta["output_quantization"][index]
    builtin = (io[f"output_{index}"].astype(np.float64) - zp_out) * scale_out
    reference = (io[f"ref_output_{index}"].astype(np.float64) - zp_out) * scale_out
    assert np.abs(builtin - last).max() <= scale_out
    assert np.abs(reference - last).max() > 10 * scale_out
