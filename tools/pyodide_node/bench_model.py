"""Whole-model inference time, numpy kernels vs app.fastpath, and agreement with TensorFlow.

    node tools/pyodide_node/run_in_pyodide.mjs --index-url DIR --repo . --packages numpy,pillow \
        --script tools/pyodide_node/bench_model.py -- /repo/.cache/fixtures/big/k2_densenet121 \
        /repo/.cache/kernels/vitrine_kernels.wasm.so

(also runs in CPython with the native library). The fixture folder holds a TF.js layers-model
plus ``io.npz`` (input and TensorFlow's output, made by tools/make_big_fixtures.py). Reports
ms per image for: numpy kernels; SIMD GEMM hook only (``fastpath.install``); SIMD GEMM + the
SIMD kernels of ``fastpath.SIMD_OPS`` (conv2d incl. Winograd, depthwise, scale_shift, pooling; registered with
``app.kernels.replace_kernel``), and the max |difference| of each against TensorFlow's output.
"""

import json
import sys
import time

import numpy as np

import app
from app import fastpath
from app import kernels as engine_kernels



def cpu_seconds():
    """Process CPU time: under Node (Pyodide) from process.cpuUsage(), else time.process_time().
    The kernels are single-threaded, so CPU time is their compute time even when the machine is
    shared and the process is preempted (wall-clock time is not)."""
    try:
        import js  # Pyodide
        usage = js.process.cpuUsage()
        return (usage.user + usage.system) / 1e6
    except (ImportError, AttributeError):
        return time.process_time()

def timed_predict(model, x, repeats):
    """Best per-image CPU time on a batch of one (like TF.js below) and the outputs for all of x."""
    one = x[:1]
    model.predict(one)  # warm-up (JIT tier-up, workspace allocation)
    best = float("inf")
    for _ in range(repeats):
        t0 = cpu_seconds()
        model.predict(one)
        best = min(best, cpu_seconds() - t0)
    return model.predict(x), 1000 * best


def main():
    folder, library = sys.argv[1], sys.argv[2]
    arrays = np.load(f"{folder}/io.npz")
    x, expected = arrays["input_0"], arrays["output_0"]
    model = app.load_model(folder)
    rows = {}
    fastpath.select_backend(("numpy",))
    fastpath.uninstall()
    engine_kernels.restore_kernels()
    y, ms = timed_predict(model, x, 1)
    rows["numpy kernels"] = (ms, float(np.max(np.abs(y - expected))))
    fastpath.select_backend(("simd",), kernel_path=library)
    fastpath.install()
    y, ms = timed_predict(model, x, 3)
    rows["SIMD GEMM (im2col conv)"] = (ms, float(np.max(np.abs(y - expected))))
    originals = {op: engine_kernels.KERNELS[op] for op in fastpath.SIMD_OPS}
    for op, kernel in fastpath.conv_kernels(originals).items():
        engine_kernels.replace_kernel(op, kernel)
    y, ms = timed_predict(model, x, 3)
    rows["SIMD GEMM + all SIMD kernels"] = (ms, float(np.max(np.abs(y - expected))))
    report = fastpath.backend_report()
    print(f"time: process CPU time, batch of 1, best of repeats; platform: {sys.platform}; model: {folder}; "
          f"diff over {x.shape[0]} images; backend {report['backend']}")
    print("| engine configuration | ms / image | max abs diff vs TensorFlow |")
    print("|---|---:|---:|")
    for name, (ms, diff) in rows.items():
        print(f"| {name} | {ms:.0f} | {diff:.2g} |")
    fallbacks = report["fallbacks"]
    print(f"fallbacks to numpy kernels: {sum(fallbacks.values())} calls, {len(fallbacks)} distinct reasons")
    for reason, count in sorted(fallbacks.items(), key=lambda item: -item[1])[:5]:
        print(f"  {count} x {reason}")
    print(json.dumps({"platform": sys.platform, "rows": rows, "fallbacks": fallbacks}))
    engine_kernels.restore_kernels()
    fastpath.uninstall()


main()
