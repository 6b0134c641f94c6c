"""Safe, in-memory zip reading (models from Zenodo arrive as zip bytes in browser memory).

Nothing is ever written to a filesystem and archive member names are only used as dictionary
keys, but names are still validated (``../``, absolute paths, drive letters) because callers
resolve relative paths (weight shards) against them. Zip bombs are stopped by counting the bytes
actually decompressed, not the sizes the headers claim.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
import zlib

from .errors import ArchiveError

DEFAULT_MAX_TOTAL_BYTES = 1 << 30  # 1 GiB uncompressed: EfficientNetB7 float32 is ~260 MB
DEFAULT_MAX_ENTRIES = 10_000
_CHUNK = 1 << 20
# Compression methods zipfile decompresses with a bounded output per read.
_BOUNDED_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma", 9: "deflate64", 93: "zstandard"}
_DRIVE = re.compile(r"^[A-Za-z]:")
# Errors the stdlib raises on corrupt / truncated / exotic archives.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, OSError, ValueError,
               NotImplementedError, RuntimeError)


def is_zip(data: bytes) -> bool:
    """True when ``data`` starts like a zip archive (local header or empty-archive end record)."""
    return bytes(data[:4]) in (b"PK\x03\x04", b"PK\x05\x06")


def safe_member_name(raw: str, archive_name: str) -> str:
    """Normalised member name, or ArchiveError if it could escape the archive root."""
    name = raw.replace("\\", "/")
    if "\x00" in name:
        raise ArchiveError(f"{archive_name}: member name {raw!r} contains a NUL byte")
    if name.startswith("/") or _DRIVE.match(name):
        raise ArchiveError(f"{archive_name}: member {raw!r} has an absolute path; refusing the archive")
    if ".." in name.split("/"):
        raise ArchiveError(f"{archive_name}: member {raw!r} contains '..' (path traversal); refusing the archive")
    normalised = posixpath.normpath(name)
    return "" if normalised == "." else normalised


def read_zip(data: bytes, name: str, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
             max_entries: int = DEFAULT_MAX_ENTRIES, views_for: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Return ``{member name: bytes}`` for every file in the zip ``data`` (directories and
    ``__MACOSX/`` resource forks skipped).

    ``views_for``: name endings (e.g. ``(".bin",)``) whose *stored* (uncompressed) members are
    returned as read-only memoryviews into ``data`` (a ``bytes`` object) instead of copies, once
    their CRC-32 is checked: a model's weight shards then take no second copy of the download in
    the worker's memory.

    Raises :class:`ArchiveError` naming ``name`` when the archive is corrupt or truncated, holds
    unsafe names, duplicate names, encrypted members, more than ``max_entries`` members or more
    than ``max_total_bytes`` of decompressed data."""
    if not is_zip(data):
        raise ArchiveError(f"{name}: not a zip archive (starts with {bytes(data[:4])!r}, expected b'PK\\x03\\x04')")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except _ZIP_ERRORS as exc:
        raise ArchiveError(f"{name}: corrupt or truncated zip archive ({exc})") from None
    if len(infos) > max_entries:
        raise ArchiveError(f"{name}: {len(infos)} entries, more than the limit of {max_entries} (zip bomb?)")
    claimed = sum(info.file_size for info in infos)
    if claimed > max_total_bytes:
        raise ArchiveError(f"{name}: would decompress to {claimed} bytes, more than the limit of "
                           f"{max_total_bytes} bytes (zip bomb?)")
    files: dict[str, bytes] = {}
    total = 0
    for info in infos:
        member = safe_member_name(info.filename, name)
        if info.is_dir() or not member or member.startswith("__MACOSX/"):
            continue
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{name}: member {info.filename!r} is encrypted")
        if info.compress_type not in _BOUNDED_METHODS:
            # zipfile inflates bzip2 / lzma chunks without an output bound, so a lying header
            # could expand gigabytes before any check runs: refuse them up front.
            method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
            raise ArchiveError(f"{name}: member {info.filename!r} is compressed with {method}, whose decompression "
                               "cannot be size-limited (zip bomb risk); only stored and deflate members are accepted "
                               "(re-create the zip with standard deflate compression)")
        if member in files:
            raise ArchiveError(f"{name}: member {info.filename!r} appears twice")
        if (views_for and isinstance(data, bytes) and info.compress_type == zipfile.ZIP_STORED
                and member.endswith(views_for)):
            total += info.file_size
            if total > max_total_bytes:
                raise ArchiveError(f"{name}: decompressed data exceeds the limit of {max_total_bytes} "
                                   f"bytes at member {info.filename!r} (zip bomb?)")
            files[member] = _stored_view(data, info, name)
            continue
        chunks = []
        try:
            with archive.open(info) as stream:
                while True:
                    chunk = stream.read(_CHUNK)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > max_total_bytes:
                        raise ArchiveError(f"{name}: decompressed data exceeds the limit of {max_total_bytes} "
                                           f"bytes at member {info.filename!r} (zip bomb?)")
                    chunks.append(chunk)
        except ArchiveError:
            raise
        except _ZIP_ERRORS as exc:
            raise ArchiveError(f"{name}: member {info.filename!r} is corrupt or truncated ({exc})") from None
        files[member] = b"".join(chunks)
    return files


def _stored_view(data: bytes, info: zipfile.ZipInfo, name: str) -> memoryview:
    """The bytes of a stored member in place: after its local header (30 bytes + the name and
    extra field lengths that header gives), checked against the central directory's CRC-32."""
    start = info.header_offset
    header = data[start:start + 30]
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise ArchiveError(f"{name}: member {info.filename!r} is corrupt or truncated (no local header)")
    begin = start + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    view = memoryview(data)[begin:begin + info.compress_size]
    if info.compress_size != info.file_size or len(view) != info.file_size or zlib.crc32(view) != info.CRC:
        raise ArchiveError(f"{name}: member {info.filename!r} is corrupt or truncated (CRC or size mismatch)")
    return view
