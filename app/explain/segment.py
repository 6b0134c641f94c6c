"""Segmentation models (output (N, H, W, C)): class masks, per-class areas, mask / overlay PNGs.

Masks are the argmax over the class channels; a single-channel output (sigmoid) is thresholded
at ``threshold`` (default 0.5; a pixel is foreground when p > threshold, as ``p > 0.5``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ModelInputError, VitrineError
from .overlay import _as_rgb, png_bytes

# Class 0 (background) is black; then well-separated colours (Tableau 10), repeated if needed.
_PALETTE = np.array([
    (0, 0, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
], dtype=np.uint8)


@dataclass(frozen=True)
class ClassArea:
    """Area of one class in one mask: ``pixels`` and ``fraction`` of the mask's pixels."""

    index: int
    name: str
    pixels: int
    fraction: float


def segment(model, x, *, threshold: float = 0.5) -> np.ndarray:
    """Class masks (N, H, W) int64 of a segmentation model on the preprocessed batch ``x``.

    Multi-channel outputs -> argmax over channels; one channel -> ``p > threshold``. Raises
    :class:`~app.errors.ModelInputError` when the model's output is not (N, H, W, C)."""
    return masks_from_output(model.predict(x), threshold=threshold)


def masks_from_output(output, *, threshold: float = 0.5) -> np.ndarray:
    """:func:`segment` on an output array that was already computed."""
    if isinstance(output, (list, tuple)):
        raise ModelInputError(f"segmentation needs a single-output model, this one has {len(output)} outputs")
    output = np.asarray(output)
    if output.ndim != 4:
        raise ModelInputError(f"segmentation needs an output of shape (N, H, W, classes), received {output.shape} "
                              f"(a classifier? use app.explain.gradcam)")
    if output.shape[-1] == 1:
        return (output[..., 0] > threshold).astype(np.int64)
    return np.argmax(output, axis=-1).astype(np.int64)


def class_areas(mask: np.ndarray, class_names: Sequence[str] | int) -> list[ClassArea]:
    """Per-class area of one (H, W) mask; ``class_names`` are the names (or just their number).
    A single-channel model has two classes: background (0) and foreground (1)."""
    names = [f"class {i}" for i in range(class_names)] if isinstance(class_names, int) else list(class_names)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ModelInputError(f"class_areas needs one (H, W) mask, received shape {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() >= len(names)):
        raise ModelInputError(f"mask holds class {int(mask.max())} but only {len(names)} classes are named")
    # np.intp: bincount refuses int64 on 32-bit platforms (Pyodide's wasm32: "cannot cast int64 to int32")
    counts = np.bincount(mask.ravel().astype(np.intp), minlength=len(names))
    total = max(mask.size, 1)
    return [ClassArea(i, names[i], int(counts[i]), float(counts[i]) / total) for i in range(len(names))]


def palette(classes: int) -> np.ndarray:
    """(classes, 3) uint8 colours: class 0 black, then Tableau 10 (cycled)."""
    if classes < 1:
        raise VitrineError(f"palette: need at least one class, received {classes}")
    rest = _PALETTE[1:]
    colours = [_PALETTE[0]] + [rest[(i - 1) % len(rest)] for i in range(1, classes)]
    return np.asarray(colours, dtype=np.uint8)


def mask_png(mask: np.ndarray, classes: int) -> bytes:
    """Palette PNG of one (H, W) mask: pixel value = class index, colours from :func:`palette`."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ModelInputError(f"mask_png needs one (H, W) mask, received shape {mask.shape}")
    if not 1 <= classes <= 256 or (mask.size and (mask.min() < 0 or mask.max() >= classes)):
        raise ModelInputError(f"mask_png: mask values must be class indices 0..{classes - 1} (at most 256 classes)")
    return png_bytes(mask.astype(np.uint8), palette=palette(classes))


def blend_mask(image: np.ndarray, mask: np.ndarray, classes: int, alpha: float = 0.5) -> np.ndarray:
    """uint8 RGB image with each non-background class painted in its palette colour at opacity
    ``alpha``; the mask is resized (nearest, TF half-pixel convention) to the image when needed."""
    if not 0.0 <= alpha <= 1.0:
        raise VitrineError(f"overlay: alpha must be in [0, 1], received {alpha}")
    rgb = _as_rgb(image)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ModelInputError(f"blend_mask needs one (H, W) mask, received shape {mask.shape}")
    if mask.shape != rgb.shape[:2]:
        rows = np.minimum(((np.arange(rgb.shape[0]) + 0.5) * mask.shape[0] / rgb.shape[0]).astype(np.int64),
                          mask.shape[0] - 1)
        cols = np.minimum(((np.arange(rgb.shape[1]) + 0.5) * mask.shape[1] / rgb.shape[1]).astype(np.int64),
                          mask.shape[1] - 1)
        mask = mask[rows][:, cols]
    colours = palette(classes)[mask].astype(np.float32)
    painted = (mask > 0)[..., None]
    mixed = np.where(painted, (1.0 - alpha) * rgb + alpha * colours, rgb)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def mask_overlay_png(image: np.ndarray, mask: np.ndarray, classes: int, alpha: float = 0.5) -> bytes:
    """PNG bytes of :func:`blend_mask`."""
    return png_bytes(blend_mask(image, mask, classes, alpha))
