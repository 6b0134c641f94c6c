"""Start-up contract of the engine worker (app.boot): which calls work before the deferred
packages (Pillow) are installed, what ``info`` says meanwhile, and the lazy TFLite alias.

Each check runs in a fresh CPython process, because "Pillow is not importable" and "app.tflite is
not imported yet" cannot be undone inside the test process once another test imported them.
Expected probabilities come from TensorFlow (static/demo/expected.json)."""

import json
import subprocess
import sys
from pathlib import Path

from app.boot import CALLS_WITHOUT_DEFERRED_PACKAGES, LAST_BOOT_CALL, needs_deferred_packages
from app.service import EngineService

ROOT = Path(__file__).resolve().parents[2]

# Runs every call of CALLS_WITHOUT_DEFERRED_PACKAGES with Pillow unimportable, like a worker whose
# Pillow is still being installed; prints the replies as JSON.
WITHOUT_PILLOW = r"""
import json, sys
sys.modules["PIL"] = None  # every `import PIL...` now raises ModuleNotFoundError
from pathlib import Path
import numpy as np
from app.boot import DeferredPackages
from app.http import UrllibTransport
from app.service import EngineService
from tests.zenodo.fake_zenodo import FakeZenodo

demo = Path("static/demo")
model_zip = (demo / "demo-model.zip").read_bytes()
tensor = np.load(demo / "expected_inputs.npz")["mr_abdomen.png"]
replies = {}
with FakeZenodo() as zenodo:
    zenodo.add_record(77, {"model-tfjs.zip": model_zip}, title="Demo", version="2.0")
    service = EngineService(transport=UrllibTransport(timeout=5), deferred=DeferredPackages({"pillow": "10.2.0"}))
    def call(name, args=None, payload=None):
        replies[name] = service.handle({"call": name, "args": args or {}}, payload)
        return replies[name].get("result")
    call("ping", {"echo": 1})
    call("info")
    call("select_gemm_backend")
    call("load_model", {"name": "demo-model.zip"}, model_zip)
    handle = call("open_model", {"name": "demo-model.zip"}, model_zip)["model"]
    call("predict", {"model": handle, "shape": list(tensor.shape)}, tensor.astype("<f4").tobytes())
    call("unload_model", {"model": handle})
    call("catalog")
    call("resolve_model", {"reference": "10.5281/zenodo.77", "zenodo_url": zenodo.url})
    # control: a call that decodes an image does need Pillow, so the blocking above is effective
    call("inspect_image", {"name": "mr_abdomen.png"}, (demo / "samples" / "mr_abdomen.png").read_bytes())
print(json.dumps(replies))
"""

LAZY_ALIAS = r"""
import json, sys
from app.boot import install_lazy_tflite_alias
installed = install_lazy_tflite_alias()
before = sorted(m for m in sys.modules if m.startswith(("app.tflite", "tflite_runtime")))
from tflite_runtime.interpreter import Interpreter
import app.tflite
print(json.dumps({"installed": installed, "before": before, "same": Interpreter is app.tflite.Interpreter,
                  "again": install_lazy_tflite_alias(),
                  "finder_left": any(type(f).__name__ == "_TfliteRuntimeAliasFinder" for f in sys.meta_path)}))
"""


def run_python(script: str) -> dict:
    completed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_calls_declared_free_of_deferred_packages_work_without_pillow():
    replies = run_python(WITHOUT_PILLOW)
    control = replies.pop("inspect_image")
    assert set(replies) == set(CALLS_WITHOUT_DEFERRED_PACKAGES), "every declared call is exercised"
    failed = {name: reply["error"] for name, reply in replies.items() if not reply["ok"]}
    assert not failed
    truth = json.loads((ROOT / "static/demo/expected.json").read_text())["samples"]["mr_abdomen.png"]["probabilities"]
    predicted = replies["predict"]["result"]["outputs"][0]["values"]
    assert max(abs(a - b) for a, b in zip(predicted, truth)) < 1e-4
    assert replies["resolve_model"]["result"]["file"] == "model-tfjs.zip"
    # info answers while Pillow is still being installed, with the version the build ships
    info = replies["info"]["result"]
    assert info["pillow"] == "10.2.0"
    assert info["deferred_packages"] == {"packages": {"pillow": "10.2.0"}, "state": "waiting"}
    assert control["ok"] is False and "PIL" in control["error"]["detail"]


def test_every_other_call_waits_for_the_deferred_packages():
    for name in EngineService().calls:
        assert needs_deferred_packages(name) == (name not in CALLS_WITHOUT_DEFERRED_PACKAGES)
    assert needs_deferred_packages("a_call_added_later") and needs_deferred_packages(None)
    assert LAST_BOOT_CALL in CALLS_WITHOUT_DEFERRED_PACKAGES  # the boot itself never waits


def test_info_on_cpython_reports_pillow_and_nothing_deferred():
    info = EngineService().handle({"call": "info"})["result"]
    import PIL

    assert info["pillow"] == PIL.__version__
    assert info["deferred_packages"] == {"packages": {}, "state": "ready"}


def test_tflite_runtime_alias_is_imported_only_on_first_use():
    result = run_python(LAZY_ALIAS)
    assert result["installed"] is True and result["before"] == []
    assert result["same"] is True
    assert result["again"] is False and result["finder_left"] is False


def test_info_after_a_failed_deferred_install_reports_no_pillow_and_the_reason():
    from app.boot import DeferredPackages

    deferred = DeferredPackages({"pillow": "10.2.0"})
    deferred.state, deferred.error = "failed", "ImportError: pillow did not install"
    info = EngineService(deferred=deferred).handle({"call": "info"})["result"]
    assert info["pillow"] is None
    assert info["deferred_packages"] == {"packages": {"pillow": "10.2.0"}, "state": "failed",
                                         "error": "ImportError: pillow did not install"}
