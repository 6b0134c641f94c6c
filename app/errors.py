"""Errors Vitrine raises on purpose.

Every error the package raises deliberately subclasses :class:`VitrineError`, so callers
(the worker, the CLI, the fuzz tests) can tell "bad input, explained" from "a bug".
Messages name the file / layer / record and say what was expected versus received.
"""


class VitrineError(Exception):
    """Base of every error Vitrine raises on purpose."""


class ModelFormatError(VitrineError):
    """A model file is malformed, incomplete or inconsistent (names the file and what was expected)."""


class UnsupportedLayerError(ModelFormatError):
    """A layer / operator is valid in its format but Vitrine cannot run it (lists what is supported)."""


class UnsupportedFormatError(ModelFormatError):
    """A recognised model format that Vitrine does not run (yet), e.g. a TF.js graph-model."""


class ModelInputError(VitrineError):
    """The array passed to ``predict`` does not fit the model (expected versus received)."""


class ImageFormatError(VitrineError):
    """An image file cannot be decoded (names the file and the reason)."""


class PreprocessError(VitrineError):
    """Preprocessing settings are invalid or inconsistent with the image."""


class ModelSourceError(VitrineError):
    """A model reference (Zenodo record, DOI, URL, catalog id) cannot be resolved or fetched."""


class DownloadError(ModelSourceError):
    """A download failed (HTTP status, truncated body, network). ``status`` is the HTTP status the
    server answered when that is what failed (callers advise on it: 5xx is the server's fault),
    else ``None``."""

    def __init__(self, message: str = "", *, status: int | None = None):
        super().__init__(message)
        self.status = status


class ChecksumError(ModelSourceError):
    """Downloaded bytes do not match the published checksum."""


class ArchiveError(ModelFormatError):
    """A zip archive is corrupt, truncated, too large (zip bomb) or holds unsafe names."""


class CancelledError(VitrineError):
    """The user cancelled the operation."""
