"""NIfTI-1 / NIfTI-2 (``.nii``, ``.nii.gz``) through nibabel (pure Python, imported lazily).

One 2-D slice is shown: ``slice_ = (voxel axis, index)``, default the middle slice along the
voxel axis that points superior/inferior (axial) according to the affine; 4-D+ volumes use
their first volume. The slice is rotated by ``np.rot90`` so that, for the usual RAS+/LAS+
storage, anterior is up as in radiology viewers. ``pixels`` are nibabel's scaled values
(``scl_slope`` / ``scl_inter`` applied, as ``get_fdata``) in float32; ``display`` is the user's
window, else the header's ``cal_min..cal_max``, else the slice's min..max, mapped to 0..255.
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


def decode_nifti(data: bytes, name: str, *, slice_=None, window=None) -> DecodedImage:
    """Decode one slice of a NIfTI file; see the module docstring."""
    nibabel = _import_nibabel(name)
    compressed = data[:2] == b"\x1f\x8b"
    raw = gunzip_capped(data, name) if compressed else data
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
    default_axis = _axial_axis(nibabel, image.affine) if len(shape) >= 3 else 2
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
        "orientation": "".join(nibabel.aff2axcodes(image.affine)),
        "voxel_size": [float(v) for v in image.header.get_zooms()[:3]],
        "slice_axis": axis,
        "slice_index": index,
        "slices": spatial[axis],
        "volume": 0 if len(shape) > 3 else None,
        "volumes": int(np.prod(shape[3:], dtype=np.int64)) if len(shape) > 3 else 1,
        "size": [int(pixels.shape[0]), int(pixels.shape[1])],
        "bits": itemsize * 8,
    }
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
