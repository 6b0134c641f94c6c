"""Intensity standardisation exactly as AUCMEDI's ``Standardize`` subfunction (aucmedi 0.11.0,
``aucmedi/data_processing/subfunctions/standardize.py``) applies it, without TensorFlow.

AUCMEDI applies it to the *resized* image in the dtype it was loaded in (uint8 for Pillow
images): ``z-score``/``minmax``/``grayscale`` compute with numpy in float64 over the whole image
(``per_channel=False``, ``smooth=1e-6``); ``tf``/``torch``/``caffe`` call Keras
``imagenet_utils.preprocess_input`` which first casts to float32 and then works in float32.
Formulas are in ``docs/imaging.md``. The result is always returned as float32 (what a Keras /
TF.js model is fed).
"""

from __future__ import annotations

import numpy as np

from ..errors import PreprocessError

STANDARDIZE_MODES = ("z-score", "minmax", "grayscale", "tf", "caffe", "torch")
SMOOTH = 0.000001  # AUCMEDI's default epsilon

# Keras imagenet_utils constants (channels_last)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def standardize(image: np.ndarray, mode: str | None) -> np.ndarray:
    """Standardise an H x W x C image with an AUCMEDI mode; ``None`` only casts to float32."""
    array = np.asarray(image)
    if mode is None:
        return array.astype(np.float32)
    if mode not in STANDARDIZE_MODES:
        raise PreprocessError(
            f"standardize: unknown mode {mode!r}; supported: {', '.join(STANDARDIZE_MODES)} or none"
        )
    if array.size == 0:
        raise PreprocessError("standardize: the image is empty")
    if mode == "z-score":
        mean = np.mean(array)
        std = np.std(array)
        return ((array - mean + SMOOTH) / (std + SMOOTH)).astype(np.float32)
    if mode in ("minmax", "grayscale"):
        low, high = np.min(array), np.max(array)
        # AUCMEDI subtracts in the array's dtype; promote first so uint8 cannot wrap around
        scaled = (array.astype(np.float64) - low + SMOOTH) / (float(high) - float(low) + SMOOTH)
        if mode == "grayscale":
            scaled = np.around(scaled * 255, decimals=0)
        return scaled.astype(np.float32)
    low, high = np.min(array), np.max(array)
    if low < 0 or high > 255:
        raise PreprocessError(
            f"standardize: mode {mode!r} needs intensities in [0, 255] (AUCMEDI/Keras "
            f"preprocess_input), got min {low} max {high}"
        )
    x = array.astype(np.float32)  # Keras: non-float input is cast to floatx() first
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    channels = x.shape[-1] if x.ndim == 3 else 1
    if channels != 3:
        raise PreprocessError(
            f"standardize: mode {mode!r} needs a 3-channel RGB image (ImageNet statistics per channel), "
            f"got {channels} channel(s)"
        )
    if mode == "torch":
        x /= 255.0
        for c in range(3):
            x[..., c] -= TORCH_MEAN[c]
        for c in range(3):
            x[..., c] /= TORCH_STD[c]
        return x
    # caffe: RGB -> BGR, zero-centre with the ImageNet BGR means, no scaling
    x = np.ascontiguousarray(x[..., ::-1])
    for c in range(3):
        x[..., c] -= CAFFE_MEAN_BGR[c]
    return x
