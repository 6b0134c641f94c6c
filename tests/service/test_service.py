"""The engine service protocol (app/service.py) on plain CPython."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import app

from app.errors import ImageFormatError
from app.service import EngineService, error_payload


@pytest.fixture
def service():
    return EngineService()


def test_ping_echoes_and_counts_payload(service):
    reply = service.handle({"call": "ping", "id": 3, "args": {"echo": "hello"}}, b"abcd")
    assert reply == {"id": 3, "call": "ping", "ok": True, "result": {"pong": True, "echo": "hello", "payload_bytes": 4}}


def test_info_reports_versions_and_calls(service):
    result = service.handle({"call": "info"})["result"]
    assert result["numpy"] == np.__version__
    assert result["in_pyodide"] is False and result["pyodide"] is None
    assert {"ping", "info", "load_model", "predict"} <= set(result["calls"])
    assert isinstance(result["gemm_backend"], str) and result["gemm_backend"]


def test_selftest_matches_an_independent_computation(service):
    result = service.handle({"call": "selftest", "args": {"seed": 5, "size": 17}})["result"]
    rng = np.random.default_rng(5)
    matrix = rng.standard_normal((17, 17))
    pixels = rng.integers(0, 256, size=(17, 17, 3), dtype=np.uint8)
    assert result["gram_trace"] == pytest.approx(float((matrix ** 2).sum()), rel=1e-12)
    eigen = np.sort(np.linalg.eigvalsh(matrix.T @ matrix))[::-1]
    np.testing.assert_allclose(np.square(result["singular_values"]), eigen, rtol=1e-9)
    assert result["decoded_pixels_sha256"] == hashlib.sha256(pixels.tobytes()).hexdigest()


def test_progress_events_carry_id_and_call(service):
    events = []
    service.handle({"call": "selftest", "id": "job-1", "args": {"seed": 1, "size": 4}}, progress=events.append)
    assert events == [{"id": "job-1", "call": "selftest", "stage": "selftest", "done": 1, "total": 1}]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ([1, 2], "request must be a JSON object, received list"),
        ({"args": {}}, "request needs a string 'call', received None"),
        ({"call": "explode"}, "unknown call 'explode'; known calls: catalog, chart, classify, decode_image, explain, export_results, info, "
                             "inspect_image, load_model, open_model, ping, predict, resolve_model, segment, select_gemm_backend, "
                             "selftest, unload_model"),
        ({"call": "ping", "args": [1]}, "call 'ping': 'args' must be an object, received list"),
        ({"call": "selftest", "args": {"size": 4}}, "call 'selftest': missing argument 'seed'"),
        ({"call": "selftest", "args": {"seed": "1", "size": 4}}, "call 'selftest': argument 'seed' must be int, received str '1'"),
        ({"call": "selftest", "args": {"seed": True, "size": 4}}, "call 'selftest': argument 'seed' must be int, received bool True"),
        ({"call": "selftest", "args": {"seed": 1, "size": 10_000}}, "call 'selftest': size must be in [2, 512], received 10000"),
        ({"call": "load_model", "args": {"name": "m.zip"}}, "call 'load_model': model 'm.zip' needs its bytes as the payload"),
        ({"call": "decode_image", "args": {"name": "x.png"}}, "call 'decode_image': image 'x.png' needs its bytes as the payload"),
        ({"call": "predict", "args": {"model": "m9", "shape": [1]}}, "call 'predict': no loaded model 'm9' (loaded: none)"),
        ({"call": "unload_model", "args": {"model": "m1"}}, "call 'unload_model': no loaded model 'm1' (loaded: none)"),
    ],
)
def test_invalid_requests_are_explained(service, request_, message):
    reply = service.handle(request_)
    assert reply["ok"] is False
    assert reply["error"] == {"type": "ServiceRequestError", "message": message, "internal": False}


def test_payload_must_be_bytes(service):
    reply = service.handle({"call": "ping"}, payload="text")
    assert reply["error"]["message"] == "call 'ping': payload must be bytes, received str"


def test_handle_json_rejects_invalid_json(service):
    reply = json.loads(service.handle_json("{not json"))
    assert reply["ok"] is False and reply["error"]["type"] == "ServiceRequestError"
    assert reply["error"]["message"].startswith("request is not valid JSON: ")


def test_handle_json_round_trip_and_progress_as_text(service):
    events = []
    reply = json.loads(service.handle_json(json.dumps({"call": "selftest", "id": "a", "args": {"seed": 2, "size": 3}}), None, events.append))
    assert reply["ok"] is True
    assert [json.loads(e)["stage"] for e in events] == ["selftest"]


def test_vitrine_errors_keep_their_type_and_file(service):
    def fail(args, payload, progress):
        error = ImageFormatError("scan.png: not a PNG (expected signature 89 50 4E 47, received 00 00 00 00)")
        error.file = "scan.png"
        raise error

    service.calls["decode_image"] = fail
    reply = service.handle({"call": "decode_image", "id": 1})
    assert reply["error"] == {
        "type": "ImageFormatError",
        "message": "scan.png: not a PNG (expected signature 89 50 4E 47, received 00 00 00 00)",
        "internal": False,
        "file": "scan.png",
    }


def test_unexpected_exceptions_are_internal_errors(service):
    def broken(args, payload, progress):
        return {}["missing"]

    service.calls["ping"] = broken
    error = service.handle({"call": "ping"})["error"]
    assert error["type"] == "InternalError" and error["internal"] is True
    assert error["detail"] == "KeyError: 'missing'"
    assert "return {}[\"missing\"]" in error["traceback"]


def test_error_payload_of_a_plain_exception_hides_nothing_needed():
    assert error_payload(ValueError("x"))["detail"] == "ValueError: x"


class _DoublingModel:
    """Stands in for a loaded model: predict(x) = 2x, so the expected output is known exactly."""

    def predict(self, array):
        return array * 2


def test_predict_decodes_float32_payload_and_returns_outputs(service):
    service._models["m1"] = _DoublingModel()
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    reply = service.handle({"call": "predict", "args": {"model": "m1", "shape": [2, 3]}}, x.tobytes())
    assert reply["ok"], reply
    assert reply["result"] == {"model": "m1", "outputs": [{"shape": [2, 3], "values": (x * 2).ravel().tolist()}]}


def test_predict_rejects_wrong_payload_size(service):
    service._models["m1"] = _DoublingModel()
    reply = service.handle({"call": "predict", "args": {"model": "m1", "shape": [2, 3]}}, b"\0" * 8)
    assert reply["error"]["message"] == "call 'predict': shape [2, 3] needs 24 float32 bytes, received 8"
    reply = service.handle({"call": "predict", "args": {"model": "m1", "shape": [2, 0]}}, b"")
    assert reply["error"]["message"] == "call 'predict': shape must be positive integers, received [2, 0]"


def test_unload_model_forgets_it(service):
    service._models["m1"] = _DoublingModel()
    assert service.handle({"call": "unload_model", "args": {"model": "m1"}})["result"] == {"model": "m1", "unloaded": True}
    assert service.handle({"call": "info"})["result"]["models_loaded"] == 0


# ---------------------------------------------------------------- wired to app.loaders / app.imaging
def test_load_model_and_predict_with_a_real_tfjs_zip(service):
    pytest.importorskip("app.loaders", reason="app.loaders is not in this tree yet")
    from tests.service.tiny_models import dense_softmax_zip, softmax_reference

    kernel = np.array([[0.2, -0.1], [0.4, 0.3], [-0.5, 0.6]], dtype=np.float32)
    bias = np.array([0.05, -0.05], dtype=np.float32)
    events = []
    loaded = service.handle({"call": "load_model", "id": "L", "args": {"name": "tiny.zip"}}, dense_softmax_zip(kernel, bias), events.append)
    assert loaded["ok"], loaded
    handle = loaded["result"]["model"]
    assert loaded["result"]["summary"]["inputs"][0]["shape"] == [None, 3]
    assert [e["stage"] for e in events] == ["parsing", "ready"]

    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], dtype=np.float32)
    reply = service.handle({"call": "predict", "args": {"model": handle, "shape": [2, 3]}}, x.tobytes())
    assert reply["ok"], reply
    (output,) = reply["result"]["outputs"]
    assert output["shape"] == [2, 2]
    np.testing.assert_allclose(np.reshape(output["values"], (2, 2)), softmax_reference(x, kernel, bias), rtol=1e-5)


def test_load_model_reports_a_broken_zip_as_a_model_error(service):
    pytest.importorskip("app.loaders", reason="app.loaders is not in this tree yet")
    reply = service.handle({"call": "load_model", "args": {"name": "broken.zip"}}, b"PK\x03\x04 definitely not a zip")
    assert reply["ok"] is False
    assert reply["error"]["internal"] is False, reply["error"]
    assert reply["error"]["type"] in ("ArchiveError", "ModelFormatError", "ModelSourceError")


def test_decode_image_returns_shape_and_metadata(service):
    pytest.importorskip("app.imaging", reason="app.imaging is not in this tree yet")
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (5, 3), (10, 20, 30)).save(buffer, format="PNG")
    reply = service.handle({"call": "decode_image", "args": {"name": "tiny.png"}}, buffer.getvalue())
    assert reply["ok"], reply
    assert reply["result"]["shape"] == [3, 5, 3] and reply["result"]["dtype"] == "uint8"
    json.dumps(reply)  # the reply must cross the worker boundary as JSON

    reply = service.handle({"call": "decode_image", "args": {"name": "scan.png"}}, b"\x00" * 16)
    assert reply["ok"] is False and reply["error"]["type"] == "ImageFormatError" and "scan.png" in reply["error"]["message"]


# ---------------------------------------------------------------- wired to app.fastpath
@pytest.fixture
def restore_fastpath(monkeypatch):
    fastpath = pytest.importorskip("app.fastpath", reason="app.fastpath is not in this tree yet")
    # the selection is process-global: put back exactly what other tests saw
    monkeypatch.setattr(fastpath, "_selected", fastpath._selected)
    monkeypatch.setattr(fastpath, "_skipped", list(fastpath._skipped))
    yield fastpath
    fastpath.uninstall()


def test_select_gemm_backend_numpy_only_is_reported_by_info(service, restore_fastpath):
    reply = service.handle({"call": "select_gemm_backend", "args": {"order": ["numpy"]}})
    assert reply["ok"], reply
    assert reply["result"]["backend"].startswith("numpy") and reply["result"]["skipped"] == []
    info = service.handle({"call": "info"})["result"]
    assert info["gemm_backend"] == reply["result"]["backend"] and info["gemm_report"] == reply["result"]


def test_select_gemm_backend_explains_skipped_backends(service, restore_fastpath):
    reply = service.handle({"call": "select_gemm_backend", "args": {"order": ["simd", "numpy"]}}, b"not a library")
    assert reply["ok"], reply
    assert reply["result"]["backend"].startswith("numpy")
    assert len(reply["result"]["skipped"]) == 1 and reply["result"]["skipped"][0].startswith("simd: ")


@pytest.mark.parametrize("order", [[], "simd", [1]])
def test_select_gemm_backend_rejects_a_bad_order(service, order):
    reply = service.handle({"call": "select_gemm_backend", "args": {"order": order}})
    assert reply["error"]["message"] == f"call 'select_gemm_backend': 'order' must be a non-empty list of names, received {order!r}"


def test_select_gemm_backend_unknown_backend_is_a_vitrine_error(service, restore_fastpath):
    reply = service.handle({"call": "select_gemm_backend", "args": {"order": ["gpu"]}})
    assert reply["ok"] is False and reply["error"]["internal"] is False
    assert "gpu" in reply["error"]["message"]


def test_select_gemm_backend_simd_also_routes_conv_depthwise_and_scale_shift(service, restore_fastpath):
    """With the SIMD library the service installs the conv / depthwise / batch-norm kernels too,
    and predictions still equal TensorFlow's recorded outputs."""
    from app import kernels
    from tests.fastpath.conftest import KERNEL_CACHE, load_build_tool

    root = Path(__file__).resolve().parents[2]
    library = load_build_tool().build_kernels(KERNEL_CACHE, "native")
    numpy_conv = kernels.KERNELS["conv2d"]
    try:
        reply = service.handle({"call": "select_gemm_backend", "args": {"order": ["simd", "numpy"]}},
                               library.read_bytes())
        assert reply["ok"], reply
        assert reply["result"]["backend"].startswith("simd")
        assert {"conv2d", "depthwise_conv2d", "scale_shift"} <= set(reply["result"]["kernels"])
        assert kernels.KERNELS["conv2d"] is not numpy_conv
        case = root / "tests" / "fixtures" / "tfjs" / "k2_functional_classifier"
        files = {p.name: p.read_bytes() for p in case.iterdir() if p.name == "model.json" or p.suffix == ".bin"}
        model = app.load_model(files)
        with np.load(case / "io.npz") as io:
            np.testing.assert_allclose(model.predict(io["input_0"]), io["output_0"], atol=1e-4)
    finally:
        kernels.restore_kernels()
