"""How the engine worker starts, as pure Python (the browser half is ``workers/engine.py``).

Start-up budget (docs/build.md, "Start-up"): ``data-engine-state="ready"`` means the engine can
take a model and classify, so numpy, the app and its GEMM backend are loaded before it. Pillow is
not needed to *load* a model, only to decode images, so it is a **deferred package**: the worker
installs it in the background right after its boot calls, and any call that needs it before then
waits for it (:data:`CALLS_WITHOUT_DEFERRED_PACKAGES` lists the calls that do not).

The TFLite alias (``import tflite_runtime`` -> :mod:`app.tflite`) is installed lazily for the same
reason: importing the interpreter costs start-up time and only TFLite models need it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

# Calls answered without the deferred packages (checked by tests/service/test_boot.py with Pillow
# made unimportable). Every other call, including any added later, waits for them.
CALLS_WITHOUT_DEFERRED_PACKAGES = frozenset({
    "ping", "info", "select_gemm_backend", "load_model", "open_model", "unload_model", "predict",
    "catalog", "resolve_model",
})
# The page's boot sequence (docs/worker-api.md): after the last of these calls the worker starts
# installing the deferred packages, so that they do not compete with the boot for the CPU.
LAST_BOOT_CALL = "select_gemm_backend"


def needs_deferred_packages(call: object) -> bool:
    """Whether the protocol call named ``call`` may need a deferred package (unknown calls do)."""
    return call not in CALLS_WITHOUT_DEFERRED_PACKAGES


class DeferredPackages:
    """State of the packages a worker installs after its boot: name -> version (from the build's
    config/engine.json), and ``state``: "waiting" (boot not finished), "loading", "ready" or
    "failed" (with ``error``). The worker glue drives it; ``info`` reports it."""

    def __init__(self, versions: dict[str, str] | None = None) -> None:
        self.versions = dict(versions or {})
        self.state = "waiting" if self.versions else "ready"
        self.error: str | None = None

    def report(self) -> dict:
        report = {"packages": dict(self.versions), "state": self.state}
        if self.error is not None:
            report["error"] = self.error
        return report


class _PreparedModuleLoader(importlib.abc.Loader):
    """Loader for a module object that already exists (the alias built by ``install_alias``)."""

    def __init__(self, module: types.ModuleType) -> None:
        self._module = module

    def create_module(self, spec):
        return self._module

    def exec_module(self, module) -> None:
        pass


class _TfliteRuntimeAliasFinder(importlib.abc.MetaPathFinder):
    """On the first ``import tflite_runtime``: install :func:`app.tflite.install_alias` and hand
    its module to the import system; then step out of ``sys.meta_path``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tflite_runtime":
            return None
        sys.meta_path.remove(self)
        from app.tflite import install_alias

        install_alias()  # no-op when a real tflite_runtime is importable: the next finder finds it
        module = sys.modules.get("tflite_runtime")
        if module is None:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, _PreparedModuleLoader(module), is_package=True)
        spec.submodule_search_locations = []
        return spec


def install_lazy_tflite_alias() -> bool:
    """Make ``import tflite_runtime`` / ``from tflite_runtime.interpreter import Interpreter``
    resolve to :mod:`app.tflite` on first use (docs/tflite.md) without importing it now.
    Returns False when ``tflite_runtime`` is already imported or the finder is in place."""
    if "tflite_runtime" in sys.modules or any(isinstance(f, _TfliteRuntimeAliasFinder) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _TfliteRuntimeAliasFinder())
    return True
