"""TFLite support: a tflite_runtime-compatible :class:`Interpreter` in pure Python + numpy, and
:func:`load` giving the engine's Model interface for ``app.load_model``.

``from app.tflite import Interpreter`` works everywhere; ``install_alias()`` additionally makes
``from tflite_runtime.interpreter import Interpreter`` resolve to it (used inside Pyodide, where
the real tflite_runtime cannot be installed).
"""

from __future__ import annotations

from app.tflite.interpreter import Interpreter, SignatureRunner, TensorValueError
from app.tflite.model import TFLiteModel, image_input, load

__all__ = ["Interpreter", "SignatureRunner", "TensorValueError", "TFLiteModel", "image_input", "load",
           "install_alias"]


def install_alias(force: bool = False) -> bool:
    """Register ``tflite_runtime`` / ``tflite_runtime.interpreter`` in ``sys.modules`` pointing at
    this package. Does nothing (returns False) when a real ``tflite_runtime`` is importable,
    unless ``force``; returns True when the alias was installed."""
    import importlib.util
    import sys
    import types

    if not force and "tflite_runtime" not in sys.modules:
        if importlib.util.find_spec("tflite_runtime") is not None:
            return False
    elif not force:
        return False
    from app.tflite import interpreter as interpreter_module

    package = types.ModuleType("tflite_runtime")
    package.__doc__ = "Vitrine alias of app.tflite (pure numpy TFLite interpreter)."
    package.__path__ = []
    package.interpreter = interpreter_module
    sys.modules["tflite_runtime"] = package
    sys.modules["tflite_runtime.interpreter"] = interpreter_module
    return True
