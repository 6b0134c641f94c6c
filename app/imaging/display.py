"""What a human sees: intensity windows to 8 bits, thumbnails and display PNGs for the UI.

Pure numpy + Pillow so the worker can make them in the browser. The windowing formulas are the
DICOM ones (PS3.3 C.11.2.1.2); they are also used for user windows on 16-bit images and NIfTI.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..errors import ImageFormatError

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def window_to_uint8(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Map ``values`` through a DICOM VOI window onto 0..255 (rounded half to even).

    LINEAR: ``x <= c - 0.5 - (w-1)/2 -> 0``, ``x > c - 0.5 + (w-1)/2 -> 255``, else
    ``((x - (c - 0.5)) / (w - 1) + 0.5) * 255``. LINEAR_EXACT: ``((x - c) / w + 0.5) * 255``
    clipped. SIGMOID: ``255 / (1 + exp(-4 (x - c) / w))``.
    """
    x = np.asarray(values, dtype=np.float64)
    center = float(center)
    width = float(width)
    function = (function or "LINEAR").upper()
    if function not in VOI_FUNCTIONS:
        raise ImageFormatError(f"VOI LUT function {function!r} is not supported ({', '.join(VOI_FUNCTIONS)})")
    if function == "LINEAR":
        if width < 1:
            raise ImageFormatError(f"window width must be >= 1 for a LINEAR window, got {width}")
        low = center - 0.5 - (width - 1) / 2
        high = center - 0.5 + (width - 1) / 2
        if width == 1:  # a threshold: the linear ramp has zero length
            y = np.where(x <= low, 0.0, 255.0)
        else:
            y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0
            y = np.where(x <= low, 0.0, np.where(x > high, 255.0, y))
    elif function == "LINEAR_EXACT":
        if width <= 0:
            raise ImageFormatError(f"window width must be > 0 for LINEAR_EXACT, got {width}")
        y = ((x - center) / width + 0.5) * 255.0
    else:
        if width <= 0:
            raise ImageFormatError(f"window width must be > 0 for SIGMOID, got {width}")
        y = 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def minmax_to_uint8(values: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Scale linearly so the minimum maps to 0 and the maximum to 255; returns the array and the
    (min, max) used. A constant image maps to 0."""
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros(x.shape, dtype=np.uint8), (0.0, 0.0)
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros(x.shape, dtype=np.uint8), (low, high)
    y = (np.nan_to_num(x, nan=low, posinf=high, neginf=low) - low) / (high - low) * 255.0
    return np.clip(np.rint(y), 0, 255).astype(np.uint8), (low, high)


def _pil_from_display(img) -> Image.Image:
    display = np.asarray(img.display)
    if display.dtype != np.uint8 or display.ndim not in (2, 3) or (display.ndim == 3 and display.shape[2] != 3):
        raise ImageFormatError(
            f"{getattr(img, 'filename', 'image')}: display image must be uint8 H x W or H x W x 3, "
            f"got {display.dtype} {display.shape}"
        )
    return Image.fromarray(np.ascontiguousarray(display))  # uint8 H x W -> "L", H x W x 3 -> "RGB"


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_thumbnail(img, max_side: int = 128) -> bytes:
    """PNG bytes of the display image shrunk (aspect kept) so its longer side is ``max_side``."""
    if int(max_side) < 1:
        raise ImageFormatError(f"thumbnail max_side must be >= 1, got {max_side}")
    image = _pil_from_display(img)
    image.thumbnail((int(max_side), int(max_side)), Image.Resampling.LANCZOS)
    return _png_bytes(image)


def display_image(img, max_side: int | None = None) -> bytes:
    """PNG bytes of what a human should see (DICOM windowed, 16-bit/NIfTI scaled), optionally
    shrunk to ``max_side``; never upscaled."""
    image = _pil_from_display(img)
    if max_side is not None and max(image.size) > int(max_side):
        image.thumbnail((int(max_side), int(max_side)), Image.Resampling.LANCZOS)
    return _png_bytes(image)
