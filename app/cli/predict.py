"""``vitrine predict``: classify image files with a model from Zenodo, the catalog or disk.

    vitrine predict --model <zenodo:ID | DOI | URL | catalog id | path> IMAGE... \\
        [--csv out.csv] [--json out.json] [--zenodo-url URL] [--file NAME] [--no-cache] [--catalog FILE]

Prints a table of class probabilities per image. Downloaded models are cached under
``$XDG_CACHE_HOME/vitrine`` (or ``~/.cache/vitrine``), keyed by record id + MD5 and re-verified
on reuse. A corrupt image is reported on its own line and does not stop the batch; the exit code
is 0 if at least one image was classified, 1 if none was, 2 if the model could not be used.

:func:`add_model_options` and :func:`open_model_from_args` are shared with the other commands
that take ``--model`` (``vitrine explain``, ``vitrine preprocess``). ``--catalog FILE`` replaces the
shipped catalog with a catalog file (Vitrine's format or WebIPred's ``catalog-all.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import DownloadError, ModelFormatError, ModelSourceError, VitrineError
from ..modelcard import ModelCard
from ..sources import ACCEPTED_FORMS, ModelCache, OpenedModel, default_cache_dir, open_model, resolve
from ..zenodo import DEFAULT_ZENODO_URL, AmbiguousModelFileError, ZenodoClient

WIDE_TABLE_MAX_CLASSES = 8


def add_model_options(parser: argparse.ArgumentParser, *, required: bool = True, purpose: str = "") -> None:
    """``--model`` and everything about where it comes from (``--zenodo-url``, ``--file``,
    ``--catalog``, the cache). ``purpose`` is appended to ``--model``'s help."""
    parser.add_argument("--model", required=required, default=None, metavar="REF",
                        help=f"the model{purpose}: {ACCEPTED_FORMS}")
    parser.add_argument("--catalog", type=Path, default=None, metavar="FILE",
                        help="look catalog ids up in this catalog file instead of the shipped catalog: Vitrine's "
                             "format or WebIPred's catalog-all.json (its entries are webipred-<id>)")
    parser.add_argument("--zenodo-url", default=DEFAULT_ZENODO_URL, metavar="URL",
                        help="Zenodo server, without /api (default: %(default)s)")
    parser.add_argument("--file", dest="model_file", metavar="NAME",
                        help="which file of the Zenodo record to use when several could be the model")
    parser.add_argument("--no-cache", action="store_true", help="always download; do not read or write the model cache")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR",
                        help=f"model cache folder (default: {default_cache_dir()})")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="classify images with a model",
        description="Classify image files locally with a TF.js or TFLite model from Zenodo, the catalog or disk.",
        epilog="Exit status: 0 if at least one image was classified, 1 if none was, 2 if the model could not "
               "be resolved, downloaded or loaded. Images never leave this computer.",
    )
    add_model_options(parser)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, TIFF, DICOM, NIfTI...)")
    parser.add_argument("--csv", type=Path, metavar="OUT.csv", help="also write the results as CSV (UTF-8)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write the results as JSON")
    parser.add_argument("--threshold", type=float, metavar="T",
                        help="multi-label models: report classes with probability >= T (default: the card's, 0.5)")
    image_cli = _image_cli()
    if image_cli is not None and hasattr(image_cli, "add_image_options"):
        image_cli.add_image_options(parser)
    parser.set_defaults(handler=run)


def _image_cli():
    """The imaging helper's CLI module (decode options: window, frame, ...), if it exists."""
    import importlib

    try:
        return importlib.import_module(f"{__package__}.preprocess")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.preprocess":
            raise
        return None


def _progress_printer(stream):
    state = {"last": -1}
    interactive = hasattr(stream, "isatty") and stream.isatty()

    def on_progress(done: int, total: int | None) -> None:
        if total:
            percent = int(100 * done / total)
            if interactive and percent != state["last"]:
                stream.write(f"\rdownloading model: {_size(done)} / {_size(total)} ({percent}%)")
                if done >= total:
                    stream.write("\n")
            elif not interactive and done >= total and state["last"] != 100:
                stream.write(f"vitrine: downloaded model: {_size(total)}\n")
            state["last"] = percent
        stream.flush()

    return on_progress


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def open_model_from_args(args, *, stderr=None) -> OpenedModel:
    """Resolve, fetch (with the cache unless ``--no-cache``), unpack and load ``--model``.
    Notices (concept id -> version, rate-limit retries) go to ``stderr``."""
    from ..catalog import load_catalog

    stderr = stderr or sys.stderr

    def notice(message: str) -> None:
        print(f"vitrine: {message}", file=stderr)

    catalog_file = getattr(args, "catalog", None)
    catalog = load_catalog(catalog_file)
    if catalog_file is not None:
        _refuse_bare_number_for_catalog_entry(args.model, catalog, catalog_file)
    client = ZenodoClient(zenodo_url=args.zenodo_url, on_notice=notice)
    try:
        resolved = resolve(args.model, zenodo_url=args.zenodo_url, catalog=catalog,
                           file=getattr(args, "model_file", None), client=client)
    except AmbiguousModelFileError as exc:
        raise AmbiguousModelFileError(f"{exc} with --file NAME, e.g. --file {exc.candidates[0]}", exc.record_id, exc.candidates) from None
    except DownloadError as exc:
        raise _with_server_error_advice(exc) from None
    if resolved.record is not None:
        version = f" version {resolved.record.version}" if resolved.record.version else ""
        print(f"vitrine: model: Zenodo record {resolved.record.id}{version}, file {resolved.file.key}", file=stderr)
    cache = None if args.no_cache else ModelCache(args.cache_dir or default_cache_dir(), on_notice=notice)
    try:
        return open_model(resolved, client=client, cache=cache, on_progress=_progress_printer(stderr))
    except DownloadError as exc:
        raise _with_server_error_advice(exc, record_id=resolved.record.id if resolved.record else None) from None


def _with_server_error_advice(exc: DownloadError, *, record_id: int | None = None) -> DownloadError:
    """``exc`` naming the record (a file download's message names only the file) and, for an
    HTTP 5xx (``exc.status``) that is not already followed by advice, saying what the user can do."""
    message = str(exc)
    if record_id is not None and f"record {record_id}" not in message:
        message = f"Zenodo record {record_id}: {message}"
    status = exc.status
    if status is not None and 500 <= status < 600 and "try again" not in message:
        message += (f"; HTTP {status} is a fault on the Zenodo server's side, not in your request: try again "
                    f"in a few minutes, or download the model yourself and give its path to --model")
    if message == str(exc):
        return exc
    return type(exc)(message, status=status)


def _refuse_bare_number_for_catalog_entry(reference: str, catalog, catalog_file) -> None:
    """``--model 16`` with a WebIPred catalog holding ``webipred-16``: a bare number means Zenodo
    record 16, which is almost certainly not what the user meant; ask which one."""
    from ..catalog import WEBIPRED_ID_PREFIX

    text = (reference or "").strip()
    if text.isdigit() and catalog.get(WEBIPRED_ID_PREFIX + text, default=None) is not None:
        raise ModelSourceError(
            f"--model {text} is ambiguous: Zenodo record {text}, or entry {WEBIPRED_ID_PREFIX}{text} of {catalog_file}; "
            f"write --model {WEBIPRED_ID_PREFIX}{text} for the catalog entry or --model zenodo:{text} for the record"
        )


def effective_card(opened: OpenedModel, *, stderr=None) -> ModelCard:
    """The model's card with anything it leaves open (input size, channels, class names) taken
    from the model's own input / output shapes; says so on ``stderr`` when it has to guess."""
    stderr = stderr or sys.stderr
    graph = getattr(opened.model, "graph", opened.model)
    input_shape = _first_shape(graph, "inputs")
    output_shape = _first_shape(graph, "outputs")
    card = opened.card
    if card is None:
        classes = output_shape[-1] if output_shape and output_shape[-1] else None
        if classes is None:
            raise ModelFormatError("the model has no model card and its output shape does not tell the number of classes")
        print("vitrine: warning: the model has no model card: classes are unnamed and no intensity "
              "standardisation is applied (pixel values 0..255)", file=stderr)
        card = ModelCard(name=opened.resolved.name, classes=tuple(f"class {i}" for i in range(classes)))
    from dataclasses import replace

    if card.input_size is None and input_shape and len(input_shape) == 4 and all(input_shape[1:3]):
        card = replace(card, input_size=(int(input_shape[1]), int(input_shape[2])))
    if card.channels is None and input_shape and len(input_shape) == 4 and input_shape[3] in (1, 3):
        card = replace(card, channels=int(input_shape[3]))
    return card


def _first_shape(graph, side: str):
    specs = getattr(graph, side, None)
    if not specs:
        return None
    shape = getattr(specs[0], "shape", None)
    return tuple(shape) if shape is not None else None


def predict_files(opened: OpenedModel, card: ModelCard, paths, *, decode_options=None):
    """Yield a :class:`~app.results.PredictionResult` per path; per-image errors become results."""
    import numpy as np

    from ..imaging import PreprocessSpec, decode_image, preprocess
    from ..results import PredictionResult

    spec = PreprocessSpec.from_card(card)
    for path in paths:
        name = str(path)
        try:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise VitrineError(f"{name}: cannot read the file ({exc.strerror})") from exc
            image = decode_image(data, name, **(decode_options or {}))
            tensor = preprocess(image, spec)
            if getattr(opened.model, "format", None) == "tflite":  # uint8 input: raw pixels (app.tflite.image_input)
                from ..tflite import image_input

                tensor = image_input(opened.model, tensor, spec.standardize)
            outputs = opened.model.predict(tensor)
            if isinstance(outputs, (list, tuple)):
                outputs = outputs[0]
            probabilities = np.asarray(outputs, dtype=np.float64).reshape(-1)
            if probabilities.size != len(card.classes):
                raise ModelFormatError(
                    f"the model gave {probabilities.size} outputs for {name} but its card lists "
                    f"{len(card.classes)} classes ({', '.join(card.classes)})"
                )
        except ModelFormatError:
            raise  # the model is wrong, not the image: stop
        except VitrineError as exc:
            yield PredictionResult(name, error=str(exc))
            continue
        yield PredictionResult(name, probabilities=probabilities.tolist())


def format_table(results, card: ModelCard, *, threshold: float | None = None) -> str:
    """Human-readable results: one row per image (few classes) or one block per image."""
    from ..results import predicted_classes

    lines = []
    if len(card.classes) <= WIDE_TABLE_MAX_CLASSES:
        header = ["file", "predicted", *card.classes]
        rows = []
        errors = []
        for r in results:
            if r.error:
                rows.append([r.file, "ERROR (below)"] + [""] * len(card.classes))
                errors.append(f"ERROR {r.file}: {r.error}")
            else:
                rows.append([r.file, "; ".join(predicted_classes(r.probabilities, card, threshold=threshold)),
                             *(f"{p:.4f}" for p in r.probabilities)])
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
        return "\n".join(lines + errors)
    for r in results:
        if r.error:
            lines.append(f"{r.file}: ERROR: {r.error}")
            continue
        predicted = "; ".join(predicted_classes(r.probabilities, card, threshold=threshold)) or "(none above threshold)"
        lines.append(f"{r.file}: {predicted}")
        order = sorted(range(len(card.classes)), key=lambda i: -r.probabilities[i])
        width = max(len(c) for c in card.classes)
        lines.extend(f"  {card.classes[i].ljust(width)}  {r.probabilities[i]:.4f}" for i in order)
    return "\n".join(lines)


def run(args) -> int:
    from ..results import to_csv, to_json

    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise VitrineError(f"--threshold must be strictly between 0 and 1, got {args.threshold}")
    opened = open_model_from_args(args)
    card = effective_card(opened)
    decode_options = {}
    image_cli = _image_cli()
    if image_cli is not None and hasattr(image_cli, "decode_options_from_args"):
        decode_options = image_cli.decode_options_from_args(args) or {}
    results = list(predict_files(opened, card, args.images, decode_options=decode_options))
    print(format_table(results, card, threshold=args.threshold))
    model_info = {"name": card.name, "source": opened.resolved.source_label, "md5": opened.md5}
    if args.csv:
        args.csv.write_text(to_csv(results, card, model_info, threshold=args.threshold), encoding="utf-8", newline="")
        print(f"vitrine: wrote {args.csv}", file=sys.stderr)
    if args.json:
        args.json.write_text(to_json(results, card, model_info, threshold=args.threshold) + "\n", encoding="utf-8")
        print(f"vitrine: wrote {args.json}", file=sys.stderr)
    failed = sum(1 for r in results if r.error)
    if failed:
        print(f"vitrine: {failed} of {len(results)} image(s) could not be classified", file=sys.stderr)
    return 1 if failed == len(results) else 0
