"""What the page shows for one image: Grad-CAM or segmentation results as arrays and PNG bytes.

The worker's ``explain`` / ``segment`` calls (``app/service.py``, docs/worker-api.md) are thin
wrappers around :func:`explain_image` and :func:`segment_image`; the main thread only displays the
PNGs. Layers are separate images so the page can change the opacity without asking the worker
again: the background (the resized image before standardisation, at the model's input size), the
jet-coloured heatmap (opaque RGB) and the class-coloured mask (RGBA, background transparent).
Shown with CSS opacity ``a`` over the background they look exactly like :func:`blend_heatmap` /
:func:`blend_mask` at ``alpha = a``; ``overlay_png`` is that blend, made here, for a static copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ModelInputError
from .gradcam import compute_gradcam, source_graph_of, spatial_layers
from .overlay import heatmap_overlay_png, jet, png_bytes
from .segment import class_areas, mask_overlay_png, mask_png, masks_from_output, palette


@dataclass(frozen=True)
class ExplainedImage:
    """Grad-CAM of one image, ready to show.

    ``heatmap`` (H, W) float32 in [0, 1] at the model's input size; ``layer_heatmap`` (h, w) at the
    target layer's resolution; ``class_index`` / ``class_name`` the explained class; ``logit`` its
    score; ``layer`` the target layer and ``layers`` every layer that could be chosen instead.
    PNG bytes: ``image_png`` (background), ``heatmap_png`` (jet colours, opaque), ``overlay_png``
    (blend at ``alpha``), ``scale_png`` (the colour scale, 0 on the left, 1 on the right)."""

    heatmap: np.ndarray
    layer_heatmap: np.ndarray
    class_index: int
    class_name: str
    logit: float
    layer: str
    layers: tuple[str, ...]
    alpha: float
    image_png: bytes
    heatmap_png: bytes
    overlay_png: bytes
    scale_png: bytes


@dataclass(frozen=True)
class SegmentedImage:
    """Mask of one image, ready to show and export.

    ``mask`` (H, W) int64 class indices at the model's input size; ``class_names`` one per class
    (a single-channel model has two: background and foreground); ``colours`` (K, 3) uint8, class 0
    black; ``areas`` per class (``app.explain.ClassArea``). PNG bytes: ``image_png`` (background),
    ``mask_rgba_png`` (class colours, class 0 transparent), ``overlay_png`` (blend at ``alpha``),
    ``mask_png`` (palette PNG, pixel value = class index: the file to export)."""

    mask: np.ndarray
    class_names: tuple[str, ...]
    colours: np.ndarray
    areas: tuple
    alpha: float
    image_png: bytes
    mask_rgba_png: bytes
    overlay_png: bytes
    mask_png: bytes


def resolve_class(value: Any, classes: Sequence[str]) -> int | None:
    """A class given as an index (int) or a name (str, case-insensitive, or a decimal index) ->
    index; ``None`` stays ``None`` (the top class). Raises :class:`ModelInputError` naming the
    classes when it matches none."""
    if value is None:
        return None
    names = [str(c) for c in classes]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ModelInputError(f"class must be a class index (int) or a class name (str), received "
                              f"{type(value).__name__} {value!r}")
    if isinstance(value, str):
        lowered = [n.lower() for n in names]
        if value.strip().lower() in lowered:
            return lowered.index(value.strip().lower())
        if not value.strip().lstrip("-").isdigit():
            raise ModelInputError(f"class {value!r} is not one of the model's classes: {', '.join(names)}")
        value = int(value.strip())
    if not 0 <= value < len(names):
        raise ModelInputError(f"class index {value} is out of range: the model has {len(names)} classes "
                              f"(0..{len(names) - 1}: {', '.join(names)})")
    return value


def is_segmentation_model(model) -> bool:
    """True when the model has one output of rank 4 (N, H, W, C): a segmentation model."""
    shape = getattr(model, "output_shape", None)
    return isinstance(shape, tuple) and len(shape) == 4


def segmentation_class_names(card_classes: Sequence[str], channels: int) -> tuple[str, ...]:
    """Class names for a mask of a ``channels``-channel output: the card's when they fit (one per
    channel, or two for a single sigmoid channel), else ``background`` / ``foreground`` (one
    channel) or ``class 0..C-1``."""
    wanted = max(int(channels), 2)
    if len(card_classes) == wanted:
        return tuple(str(c) for c in card_classes)
    if channels == 1:
        return ("background", "foreground")
    return tuple(f"class {i}" for i in range(channels))


def explain_image(model, tensor: np.ndarray, background: np.ndarray, classes: Sequence[str], *,
                  class_index: int | None = None, layer: str | None = None, alpha: float = 0.4) -> ExplainedImage:
    """Grad-CAM of the one preprocessed image ``tensor`` (1, H, W, C) for ``class_index`` (None:
    the top class) at ``layer`` (None: the last spatial layer), drawn over ``background`` (uint8,
    the resized image before standardisation)."""
    _check_alpha(alpha)
    source_graph_of(model)  # a model without a layer graph is refused, saying why
    if is_segmentation_model(model):
        raise ModelInputError(f"this is a segmentation model (output shape {_fmt(model.output_shape)}): "
                              f"it has masks, not Grad-CAM heatmaps; use the mask view")
    result = compute_gradcam(model, tensor, class_index=class_index, layer=layer)
    chosen = int(result.class_index[0])
    heatmap = result.heatmap[0]
    return ExplainedImage(
        heatmap=heatmap, layer_heatmap=result.layer_heatmap[0], class_index=chosen,
        class_name=str(classes[chosen]) if chosen < len(classes) else f"class {chosen}",
        logit=float(result.logits[0, chosen]), layer=result.layer, layers=tuple(spatial_layers(model)),
        alpha=float(alpha), image_png=png_bytes(_rgb(background)), heatmap_png=png_bytes(jet(heatmap)),
        overlay_png=heatmap_overlay_png(background, heatmap, alpha), scale_png=colour_scale_png())


def segment_image(model, tensor: np.ndarray, background: np.ndarray, card_classes: Sequence[str], *,
                  alpha: float = 0.5, threshold: float = 0.5) -> SegmentedImage:
    """Mask of the one preprocessed image ``tensor`` (1, H, W, C) of a segmentation model: argmax
    over the class channels (one channel: ``p > threshold``), areas and PNGs."""
    _check_alpha(alpha)
    if not 0.0 < threshold < 1.0:
        raise ModelInputError(f"threshold must be between 0 and 1, received {threshold}")
    output = model.predict(tensor)
    mask = masks_from_output(output, threshold=threshold)[0]
    channels = int(np.asarray(output if not isinstance(output, (list, tuple)) else output[0]).shape[-1])
    names = segmentation_class_names(card_classes, channels)
    colours = palette(len(names))
    rgba = np.concatenate([colours[mask], np.where(mask > 0, 255, 0).astype(np.uint8)[..., None]], axis=2)
    return SegmentedImage(
        mask=mask, class_names=names, colours=colours, areas=tuple(class_areas(mask, names)), alpha=float(alpha),
        image_png=png_bytes(_rgb(background)), mask_rgba_png=_rgba_png(rgba),
        overlay_png=mask_overlay_png(background, mask, len(names), alpha), mask_png=mask_png(mask, len(names)))


def colour_scale_png(width: int = 256, height: int = 12) -> bytes:
    """The jet colour scale as a PNG, value 0 at the left edge to 1 at the right."""
    row = jet(np.linspace(0.0, 1.0, width, dtype=np.float32))
    return png_bytes(np.ascontiguousarray(np.broadcast_to(row[None], (height, width, 3))))


def _rgb(background: np.ndarray) -> np.ndarray:
    from .overlay import _as_rgb

    return np.ascontiguousarray(_as_rgb(background))


def _rgba_png(rgba: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba, dtype=np.uint8), mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def _check_alpha(alpha) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ModelInputError(f"alpha (overlay opacity) must be a number in [0, 1], received {alpha!r}")


def _fmt(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
