"""``vitrine preprocess IMAGE``: write exactly the float32 NHWC tensor (batch of one) a model sees,
and a viewable preview of the resized image.

``--model`` takes every model reference ``vitrine predict`` does (Zenodo record, DOI, URL, catalog
id, local zip / folder / ``.tflite``, with ``--zenodo-url`` / ``--catalog`` / the cache); its card
gives the preprocessing, explicit flags override it.

Also exports the image options shared with ``vitrine predict``: :func:`add_image_options` and
:func:`decode_options_from_args`.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from ..errors import ImageFormatError, PreprocessError


def add_image_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--frame N``, ``--window CENTER WIDTH`` and ``--slice AXIS:INDEX`` to ``parser``."""
    group = parser.add_argument_group("image decoding (DICOM / NIfTI / multi-page)")
    group.add_argument("--frame", type=int, default=None, metavar="N",
                       help="frame of a multi-frame DICOM/TIFF (default: middle DICOM frame, first page otherwise)")
    group.add_argument("--window", type=float, nargs=2, default=None, metavar=("CENTER", "WIDTH"),
                       help="intensity window for grayscale images, overriding the file's (DICOM Window Center/Width)")
    group.add_argument("--slice", dest="slice_", type=_parse_slice, default=None, metavar="AXIS:INDEX",
                       help="NIfTI slice: voxel axis 0-2 and index (default: middle axial slice)")


def _parse_slice(text: str) -> tuple[int, int]:
    try:
        axis_text, index_text = text.split(":")
        return int(axis_text), int(index_text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--slice expects AXIS:INDEX such as 2:40, got {text!r}") from exc


def decode_options_from_args(args: argparse.Namespace) -> dict:
    """Keyword arguments for :func:`app.imaging.decode_image` from parsed image options."""
    window = getattr(args, "window", None)
    return {
        "frame": getattr(args, "frame", None),
        "window": tuple(window) if window is not None else None,
        "slice_": getattr(args, "slice_", None),
    }


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "preprocess",
        help="write the exact float32 tensor a model sees for an image (and a preview PNG)",
        description=(
            "Decode IMAGE (PNG, JPEG, BMP, TIFF, WebP, DICOM, NIfTI) and preprocess it as the model card "
            "says (AUCMEDI order: channels -> optional square padding -> OpenCV-compatible resize -> "
            "standardize). Flags override the card; without --model, --size, --resize-mode, --standardize "
            "and --channels are required."
        ),
    )
    parser.add_argument("image", help="image file")
    from .predict import add_model_options  # predict imports this module lazily: no cycle

    add_model_options(parser, required=False, purpose=" whose card gives the preprocessing")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="model input height and width")
    parser.add_argument("--resize-mode", type=int, default=None, choices=range(5), metavar="K",
                        help="OpenCV interpolation code: 0 nearest, 1 linear, 2 cubic, 3 area, 4 lanczos4")
    parser.add_argument("--standardize", default=None, metavar="MODE",
                        help="torch, tf, caffe, z-score, minmax, grayscale or none")
    parser.add_argument("--channels", type=int, default=None, choices=(1, 3), help="1 (grayscale) or 3 (RGB)")
    parser.add_argument("--pad-square", action="store_true", default=None,
                        help="pad to a square first (AUCMEDI Padding(mode='square'), edge mode)")
    add_image_options(parser)
    parser.add_argument("--out", default=None, help="write the (1, H, W, C) float32 tensor here (.npy); default IMAGE.npy")
    parser.add_argument("--png", default=None, help="write a preview PNG of the resized image (before standardization)")
    parser.set_defaults(handler=run)


def spec_from_args(args: argparse.Namespace):
    """The :class:`PreprocessSpec` from ``--model``'s card overridden by explicit flags."""
    from ..imaging import PreprocessSpec

    overrides = {
        "size": tuple(args.size) if args.size is not None else None,
        "resize_mode": args.resize_mode,
        "standardize": args.standardize,
        "channels": args.channels,
        "pad_square": args.pad_square,
    }
    if args.model is not None:
        from .predict import open_model_from_args

        opened = open_model_from_args(args)
        card = opened.card
        # what the card leaves open (input_size / channels = None) comes from the model's input shape
        fallback = _shape_fallback(getattr(opened.model, "input_shape", None))
        if card is None:
            missing = [flag for flag, key in (("--resize-mode", "resize_mode"), ("--standardize", "standardize"))
                       if overrides[key] is None]
            if missing:
                raise PreprocessError(f"{args.model}: the model has no card; give {', '.join(missing)}")
            card = {}
        for key, card_key in (("size", "input_size"), ("channels", "channels")):
            card_value = card.get(card_key) if isinstance(card, dict) else getattr(card, card_key, None)
            if card_value is None and overrides[key] is None and key in fallback:
                overrides[key] = fallback[key]
        return PreprocessSpec.from_card(card, **overrides)
    missing = [flag for flag, key in (("--size", "size"), ("--resize-mode", "resize_mode"),
                                      ("--standardize", "standardize"), ("--channels", "channels"))
               if overrides[key] is None]
    if missing:
        raise PreprocessError(f"without --model these options are required: {', '.join(missing)}")
    return PreprocessSpec(**{k: v for k, v in overrides.items() if v is not None})


def _shape_fallback(shape) -> dict:
    """(None, H, W, C) -> {"size": (H, W), "channels": C} for the parts that are known."""
    fallback = {}
    if isinstance(shape, (tuple, list)) and len(shape) == 4:
        _, height, width, channels = shape
        if isinstance(height, int) and isinstance(width, int):
            fallback["size"] = (height, width)
        if channels in (1, 3):
            fallback["channels"] = channels
    return fallback


def run(args: argparse.Namespace) -> int:
    from ..imaging import decode_image, preprocess, resized_image

    path = Path(args.image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageFormatError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    spec = spec_from_args(args)
    image = decode_image(data, path.name, **decode_options_from_args(args))
    tensor = preprocess(image, spec)
    out = Path(args.out) if args.out else path.with_name(path.name + ".npy")
    np.save(out, tensor)
    if args.png:
        _write_preview(resized_image(image, spec), Path(args.png))
    print(
        f"{path.name}: {image.metadata.get('format')} {tuple(image.pixels.shape)} -> tensor {tuple(tensor.shape)} float32 "
        f"(resize_mode={spec.resize_mode}, standardize={spec.standardize}, channels={spec.channels}, "
        f"pad_square={spec.pad_square}) min {tensor.min():.4g} max {tensor.max():.4g} -> {out}",
        file=sys.stdout,
    )
    return 0


def _write_preview(resized: np.ndarray, target: Path) -> None:
    from PIL import Image

    from ..imaging.display import minmax_to_uint8

    array = resized if resized.dtype == np.uint8 else minmax_to_uint8(resized)[0]
    array = array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    target.write_bytes(buffer.getvalue())
