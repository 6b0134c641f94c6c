"""``load_model`` dispatch: find what ``source`` is and hand it to the right format loader.

Sources: a directory, a ``.zip`` path, zip bytes, a mapping ``{file name: bytes}`` (what the
browser holds after unzipping in memory), a ``model.json`` path, or a TFLite flatbuffer (path or
bytes, recognised by the ``TFL3`` identifier at bytes 4..8).
"""

from __future__ import annotations

import importlib
import os
import posixpath
from collections.abc import Mapping
from pathlib import Path

from ..archive import is_zip, read_zip
from ..errors import ModelFormatError, ModelSourceError, UnsupportedFormatError
from ..ir import Graph

CARD_FILE_NAME = "model-card.json"
# TF.js weight shards (group1-shard1of2.bin): read as views into a zip's bytes when stored
_SHARD_SUFFIXES = (".bin",)


def load_model(source, *, name: str | None = None, optimize: bool = True, **options):
    """Load a model; returns :class:`app.model.Model` (TF.js) or the TFLite model object.

    ``source``: see the module docstring. ``name`` labels bytes / mapping sources in error
    messages (e.g. the file name the user chose). ``optimize=False`` runs the graph exactly as
    the loader built it (no batch-norm folding / activation fusion), for debugging."""
    from ..model import Model

    if options:
        raise TypeError(f"load_model() got unexpected keyword arguments {sorted(options)}")
    files, origin = _collect(source, name)
    if isinstance(files, bytes):  # a TFLite flatbuffer
        return _load_tflite(files, origin)
    model_json = _find_model_json(files, origin)
    if model_json is None:
        tflite = [name for name in files if name.lower().endswith(".tflite")]
        if len(tflite) == 1:
            card = _load_card(files, posixpath.dirname(tflite[0]), origin)
            return _load_tflite(files[tflite[0]], f"{origin}:{tflite[0]}", card=card)
        raise ModelFormatError(f"{origin}: no model.json (TF.js layers-model) or .tflite file found; files: "
                               f"{sorted(files)[:10]}")
    from . import tfjs

    label = f"{origin}:{model_json}" if origin != model_json else model_json
    graph = tfjs.load_graph(files, model_json, origin=label)
    card = _load_card(files, posixpath.dirname(model_json), origin)
    return Model(graph, card=card, source=origin, format="tfjs-layers", optimize=optimize)


def _collect(source, label=None):
    """-> (mapping name -> bytes, origin label) or (tflite bytes, origin label). ``label`` names
    in-memory sources in messages (e.g. the file name the user picked)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if data[4:8] == b"TFL3":
            return data, label or "<tflite bytes>"
        if is_zip(data):
            # weight shards stay views into the download (no second copy at load time)
            return read_zip(data, label or "<zip bytes>", views_for=_SHARD_SUFFIXES), label or "<zip bytes>"
        raise ModelFormatError(f"{label or '<bytes>'}: neither a zip archive nor a TFLite model "
                               f"(starts with {data[:8]!r})")
    if isinstance(source, Mapping):
        label = label or "<files>"
        files = {}
        for name, data in source.items():
            if not isinstance(name, str) or not isinstance(data, (bytes, bytearray, memoryview)):
                raise ModelFormatError(f"{label}: expected a mapping of file name -> bytes, got {type(name).__name__} -> "
                                       f"{type(data).__name__}")
            files[posixpath.normpath(name.replace("\\", "/")).lstrip("/")] = bytes(data)
        return files, label
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return _DirectoryFiles(path), str(path)
        if not path.is_file():
            raise ModelSourceError(f"{path}: no such file or directory")
        if path.suffix.lower() == ".json":
            return _DirectoryFiles(path.parent), str(path.parent)
        data = path.read_bytes()
        if data[4:8] == b"TFL3" or path.suffix.lower() == ".tflite":
            return data, str(path)
        if is_zip(data):
            return read_zip(data, str(path), views_for=_SHARD_SUFFIXES), str(path)
        raise ModelFormatError(f"{path}: not a zip archive, model.json, folder or .tflite model")
    raise ModelSourceError(f"cannot load a model from a {type(source).__name__}; pass a path, zip bytes or a "
                           "mapping of file name -> bytes")


class _DirectoryFiles(Mapping):
    """Read-only, lazy ``{relative posix path: bytes}`` view of a folder (reads only what is used)."""

    def __init__(self, root: Path):
        self.root = root
        self._names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def __getitem__(self, name):
        if name not in self._names:
            raise KeyError(name)
        return (self.root / name).read_bytes()

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def __contains__(self, name):
        return name in self._names


def _find_model_json(files, origin) -> str | None:
    candidates = [name for name in files if posixpath.basename(name) == "model.json"]
    if not candidates:
        return None
    candidates.sort(key=lambda n: (n.count("/"), n))
    if len(candidates) > 1 and candidates[0].count("/") == candidates[1].count("/"):
        raise ModelFormatError(f"{origin}: several model.json files at the same depth: {candidates[:5]}; "
                               "expected one model per archive")
    return candidates[0]


def _load_card(files, base_dir, origin):
    for name in (posixpath.join(base_dir, CARD_FILE_NAME) if base_dir else CARD_FILE_NAME, CARD_FILE_NAME):
        if name in files:
            break
    else:
        return None
    try:
        modelcard = importlib.import_module("app.modelcard")
    except ModuleNotFoundError as exc:
        if exc.name != "app.modelcard":
            raise
        raise UnsupportedFormatError(f"{origin}: has {name} but model cards cannot be read in this build "
                                     "(app.modelcard is missing)") from None
    return modelcard.load_card(files[name], f"{origin}:{name}")


def _load_tflite(data: bytes, origin: str, card=None):
    """Hand a TFLite flatbuffer to ``app.tflite.load(data, name, card) -> Graph | Model`` if present."""
    from ..model import Model

    try:
        tflite = importlib.import_module("app.tflite")
    except ModuleNotFoundError as exc:
        if exc.name != "app.tflite":
            raise
        raise UnsupportedFormatError(f"{origin}: TFLite models are not supported in this build "
                                     "(app.tflite is missing)") from None
    loaded = tflite.load(data, origin, card=card) if card is not None else tflite.load(data, origin)
    if isinstance(loaded, Graph):
        return Model(loaded, card=card, source=origin, format="tflite")
    return loaded
