"""Milliseconds per convolution layer: the engine's im2col conv (numpy GEMM, then SIMD GEMM
plugged in with app.fastpath.install) vs the SIMD im2col-free conv2d kernel.

Runs in Pyodide via run_in_pyodide.mjs (argument: the wasm kernel library) or in CPython
(argument: the native library). Layers are DenseNet121 / MobileNet-style at 224x224, batch 1.
"""

import json
import sys
import time

import numpy as np

from app import fastpath
from app.kernels import KERNELS

LAYERS = [
    # label, (H, W, Cin), (KH, KW, Cout), strides, pads
    ("DenseNet conv0 7x7/2 3->64", (224, 224, 3), (7, 7, 64), (2, 2), (3, 3, 3, 3)),
    ("DenseNet block1 1x1 256->128", (56, 56, 256), (1, 1, 128), (1, 1), (0, 0, 0, 0)),
    ("DenseNet block1 3x3 128->32", (56, 56, 128), (3, 3, 32), (1, 1), (1, 1, 1, 1)),
    ("DenseNet block3 3x3 128->32", (14, 14, 128), (3, 3, 32), (1, 1), (1, 1, 1, 1)),
    ("ResNet 3x3 64->64", (56, 56, 64), (3, 3, 64), (1, 1), (1, 1, 1, 1)),
]



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

def best_ms(fn, repeats=8):
    fn()
    times = []
    for _ in range(repeats):
        t0 = cpu_seconds()
        fn()
        times.append(cpu_seconds() - t0)
    return 1000 * min(times)


def main():
    simd = fastpath.select_backend(("simd",), kernel_path=sys.argv[1])
    engine_conv = KERNELS["conv2d"]
    rng = np.random.default_rng(0)
    rows = []
    for label, (h, w, cin), (kh, kw, cout), strides, pads in LAYERS:
        x = rng.standard_normal((1, h, w, cin)).astype(np.float32)
        kernel = rng.standard_normal((kh, kw, cin, cout)).astype(np.float32)
        bias = rng.standard_normal(cout).astype(np.float32)
        args = dict(strides=strides, pads=pads, activation="relu")
        fastpath.uninstall()
        numpy_ms = best_ms(lambda: engine_conv(x, kernel, bias, **args), repeats=2)
        fastpath.install()
        gemm_ms = best_ms(lambda: engine_conv(x, kernel, bias, **args))
        direct_ms = best_ms(lambda: simd.conv2d(x, kernel, bias, **args))
        y = simd.conv2d(x, kernel, bias, **args)
        flop = 2.0 * y.shape[1] * y.shape[2] * cout * kh * kw * cin
        rows.append(dict(layer=label, numpy_engine_ms=numpy_ms, engine_with_simd_gemm_ms=gemm_ms,
                         simd_direct_ms=direct_ms, simd_direct_gflops=flop / direct_ms / 1e6))
    print(f"time: process CPU time, best of repeats; platform: {sys.platform}")
    print("| layer | engine im2col + numpy.matmul | engine im2col + SIMD GEMM | SIMD direct conv2d | direct GFLOP/s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['layer']} | {r['numpy_engine_ms']:.1f} ms | {r['engine_with_simd_gemm_ms']:.1f} ms | "
              f"{r['simd_direct_ms']:.1f} ms | {r['simd_direct_gflops']:.1f} |")
    print(json.dumps({"platform": sys.platform, "rows": rows}))


main()
