"""DICOM decoding through pydicom (pure Python, imported lazily) with only numpy + Pillow behind it.

Decodable transfer syntaxes: implicit / explicit VR little endian, explicit VR big endian,
deflated explicit VR little endian, RLE lossless (pydicom's own decoder), JPEG baseline and JPEG
extended with 8-bit samples (Pillow), JPEG 2000 (Pillow, only where Pillow was built with
OpenJPEG: CPython wheels yes, Pyodide 0.27.7 no). Anything else is refused up front with the
syntax's name, before any pixel is decoded.

Pixel pipeline (PS3.3 C.11): stored values -> Modality LUT (Rescale Slope/Intercept or Modality
LUT Sequence) = ``pixels`` (float32) -> VOI (user window, else the file's Window Center/Width,
else its VOI LUT Sequence, else min..max) -> MONOCHROME1 inverted -> ``display`` (uint8).
PALETTE COLOR goes through the palette to RGB; YBR_FULL / YBR_FULL_422 are converted to RGB.
Patient-identifying attributes go to ``phi`` only.
"""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np

from ..errors import ImageFormatError
from .decode import DecodedImage, check_pixel_budget, gray_display, is_dicom
from .display import minmax_to_uint8

# transfer syntax UID -> (name, what decodes it)
NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
}
RLE_SYNTAX = {"1.2.840.10008.1.2.5": "RLE Lossless"}
JPEG_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (Process 1)",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (Process 2 and 4), 8-bit samples only",
}
JPEG2000_SYNTAXES = {
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Image Compression (Lossless Only)",
    "1.2.840.10008.1.2.4.91": "JPEG 2000 Image Compression",
}
SUPPORTED_SYNTAXES = {**NATIVE_SYNTAXES, **RLE_SYNTAX, **JPEG_SYNTAXES, **JPEG2000_SYNTAXES}

#: Attributes that identify a patient (or can): kept in ``DecodedImage.phi``, never in metadata.
PHI_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientNames",
    "PatientBirthDate", "PatientBirthTime", "PatientSex", "PatientAge", "PatientSize", "PatientWeight",
    "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName", "EthnicGroup",
    "PatientComments", "MilitaryRank", "MedicalRecordLocator",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "ReferringPhysicianName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "OperatorsName",
    "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime",
    "AcquisitionDate", "AcquisitionTime", "ContentDate", "ContentTime", "AcquisitionDateTime",
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
    "StudyDescription", "SeriesDescription", "RequestedProcedureDescription",
    "DeviceSerialNumber", "StationName", "ImageComments",
)


def pillow_has_jpeg2000() -> bool:
    """Whether this Pillow has an OpenJPEG codec (Pyodide 0.27.7's Pillow does not)."""
    from PIL import features

    return bool(features.check("jpg_2000"))


def pillow_has_jpeg() -> bool:
    """Whether this Pillow has a JPEG codec."""
    from PIL import features

    return bool(features.check("jpg"))


def _import_pydicom(name: str):
    try:
        import pydicom
        import pydicom.pixels  # noqa: F401  (pydicom >= 3)
    except ImportError as exc:
        raise ImageFormatError(
            f"{name}: reading DICOM needs the optional package pydicom (pip install 'vitrine[medical]')"
        ) from exc
    return pydicom


def decode_dicom(data: bytes, name: str, *, frame: int | None = None, window=None) -> DecodedImage:
    """Decode one frame of a DICOM file; see the module docstring for the pipeline."""
    pydicom = _import_pydicom(name)
    from pydicom.errors import BytesLengthException, InvalidDicomError

    has_prefix = is_dicom(data)
    # the checks of what the bytes look like run only when pydicom fails or finds no pixel data, so
    # a damaged but readable file (e.g. a wrong meta group length) is still shown
    explain = _check_file_meta_length if has_prefix else _check_bare_dataset_start
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_prefix)
    except InvalidDicomError as exc:
        explain(data, name)
        raise ImageFormatError(f"{name}: not a DICOM file: {exc}") from exc
    except (EOFError, OSError, ValueError, KeyError, struct.error, zlib.error, NotImplementedError, TypeError,
            BytesLengthException) as exc:
        explain(data, name)
        raise ImageFormatError(f"{name}: truncated or corrupt DICOM file: {type(exc).__name__}: {_first_line(exc)}") from exc
    if "PixelData" not in ds:
        explain(data, name)
    # pydicom converts elements lazily, on first access: convert them all here so a corrupt value
    # representation or length is reported as this file's error, not met later as a crash
    _convert_elements(ds.file_meta if getattr(ds, "file_meta", None) is not None else {}, name)
    _convert_elements(ds, name)
    if len(ds) == 0:
        raise ImageFormatError(
            f"{name}: truncated DICOM file: no data set follows the file meta information ({len(data)} bytes)")

    if "PixelData" not in ds:
        raise ImageFormatError(
            f"{name}: the DICOM file has no Pixel Data (7FE0,0010) to show "
            f"(SOP class {_safe_str(ds.get('SOPClassUID'))}; float / double float pixel data are not supported)"
        )
    uid = _transfer_syntax(ds, name, has_prefix)
    _check_syntax(uid, ds, name)

    try:
        rows = int(ds.Rows)
        cols = int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits_allocated = int(ds.BitsAllocated)
        bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        photometric = str(ds.PhotometricInterpretation).strip().upper()
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageFormatError(f"{name}: invalid or missing DICOM image attribute: {exc}") from exc
    check_pixel_budget(name, rows, cols, frames, max(1, math.ceil(bits_allocated * samples / 8)))

    index = frames // 2 if frame is None else int(frame)
    if not 0 <= index < frames:
        raise ImageFormatError(f"{name}: frame {index} out of range: the file has {frames} frame(s) (0-{frames - 1})")

    from pydicom.pixels import pixel_array

    try:
        arr = pixel_array(ds, index=index if frames > 1 else None)
    except (RuntimeError, ValueError, NotImplementedError, AttributeError, KeyError, TypeError,
            IndexError, EOFError, OSError, struct.error, zlib.error) as exc:
        raise ImageFormatError(
            f"{name}: cannot decode the {_syntax_name(uid)} pixel data: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    arr = np.asarray(arr)
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    if arr.ndim == 4 or (arr.ndim == 3 and samples == 1):
        arr = arr[0]  # a single frame was asked for; some decoders keep the frame axis

    metadata = {
        "format": "DICOM",
        "transfer_syntax": _syntax_name(uid),
        "transfer_syntax_uid": uid,
        "modality": _safe_str(ds.get("Modality")),
        "sop_class": _uid_name(ds.get("SOPClassUID")),
        "photometric": photometric,
        "bits": bits_stored,
        "bits_allocated": bits_allocated,
        "bits_stored": bits_stored,
        "pixel_representation": _number(ds, "PixelRepresentation", 0, int, name),
        "samples_per_pixel": samples,
        "size": [rows, cols],
        "frames": frames,
        "frame": index,
    }
    for keyword in ("BodyPartExamined", "PixelSpacing", "SliceThickness", "ViewPosition"):
        if keyword in ds and ds.get(keyword) not in (None, ""):
            value = ds.get(keyword)
            if keyword == "PixelSpacing":
                metadata["pixel_spacing"] = _number(ds, keyword, None, lambda v: [float(x) for x in v], name)
            else:
                metadata[_snake(keyword)] = _safe_str(value)

    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        pixels, display = _grayscale(ds, arr, name, window, metadata)
        if photometric == "MONOCHROME1":
            display = (255 - display).astype(np.uint8)  # MONOCHROME1: minimum value is white
            metadata["inverted"] = True
    elif photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            rgb = apply_color_lut(arr, ds)
        except (ValueError, KeyError, AttributeError, IndexError) as exc:
            raise ImageFormatError(f"{name}: invalid palette colour lookup table: {_first_line(exc)}") from exc
        pixels = np.asarray(rgb)[..., :3]
        display = pixels if pixels.dtype == np.uint8 else _scale_bits(pixels, 16)
        metadata["color"] = "palette -> RGB"
    elif photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT") and samples == 3:
        # pydicom returns RGB for YBR_FULL(_422); JPEG / JPEG 2000 decoders already return RGB
        pixels = arr
        display = arr if arr.dtype == np.uint8 else _scale_bits(arr, bits_stored)
        if photometric != "RGB":
            metadata["color"] = f"{photometric} -> RGB"
    else:
        raise ImageFormatError(
            f"{name}: photometric interpretation {photometric!r} with {samples} sample(s) per pixel is not supported "
            "(MONOCHROME1, MONOCHROME2, PALETTE COLOR, RGB, YBR_FULL, YBR_FULL_422, YBR_RCT, YBR_ICT)"
        )
    if window is not None and photometric not in ("MONOCHROME1", "MONOCHROME2"):
        metadata["window_ignored"] = "colour image"

    phi = {}
    for keyword in PHI_KEYWORDS:
        value = ds.get(keyword)
        if value not in (None, ""):
            phi[keyword] = _safe_str(value)
    return DecodedImage(pixels=np.ascontiguousarray(pixels), display=np.ascontiguousarray(display),
                        metadata=metadata, phi=phi, filename=name)


# ----------------------------------------------------------------------------------------------

#: What pydicom raises while converting a raw element: an unknown VR (NotImplementedError), a
#: value whose length does not fit its VR (BytesLengthException), undecodable text / numbers.
_CONVERSION_ERRORS = (NotImplementedError, ValueError, TypeError, KeyError, IndexError, EOFError, OSError,
                      OverflowError, struct.error, zlib.error)


def _check_file_meta_length(data: bytes, name: str) -> None:
    """A Part 10 file cut inside its file meta group: pydicom reads what is there and returns a
    data set without pixel data, so compare the declared group length with the bytes present
    (called only when pydicom failed or found no pixel data)."""
    # (0002,0000) File Meta Information Group Length, explicit VR little endian UL (PS3.10 7.1)
    if len(data) < 144:
        raise ImageFormatError(f"{name}: truncated DICOM file: {len(data)} bytes end inside the file meta information")
    if data[132:138] != b"\x02\x00\x00\x00UL":
        return  # no group length to check (older writers); pydicom reads the group element by element
    group_length = struct.unpack("<I", data[140:144])[0]
    if 144 + group_length > len(data):
        raise ImageFormatError(
            f"{name}: truncated DICOM file: the file meta information declares {group_length} bytes after "
            f"byte 144, the file holds {len(data) - 144}")


def _check_bare_dataset_start(data: bytes, name: str) -> None:
    """Without the DICM prefix pydicom is asked to read anyway (``force``), and it reads any bytes
    as *some* elements; a real bare data set starts with a tag of the DICOM dictionary (called only
    when pydicom failed or found no pixel data)."""
    from pydicom.datadict import get_entry

    if len(data) < 8:
        raise ImageFormatError(f"{name}: not a DICOM file ({len(data)} bytes, no 'DICM' prefix at byte 128)")
    for order in "<>":
        group, element = struct.unpack(order + "HH", data[:4])
        if element == 0 and group % 2 == 0:
            return  # a group length element
        try:
            get_entry((group << 16) | element)
            return
        except KeyError:
            continue
    raise ImageFormatError(
        f"{name}: not a DICOM file: no 'DICM' prefix at byte 128, and the data does not start with a DICOM "
        f"element (first bytes {data[:8]!r})")


def _convert_elements(dataset, name: str, where: str = "") -> None:
    """Convert every raw element of ``dataset`` (recursing into sequences) inside a guard."""
    from pydicom.errors import BytesLengthException

    for tag in list(dataset.keys()):
        try:
            element = dataset[tag]
            items = element.value if element.VR == "SQ" else ()
        except (BytesLengthException, *_CONVERSION_ERRORS) as exc:
            raise ImageFormatError(
                f"{name}: corrupt DICOM element {where}{_tag_label(tag)}: {type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        for i, item in enumerate(items):
            _convert_elements(item, name, f"{where}{_tag_label(tag)} item {i} > ")


def _tag_label(tag) -> str:
    from pydicom.datadict import keyword_for_tag
    from pydicom.tag import Tag

    tag = Tag(tag)
    keyword = keyword_for_tag(tag)
    return f"({tag.group:04X},{tag.element:04X}){' ' + keyword if keyword else ''}"


def _number(ds, keyword: str, default, convert, name: str):
    """``convert(ds.keyword)`` (``default`` when absent / empty), an ImageFormatError naming the
    attribute when its value is not a number."""
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return convert(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ImageFormatError(f"{name}: DICOM attribute {keyword} has a non-numeric value {str(value)[:60]!r}") from exc


def _transfer_syntax(ds, name: str, has_prefix: bool) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid is None:
        # a bare dataset without Part 10 meta: use the encoding pydicom detected while reading
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if implicit is None:
            raise ImageFormatError(f"{name}: the DICOM file has no Transfer Syntax UID (0002,0010)")
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        uid = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        ds.file_meta = meta if meta is not None else _new_file_meta()
        ds.file_meta.TransferSyntaxUID = uid
    return str(uid)


def _new_file_meta():
    from pydicom.dataset import FileMetaDataset

    return FileMetaDataset()


def _check_syntax(uid: str, ds, name: str) -> None:
    if uid not in SUPPORTED_SYNTAXES:
        supported = "; ".join(sorted(set(SUPPORTED_SYNTAXES.values())))
        raise ImageFormatError(
            f"{name}: transfer syntax {_syntax_name(uid)} ({uid}) cannot be decoded here "
            f"(supported: {supported}); convert the file to an uncompressed syntax first"
        )
    if uid in JPEG2000_SYNTAXES and not pillow_has_jpeg2000():
        raise ImageFormatError(
            f"{name}: transfer syntax {_syntax_name(uid)} ({uid}) needs a JPEG 2000 decoder, which this "
            "Pillow build lacks (the browser's Pillow has no OpenJPEG); open the file with the desktop "
            "command-line tool or convert it to an uncompressed syntax"
        )
    if uid in JPEG_SYNTAXES and not pillow_has_jpeg():
        raise ImageFormatError(f"{name}: transfer syntax {_syntax_name(uid)} ({uid}) needs Pillow's JPEG codec, which is missing")
    if uid == "1.2.840.10008.1.2.4.51" and _number(ds, "BitsStored", 8, int, name) > 8:
        raise ImageFormatError(
            f"{name}: transfer syntax JPEG Extended with {ds.get('BitsStored')}-bit samples cannot be decoded "
            "(Pillow decodes 8-bit JPEG only)"
        )


def _grayscale(ds, arr: np.ndarray, name: str, window, metadata: dict):
    values = arr
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        try:
            values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
        except (ValueError, KeyError, AttributeError, IndexError, TypeError) as exc:
            raise ImageFormatError(f"{name}: invalid Modality LUT Sequence: {_first_line(exc)}") from exc
        metadata["modality_lut"] = "sequence"
    elif "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slope = _number(ds, "RescaleSlope", 1.0, float, name) or 1.0
        intercept = _number(ds, "RescaleIntercept", 0.0, float, name)
        values = (arr.astype(np.float64) * slope + intercept).astype(np.float32)
        metadata["rescale"] = [slope, intercept]
    file_window, function = _file_window(ds)
    if window is None and file_window is None and "VOILUTSequence" in ds:
        display = _voi_lut_display(ds, values, name)
        metadata.update(window_source="file VOI LUT")
        return values, display
    display, info = gray_display(values, window, file_window, function)
    metadata.update(info)
    return values, display


def _file_window(ds):
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None, "LINEAR"
    try:
        center = float(center[0] if _is_multi(center) else center)
        width = float(width[0] if _is_multi(width) else width)
    except (TypeError, ValueError, IndexError):
        return None, "LINEAR"
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if width < 1 or not math.isfinite(center) or not math.isfinite(width):
        return None, "LINEAR"
    return (center, width), function


def _voi_lut_display(ds, values, name):
    from pydicom.pixels import apply_voi_lut

    try:
        lut_output = np.asarray(apply_voi_lut(values, ds, prefer_lut=True), dtype=np.float64)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    except (ValueError, KeyError, AttributeError, IndexError, TypeError) as exc:
        raise ImageFormatError(f"{name}: invalid VOI LUT Sequence: {_first_line(exc)}") from exc
    top = float((1 << bits) - 1) if 0 < bits <= 16 else float(lut_output.max() or 1)
    return np.clip(np.rint(lut_output / top * 255.0), 0, 255).astype(np.uint8)


def _scale_bits(values: np.ndarray, bits: int) -> np.ndarray:
    if np.issubdtype(values.dtype, np.integer) and 0 < bits <= 32:
        top = float((1 << bits) - 1)
        return np.clip(np.rint(values.astype(np.float64) / top * 255.0), 0, 255).astype(np.uint8)
    return minmax_to_uint8(values)[0]


def _is_multi(value) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def _syntax_name(uid: str) -> str:
    return SUPPORTED_SYNTAXES.get(uid) or _uid_name(uid) or uid


def _uid_name(uid) -> str | None:
    if uid is None:
        return None
    from pydicom.uid import UID

    try:
        return UID(str(uid)).name
    except (ValueError, TypeError):
        return str(uid)


def _safe_str(value) -> str | None:
    return None if value is None else str(value)


def _snake(keyword: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(keyword))


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:400] + "...") if len(text) > 400 else (text or type(exc).__name__)
