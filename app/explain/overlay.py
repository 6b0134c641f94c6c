"""Heatmap colouring and blending onto the image, PNG bytes (numpy + Pillow only)."""

from __future__ import annotations

import io

import numpy as np

from ..errors import VitrineError
from ..kernels.resize import resize


def jet(values: np.ndarray) -> np.ndarray:
    """The classic Grad-CAM "jet" colour map: values in [0, 1] (any shape) -> uint8 RGB (..., 3);
    0 is dark blue, 0.5 green, 1 dark red. Values outside [0, 1] are clipped."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    centers = np.array([0.75, 0.5, 0.25], dtype=np.float32)  # red, green, blue
    rgb = np.clip(1.5 - np.abs(4.0 * v - 4.0 * centers), 0.0, 1.0)
    return np.round(rgb * 255.0).astype(np.uint8)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise VitrineError(f"overlay: the background image must be uint8 (H, W[, 1|3|4]), received {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise VitrineError(f"overlay: the background image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
                           f"received shape {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def blend_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """uint8 RGB image with the jet-coloured ``heatmap`` (H', W' in [0, 1]) laid over it.

    The heatmap is resized bilinearly (half-pixel centers) to the image's size when they differ;
    ``alpha`` is the heatmap's opacity (0 = image only, 1 = heatmap only)."""
    if not 0.0 <= alpha <= 1.0:
        raise VitrineError(f"overlay: alpha must be in [0, 1], received {alpha}")
    rgb = _as_rgb(image)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise VitrineError(f"overlay: the heatmap must be 2-D (H, W), received shape {heatmap.shape}")
    if heatmap.shape != rgb.shape[:2]:
        heatmap = resize(heatmap[None, :, :, None], size=rgb.shape[:2], method="bilinear",
                         half_pixel_centers=True)[0, :, :, 0]
    colours = jet(heatmap).astype(np.float32)
    mixed = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colours
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """PNG bytes of a uint8 (H, W) / (H, W, 3) array; with ``palette`` ((K, 3) uint8) a palette
    ("P" mode) PNG whose pixel values are the indices."""
    from PIL import Image

    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise VitrineError(f"png: expected uint8 pixels, received {array.dtype}")
    if palette is None:
        image = Image.fromarray(array)
    else:
        if array.ndim != 2:
            raise VitrineError(f"png: a palette image must be 2-D (H, W), received shape {array.shape}")
        image = Image.fromarray(array)  # mode "L"; putpalette turns it into "P" keeping the indices
        image.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def heatmap_overlay_png(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> bytes:
    """PNG bytes of :func:`blend_heatmap` (what the CLI writes and the UI shows)."""
    return png_bytes(blend_heatmap(image, heatmap, alpha))
