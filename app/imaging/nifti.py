"""NIfTI-1 / NIfTI-2 (``.nii``, ``.nii.gz``) through nibabel (pure Python, imported lazily).

One 2-D slice is shown: ``slice_ = (voxel axis, index)``, default the middle slice along the
voxel axis that points superior/inferior (axial) according to the affine; 4-D+ volumes use
their first volume. The slice is rotated by ``np.rot90`` so that, for the usual RAS+/LAS+
storage, anterior is up as in radiology viewers. ``pixels`` are nibabel's scaled values
(``scl_slope`` / ``scl_inter`` applied, as ``get_fdata``) in float32; ``display`` is the user's
window, else the header's ``cal_min..cal_max``, else the slice's min..max, mapped to 0..255.

A degenerate affine (e.g. ``sform_code`` set with all-zero ``srow`` rows) has no orientation: the
image is still shown (a clinician would rather see it than get a refusal), sliced along the array's
last spatial axis, with ``metadata["orientation"] = None`` and an ``orientation_note`` saying the
picture may be flipped or rotated.

A ``.nii.gz`` is inflated only as far as its header declares (:func:`gunzip_nifti`), so a small
header followed by gigabytes of zeros is refused in bounded memory and time.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ..errors import ImageFormatError
from . import decode as _decode
from .decode import DecodedImage, check_pixel_budget, gray_display
from .display import window_to_uint8


def _import_nibabel(name: str):
    try:
        import nibabel
    except ImportError as exc:
        raise ImageFormatError(
            f"{name}: reading NIfTI needs the optional package nibabel (pip install 'vitrine[medical]')"
        ) from exc
    return nibabel


def gunzip_capped(data: bytes, name: str, limit: int | None = None) -> bytes:
    """Decompress gzip ``data`` refusing outputs larger than ``limit`` bytes (default
    :data:`app.imaging.decode.MAX_DECODED_BYTES`; gzip bombs)."""
    limit = _decode.MAX_DECODED_BYTES if limit is None else int(limit)
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ImageFormatError(f"{name}: corrupt gzip data: {exc}") from exc
    if len(out) > limit:
        raise ImageFormatError(
            f"{name}: decompressed size exceeds the limit of {limit} bytes (possible decompression bomb)"
        )
    if not inflater.eof:
        raise ImageFormatError(f"{name}: truncated gzip data (the compressed stream ends early)")
    return out


#: Decompressed bytes a .nii.gz may hold beyond what its header declares (padding some writers
#: add); more than this is refused as a decompression bomb instead of being inflated.
TRAILING_BYTES_ALLOWED = 1 << 20


def gunzip_nifti(nibabel, data: bytes, name: str) -> bytes:
    """Decompress a ``.nii.gz``, inflating only what its header declares.

    The header (348 bytes for NIfTI-1, 540 for NIfTI-2) is inflated first; the declared shape,
    data type and ``vox_offset`` give the file's size, which is refused before inflating it when
    it exceeds :data:`app.imaging.decode.MAX_DECODED_BYTES`; otherwise at most that size plus
    :data:`TRAILING_BYTES_ALLOWED` is inflated (so a small header followed by gigabytes of zeros
    costs memory of the order of the declared volume). The stream is read to its end when it is
    within the bound, so zlib still checks the gzip CRC. A header this function cannot size falls
    back to :func:`gunzip_capped` (its errors are reported later by the header checks).
    """
    limit = _decode.MAX_DECODED_BYTES
    inflater = zlib.decompressobj(wbits=31)
    head = _inflate_up_to(inflater, data, 540, name)
    declared = _declared_file_bytes(nibabel, head)
    if declared is None:
        return gunzip_capped(data, name)
    if declared > limit:
        raise ImageFormatError(
            f"{name}: NIfTI header declares {declared} bytes of data (shape, data type and vox_offset), which "
            f"exceeds the limit of {limit} bytes (possible decompression bomb); nothing was decompressed beyond the header"
        )
    rest = _inflate_up_to(inflater, inflater.unconsumed_tail, declared + TRAILING_BYTES_ALLOWED + 1 - len(head), name,
                          started=not inflater.eof)
    out = head + rest
    if len(out) > declared + TRAILING_BYTES_ALLOWED:
        raise ImageFormatError(
            f"{name}: the compressed file holds more than {TRAILING_BYTES_ALLOWED} bytes beyond the {declared} bytes "
            "its NIfTI header declares: the decompressed size exceeds the limit for this header (possible decompression bomb)"
        )
    if not inflater.eof:
        raise ImageFormatError(f"{name}: truncated gzip data (the compressed stream ends early)")
    return out


def _inflate_up_to(inflater, data: bytes, count: int, name: str, started: bool = True) -> bytes:
    """Up to ``count`` decompressed bytes (fewer at the end of the stream or of ``data``)."""
    parts, got, pending = [], 0, data
    try:
        while started and got < count and not inflater.eof:
            chunk = inflater.decompress(pending, count - got)
            pending = inflater.unconsumed_tail
            if not chunk and not pending:
                break  # input exhausted (a truncated stream: reported by the caller)
            parts.append(chunk)
            got += len(chunk)
    except zlib.error as exc:
        raise ImageFormatError(f"{name}: corrupt gzip data: {exc}") from exc
    return b"".join(parts)


def _declared_file_bytes(nibabel, head: bytes) -> int | None:
    """vox_offset + voxels x item size as the header declares them, or None when the header is
    not a sizeable single-file NIfTI (the header checks then say what is wrong)."""
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348:
            header = np.frombuffer(head[:348], dtype=nibabel.nifti1.header_dtype.newbyteorder(order))[0]
            start = 352
            break
        if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:
            header = np.frombuffer(head[:540], dtype=nibabel.nifti2.header_dtype.newbyteorder(order))[0]
            start = 544
            break
    else:
        return None
    dim = [int(v) for v in header["dim"]]
    vox_offset = float(header["vox_offset"])
    if not 1 <= dim[0] <= 7 or any(d < 0 for d in dim[1:dim[0] + 1]) or not (np.isfinite(vox_offset) and vox_offset >= 0):
        return None
    try:
        itemsize = int(np.dtype(nibabel.nifti1.data_type_codes.dtype[int(header["datatype"])]).itemsize)
    except KeyError:
        return None
    if itemsize == 0:  # DT_NONE / DT_UNKNOWN: the header checks refuse it
        return None
    voxels = 1
    for d in dim[1:dim[0] + 1]:
        voxels *= d
    return max(int(np.ceil(vox_offset)), start) + voxels * itemsize


def decode_nifti(data: bytes, name: str, *, slice_=None, window=None) -> DecodedImage:
    """Decode one slice of a NIfTI file; see the module docstring."""
    nibabel = _import_nibabel(name)
    compressed = data[:2] == b"\x1f\x8b"
    raw = gunzip_nifti(nibabel, data, name) if compressed else data
    image_class, version = _header_class(nibabel, raw, name)
    try:
        image = image_class.from_bytes(raw)
        shape = tuple(int(v) for v in image.shape)
        itemsize = int(np.dtype(image.get_data_dtype()).itemsize)
        offset = int(image.header.get_data_offset())
    except (ValueError, TypeError, KeyError, EOFError, OSError, struct.error, nibabel.spatialimages.HeaderDataError) as exc:
        raise ImageFormatError(f"{name}: invalid NIfTI-{version} header: {type(exc).__name__}: {exc}") from exc
    if len(shape) < 2 or 0 in shape:
        raise ImageFormatError(f"{name}: NIfTI image of shape {shape} has no 2-D slice to show")
    total_bytes = int(np.prod(shape, dtype=np.int64)) * itemsize
    if total_bytes > _decode.MAX_DECODED_BYTES:
        raise ImageFormatError(
            f"{name}: NIfTI data of {total_bytes} bytes (shape {shape}) exceeds the limit of "
            f"{_decode.MAX_DECODED_BYTES} bytes (possible decompression bomb)"
        )
    if offset + total_bytes > len(raw):
        raise ImageFormatError(
            f"{name}: truncated NIfTI file: header promises {total_bytes} bytes of voxels at offset {offset}, "
            f"the file holds {max(0, len(raw) - offset)}"
        )

    spatial = shape[:3] if len(shape) >= 3 else shape + (1,)
    orientation = _orientation_codes(nibabel, image.affine)
    # a degenerate affine (e.g. sform_code set but srow all zero, or NaN in it) has no axis codes:
    # show the image anyway, slicing along the array's last spatial axis, and say so in the metadata
    degenerate = orientation is None
    default_axis = 2 if degenerate or len(shape) < 3 else _axial_axis(nibabel, image.affine)
    axis, index = (default_axis, spatial[default_axis] // 2) if slice_ is None else _check_slice(slice_, spatial, name)
    slicer = [slice(None)] * len(shape)
    if len(shape) >= 3:
        slicer[axis] = index
    for extra_axis in range(3, len(shape)):
        slicer[extra_axis] = 0
    plane_shape = [spatial[a] for a in range(3) if a != axis]
    check_pixel_budget(name, plane_shape[1], plane_shape[0])
    try:
        plane = np.asarray(image.dataobj[tuple(slicer)], dtype=np.float64)
    except (ValueError, TypeError, EOFError, OSError, struct.error) as exc:
        raise ImageFormatError(f"{name}: cannot read NIfTI voxels: {type(exc).__name__}: {exc}") from exc
    pixels = np.ascontiguousarray(np.rot90(plane)).astype(np.float32)

    cal_min, cal_max = float(image.header["cal_min"]), float(image.header["cal_max"])
    metadata = {
        "format": f"NIfTI-{version}",
        "compressed": compressed,
        "shape": list(shape),
        "dtype": str(np.dtype(image.get_data_dtype())),
        "orientation": None if degenerate else "".join(orientation),
        "voxel_size": [float(v) for v in image.header.get_zooms()[:3]],
        "slice_axis": axis,
        "slice_index": index,
        "slices": spatial[axis],
        "volume": 0 if len(shape) > 3 else None,
        "volumes": int(np.prod(shape[3:], dtype=np.int64)) if len(shape) > 3 else 1,
        "size": [int(pixels.shape[0]), int(pixels.shape[1])],
        "bits": itemsize * 8,
    }
    if degenerate:
        metadata["orientation_note"] = (
            "the header's affine (sform/qform) is degenerate (zero or non-finite), so the anatomical orientation "
            "is unknown: the default slice is taken along the array's last spatial axis (assumed axial) and the "
            "picture may be flipped or rotated")
    if window is None and np.isfinite(cal_min) and np.isfinite(cal_max) and cal_max > cal_min:
        display = _range_to_uint8(pixels, cal_min, cal_max)
        metadata.update(window=[(cal_min + cal_max) / 2, cal_max - cal_min], window_source="header cal_min/cal_max")
    else:
        display, info = gray_display(pixels, window)
        metadata.update(info)
    return DecodedImage(pixels=pixels, display=display, metadata=metadata, phi={}, filename=name)


def _header_class(nibabel, raw: bytes, name: str):
    if len(raw) < 348:
        raise ImageFormatError(f"{name}: too short for a NIfTI header ({len(raw)} bytes, need at least 348)")
    for order in "<>":
        size = struct.unpack(order + "i", raw[:4])[0]
        if size == 348:
            magic = raw[344:348]
            if magic == b"ni1\x00":
                raise ImageFormatError(f"{name}: NIfTI-1 header/image pairs (.hdr/.img) are not supported; use a single .nii file")
            if magic != b"n+1\x00":
                raise ImageFormatError(f"{name}: not a NIfTI-1 file (magic {magic!r}, expected b'n+1\\x00')")
            return nibabel.Nifti1Image, 1
        if size == 540:
            if len(raw) < 540 or raw[4:8] != b"n+2\x00":
                raise ImageFormatError(f"{name}: not a single-file NIfTI-2 image (bad magic)")
            return nibabel.Nifti2Image, 2
    raise ImageFormatError(f"{name}: not a NIfTI file (header size field is neither 348 nor 540)")


def _orientation_codes(nibabel, affine) -> tuple[str, ...] | None:
    """nibabel's axis codes (e.g. ('R', 'A', 'S')), or None for a degenerate affine: non-finite
    values (the SVD nibabel runs does not converge on NaN) or axes without a direction."""
    affine = np.asarray(affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        return None
    try:
        codes = tuple(nibabel.aff2axcodes(affine))
    except np.linalg.LinAlgError:
        return None
    return None if any(code is None for code in codes) else codes


def _axial_axis(nibabel, affine) -> int:
    """Voxel axis closest to the scanner's inferior-superior axis (world z)."""
    orientation = nibabel.io_orientation(affine)
    for voxel_axis, (world_axis, _flip) in enumerate(orientation):
        if world_axis == 2:
            return voxel_axis
    return 2


def _check_slice(slice_, spatial, name: str):
    try:
        axis, index = (int(v) for v in slice_)
    except (TypeError, ValueError) as exc:
        raise ImageFormatError(f"{name}: slice must be (axis, index), got {slice_!r}") from exc
    if axis not in (0, 1, 2):
        raise ImageFormatError(f"{name}: slice axis must be 0, 1 or 2, got {axis}")
    if not 0 <= index < spatial[axis]:
        raise ImageFormatError(
            f"{name}: slice index {index} out of range for axis {axis}: the volume has {spatial[axis]} slices (0-{spatial[axis] - 1})"
        )
    return axis, index


def _range_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    # a straight linear map low -> 0, high -> 255 (the header's display range)
    width = high - low
    return window_to_uint8(values, low + width / 2 + 0.5, width + 1, "LINEAR")
