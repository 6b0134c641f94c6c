"""A tiny FlatBuffers *writer* for tests: builds hand-made TFLite models (custom ops, external
buffers) that the converter never emits. Layout is simple, not compact: each table is written
as vtable, table, then its children, so every uoffset points forward as the format requires."""

from __future__ import annotations

import struct


class Scalar:
    def __init__(self, fmt: str, value):
        self.fmt, self.value = fmt, value


class Table:
    def __init__(self, *fields):
        self.fields = fields          # index = schema field id; None = absent


class Vector:
    def __init__(self, fmt: str | None, items):
        self.fmt, self.items = fmt, list(items)   # fmt None: vector of Tables


class String:
    def __init__(self, text: str):
        self.text = text


def build(root: Table, identifier: bytes = b"TFL3", tail: bytes = b"") -> bytes:
    buf = bytearray(8)
    buf[4:8] = identifier
    pos = _write(buf, root)
    struct.pack_into("<I", buf, 0, pos)
    return bytes(buf) + tail


def _align(buf: bytearray, n: int) -> None:
    while len(buf) % n:
        buf.append(0)


def _write(buf: bytearray, obj) -> int:
    _align(buf, 4)
    if isinstance(obj, String):
        pos = len(buf)
        raw = obj.text.encode()
        buf += struct.pack("<I", len(raw)) + raw + b"\0"
        return pos
    if isinstance(obj, Vector):
        pos = len(buf)
        buf += struct.pack("<I", len(obj.items))
        if obj.fmt is not None:
            for item in obj.items:
                buf += struct.pack("<" + obj.fmt, item)
            return pos
        slots = []
        for _ in obj.items:
            slots.append(len(buf))
            buf += b"\0\0\0\0"
        for slot, item in zip(slots, obj.items):
            target = _write(buf, item)
            struct.pack_into("<I", buf, slot, target - slot)
        return pos
    # Table: vtable, then table body with one 8-byte slot per present field.
    fields = obj.fields
    present = [i for i, f in enumerate(fields) if f is not None]
    vtable_size = 4 + 2 * len(fields)
    body_size = 4 + 8 * len(present)
    vtable_pos = len(buf)
    offsets = [0] * len(fields)
    for k, i in enumerate(present):
        offsets[i] = 4 + 8 * k
    buf += struct.pack(f"<HH{len(fields)}H", vtable_size, body_size, *offsets)
    _align(buf, 4)
    table_pos = len(buf)
    buf += struct.pack("<i", table_pos - vtable_pos) + bytes(8 * len(present))
    children = []
    for i in present:
        field = fields[i]
        at = table_pos + offsets[i]
        if isinstance(field, Scalar):
            struct.pack_into("<" + field.fmt, buf, at, field.value)
        else:
            children.append((at, field))
    for at, child in children:
        target = _write(buf, child)
        struct.pack_into("<I", buf, at, target - at)
    return table_pos


def tflite_model(*, opcodes, tensors, operators, inputs, outputs, buffers, version=3) -> Table:
    """Model(version, operator_codes, subgraphs=[one], description, buffers)."""
    subgraph = Table(Vector(None, tensors), Vector("i", inputs), Vector("i", outputs),
                     Vector(None, operators), String("main"))
    return Table(Scalar("I", version), Vector(None, opcodes), Vector(None, [subgraph]),
                 String("test"), Vector(None, buffers))


def opcode(builtin: int, custom: str | None = None) -> Table:
    return Table(Scalar("b", min(builtin, 127)), None if custom is None else String(custom),
                 Scalar("i", 1), Scalar("i", builtin))


def tensor(shape, type_code: int, buffer: int, name: str, *, quantization=None, shape_signature=None) -> Table:
    """Tensor(shape, type, buffer, name, quantization, is_variable, sparsity, shape_signature);
    ``quantization`` is (scales, zero_points) or (scales, zero_points, quantized_dimension)."""
    quant = None
    if quantization is not None:
        scales, zero_points, *dim = quantization
        quant = Table(None, None, Vector("f", scales), Vector("q", zero_points), None, None,
                      Scalar("i", dim[0] if dim else 0))
    return Table(Vector("i", shape), Scalar("b", type_code), Scalar("I", buffer), String(name), quant,
                 None, None, None if shape_signature is None else Vector("i", shape_signature))


def operator(opcode_index: int, inputs, outputs, options_type: int | None = None,
             options: Table | None = None) -> Table:
    """Operator(opcode_index, inputs, outputs, builtin_options_type, builtin_options)."""
    return Table(Scalar("I", opcode_index), Vector("i", inputs), Vector("i", outputs),
                 None if options_type is None else Scalar("B", options_type), options)


def buffer(data: bytes | None = None, offset: int | None = None, size: int | None = None) -> Table:
    if offset is not None:
        return Table(None, Scalar("Q", offset), Scalar("Q", size))
    return Table(None if data is None else Vector("B", data))
