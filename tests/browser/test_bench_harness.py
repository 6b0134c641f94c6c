"""The side-by-side benchmark harness (bench/inference.py) works: correctness only, no timing.

Runs Vitrine (the built site page) and TF.js 4.22 wasm (bench/page/) on a tiny committed fixture
in one browser and checks both agree with each other and with TensorFlow's stored output.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "tfjs" / "k2_functional_classifier"
TFJS_PACKAGE = REPO_ROOT / "node_modules" / "@tensorflow" / "tfjs-backend-wasm" / "dist" / "tfjs-backend-wasm-simd.wasm"


def _load_bench():
    spec = importlib.util.spec_from_file_location("vitrine_bench_inference", REPO_ROOT / "bench" / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.browser
def test_harness_runs_vitrine_and_tfjs_on_the_same_input_and_they_agree(browser, built_site):
    if not TFJS_PACKAGE.exists():
        pytest.skip(f"{TFJS_PACKAGE} missing: run `npm ci` (the benchmark's peers are devDependencies)")
    bench = _load_bench()
    case = bench.Case(FIXTURE.name, FIXTURE, batch=3)
    args = argparse.Namespace(warmup=0, runs=1, batch=3, workers=2, skip_throughput=False, skip_ort=True)
    report = bench.run_benchmark(browser, built_site.dist, {"tiny": (case, None)}, args, log=lambda message: None)

    result = report["models"]["tiny"]
    assert result["tfjs"]["backend"] == "wasm" and result["tfjs"]["version"] == "4.22.0"
    assert result["tfjs"]["cross_origin_isolated"] is False
    assert result["vitrine_gemm_backend"].startswith(("simd", "openblas", "numpy"))
    assert result["max_abs_diff"] <= 1e-4
    assert result["vitrine_max_abs_diff_vs_tensorflow"] <= 1e-4
    assert result["tfjs_max_abs_diff_vs_tensorflow"] <= 1e-4
    # the throughput path ran on both sides (its numbers are not judged here)
    assert result["throughput_ips"] > 0 and result["tfjs_throughput_ips"] > 0
    assert result["peak_mb"] > 0 and result["tfjs_peak_mb"] > 0
    assert report["machine"]["cores"] >= 1 and len(report["machine"]["load_average_start"]) == 3


def test_missing_big_fixture_names_the_generator(tmp_path):
    bench = _load_bench()
    with pytest.raises(bench.BenchError, match=r"(?s)model\.json / io\.npz missing.*make_big_fixtures\.py --only k2_resnet50"):
        bench.Case("k2_resnet50", tmp_path / "k2_resnet50", batch=32)


def test_harness_server_refuses_node_modules_outside_the_peer_packages(tmp_path):
    bench = _load_bench()
    server, origin = bench.serve(tmp_path, {}, {"x/b1.f32": b"\x00" * 4})
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(origin + "/__bench/gen/x/b1.f32") as response:
            assert response.read() == b"\x00" * 4
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(origin + "/__bench/node_modules/pyodide/package.json")
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(origin + "/__bench/gen/unknown.f32")
    finally:
        server.shutdown()
        server.server_close()
