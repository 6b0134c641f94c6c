"""Every validation path of the flatbuffer reader / loader, on byte-patched real fixtures."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from app.errors import ModelFormatError, UnsupportedLayerError, VitrineError
from app.tflite import Interpreter, load
from app.tflite.flatbuffer import Buffer
from app.tflite.schema import (BUILTIN_CODES, ModelField, OperatorCodeField, OperatorField,
                               SubGraphField, TensorField)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"
MODEL = (FIXTURES / "cnn_float32" / "model.tflite").read_bytes()


def _root(data: bytes):
    return Buffer(data, "t").root()


def _field(table, index: int) -> int:
    pos = table._field_pos(index)  # noqa: SLF001 - test needs the byte position to corrupt it
    assert pos is not None, f"field {index} absent in fixture"
    return pos


def _vector_start(data: bytes, table, index: int) -> tuple[int, int]:
    """(position of the length word, length) of a vector field."""
    pos = _field(table, index)
    target = pos + struct.unpack_from("<I", data, pos)[0]
    return target, struct.unpack_from("<I", data, target)[0]


def _patch(data: bytes, pos: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, pos, value)
    return bytes(out)


def _first_subgraph(data: bytes):
    return _root(data).tables(ModelField.SUBGRAPHS, "subgraphs")[0]


def _conv_opcode_table(data: bytes):
    for table in _root(data).tables(ModelField.OPERATOR_CODES, "codes"):
        if table.scalar(OperatorCodeField.BUILTIN_CODE, "int32", 0) == BUILTIN_CODES["CONV_2D"]:
            return table
    raise AssertionError("fixture has no CONV_2D opcode")


def _set_opcode(data: bytes, code: int) -> bytes:
    table = _conv_opcode_table(data)
    data = _patch(data, _field(table, OperatorCodeField.BUILTIN_CODE), "<i", code)
    return _patch(data, _field(table, OperatorCodeField.DEPRECATED_BUILTIN_CODE), "<b", min(code, 127))


def test_wrong_identifier():
    bad = MODEL[:4] + b"XXXX" + MODEL[8:]
    with pytest.raises(ModelFormatError, match=r"m.tflite: not a TFLite model: file identifier is b'XXXX', expected b'TFL3'"):
        load(bad, name="m.tflite")


def test_too_short():
    with pytest.raises(ModelFormatError, match="too short for a flatbuffer header"):
        Interpreter(model_content=b"\x00\x00TFL3")


def test_not_bytes():
    from app.tflite.loader import parse_model
    with pytest.raises(ModelFormatError, match="expected the model file's bytes, got str"):
        parse_model("TFL3", "m.tflite")


@pytest.mark.parametrize("keep", [12, 40, 200, 1000, 5000, 20000, len(MODEL) - 200])
def test_truncated_file(keep):
    with pytest.raises(ModelFormatError, match="corrupt TFLite flatbuffer|lies outside"):
        Interpreter(model_content=MODEL[:keep])


def test_root_offset_out_of_range():
    with pytest.raises(ModelFormatError, match="lies outside the file"):
        Interpreter(model_content=_patch(MODEL, 0, "<I", len(MODEL) + 100))


def test_huge_vector_length_is_bounded():
    length_pos, _ = _vector_start(MODEL, _root(MODEL), ModelField.SUBGRAPHS)
    bad = _patch(MODEL, length_pos, "<I", 0x7FFFFFFF)
    with pytest.raises(ModelFormatError, match=r"subgraphs \(2147483647 elements\).*outside the file"):
        Interpreter(model_content=bad)


def test_bad_vtable_size():
    root_pos = struct.unpack_from("<I", MODEL, 0)[0]
    vtable = root_pos - struct.unpack_from("<i", MODEL, root_pos)[0]
    with pytest.raises(ModelFormatError, match="invalid vtable size 3"):
        Interpreter(model_content=_patch(MODEL, vtable, "<H", 3))


def test_schema_version():
    bad = _patch(MODEL, _field(_root(MODEL), ModelField.VERSION), "<I", 7)
    with pytest.raises(ModelFormatError, match="unsupported TFLite schema version 7, expected 3"):
        Interpreter(model_content=bad)


def test_unknown_builtin_code():
    with pytest.raises(UnsupportedLayerError, match="has builtin code 9999, unknown"):
        Interpreter(model_content=_set_opcode(MODEL, 9999))


def test_unsupported_builtin_lists_supported():
    with pytest.raises(UnsupportedLayerError,
                       match=r"TFLite builtin operator LSTM is not supported\. Supported: ABS, ADD, "):
        Interpreter(model_content=_set_opcode(MODEL, BUILTIN_CODES["LSTM"]))


def test_custom_operator_named():
    with pytest.raises(UnsupportedLayerError, match="is a custom operator None; custom TFLite operators"):
        Interpreter(model_content=_set_opcode(MODEL, BUILTIN_CODES["CUSTOM"]))


def test_operator_tensor_index_out_of_range():
    op = _first_subgraph(MODEL).tables(SubGraphField.OPERATORS, "ops")[0]
    start, _ = _vector_start(MODEL, op, OperatorField.INPUTS)
    bad = _patch(MODEL, start + 4, "<i", 9999)
    with pytest.raises(ModelFormatError, match=r"operators\[0\]\.inputs refers to tensor 9999, but the subgraph has"):
        Interpreter(model_content=bad)


def test_opcode_index_out_of_range():
    op = next(t for t in _first_subgraph(MODEL).tables(SubGraphField.OPERATORS, "ops")
              if t.has(OperatorField.OPCODE_INDEX))
    bad = _patch(MODEL, _field(op, OperatorField.OPCODE_INDEX), "<I", 999)
    with pytest.raises(ModelFormatError, match="uses opcode 999, but the model has"):
        Interpreter(model_content=bad)


def _constant_tensor(data: bytes):
    for table in _first_subgraph(data).tables(SubGraphField.TENSORS, "tensors"):
        if table.scalar(TensorField.BUFFER, "uint32", 0) and table.has(TensorField.SHAPE):
            shape = table.numbers(TensorField.SHAPE, "int32", "shape")
            if shape is not None and len(shape) >= 2 and shape[0] > 1:
                return table
    raise AssertionError("no constant tensor")


def test_buffer_index_out_of_range():
    tensor = _constant_tensor(MODEL)
    bad = _patch(MODEL, _field(tensor, TensorField.BUFFER), "<I", 99999)
    with pytest.raises(ModelFormatError, match="refers to buffer 99999, but the model has"):
        Interpreter(model_content=bad)


def test_buffer_size_mismatch():
    tensor = _constant_tensor(MODEL)
    start, _ = _vector_start(MODEL, tensor, TensorField.SHAPE)
    first = struct.unpack_from("<i", MODEL, start + 4)[0]
    bad = _patch(MODEL, start + 4, "<i", first + 1)
    with pytest.raises(ModelFormatError, match="needs .* bytes, its buffer has"):
        Interpreter(model_content=bad)


def test_negative_shape():
    tensor = _constant_tensor(MODEL)
    start, _ = _vector_start(MODEL, tensor, TensorField.SHAPE)
    with pytest.raises(ModelFormatError, match="has an invalid shape"):
        Interpreter(model_content=_patch(MODEL, start + 4, "<i", -5))


def test_invalid_padding_enum():
    from app.tflite.schema import read_options
    from app.tflite import schema
    conv_code_index = [t.pos for t in _root(MODEL).tables(ModelField.OPERATOR_CODES, "c")].index(
        _conv_opcode_table(MODEL).pos)
    for i, op in enumerate(_first_subgraph(MODEL).tables(SubGraphField.OPERATORS, "ops")):
        _, options = op.union_table(OperatorField.BUILTIN_OPTIONS_TYPE, OperatorField.BUILTIN_OPTIONS, "o")
        if (op.scalar(OperatorField.OPCODE_INDEX, "uint32", 0) == conv_code_index
                and options is not None and options.has(0)):
            break
    bad = _patch(MODEL, _field(options, 0), "<b", 9)
    with pytest.raises(ModelFormatError, match=rf"operators\[{i}\] \(CONV_2D\) has invalid options: unknown padding code 9"):
        Interpreter(model_content=bad)
    assert read_options("CONV_2D", None)["padding"] == "SAME" and schema.PADDING[1] == "VALID"


def test_random_corruption_never_escapes_as_a_crash():
    """Seeded byte flips: every outcome is a successful parse or a VitrineError."""
    rng = np.random.default_rng(0)
    failures = 0
    for _ in range(300):
        data = bytearray(MODEL)
        for pos in rng.integers(0, len(data), size=4):
            data[pos] = int(rng.integers(0, 256))
        try:
            Interpreter(model_content=bytes(data))
        except VitrineError:
            failures += 1
    assert failures > 0


def test_int16_activations_refused():
    data = (FIXTURES / "cnn_int8" / "model.tflite").read_bytes()
    sub = _first_subgraph(data)
    input_index = int(sub.numbers(SubGraphField.INPUTS, "int32", "inputs")[0])
    tensor = sub.tables(SubGraphField.TENSORS, "tensors")[input_index]
    bad = _patch(data, _field(tensor, TensorField.TYPE), "<b", 7)  # INT16
    with pytest.raises(UnsupportedLayerError, match=r"uses int16 activations \(16x8 quantization"):
        Interpreter(model_content=bad)


@pytest.mark.parametrize("case,trials", [("legacy_uint8", 150),
                                          pytest.param("cnn_int8", 400, marks=pytest.mark.slow),
                                          pytest.param("ops_float32", 400, marks=pytest.mark.slow)])
def test_corrupted_models_fail_cleanly_when_run(case, trials):
    """Seeded byte flips, then allocate + invoke on zeros: a result or a VitrineError, never
    another exception (operators validate sizes before allocating, see float_ops.guard)."""
    data0 = (FIXTURES / case / "model.tflite").read_bytes()
    rng = np.random.default_rng(7)
    outcomes = {"ran": 0, "refused": 0}
    for _ in range(trials):
        data = bytearray(data0)
        for pos in rng.integers(0, len(data), size=3):
            data[pos] = int(rng.integers(0, 256))
        try:
            interp = Interpreter(model_content=bytes(data))
            interp.allocate_tensors()
            for d in interp.get_input_details():
                interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
            with np.errstate(all="ignore"):
                interp.invoke()
            outcomes["ran"] += 1
        except VitrineError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["ran"] > 0


def test_size_guard_refuses_huge_padding():
    from app.tflite.float_ops import MAX_TENSOR_ELEMENTS, guard
    with pytest.raises(ValueError, match=f"more than the limit of {MAX_TENSOR_ELEMENTS}"):
        guard((1, 100000, 100000, 3), "padded tensor")
    with pytest.raises(ValueError, match="negative dimension"):
        guard((1, -2), "x")
