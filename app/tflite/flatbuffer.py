"""A minimal, bounds-checked FlatBuffers reader (just what the TFLite schema needs).

Why our own: the ``flatbuffers`` package trusts its input (a corrupt offset reads garbage or
raises ``struct.error``/``IndexError`` from deep inside), and Vitrine must turn any damaged model
file into a :class:`~app.errors.ModelFormatError` that names the file and the bad field.

Layout reminder (https://flatbuffers.dev/internals/): a table starts with an ``int32`` offset
*back* to its vtable; the vtable holds ``uint16`` sizes then one ``uint16`` offset per field
(0 = absent, use the default). Reference fields (tables, vectors, strings) hold a ``uint32``
offset relative to the field's own position. Vectors are a ``uint32`` length then elements.
Every read below checks its range against the buffer, so no offset can escape it and no vector
can claim more elements than the bytes that exist (which also bounds every loop).
"""

from __future__ import annotations

import struct

import numpy as np

from app.errors import ModelFormatError

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")

# Scalar kinds accepted by Table.scalar: struct code and width.
_SCALAR_FORMATS = {
    "bool": "<?", "int8": "<b", "uint8": "<B", "int16": "<h", "uint16": "<H",
    "int32": "<i", "uint32": "<I", "int64": "<q", "uint64": "<Q",
    "float32": "<f", "float64": "<d",
}
_SCALAR_STRUCTS = {kind: struct.Struct(fmt) for kind, fmt in _SCALAR_FORMATS.items()}


class Buffer:
    """The whole file plus the name used in error messages."""

    __slots__ = ("data", "size", "source")

    def __init__(self, data: bytes | bytearray | memoryview, source: str):
        self.data = bytes(data) if not isinstance(data, bytes) else data
        self.size = len(self.data)
        self.source = source

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.source}: corrupt TFLite flatbuffer: {what}")

    def check(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise self.fail(
                f"{what} at byte {pos} (+{length} bytes) lies outside the file of {self.size} bytes"
            )

    def read(self, fmt: struct.Struct, pos: int, what: str):
        self.check(pos, fmt.size, what)
        return fmt.unpack_from(self.data, pos)[0]

    def root(self, identifier: bytes | None = None) -> "Table":
        """The root table; ``identifier`` (4 bytes) is checked at bytes 4..8 when given."""
        if self.size < 8:
            raise self.fail(f"file is {self.size} bytes, too short for a flatbuffer header")
        if identifier is not None and self.data[4:8] != identifier:
            raise ModelFormatError(
                f"{self.source}: not a TFLite model: file identifier is {self.data[4:8]!r}, "
                f"expected {identifier!r}"
            )
        return self.table_at(self.read(_U32, 0, "root offset"), "root table")

    def table_at(self, pos: int, what: str) -> "Table":
        return Table(self, pos, what)


class Table:
    """One flatbuffer table; fields are addressed by their schema index (0-based)."""

    __slots__ = ("buf", "pos", "what", "_vtable", "_vtable_len", "_table_len")

    def __init__(self, buf: Buffer, pos: int, what: str):
        self.buf = buf
        self.pos = pos
        self.what = what
        soffset = buf.read(_I32, pos, f"{what} vtable offset")
        vtable = pos - soffset
        vtable_len = buf.read(_U16, vtable, f"{what} vtable")
        table_len = buf.read(_U16, vtable + 2, f"{what} vtable")
        if vtable_len < 4 or vtable_len % 2:
            raise buf.fail(f"{what} has an invalid vtable size {vtable_len}")
        buf.check(vtable, vtable_len, f"{what} vtable")
        buf.check(pos, max(table_len, 4), f"{what} body")
        self._vtable = vtable
        self._vtable_len = vtable_len
        self._table_len = table_len

    def _field_pos(self, index: int) -> int | None:
        slot = 4 + 2 * index
        if slot + 2 > self._vtable_len:
            return None
        offset = _U16.unpack_from(self.buf.data, self._vtable + slot)[0]
        if offset == 0:
            return None
        if offset + 1 > self._table_len:
            raise self.buf.fail(f"{self.what} field {index} offset {offset} beyond table size "
                                f"{self._table_len}")
        return self.pos + offset

    def has(self, index: int) -> bool:
        return self._field_pos(index) is not None

    def scalar(self, index: int, kind: str, default=0):
        pos = self._field_pos(index)
        if pos is None:
            return default
        return self.buf.read(_SCALAR_STRUCTS[kind], pos, f"{self.what} field {index}")

    def _indirect(self, index: int) -> int | None:
        pos = self._field_pos(index)
        if pos is None:
            return None
        return pos + self.buf.read(_U32, pos, f"{self.what} field {index} offset")

    def table(self, index: int, what: str) -> "Table | None":
        target = self._indirect(index)
        return None if target is None else Table(self.buf, target, what)

    def _vector(self, index: int, elem_size: int, what: str) -> tuple[int, int] | None:
        target = self._indirect(index)
        if target is None:
            return None
        length = self.buf.read(_U32, target, f"{what} length")
        # The length bound is what keeps a hostile "4 billion elements" vector from looping.
        self.buf.check(target + 4, length * elem_size, f"{what} ({length} elements)")
        return target + 4, length

    def string(self, index: int, what: str, default: str | None = None) -> str | None:
        vec = self._vector(index, 1, what)
        if vec is None:
            return default
        start, length = vec
        raw = self.buf.data[start:start + length]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.buf.fail(f"{what} is not valid UTF-8 ({exc.reason})") from None

    def numbers(self, index: int, dtype: str, what: str) -> np.ndarray | None:
        """A vector of scalars as a read-only numpy array (little-endian)."""
        np_dtype = np.dtype(dtype).newbyteorder("<")
        vec = self._vector(index, np_dtype.itemsize, what)
        if vec is None:
            return None
        start, length = vec
        return np.frombuffer(self.buf.data, dtype=np_dtype, count=length, offset=start)

    def bytes_view(self, index: int, what: str) -> memoryview | None:
        vec = self._vector(index, 1, what)
        if vec is None:
            return None
        start, length = vec
        return memoryview(self.buf.data)[start:start + length]

    def tables(self, index: int, what: str) -> list["Table"]:
        vec = self._vector(index, 4, what)
        if vec is None:
            return []
        start, length = vec
        out = []
        for i in range(length):
            elem = start + 4 * i
            out.append(Table(self.buf, elem + _U32.unpack_from(self.buf.data, elem)[0],
                             f"{what}[{i}]"))
        return out

    def union_table(self, type_index: int, value_index: int, what: str) -> tuple[int, "Table | None"]:
        """A union: (type tag, table or None)."""
        tag = self.scalar(type_index, "uint8", 0)
        if tag == 0:
            return 0, None
        return tag, self.table(value_index, what)
