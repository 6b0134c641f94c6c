"""Milliseconds per depthwise layer: the engine's numpy depthwise_conv2d vs the SIMD kernel.

Runs in Pyodide via run_in_pyodide.mjs (argument: the wasm kernel library) or in CPython
(argument: the native library). MobileNet-style layers at 224x224, batch 1.
"""

import json
import sys
import time

import numpy as np

from app import fastpath
from app.kernels import KERNELS

LAYERS = [
    # label, (H, W, C), (KH, KW), strides, pads
    ("MobileNet dw 3x3 112x112x32", (112, 112, 32), (3, 3), (1, 1), (1, 1, 1, 1)),
    ("MobileNet dw 3x3/2 112x112x64", (112, 112, 64), (3, 3), (2, 2), (0, 1, 0, 1)),
    ("MobileNet dw 3x3 28x28x256", (28, 28, 256), (3, 3), (1, 1), (1, 1, 1, 1)),
    ("EfficientNet dw 5x5 14x14x480", (14, 14, 480), (5, 5), (1, 1), (2, 2, 2, 2)),
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
    simd = fastpath.SimdKernelBackend(sys.argv[1])
    rng = np.random.default_rng(0)
    rows = []
    for label, (h, w, c), (kh, kw), strides, pads in LAYERS:
        x = rng.standard_normal((1, h, w, c)).astype(np.float32)
        kernel = rng.standard_normal((kh, kw, c, 1)).astype(np.float32)
        bias = rng.standard_normal(c).astype(np.float32)
        args = dict(strides=strides, pads=pads, activation="relu6")
        rows.append(dict(layer=label,
                         numpy_engine_ms=best_ms(lambda: KERNELS["depthwise_conv2d"](x, kernel, bias, **args)),
                         simd_ms=best_ms(lambda: simd.depthwise_conv2d(x, kernel, bias, **args))))
    print(f"time: process CPU time, best of repeats; platform: {sys.platform}")
    print("| layer | engine numpy depthwise | SIMD depthwise |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r['layer']} | {r['numpy_engine_ms']:.1f} ms | {r['simd_ms']:.1f} ms |")
    print(json.dumps({"platform": sys.platform, "rows": rows}))


main()
