"""GFLOP/s of conv-shaped GEMMs: numpy.matmul vs OpenBLAS (ctypes) vs the SIMD kernels.

Runs in Pyodide (via run_in_pyodide.mjs, argument: path of the wasm kernel library) or in CPython
(argument: path of the native library). Single-threaded, float32, best of several repeats after a
warm-up call. Prints a Markdown table and a JSON line.

Shapes are im2col GEMMs of DenseNet121 / ResNet-style layers at 224x224:
M = output pixels, K = kernel_h * kernel_w * input channels, N = output channels.
"""

import json
import sys
import time

import numpy as np

from app import fastpath

SHAPES = [
    ("DenseNet conv0 7x7/2, 3->64", 12544, 147, 64),
    ("DenseNet block1 1x1, 256->128", 3136, 256, 128),
    ("DenseNet block1 3x3, 128->32", 3136, 1152, 32),
    ("DenseNet block2 1x1, 512->128", 784, 512, 128),
    ("DenseNet block3 1x1, 1024->128", 196, 1024, 128),
    ("ResNet 3x3, 64->64", 3136, 576, 64),
    ("ResNet 3x3, 128->128", 784, 1152, 128),
    ("ResNet 1x1, 64->256", 3136, 64, 256),
    ("ResNet 3x3, 256->256", 196, 2304, 256),
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

def best_seconds(fn, budget=3.0, max_repeats=25):
    fn()  # warm-up: JIT tier-up in V8, workspace allocation
    times = []
    start = cpu_seconds()
    while len(times) < max_repeats and (len(times) < 2 or cpu_seconds() - start < budget):
        t0 = cpu_seconds()
        fn()
        times.append(cpu_seconds() - t0)
    return min(times)


def main():
    library = sys.argv[1]
    simd = fastpath.SimdKernelBackend(library)
    try:
        blas = fastpath.select_backend(("openblas",))
    except fastpath.FastpathError as exc:
        blas = None
        print(f"OpenBLAS skipped: {exc}", file=sys.stderr)
    rng = np.random.default_rng(0)
    rows = []
    for label, m, k, n in SHAPES:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        packed = simd.pack_weights(b)
        flop = 2.0 * m * n * k
        row = {"layer": label, "M": m, "K": k, "N": n,
               "numpy": flop / best_seconds(lambda: np.matmul(a, b, out=out)) / 1e9,
               "openblas": flop / best_seconds(lambda: blas.sgemm(a, b, out=out)) / 1e9 if blas else None,
               "simd": flop / best_seconds(lambda: simd.sgemm(a, b, out=out)) / 1e9,
               "simd_prepacked": flop / best_seconds(lambda: simd.sgemm_packed(a, packed, out=out)) / 1e9}
        rows.append(row)
    print(f"time: process CPU time, best of repeats; platform: {sys.platform}, numpy {np.__version__}, simd library: {library}")
    print("| layer (im2col GEMM) | M | K | N | numpy.matmul | OpenBLAS ctypes | SIMD kernel | SIMD, B prepacked |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        blas_text = f"{r['openblas']:.1f}" if r["openblas"] is not None else "n/a"
        print(f"| {r['layer']} | {r['M']} | {r['K']} | {r['N']} | {r['numpy']:.1f} | {blas_text} | "
              f"{r['simd']:.1f} | {r['simd_prepacked']:.1f} |")
    print(json.dumps({"platform": sys.platform, "rows": rows}))


main()
