"""Medical and ordinary image inputs, and preprocessing exactly as the model expects it.

Public API (pure numpy + Pillow; pydicom / nibabel are imported only for DICOM / NIfTI)::

    img = decode_image(data, filename, frame=None, window=None, slice_=None)   # DecodedImage
    spec = PreprocessSpec(size=(224, 224), resize_mode=1, standardize="torch", channels=3)
    spec = PreprocessSpec.from_card(card)
    x = preprocess(img, spec)            # float32 (1, H, W, C): what the model sees
    png = make_thumbnail(img, max_side=128); png = display_image(img)

See docs/imaging.md for formats, formulas and the AUCMEDI/OpenCV parity figures.
"""

from .decode import MAX_DECODED_BYTES, MAX_PIXELS, DecodedImage, decode_image
from .display import display_image, make_thumbnail
from .preprocess import PreprocessSpec, preprocess, resized_image
from .resize import resize
from .standardize import STANDARDIZE_MODES, standardize

__all__ = [
    "decode_image",
    "DecodedImage",
    "preprocess",
    "PreprocessSpec",
    "resized_image",
    "make_thumbnail",
    "display_image",
    "resize",
    "standardize",
    "STANDARDIZE_MODES",
    "MAX_PIXELS",
    "MAX_DECODED_BYTES",
]
