"""``vitrine explain``: Grad-CAM heatmap of a classifier, or the class mask of a segmentation model.

    vitrine explain --model REF IMAGE --out overlay.png [--class NAME|INDEX] [--layer NAME]
        [--raw map.npy] [--alpha A]                                     (classifiers)
    vitrine explain --model REF IMAGE --out overlay.png [--mask mask.png] [--raw masks.npy]
                                                                        (segmentation models)

A model whose output is (N, H, W, C) is treated as a segmentation model: the overlay paints each
class, ``--mask`` writes a palette PNG of class indices and the per-class areas are printed.
Otherwise Grad-CAM explains ``--class`` (default: the top class) at ``--layer`` (default: the last
spatial layer); ``--raw`` saves the (H, W) float32 map in [0, 1] at the model's input size.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..errors import ImageFormatError, ModelInputError
from .predict import add_model_options, effective_card, open_model_from_args


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain", help="Grad-CAM heatmap / segmentation mask for one image",
        description="Explain a classifier's decision with Grad-CAM, or show a segmentation model's mask, as a "
                    "PNG overlay on the (resized) image. Images never leave this computer.")
    add_model_options(parser)
    parser.add_argument("image", metavar="IMAGE", help="image file (PNG, JPEG, TIFF, DICOM, NIfTI...)")
    parser.add_argument("--out", type=Path, required=True, metavar="OVERLAY.png", help="overlay PNG to write")
    parser.add_argument("--class", dest="class_", default=None, metavar="NAME|INDEX",
                        help="class to explain: a class name from the model card or an index (default: the top class)")
    parser.add_argument("--layer", default=None, metavar="NAME",
                        help="target layer (default: the last layer with a spatial output)")
    parser.add_argument("--raw", type=Path, default=None, metavar="MAP.npy",
                        help="also save the raw map (.npy): Grad-CAM (H, W) float32, or the mask (H, W) int64")
    parser.add_argument("--mask", type=Path, default=None, metavar="MASK.png",
                        help="segmentation models: also write the mask as a palette PNG (pixel = class index)")
    parser.add_argument("--alpha", type=float, default=None, metavar="A",
                        help="overlay opacity in [0, 1] (default 0.4 for heatmaps, 0.5 for masks)")
    parser.add_argument("--threshold", type=float, default=0.5, metavar="T",
                        help="single-channel segmentation models: foreground where p > T (default 0.5)")
    try:
        from . import preprocess as image_cli
    except ImportError:  # pragma: no cover - the preprocess command is optional
        image_cli = None
    if image_cli is not None and hasattr(image_cli, "add_image_options"):
        image_cli.add_image_options(parser)
    parser.set_defaults(handler=run)


def class_index_from_arg(value: str | None, classes) -> int | None:
    """``--class`` -> index: an exact class name (case-insensitive) or an integer index."""
    if value is None:
        return None
    names = [str(c) for c in classes]
    lowered = [n.lower() for n in names]
    if value.lower() in lowered:
        return lowered.index(value.lower())
    try:
        index = int(value)
    except ValueError:
        raise ModelInputError(f"--class {value!r} is neither a class name nor an index; classes: "
                              f"{', '.join(names)}") from None
    if not 0 <= index < len(names):
        raise ModelInputError(f"--class {index} is out of range: the model has {len(names)} classes "
                              f"(0..{len(names) - 1}: {', '.join(names)})")
    return index


def run(args) -> int:
    from .. import explain
    from ..imaging import PreprocessSpec, decode_image, preprocess, resized_image
    from ..imaging.display import minmax_to_uint8

    alpha = args.alpha
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ModelInputError(f"--alpha must be in [0, 1], received {alpha}")
    opened = open_model_from_args(args)
    card = effective_card(opened)
    path = Path(args.image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageFormatError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    decode_options = {}
    try:
        from .preprocess import decode_options_from_args

        decode_options = decode_options_from_args(args) or {}
    except ImportError:  # pragma: no cover
        pass
    image = decode_image(data, path.name, **decode_options)
    spec = PreprocessSpec.from_card(card)
    tensor = preprocess(image, spec)
    if getattr(opened.model, "format", None) == "tflite":  # uint8 input: raw pixels (app.tflite.image_input)
        from ..tflite import image_input

        tensor = image_input(opened.model, tensor, spec.standardize)
    background = resized_image(image, spec)
    if background.dtype != np.uint8:
        background = minmax_to_uint8(background)[0]
    model = opened.model
    output_shape = model.output_shape
    if isinstance(output_shape, tuple) and len(output_shape) == 4:
        return _segment(args, model, card, tensor, background, 0.5 if alpha is None else alpha, explain)
    class_index = class_index_from_arg(args.class_, card.classes)
    result = explain.compute_gradcam(model, tensor, class_index=class_index, layer=args.layer)
    heatmap = result.heatmap[0]
    args.out.write_bytes(explain.heatmap_overlay_png(background, heatmap, 0.4 if alpha is None else alpha))
    chosen = int(result.class_index[0])
    name = card.classes[chosen] if chosen < len(card.classes) else f"class {chosen}"
    print(f"{path.name}: Grad-CAM for class {chosen} ({name}, logit {result.logits[0, chosen]:.4g}) at layer "
          f"{result.layer!r} ({result.layer_heatmap.shape[1]}x{result.layer_heatmap.shape[2]} -> "
          f"{heatmap.shape[0]}x{heatmap.shape[1]})")
    print(f"vitrine: wrote {args.out}", file=sys.stderr)
    if args.raw:
        np.save(args.raw, heatmap)
        print(f"vitrine: wrote {args.raw}", file=sys.stderr)
    return 0


def _segment(args, model, card, tensor, background, alpha, explain) -> int:
    if args.class_ is not None or args.layer is not None:
        raise ModelInputError("--class and --layer apply to Grad-CAM on classifiers; this is a segmentation model "
                              f"(output shape {model.output_shape})")
    output = model.predict(tensor)
    mask = explain.masks_from_output(output, threshold=args.threshold)[0]
    channels = output.shape[-1]
    names = list(card.classes) if len(card.classes) == max(channels, 2) else (
        ["background", "foreground"] if channels == 1 else [f"class {i}" for i in range(channels)])
    classes = len(names)
    args.out.write_bytes(explain.mask_overlay_png(background, mask, classes, alpha))
    print(f"vitrine: wrote {args.out}", file=sys.stderr)
    for area in explain.class_areas(mask, names):
        print(f"{area.index:3d} {area.name:<24} {area.pixels:8d} px {100 * area.fraction:6.2f} %")
    if args.mask:
        args.mask.write_bytes(explain.mask_png(mask, classes))
        print(f"vitrine: wrote {args.mask}", file=sys.stderr)
    if args.raw:
        np.save(args.raw, mask)
        print(f"vitrine: wrote {args.raw}", file=sys.stderr)
    return 0
