"""Decode image bytes (PNG, JPEG, BMP, TIFF, WebP, GIF, DICOM, NIfTI) into a :class:`DecodedImage`.

Every failure is an :class:`~app.errors.ImageFormatError` whose message starts with the file name
and says why. Size caps guard against decompression bombs before pixels are allocated.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageFormatError
from .display import minmax_to_uint8, window_to_uint8

#: Largest image (pixels per frame / slice) we decode: 8192 x 8192.
MAX_PIXELS = 1 << 26
#: Largest declared decoded size of a DICOM pixel-data element or a (decompressed) NIfTI file.
MAX_DECODED_BYTES = 512 * 1024 * 1024

PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF")
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class DecodedImage:
    """One decoded image.

    ``pixels``: H x W or H x W x C array of the stored values (float32 after a DICOM rescale,
    otherwise the original dtype, uint8 / uint16). ``display``: uint8 H x W or H x W x 3, what a
    human should see (DICOM windowed, 16-bit and NIfTI scaled). ``metadata``: non-identifying facts
    (format, modality, bits, photometric, frames, frame used, window used, size...). ``phi``:
    patient-identifying DICOM attributes, kept apart and never shown or exported unless the user
    opts in (and left out of ``repr``).
    """

    pixels: np.ndarray = field(repr=False)
    display: np.ndarray = field(repr=False)
    metadata: dict[str, Any]
    phi: dict[str, str] = field(default_factory=dict, repr=False)
    filename: str = ""


def decode_image(
    data: bytes,
    filename: str,
    *,
    frame: int | None = None,
    window: tuple[float, float] | None = None,
    slice_: tuple[int, int] | None = None,
) -> DecodedImage:
    """Decode ``data`` (the file's bytes) named ``filename``.

    ``frame``: frame of a multi-frame DICOM / TIFF / GIF (default: the middle one for DICOM, the
    first otherwise). ``window``: (center, width) overriding the file's window (grayscale only).
    ``slice_``: (voxel axis, index) of a NIfTI volume (default: middle axial slice).
    """
    name = str(filename)
    if data is None or len(data) == 0:
        raise ImageFormatError(f"{name}: the file is empty (0 bytes)")
    data = bytes(data)
    if window is not None:
        window = _check_window(window, name)
    lower = name.lower()
    # a PNG/JPEG/... saved with a .dcm name is still decoded by what its signature says
    if is_dicom(data) or (lower.endswith(DICOM_SUFFIXES) and sniff_format(data) is None):
        from .dicom import decode_dicom

        return decode_dicom(data, name, frame=frame, window=window)
    if lower.endswith(NIFTI_SUFFIXES) or is_nifti(data):
        from .nifti import decode_nifti

        return decode_nifti(data, name, slice_=slice_, window=window)
    return decode_pillow(data, name, frame=frame, window=window)


def is_dicom(data: bytes) -> bool:
    """True when the DICOM Part 10 prefix ``DICM`` sits after the 128-byte preamble."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def is_nifti(data: bytes) -> bool:
    """True for an uncompressed NIfTI-1 / NIfTI-2 single-file header (magic ``n+1`` / ``n+2``)."""
    if len(data) >= 348 and data[344:348] == b"n+1\x00":
        return True
    return len(data) >= 540 and data[4:8] == b"n+2\x00"


def sniff_format(data: bytes) -> str | None:
    """The image format announced by the file's signature bytes, if any."""
    signatures = (
        (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
        (b"MM\x00*", "TIFF"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    )
    for signature, fmt in signatures:
        if data.startswith(signature):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _check_window(window, name: str) -> tuple[float, float]:
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise ImageFormatError(f"{name}: window must be (center, width) numbers, got {window!r}") from exc
    if not (np.isfinite(center) and np.isfinite(width)) or width < 1:
        raise ImageFormatError(f"{name}: window width must be a finite number >= 1, got {window!r}")
    return center, width


def gray_display(values: np.ndarray, window: tuple[float, float] | None, file_window=None, function="LINEAR"):
    """8-bit display of a grayscale plane: the user's window, else the file's window, else min..max.
    Returns (display, metadata about the window used)."""
    if window is not None:
        center, width = window
        return window_to_uint8(values, center, width, "LINEAR"), {"window": [center, width], "window_source": "user"}
    if file_window is not None:
        center, width = file_window
        return window_to_uint8(values, center, width, function), {
            "window": [center, width],
            "window_source": "file",
            "voi_function": function,
        }
    display, (low, high) = minmax_to_uint8(values)
    return display, {"window": [(low + high) / 2, high - low], "window_source": "min-max"}


def check_pixel_budget(name: str, height: int, width: int, frames: int = 1, bytes_per_pixel: int = 1) -> None:
    """Refuse images whose declared size exceeds :data:`MAX_PIXELS` per frame or
    :data:`MAX_DECODED_BYTES` in all (decompression bombs)."""
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"{name}: zero-size image ({height} x {width})")
    if height * width > MAX_PIXELS:
        raise ImageFormatError(
            f"{name}: image of {width} x {height} = {width * height} pixels exceeds the limit of "
            f"{MAX_PIXELS} pixels (possible decompression bomb)"
        )
    total = height * width * max(frames, 1) * max(bytes_per_pixel, 1)
    if total > MAX_DECODED_BYTES:
        raise ImageFormatError(
            f"{name}: declared pixel data of {total} bytes ({frames} frame(s) of {width} x {height}, "
            f"{bytes_per_pixel} byte(s) per pixel) exceeds the limit of {MAX_DECODED_BYTES} bytes "
            "(possible decompression bomb)"
        )


# ----------------------------------------------------------------------------------------------
# Pillow formats


def decode_pillow(data: bytes, name: str, *, frame: int | None = None, window=None) -> DecodedImage:
    """PNG / JPEG / BMP / TIFF / WebP / GIF via Pillow, EXIF orientation applied."""
    with warnings.catch_warnings():
        # Pillow's own bomb check warns between 1x and 2x its limit: make that an error too
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(PILLOW_FORMATS))
        except UnidentifiedImageError as exc:
            sniffed = sniff_format(data)
            if sniffed is not None:
                raise ImageFormatError(f"{name}: corrupt {sniffed} file (the signature is {sniffed} but Pillow cannot read it)") from exc
            raise ImageFormatError(
                f"{name}: not a recognised image (expected {', '.join(PILLOW_FORMATS)}, DICOM or NIfTI)"
            ) from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageFormatError(f"{name}: image too large (possible decompression bomb): {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
            raise ImageFormatError(f"{name}: corrupt {type(exc).__name__}: {exc}") from exc
        source_format = image.format
        width, height = image.size
        check_pixel_budget(name, height, width)
        n_frames = int(getattr(image, "n_frames", 1) or 1)
        index = 0 if frame is None else int(frame)
        if not 0 <= index < n_frames:
            raise ImageFormatError(f"{name}: frame {index} out of range: the file has {n_frames} frame(s) (0-{n_frames - 1})")
        try:
            if index:
                image.seek(index)
            image.load()
            orientation = image.getexif().get(0x0112, 1) if hasattr(image, "getexif") else 1
            image = ImageOps.exif_transpose(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageFormatError(f"{name}: image too large (possible decompression bomb): {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError) as exc:
            raise ImageFormatError(f"{name}: truncated or corrupt {image.format or 'image'} data: {exc}") from exc
    pixels, display, extra = _pillow_arrays(image, name, window)
    metadata = {
        "format": source_format,
        "mode": image.mode,
        "bits": extra.pop("bits"),
        "size": [int(pixels.shape[0]), int(pixels.shape[1])],
        "channels": 1 if pixels.ndim == 2 else int(pixels.shape[2]),
        "frames": n_frames,
        "frame": index,
        "exif_orientation": int(orientation),
        **extra,
    }
    return DecodedImage(pixels=pixels, display=display, metadata=metadata, phi={}, filename=name)


def _pillow_arrays(image: Image.Image, name: str, window):
    """(pixels, display, extra metadata) for each Pillow mode."""
    mode = image.mode
    extra: dict[str, Any] = {}
    if mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "La", "RGBa"):
        if mode == "1":
            image = image.convert("L")
        elif mode in ("P", "PA"):
            has_alpha = mode == "PA" or "transparency" in image.info
            image = image.convert("RGBA" if has_alpha else "RGB")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
            image = image.convert("RGB")
        elif mode == "La":
            image = image.convert("LA")
        elif mode == "RGBa":
            image = image.convert("RGBA")
        pixels = np.asarray(image).copy()
        extra["bits"] = 8
        if pixels.ndim == 2:
            display = pixels if window is None else window_to_uint8(pixels, *window)
            if window is not None:
                extra.update(window=list(window), window_source="user")
        elif pixels.shape[2] == 2:  # gray + alpha: alpha dropped like Pillow's convert
            display = pixels[:, :, 0].copy() if window is None else window_to_uint8(pixels[:, :, 0], *window)
            if window is not None:
                extra.update(window=list(window), window_source="user")
        else:
            display = np.ascontiguousarray(pixels[:, :, :3])
            if window is not None:
                extra["window_ignored"] = "colour image"
        return pixels, display, extra
    if mode.startswith("I;16") or mode in ("I", "F"):
        pixels = np.asarray(image)
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
        if mode == "I":
            if pixels.size and pixels.min() >= 0 and pixels.max() <= 65535:
                pixels = pixels.astype(np.uint16)
            else:
                pixels = pixels.astype(np.float32)
        elif mode == "F":
            pixels = pixels.astype(np.float32)
        elif mode == "I;16S":
            pixels = pixels.astype(np.int16)
        else:
            pixels = pixels.astype(np.uint16)
        extra["bits"] = 32 if mode in ("I", "F") and pixels.dtype != np.uint16 else 16
        display, window_info = gray_display(pixels, window)
        extra.update(window_info)
        return pixels, display, extra
    raise ImageFormatError(f"{name}: Pillow image mode {mode!r} is not supported")
