"""Build the hostile-input corpus under ``tests/hostile/corpus/`` (issue 9: bad input never breaks
a batch).

Every bad file is derived from a real good input, so the damage is the only thing wrong with it:

* ``good/`` seeds: scikit-image's ``camera.png`` / ``retina.jpg`` (via tools/fetch_sample_images.py,
  shrunk to 64 px), pydicom's shipped ``MR_small.dcm``, nibabel's shipped
  ``resampled_anat_moved.nii`` / ``standard.nii.gz``, the committed TF.js fixture
  ``tests/fixtures/tfjs/k2_functional_classifier`` (zipped) and the committed TFLite fixtures
  ``legacy_uint8`` / ``cnn_static_float32``.
* every other file: one documented damage applied to a seed (truncation, bit flip, header edit,
  declared size inflated to a decompression / zip bomb, hostile archive names, malformed
  ``model.json``, corrupt flatbuffer offsets...).

``MANIFEST.json`` lists each file with the entry point it goes through, how it was made, and what
a user must be told: the error class (a :class:`app.errors.VitrineError` subclass) and a regular
expression the message must match (the reason), besides naming the file. Those expectations are
written from what a user needs to hear, not from what the code happens to say.

Usage: ``.venv/bin/python tools/make_hostile_corpus.py [--out tests/hostile/corpus]``
Deterministic: running it twice gives byte-identical files (zip timestamps are fixed).
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import importlib.util
import io
import json
import struct
import sys
import zipfile
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "hostile" / "corpus"
TFJS_SEED = REPO / "tests" / "fixtures" / "tfjs" / "k2_functional_classifier"
TFLITE_QUANT_SEED = REPO / "tests" / "fixtures" / "tflite" / "legacy_uint8" / "model.tflite"
TFLITE_FLOAT_SEED = REPO / "tests" / "fixtures" / "tflite" / "cnn_static_float32" / "model.tflite"
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
#: archive.DEFAULT_MAX_TOTAL_BYTES is 1 GiB; the bomb inflates past it.
ZIP_BOMB_BYTES = (1 << 30) + (64 << 20)

# What a user must be told, per kind of damage (regular expressions, case-insensitive).
TRUNCATED = r"truncat|corrupt|incomplete|too short|end of (the )?(file|data)"
CORRUPT = r"corrupt|truncat|invalid|broken|crc|checksum|malformed"
BOMB = r"too large|exceeds|limit|decompression bomb|zip bomb"


class Corpus:
    def __init__(self, out: Path):
        self.out = out
        self.entries: list[dict] = []

    def add(self, name: str, data: bytes, *, entry: str, made_from: str, how: str, error: str, reason: str,
            kwargs: dict | None = None) -> None:
        """Write one bad file. ``entry``: image | model | zip | tflite | card (see tests/hostile)."""
        (self.out / name).write_bytes(data)
        record = {"file": name, "entry": entry, "made_from": made_from, "how": how, "error": error,
                  "reason": reason, "bytes": len(data)}
        if kwargs:
            record["kwargs"] = kwargs
        self.entries.append(record)

    def write_manifest(self) -> None:
        manifest = {
            "generator": "tools/make_hostile_corpus.py",
            "entries_doc": {
                "image": "app.imaging.decode_image(data, file) then preprocess() (and the service's decode_image call)",
                "model": "app.load_model(path) (and the service's load_model call with the bytes)",
                "zip": "app.archive.read_zip(data, file) and app.load_model(path)",
                "tflite": "app.load_model(path), app.tflite.load(data, file) and app.tflite.Interpreter(model_content=...)",
                "card": "app.modelcard.load_card(data, file)",
            },
            "files": self.entries,
        }
        (self.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")


# ------------------------------------------------------------------------------------- helpers

def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{name} is not installed in this Python ({sys.executable}); it ships the seed files")
    return Path(spec.origin).parent


def flip(data: bytes, offset: int, mask: int = 0xFF) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def put(data: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def make_zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_chunks(data: bytes):
    """(offset of the length field, type, body) for each chunk of a PNG."""
    position = 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        yield position, kind, data[position + 8:position + 8 + length]
        position += 12 + length


# ------------------------------------------------------------------------------------- seeds

def seeds(out: Path) -> dict[str, bytes]:
    from PIL import Image

    sys.path.insert(0, str(REPO / "tools"))
    try:
        import fetch_sample_images
    finally:
        sys.path.pop(0)
    photos = fetch_sample_images.fetch()
    good = out / "good"
    good.mkdir(parents=True, exist_ok=True)
    result = {}

    camera = Image.open(photos / "camera.png").convert("L").resize((64, 64), Image.Resampling.BOX)
    buffer = io.BytesIO()
    camera.save(buffer, format="PNG", optimize=False, compress_level=9)
    result["camera.png"] = buffer.getvalue()
    retina = Image.open(photos / "retina.jpg").convert("RGB").resize((64, 64), Image.Resampling.BOX)
    buffer = io.BytesIO()
    retina.save(buffer, format="JPEG", quality=90)
    result["retina.jpg"] = buffer.getvalue()
    chelsea = Image.open(photos / "chelsea.png").convert("RGB").resize((48, 32), Image.Resampling.BOX)
    buffer = io.BytesIO()
    chelsea.save(buffer, format="PNG", compress_level=9)
    result["chelsea.png"] = buffer.getvalue()

    result["MR_small.dcm"] = (package_dir("pydicom") / "data" / "test_files" / "MR_small.dcm").read_bytes()
    nib_data = package_dir("nibabel") / "tests" / "data"
    result["resampled_anat_moved.nii"] = (nib_data / "resampled_anat_moved.nii").read_bytes()
    result["standard.nii.gz"] = (nib_data / "standard.nii.gz").read_bytes()

    tfjs_files = sorted(p for p in TFJS_SEED.iterdir() if p.name in ("model.json", "group1-shard1of1.bin"))
    result["model.zip"] = make_zip([(p.name, p.read_bytes()) for p in tfjs_files])
    result["model_quant.tflite"] = TFLITE_QUANT_SEED.read_bytes()
    result["model_float.tflite"] = TFLITE_FLOAT_SEED.read_bytes()
    for name, data in result.items():
        (good / name).write_bytes(data)
    return result


# ------------------------------------------------------------------------------------- images

def add_images(corpus: Corpus, good: dict[str, bytes]) -> None:
    png = good["camera.png"]
    corpus.add("png_truncated_half.png", png[: len(png) // 2], entry="image", made_from="good/camera.png",
               how="first half of the bytes", error="ImageFormatError", reason=TRUNCATED)
    corpus.add("png_truncated_in_header.png", png[:20], entry="image", made_from="good/camera.png",
               how="first 20 bytes (signature + part of IHDR)", error="ImageFormatError", reason=TRUNCATED)
    ihdr_width = 8 + 8  # the width field of IHDR, whose CRC then no longer matches
    corpus.add("png_bitflip_ihdr.png", flip(png, ihdr_width + 2, 0x10), entry="image", made_from="good/camera.png",
               how="one bit of the IHDR width flipped (chunk CRC mismatch)", error="ImageFormatError", reason=CORRUPT)
    idat = next(offset for offset, kind, _ in png_chunks(png) if kind == b"IDAT")
    corpus.add("png_bitflip_zlib_header.png", flip(png, idat + 8, 0xFF), entry="image", made_from="good/camera.png",
               how="first byte of the IDAT zlib stream inverted (CRC left stale)", error="ImageFormatError",
               reason=CORRUPT)
    idat_body = next(body for _, kind, body in png_chunks(png) if kind == b"IDAT")
    bad_deflate = idat_body[:2] + bytes([0xFF] * 6) + idat_body[8:]  # invalid block type / codes
    fixed = png[:idat] + png_chunk(b"IDAT", bad_deflate) + png[idat + 12 + len(idat_body):]
    corpus.add("png_bad_deflate_valid_crc.png", fixed, entry="image", made_from="good/camera.png",
               how="IDAT deflate data overwritten with 0xFF bytes, chunk CRC recomputed so only zlib can notice",
               error="ImageFormatError", reason=CORRUPT)

    jpeg = good["retina.jpg"]
    corpus.add("jpeg_truncated_half.jpg", jpeg[: len(jpeg) // 2], entry="image", made_from="good/retina.jpg",
               how="first half of the bytes", error="ImageFormatError", reason=TRUNCATED)
    corpus.add("jpeg_truncated_in_header.jpg", jpeg[:100], entry="image", made_from="good/retina.jpg",
               how="first 100 bytes (inside the quantisation tables)", error="ImageFormatError", reason=TRUNCATED)
    sof = jpeg.index(b"\xff\xc0")
    corpus.add("jpeg_sof_zero_height.jpg", put(put(jpeg, sof + 5, ">H", 0), sof + 7, ">H", 0), entry="image",
               made_from="good/retina.jpg", how="SOF0 height and width set to 0", error="ImageFormatError",
               reason=r"zero|empty|invalid|corrupt|size")
    sos = jpeg.index(b"\xff\xda")
    corpus.add("jpeg_sos_components_flipped.jpg", flip(jpeg, sos + 4, 0x0F), entry="image",
               made_from="good/retina.jpg", how="component count of the SOS segment bit-flipped (3 -> 12)",
               error="ImageFormatError", reason=CORRUPT)

    corpus.add("text_named.png", b"Patient list\nThis is a text file saved with a .png name.\n" * 4, entry="image",
               made_from="(text)", how="plain text named .png", error="ImageFormatError",
               reason=r"not a recognised image|not an image|unrecognised|unknown|not a png|cannot identify")
    corpus.add("empty.png", b"", entry="image", made_from="(nothing)", how="zero bytes", error="ImageFormatError",
               reason=r"empty|0 bytes|zero")
    corpus.add("empty.dcm", b"", entry="image", made_from="(nothing)", how="zero bytes named .dcm",
               error="ImageFormatError", reason=r"empty|0 bytes|zero")

    # Decompression bombs: the header declares a huge canvas; the data is a few KB of zero rows.
    for width, height, bits, colour, label in ((50000, 50000, 8, 0, "50000x50000 gray"),
                                               (9000, 9000, 8, 2, "9000x9000 RGB (under Pillow's own limit)")):
        row = b"\x00" + bytes(width * bits // 8 * (3 if colour == 2 else 1))
        body = zlib.compress(row * 64, 9)  # 64 rows only: the declared size is the bomb
        header = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0)
        bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")
        corpus.add(f"png_bomb_{width}x{height}.png", bomb, entry="image", made_from="(PNG chunks)",
                   how=f"IHDR declares {label}; IDAT holds 64 zero rows", error="ImageFormatError", reason=BOMB)
    # BMP and TIFF headers declaring 50000 x 50000 with a few bytes of pixels
    bmp_info = struct.pack("<IiiHHIIiiII", 40, 50000, 50000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    bmp = b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 14 + 40) + bmp_info + bytes(64)
    corpus.add("bmp_bomb_50000x50000.bmp", bmp, entry="image", made_from="(BMP header)",
               how="BITMAPINFOHEADER declares 50000x50000 24-bit; 64 bytes of pixels", error="ImageFormatError",
               reason=BOMB)
    tags = [(256, 4, 50000), (257, 4, 50000), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8 + 2 + 10 * 12 + 4),
            (277, 3, 1), (278, 4, 50000), (279, 4, 2_500_000_000 & 0xFFFFFFFF), (284, 3, 1)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", tag, kind, 1, value) if kind == 4 else
                                                  struct.pack("<HHIHH", tag, kind, 1, value, 0)
                                                  for tag, kind, value in tags) + struct.pack("<I", 0)
    corpus.add("tiff_bomb_50000x50000.tif", b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(64), entry="image",
               made_from="(TIFF IFD)", how="one strip, ImageWidth = ImageLength = 50000 8-bit gray; 64 bytes of pixels",
               error="ImageFormatError", reason=BOMB)
    # A complete, valid 1-bit 12000 x 12000 PNG (144 M pixels) that deflates to a few KB.
    width = height = 12000
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes(width // 8)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")
    corpus.add("png_bomb_valid_1bit_12000.png", bomb, entry="image", made_from="(PNG chunks)",
               how="complete valid 1-bit 12000x12000 all-black PNG (144 M pixels)", error="ImageFormatError",
               reason=BOMB)


def add_dicom(corpus: Corpus, good: dict[str, bytes]) -> None:
    import pydicom

    dcm = good["MR_small.dcm"]
    src = "good/MR_small.dcm (pydicom test file, 64x64 MONOCHROME2 16-bit)"
    corpus.add("dicom_truncated_half.dcm", dcm[: len(dcm) // 2], entry="image", made_from=src,
               how="first half of the bytes (pixel data cut)", error="ImageFormatError", reason=TRUNCATED)
    corpus.add("dicom_truncated_in_meta.dcm", dcm[:200], entry="image", made_from=src,
               how="first 200 bytes (inside the file meta group)", error="ImageFormatError", reason=TRUNCATED)

    def edited(**changes) -> bytes:
        dataset = pydicom.dcmread(io.BytesIO(dcm))
        for keyword, value in changes.items():
            setattr(dataset, keyword, value)
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()

    corpus.add("dicom_rows_mismatch.dcm", edited(Rows=65), entry="image", made_from=src,
               how="Rows 64 -> 65, pixel data left at 64x64", error="ImageFormatError",
               reason=r"pixel data|expected|length|size|truncat")
    corpus.add("dicom_bomb_rows_columns.dcm", edited(Rows=65535, Columns=65535), entry="image", made_from=src,
               how="Rows = Columns = 65535 (4.3 G pixels declared), 8 KB of pixel data", error="ImageFormatError",
               reason=BOMB)
    corpus.add("dicom_bomb_frames.dcm", edited(NumberOfFrames=50_000_000), entry="image", made_from=src,
               how="NumberOfFrames = 50 000 000 of 64x64 16-bit (400 GB declared)", error="ImageFormatError",
               reason=BOMB + r"|frames|pixel data")
    corpus.add("dicom_zero_rows.dcm", edited(Rows=0), entry="image", made_from=src, how="Rows = 0",
               error="ImageFormatError", reason=r"zero|empty|rows|size")
    corpus.add("dicom_bits_allocated_0.dcm", edited(BitsAllocated=0), entry="image", made_from=src,
               how="BitsAllocated = 0", error="ImageFormatError", reason=r"bits|allocated|unsupported|invalid")
    corpus.add("text_named.dcm", b"Not a DICOM file, just text.\n" * 8, entry="image", made_from="(text)",
               how="plain text named .dcm", error="ImageFormatError",
               reason=r"not (a )?dicom|no dicom|dicm|preamble|corrupt|unreadable")


def add_nifti(corpus: Corpus, good: dict[str, bytes]) -> None:
    nii = good["resampled_anat_moved.nii"]
    src = "good/resampled_anat_moved.nii (nibabel test file)"
    assert nii[344:348] == b"n+1\x00", "seed is not single-file NIfTI-1"
    corpus.add("nifti_truncated_data.nii", nii[: len(nii) - 1000], entry="image", made_from=src,
               how="last 1000 bytes (voxel data) cut", error="ImageFormatError", reason=TRUNCATED + r"|expected|bytes")
    corpus.add("nifti_truncated_header.nii", nii[:100], entry="image", made_from=src,
               how="first 100 bytes (inside the 348-byte header)", error="ImageFormatError",
               reason=TRUNCATED + r"|header|not a nifti")
    endian = "<" if struct.unpack("<i", nii[:4])[0] == 348 else ">"  # the seed is big-endian
    shape = struct.unpack(endian + "8h", nii[40:56])
    huge = bytearray(nii)
    struct.pack_into(endian + "8h", huge, 40, 3, 32767, 32767, 32767, 1, 1, 1, 1)
    struct.pack_into(endian + "hh", huge, 70, 64, 64)  # datatype FLOAT64, bitpix 64
    corpus.add("nifti_bomb_shape.nii", bytes(huge), entry="image", made_from=src,
               how=f"dim {list(shape[:4])} -> [3, 32767, 32767, 32767] float64 (281 TB declared)",
               error="ImageFormatError", reason=BOMB)
    negative = bytearray(nii)
    struct.pack_into(endian + "h", negative, 42, -5)
    corpus.add("nifti_negative_dim.nii", bytes(negative), entry="image", made_from=src, how="dim[1] = -5",
               error="ImageFormatError", reason=r"dim|shape|negative|invalid|zero")
    datatype = bytearray(nii)
    struct.pack_into(endian + "h", datatype, 70, 9999)
    corpus.add("nifti_unknown_datatype.nii", bytes(datatype), entry="image", made_from=src, how="datatype = 9999",
               error="ImageFormatError", reason=r"datatype|data type|data code|dtype|unsupported|unknown|not recogni[sz]ed")
    gz = gzip.compress(nii, mtime=0)
    corpus.add("nifti_gz_truncated.nii.gz", gz[: len(gz) * 6 // 10], entry="image",
               made_from=src + " gzipped", how="first 60% of the .nii.gz bytes", error="ImageFormatError",
               reason=TRUNCATED + r"|gzip|compressed")
    corpus.add("nifti_gz_bitflip.nii.gz", flip(gz, len(gz) // 2, 0xFF), entry="image",
               made_from=src + " gzipped", how="one byte in the middle of the deflate stream inverted",
               error="ImageFormatError", reason=CORRUPT + r"|gzip|compressed")
    bomb_header = bytearray(nii[:352])
    struct.pack_into(endian + "8h", bomb_header, 40, 3, 32767, 32767, 32767, 1, 1, 1, 1)
    corpus.add("nifti_gz_bomb_shape.nii.gz", gzip.compress(bytes(bomb_header) + bytes(4096), mtime=0), entry="image",
               made_from=src + " header, gzipped", how="gzipped header declaring 32767^3 voxels + 4 KB of data",
               error="ImageFormatError", reason=BOMB)
    corpus.add("text_named.nii.gz", b"not gzip at all\n" * 8, entry="image", made_from="(text)",
               how="plain text named .nii.gz", error="ImageFormatError",
               reason=r"gzip|nifti|not a|corrupt|compressed")


# ------------------------------------------------------------------------------------- archives

def bzip2_zeros(size: int) -> tuple[bytes, int]:
    """bzip2 of ``size`` zero bytes (about 1 KB per GB) and its CRC-32."""
    compressor = bz2.BZ2Compressor(9)
    block = bytes(1 << 24)
    parts, crc, left = [], 0, size
    while left:
        chunk = block if left >= len(block) else bytes(left)
        parts.append(compressor.compress(chunk))
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    parts.append(compressor.flush())
    return b"".join(parts), crc & 0xFFFFFFFF


def raw_zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """Hand-made zip: (name, compressed bytes, method, crc, declared uncompressed size) per member.
    Used for bombs and lies zipfile would refuse to write."""
    local, central, offset = [], [], 0
    for name, compressed, method, crc, declared in members:
        encoded = name.encode()
        version = 46 if method == zipfile.ZIP_BZIP2 else 20
        header = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", version, 0, method, 0, 0x5021, crc,
                             len(compressed), declared, len(encoded), 0) + encoded
        local.append(header + compressed)
        central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", version, version, 0, method, 0, 0x5021,
                                   crc, len(compressed), declared, len(encoded), 0, 0, 0, 0, 0o644 << 16, offset)
                       + encoded)
        offset += len(header) + len(compressed)
    directory = b"".join(central)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), offset, 0)
    return b"".join(local) + directory + end


def add_zips(corpus: Corpus, good: dict[str, bytes]) -> None:
    model_zip = good["model.zip"]
    model_files = [(p.name, p.read_bytes()) for p in sorted(TFJS_SEED.iterdir())
                   if p.name in ("model.json", "group1-shard1of1.bin")]
    src = "good/model.zip (tests/fixtures/tfjs/k2_functional_classifier zipped)"

    bomb, crc = bzip2_zeros(ZIP_BOMB_BYTES)
    corpus.add("zip_bomb_bzip2.zip", raw_zip(model_files_raw(model_files) + [("group2-shard1of1.bin", bomb,
                                                                               zipfile.ZIP_BZIP2, crc, ZIP_BOMB_BYTES)]),
               entry="zip", made_from=src, how=f"model + a bzip2 member of {ZIP_BOMB_BYTES} zero bytes "
               f"({len(bomb)} bytes compressed), sizes declared honestly", error="ArchiveError", reason=BOMB)
    corpus.add("zip_bomb_lying_header.zip", raw_zip(model_files_raw(model_files) + [("group2-shard1of1.bin", bomb,
                                                                                    zipfile.ZIP_BZIP2, crc, 4096)]),
               entry="zip", made_from=src, how="same bzip2 bomb, local and central headers claim 4096 bytes",
               error="ArchiveError", reason=BOMB + "|" + CORRUPT + r"|size")
    corpus.add("zip_header_claims_huge.zip", raw_zip([(name, data, 0, zlib.crc32(data), 0xFFFFFFF0)
                                                      for name, data in model_files]),
               entry="zip", made_from=src, how="stored members whose headers claim 4 GiB (0xFFFFFFF0 bytes) each",
               error="ArchiveError", reason=BOMB + "|" + CORRUPT + r"|size")
    corpus.add("zip_many_entries.zip", many_entries_zip(10_001), entry="zip", made_from="(zip records)",
               how="10 001 central-directory entries (named 00000..) sharing one empty local member",
               error="ArchiveError", reason=r"entries|too many|limit")
    corpus.add("zip_path_traversal.zip", make_zip(model_files + [("../../evil.bin", b"x")]), entry="zip",
               made_from=src, how="extra member '../../evil.bin'", error="ArchiveError",
               reason=r"\.\.|traversal|unsafe")
    corpus.add("zip_absolute_name.zip", make_zip(model_files + [("/etc/passwd", b"x")]), entry="zip",
               made_from=src, how="extra member '/etc/passwd'", error="ArchiveError", reason=r"absolute|unsafe")
    corpus.add("zip_drive_letter.zip", make_zip(model_files + [("C:/Windows/evil.bin", b"x")]), entry="zip",
               made_from=src, how="extra member 'C:/Windows/evil.bin'", error="ArchiveError",
               reason=r"absolute|drive|unsafe")
    corpus.add("zip_truncated.zip", model_zip[: len(model_zip) * 6 // 10], entry="zip", made_from=src,
               how="first 60% of the bytes (no central directory)", error="ArchiveError", reason=TRUNCATED)
    json_at = model_zip.index(b"model.json") + len(b"model.json") + 40
    corpus.add("zip_bitflip_member.zip", flip(model_zip, json_at, 0xFF), entry="zip", made_from=src,
               how="one byte inverted inside a deflated member", error="ArchiveError", reason=CORRUPT)
    encrypted = bytearray(model_zip)
    for marker, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        position = encrypted.find(marker)
        while position >= 0:
            encrypted[position + flag_at] |= 1
            position = encrypted.find(marker, position + 4)
    corpus.add("zip_encrypted_flag.zip", bytes(encrypted), entry="zip", made_from=src,
               how="'encrypted' flag bit set on every member", error="ArchiveError", reason=r"encrypt|password")
    corpus.add("zip_duplicate_names.zip", make_zip(model_files + [model_files[0]]), entry="zip", made_from=src,
               how="model.json stored twice", error="ArchiveError", reason=r"twice|duplicate")
    corpus.add("zip_empty.zip", make_zip([]), entry="model", made_from="(zip records)", how="empty archive",
               error="ModelFormatError", reason=r"no model|model\.json|empty")
    corpus.add("zip_only_weights.zip", make_zip([m for m in model_files if m[0] != "model.json"]), entry="model",
               made_from=src, how="model.json left out", error="ModelFormatError", reason=r"model\.json|no model")


def model_files_raw(model_files):
    return [(name, data, 0, zlib.crc32(data), len(data)) for name, data in model_files]


def many_entries_zip(count: int) -> bytes:
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x5021, 0, 0, 0, 5, 0) + b"00000"
    central = []
    for index in range(count):
        name = f"{index:05d}".encode()
        central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x5021, 0, 0, 0, len(name),
                                   0, 0, 0, 0, 0o644 << 16, 0) + name)
    directory = b"".join(central)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count & 0xFFFF, count & 0xFFFF, len(directory),
                      len(local), 0)
    return local + directory + end


# ------------------------------------------------------------------------------------- model.json

def add_models(corpus: Corpus, good: dict[str, bytes]) -> None:
    model_json = json.loads((TFJS_SEED / "model.json").read_text())
    shard = (TFJS_SEED / "group1-shard1of1.bin").read_bytes()
    src = "tests/fixtures/tfjs/k2_functional_classifier"

    def pack(obj_or_text, name: str, how: str, error: str, reason: str, shard_bytes: bytes | None = shard,
             extra: list | None = None) -> None:
        text = obj_or_text if isinstance(obj_or_text, (str, bytes)) else json.dumps(obj_or_text)
        data = text if isinstance(text, bytes) else text.encode()
        members = [("model.json", data)]
        if shard_bytes is not None:
            members.append(("group1-shard1of1.bin", shard_bytes))
        corpus.add(name, make_zip(members + (extra or [])), entry="model", made_from=src, how=how, error=error,
                   reason=reason)

    def edit(fn):
        obj = json.loads(json.dumps(model_json))
        fn(obj)
        return obj

    layers = lambda obj: obj["modelTopology"]["model_config"]["config"]["layers"]  # noqa: E731
    weights = lambda obj: obj["weightsManifest"][0]["weights"]  # noqa: E731

    pack("this is { not JSON", "model_not_json.zip", "model.json replaced by text", "ModelFormatError",
         r"json")
    pack(b"\xff\xfe\x00garbage", "model_not_utf8.zip", "model.json replaced by non-UTF-8 bytes", "ModelFormatError",
         r"utf-?8|json|decode|text")
    pack("[1, 2, 3]", "model_json_array.zip", "model.json is a JSON array", "ModelFormatError",
         r"object|modelTopology|array|list")
    pack(edit(lambda o: o.pop("modelTopology")), "model_missing_topology.zip", "modelTopology key removed",
         "ModelFormatError", r"modelTopology")
    pack(edit(lambda o: o.pop("weightsManifest")), "model_missing_manifest.zip", "weightsManifest key removed",
         "ModelFormatError", r"weightsManifest")
    pack(model_json, "model_missing_shard.zip", "group1-shard1of1.bin left out of the zip", "ModelFormatError",
         r"group1-shard1of1\.bin|shard|missing|not found", shard_bytes=None)
    pack(model_json, "model_shard_truncated.zip", "weight shard cut to half its bytes", "ModelFormatError",
         r"bytes|short|truncat|expected|size", shard_bytes=shard[: len(shard) // 2])

    first = weights(model_json)[0]

    def grow_first(o):
        shape = weights(o)[0]["shape"]
        shape[-1] += 1

    pack(edit(grow_first), "model_weight_shape_wrong.zip",
         f"{first['name']} shape {first['shape']} -> last dim + 1 (shard bytes no longer match)", "ModelFormatError",
         r"shape|bytes|size|expected")

    kernel_index, kernel = next((i, w) for i, w in enumerate(weights(model_json))
                                if len(w["shape"]) >= 2 and w["shape"] != list(reversed(w["shape"])))

    def permute_kernel(o):
        w = weights(o)[kernel_index]
        w["shape"] = list(reversed(w["shape"]))

    pack(edit(permute_kernel), "model_weight_shape_permuted.zip",
         f"{kernel['name']} shape {kernel['shape']} -> {list(reversed(kernel['shape']))} (same byte count, "
         "wrong for the layer)", "ModelFormatError", r"shape|expected")

    nan_shard = bytearray(shard)
    struct.pack_into("<4f", nan_shard, 0, float("nan"), float("inf"), float("-inf"), float("nan"))
    pack(model_json, "model_nan_weights.zip", f"first 4 values of {first['name']} set to NaN/inf/-inf/NaN",
         "ModelFormatError", r"nan|finite|inf", shard_bytes=bytes(nan_shard))

    def huge(o):
        w = weights(o)[0]
        w["shape"] = [1_000_000, 1_000_000, 3, 8]

    pack(edit(huge), "model_huge_weight_shape.zip",
         f"{first['name']} declared [1000000, 1000000, 3, 8] float32 (96 TB)", "ModelFormatError",
         r"shape|bytes|size|large|expected|exceeds")

    def huge_dense(o):
        for layer in layers(o):
            if layer["class_name"] == "Dense":
                layer["config"]["units"] = 2_000_000_000
        for w in weights(o):
            if "dense" in w["name"]:
                w["shape"] = [w["shape"][0], 2_000_000_000] if len(w["shape"]) == 2 else [2_000_000_000]

    pack(edit(huge_dense), "model_huge_dense_units.zip", "Dense units and weight shapes set to 2 000 000 000",
         "ModelFormatError", r"shape|bytes|size|large|expected|exceeds")

    def bad_dtype(o):
        weights(o)[0]["dtype"] = "complex64"

    pack(edit(bad_dtype), "model_weight_dtype_complex.zip", f"{first['name']} dtype float32 -> complex64",
         "ModelFormatError", r"dtype|complex64")

    graph_model = {"format": "graph-model", "generatedBy": "2.15.0", "convertedBy": "TensorFlow.js Converter v4.22.0",
                   "modelTopology": {"node": [{"name": "x", "op": "Placeholder", "attr": {}}], "library": {},
                                     "versions": {"producer": 1286}},
                   "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": []}]}
    pack(graph_model, "model_graph_model.zip", "a minimal TF.js graph-model (Placeholder node)",
         "UnsupportedFormatError", r"graph-model|graph model")

    def lambda_layer(o):
        layer = layers(o)[1]
        layer["class_name"] = "Lambda"
        layer["config"] = {"name": layer["name"], "function": ["4wEAAAAAAAAA", None, None], "function_type": "lambda",
                           "arguments": {}}

    pack(edit(lambda_layer), "model_lambda_layer.zip", "second layer turned into a Keras Lambda (pickled Python code)",
         "UnsupportedLayerError", r"lambda")

    def unknown_layer(o):
        layers(o)[1]["class_name"] = "QuantumEntangler"

    pack(edit(unknown_layer), "model_unknown_layer.zip", "second layer's class_name -> 'QuantumEntangler'",
         "UnsupportedLayerError", r"QuantumEntangler")

    def cycle(o):
        first_layer = layers(o)[1]
        last = layers(o)[-1]["name"]
        first_layer["inbound_nodes"] = [[[last, 0, 0, {}]]]

    pack(edit(cycle), "model_cycle.zip", "second layer's input rewired to the last layer (a cycle)",
         "ModelFormatError", r"cycle|cyclic|loop|input|reach|order")

    def dangling(o):
        layers(o)[2]["inbound_nodes"] = [[["no_such_layer", 0, 0, {}]]]

    pack(edit(dangling), "model_unknown_inbound.zip", "third layer's input renamed to 'no_such_layer'",
         "ModelFormatError", r"no_such_layer")

    card_extra = [("model-card.json", b'{"name": "x", "classes": "not a list"}')]
    pack(model_json, "model_bad_card.zip", "valid model + model-card.json whose classes is a string",
         "ModelFormatError", r"model-card\.json|classes", extra=card_extra)


# ------------------------------------------------------------------------------------- tflite

class FlatBuffer:
    """Just enough flatbuffer navigation to point at fields of a real .tflite (schema order:
    Model: version, operator_codes, subgraphs, description, buffers; SubGraph: tensors, inputs,
    outputs, operators, name; Tensor: shape, type, buffer, name)."""

    def __init__(self, data: bytes):
        self.data = data

    def u32(self, at: int) -> int:
        return struct.unpack_from("<I", self.data, at)[0]

    def root(self) -> int:
        return self.u32(0)

    def field(self, table: int, index: int) -> int:
        """Absolute position of field ``index`` of the table at ``table`` (0 when absent)."""
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        vtable_size = struct.unpack_from("<H", self.data, vtable)[0]
        if 4 + 2 * index >= vtable_size:
            return 0
        offset = struct.unpack_from("<H", self.data, vtable + 4 + 2 * index)[0]
        return table + offset if offset else 0

    def deref(self, at: int) -> int:
        return at + self.u32(at)

    def vector_element(self, vector: int, index: int) -> int:
        return self.deref(vector + 4 + 4 * index)


def add_tflite(corpus: Corpus, good: dict[str, bytes]) -> None:
    for seed_name, label in (("model_quant.tflite", "quant"), ("model_float.tflite", "float")):
        data = good[seed_name]
        src = f"good/{seed_name}"
        fb = FlatBuffer(data)
        model = fb.root()
        corpus.add(f"tflite_{label}_truncated_half.tflite", data[: len(data) // 2], entry="tflite", made_from=src,
                   how="first half of the bytes", error="ModelFormatError",
                   reason=TRUNCATED + r"|out of range|outside|beyond")
        if label == "float":
            continue
        corpus.add("tflite_truncated_16_bytes.tflite", data[:16], entry="tflite", made_from=src,
                   how="first 16 bytes", error="ModelFormatError", reason=TRUNCATED + r"|out of range|outside|beyond")
        corpus.add("tflite_wrong_identifier.tflite", data[:4] + b"XXXX" + data[8:], entry="tflite", made_from=src,
                   how="file identifier TFL3 -> XXXX", error="ModelFormatError",
                   reason=r"TFL3|identifier|not a tflite")
        corpus.add("tflite_root_offset_out_of_range.tflite", put(data, 0, "<I", 0x7FFFFFF0), entry="tflite",
                   made_from=src, how="root table offset -> 0x7FFFFFF0", error="ModelFormatError",
                   reason=r"offset|out of range|outside|beyond|corrupt|truncat")
        vtable_at = model
        corpus.add("tflite_vtable_offset_out_of_range.tflite", put(data, vtable_at, "<i", -0x7FFFFFF0),
                   entry="tflite", made_from=src, how="root table's vtable soffset -> -0x7FFFFFF0",
                   error="ModelFormatError", reason=r"offset|out of range|outside|beyond|corrupt|truncat")
        buffers = fb.deref(fb.field(model, 4))
        corpus.add("tflite_buffers_length_2pow31.tflite", put(data, buffers, "<I", 1 << 31), entry="tflite",
                   made_from=src, how="length of Model.buffers vector -> 2^31", error="ModelFormatError",
                   reason=r"length|out of range|outside|beyond|corrupt|truncat")
        subgraph = fb.vector_element(fb.deref(fb.field(model, 2)), 0)
        tensors = fb.deref(fb.field(subgraph, 0))
        corpus.add("tflite_tensors_length_2pow31.tflite", put(data, tensors, "<I", (1 << 31) - 1), entry="tflite",
                   made_from=src, how="length of SubGraph.tensors vector -> 2^31 - 1", error="ModelFormatError",
                   reason=r"length|out of range|outside|beyond|corrupt|truncat")
        inputs = fb.deref(fb.field(subgraph, 1))
        first_input = fb.u32(inputs + 4)
        corpus.add("tflite_input_index_out_of_range.tflite", put(data, inputs + 4, "<I", 0x7FFF0000), entry="tflite",
                   made_from=src, how=f"SubGraph.inputs[0] = {first_input} -> 0x7FFF0000",
                   error="ModelFormatError", reason=r"index|tensor|out of range|range")
        tensor = fb.vector_element(tensors, first_input)
        shape = fb.deref(fb.field(tensor, 0))
        rank = fb.u32(shape)
        huge = data
        for axis in range(1, rank):
            huge = put(huge, shape + 4 + 4 * axis, "<i", 100_000)
        corpus.add("tflite_input_shape_huge.tflite", huge, entry="tflite", made_from=src,
                   how=f"input tensor shape -> [1, 100000, 100000, 100000] (rank {rank})", error="ModelFormatError",
                   reason=r"shape|large|exceeds|limit|size|claims \d+ elements")
        opcodes = fb.deref(fb.field(model, 1))
        operators = fb.deref(fb.field(subgraph, 3))
        # opcode_index 0 is the default and is left out of the buffer: take an operator that stores it
        opcode_index = next(fb.field(op, 0) for op in (fb.vector_element(operators, i) for i in range(fb.u32(operators)))
                            if fb.field(op, 0))
        corpus.add("tflite_opcode_index_out_of_range.tflite", put(data, opcode_index, "<I", 60000), entry="tflite",
                   made_from=src, how=f"an operator's opcode_index {fb.u32(opcode_index)} -> 60000 "
                   f"({fb.u32(opcodes)} opcodes)",
                   error="ModelFormatError", reason=r"opcode|index|out of range|range")


def add_cards(corpus: Corpus) -> None:
    corpus.add("card_not_json.json", b"name: not json\n", entry="card", made_from="(text)",
               how="YAML-ish text instead of JSON", error="ModelFormatError", reason=r"json")
    corpus.add("card_classes_not_list.json", b'{"name": "x", "classes": 5}', entry="card", made_from="(JSON)",
               how="classes is a number", error="ModelFormatError", reason=r"classes")
    corpus.add("card_not_object.json", b'["a", "b"]', entry="card", made_from="(JSON)", how="a JSON array",
               error="ModelFormatError", reason=r"object|mapping|dict|array|list")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):
        if old.is_file():
            old.unlink()
    good = seeds(out)
    corpus = Corpus(out)
    add_images(corpus, good)
    add_dicom(corpus, good)
    add_nifti(corpus, good)
    add_zips(corpus, good)
    add_models(corpus, good)
    add_tflite(corpus, good)
    add_cards(corpus)
    corpus.write_manifest()
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{len(corpus.entries)} bad files + {len(good)} seeds in {out} ({total} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
