"""Vitrine: private medical image classification that runs in the browser (and in CPython).

The core imports only numpy, Pillow and the standard library, so everything but the browser
glue runs and is tested under plain CPython; the same code runs in Pyodide.
"""

__version__ = "0.1.0"

IN_PYODIDE = False
try:  # Pyodide sets sys.platform to "emscripten"
    import sys as _sys

    IN_PYODIDE = _sys.platform == "emscripten"
except Exception:  # pragma: no cover - sys always imports
    pass


def load_model(source, **options):
    """Load a model from a directory, a ``.zip`` path, zip bytes, a mapping name -> bytes,
    or (TFLite) a ``.tflite`` path or bytes. See :mod:`app.loaders`."""
    from .loaders import load_model as _load_model

    return _load_model(source, **options)


__all__ = ["load_model", "__version__", "IN_PYODIDE"]
