"""Turn a decoded image into exactly the tensor a model card asks for, in AUCMEDI's order.

AUCMEDI's ``DataGenerator.preprocess_image`` does: load with Pillow and ``convert('RGB')`` (or
``convert('LA')[..., :1]`` for grayscale models) -> subfunctions (``Padding``) -> ``Resize``
(albumentations -> ``cv2.resize`` in the loaded uint8 dtype) -> ``Standardize``. We follow the
same order: channel conversion -> optional square padding -> OpenCV-compatible resize in the
source dtype -> standardisation -> float32 batch of one (1, H, W, C).

The source is ``DecodedImage.display`` by default (8-bit, windowed for DICOM / scaled for 16-bit
and NIfTI): the published models were trained on 8-bit PNG/JPEG exports, and the ``tf``/
``torch``/``caffe`` modes require intensities in [0, 255]. For an 8-bit photo this is bit for bit
AUCMEDI's input. ``source="pixels"`` feeds the raw pixel values instead (e.g. Hounsfield units
with ``z-score``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import PreprocessError
from .resize import INTERPOLATION_NAMES, resize
from .standardize import STANDARDIZE_MODES, standardize

PAD_MODES = ("edge", "constant", "minimum", "maximum", "mean", "median", "reflect", "symmetric", "wrap")
SOURCES = ("display", "pixels")


@dataclass(frozen=True)
class PreprocessSpec:
    """What a model expects: ``size`` = (height, width), ``resize_mode`` = OpenCV interpolation code
    (0 nearest, 1 linear, 2 cubic, 3 area, 4 Lanczos-4), ``standardize`` = AUCMEDI mode or None,
    ``channels`` = 1 or 3, ``pad_square`` = pad to a square first (AUCMEDI ``Padding(mode="square")``,
    i.e. numpy ``edge`` padding split evenly, the extra pixel after), ``pad_mode`` = numpy pad mode
    used for that padding, ``source`` = "display" (default) or "pixels"."""

    size: tuple[int, int]
    resize_mode: int = 1
    standardize: str | None = None
    channels: int = 3
    pad_square: bool = False
    pad_mode: str = "edge"
    source: str = "display"

    def __post_init__(self):
        try:
            height, width = (int(v) for v in self.size)
        except (TypeError, ValueError) as exc:
            raise PreprocessError(f"PreprocessSpec: size must be (height, width), got {self.size!r}") from exc
        if height <= 0 or width <= 0:
            raise PreprocessError(f"PreprocessSpec: size must be positive, got {self.size!r}")
        object.__setattr__(self, "size", (height, width))
        if isinstance(self.resize_mode, bool) or self.resize_mode not in INTERPOLATION_NAMES:
            raise PreprocessError(
                f"PreprocessSpec: resize_mode must be an OpenCV code 0-4 "
                f"({', '.join(f'{k}={v}' for k, v in INTERPOLATION_NAMES.items())}), got {self.resize_mode!r}"
            )
        mode = self.standardize
        if isinstance(mode, str) and mode.lower() in ("none", ""):
            object.__setattr__(self, "standardize", None)
        elif mode is not None and mode not in STANDARDIZE_MODES:
            raise PreprocessError(
                f"PreprocessSpec: standardize must be one of {', '.join(STANDARDIZE_MODES)} or None, got {mode!r}"
            )
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise PreprocessError(f"PreprocessSpec: channels must be 1 or 3, got {self.channels!r}")
        if self.standardize in ("torch", "caffe") and self.channels != 3:
            raise PreprocessError(
                f"PreprocessSpec: standardize={self.standardize!r} needs channels=3 (RGB), got {self.channels}"
            )
        if self.pad_mode not in PAD_MODES:
            raise PreprocessError(f"PreprocessSpec: pad_mode must be one of {', '.join(PAD_MODES)}, got {self.pad_mode!r}")
        if self.source not in SOURCES:
            raise PreprocessError(f"PreprocessSpec: source must be 'display' or 'pixels', got {self.source!r}")

    @classmethod
    def from_card(cls, card, **overrides) -> PreprocessSpec:
        """Build a spec from a model card (attributes or mapping keys ``input_size`` (H, W),
        ``resize_mode``, ``standardize``, ``channels``, ``pad_square``); a missing / None field
        takes the default. ``overrides`` (non-None values) win over the card, e.g. CLI flags."""
        fields = {}
        for card_name, spec_name in (
            ("input_size", "size"),
            ("resize_mode", "resize_mode"),
            ("standardize", "standardize"),
            ("channels", "channels"),
            ("pad_square", "pad_square"),
        ):
            value = card.get(card_name) if isinstance(card, Mapping) else getattr(card, card_name, None)
            if value is not None:
                fields[spec_name] = value
        fields.update({k: v for k, v in overrides.items() if v is not None})
        if "size" not in fields:
            raise PreprocessError("PreprocessSpec.from_card: the model card has no input_size and none was given")
        return cls(**fields)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """H x W (x C) -> H x W x ``channels`` the way AUCMEDI's Pillow loader does it.

    1 -> 3 replicates the gray plane (Pillow ``convert('RGB')``); 2 (gray + alpha) and 4 (RGBA)
    drop alpha (Pillow drops it too); 3 -> 1 uses Pillow's ITU-R 601-2 luma
    ``L = (19595 R + 38470 G + 7471 B + 2**15) >> 16`` for uint8, ``0.299 R + 0.587 G + 0.114 B``
    otherwise.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise PreprocessError(f"preprocess: expected an H x W x {{1,2,3,4}} image, got shape {array.shape}")
    present = array.shape[2]
    if present == 2:
        array = array[:, :, :1]
    elif present == 4:
        array = array[:, :, :3]
    if channels == 3 and array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    if channels == 1 and array.shape[2] == 3:
        if array.dtype == np.uint8:
            rgb = array.astype(np.uint32)
            luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
            return luma.astype(np.uint8)[:, :, None]
        rgb = array.astype(np.float64)
        luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        return luma.astype(array.dtype if array.dtype.kind == "f" else np.float32)[:, :, None]
    return array


def pad_to_square(image: np.ndarray, mode: str = "edge") -> np.ndarray:
    """AUCMEDI ``Padding(mode="square")``: pad H x W x C to max(H, W) on both axes; the padding is
    split ``diff // 2`` before and ``diff // 2 + diff % 2`` after (numpy ``edge`` mode by default)."""
    height, width = image.shape[:2]
    side = max(height, width)
    pads = []
    for length in (height, width):
        diff = side - length
        pads.append((diff // 2, diff // 2 + diff % 2))
    pads.append((0, 0))
    return np.pad(image, pads, mode=mode)


def _source_array(img, spec: PreprocessSpec) -> np.ndarray:
    array = img.display if spec.source == "display" else img.pixels
    array = np.asarray(array)
    if array.size == 0 or array.ndim < 2 or 0 in array.shape[:2]:
        raise PreprocessError(f"preprocess: {getattr(img, 'filename', 'image')}: the image is empty (shape {array.shape})")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind in "iu" and array.dtype not in (np.uint8, np.uint16, np.int16):
        array = array.astype(np.float32)
    elif array.dtype.kind == "f" and array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float32)
    return array


def resized_image(img, spec: PreprocessSpec) -> np.ndarray:
    """The image after channel conversion, padding and resizing, before standardisation
    (H x W x C in the source dtype: uint8 for the display source). Used for previews."""
    array = to_channels(_source_array(img, spec), spec.channels)
    if spec.pad_square:
        array = pad_to_square(array, spec.pad_mode)
    return resize(array, spec.size, spec.resize_mode)


def preprocess(img, spec: PreprocessSpec) -> np.ndarray:
    """Return exactly what the model sees: float32 of shape (1, H, W, C)."""
    if not isinstance(spec, PreprocessSpec):
        raise PreprocessError(f"preprocess: spec must be a PreprocessSpec, got {type(spec).__name__}")
    resized = resized_image(img, spec)
    tensor = standardize(resized, spec.standardize)
    if resized.ndim == 2:
        tensor = tensor[:, :, None]
    return np.ascontiguousarray(tensor[None], dtype=np.float32)
