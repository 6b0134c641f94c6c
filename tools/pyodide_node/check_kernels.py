"""Correctness checks of app.fastpath run *inside Pyodide* (no pytest there), via run_in_pyodide.mjs.

    node tools/pyodide_node/run_in_pyodide.mjs --index-url DIR --repo . --packages numpy,openblas \
        --script tools/pyodide_node/check_kernels.py -- /repo/.cache/kernels/vitrine_kernels.wasm.so

Compares the wasm SIMD kernels (and OpenBLAS via ctypes) with a float64 numpy reference written
here, over the same tail / leading-dimension / activation grid as tests/fastpath. Prints one JSON
line ``{"checks": n, "failures": [...], ...}`` and exits 1 if anything failed.
"""

import itertools
import json
import sys

import numpy as np

from app import fastpath

EPS32 = float(np.finfo(np.float32).eps)
failures = []
checks = 0


def check(label, got, a, b, bias=None, activation="linear"):
    global checks
    checks += 1
    exact = a.astype(np.float64) @ b.astype(np.float64)
    magnitude = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    if bias is not None:
        exact, magnitude = exact + bias, magnitude + np.abs(bias)
    if activation == "relu":
        exact = np.maximum(exact, 0.0)
    elif activation == "relu6":
        exact = np.clip(exact, 0.0, 6.0)
    tolerance = (a.shape[1] + 2) * EPS32 * magnitude + 1e-30
    if activation == "hard_swish":  # slope of z*clip(z+3,0,6)/6 is at most 1.5, plus its own roundings
        slope = np.where(np.abs(exact) < 3, 1.5, 1.0)
        exact = exact * np.clip(exact + 3, 0, 6) / 6
        tolerance = slope * tolerance + 4 * EPS32 * np.abs(exact) + 1e-30
    if got.shape != exact.shape or got.dtype != np.float32:
        failures.append(f"{label}: got {got.dtype}{got.shape}, expected float32{exact.shape}")
    elif exact.size and not (np.abs(got - exact) <= tolerance).all():
        failures.append(f"{label}: max error {float(np.max(np.abs(got - exact))):g} beyond bound")


def operands(m, k, n, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32),
            rng.standard_normal(n).astype(np.float32))


def run_gemm_grid(backend):
    small = itertools.product([1, 2, 3, 4, 5, 7, 9, 17, 33], [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33], [1, 3, 8, 17, 257])
    k_sweep = [(6, 19, k) for k in (1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 127, 255, 256, 511, 512, 513)]
    n_sweep = [(5, n, 33) for n in (64, 65, 127, 255, 256, 257)] + [(m, 10, 12) for m in (64, 65, 127, 255)]
    for m, n, k in [*small, *k_sweep, *n_sweep]:
        a, b, _ = operands(m, k, n, m * 10000 + n * 100 + k)
        check(f"{backend.name} small {m}x{k}x{n}", backend.sgemm(a, b), a, b)
    large = [(65, 127, 255), (127, 300, 513), (255, 513, 65), (3136, 576, 64), (784, 1152, 128), (196, 2304, 256),
             (12544, 27, 32), (49, 1024, 1000)]
    for m, k, n in large:
        a, b, bias = operands(m, k, n, m + k + n)
        check(f"{backend.name} large {m}x{k}x{n}", backend.sgemm(a, b, bias), a, b, bias)
    for (m, k, n), with_bias, activation in itertools.product([(1, 1, 1), (5, 9, 7), (33, 65, 17), (130, 300, 70)],
                                                             [False, True], ["linear", "relu", "relu6", "hard_swish"]):
        a, b, bias = operands(m, k, n, 3)
        a *= 2.0
        bias = bias if with_bias else None
        check(f"{backend.name} {activation} bias={with_bias} {m}x{k}x{n}", backend.sgemm(a, b, bias, activation),
              a, b, bias, activation)
    for m, k, n in [(7, 5, 3), (9, 33, 17), (70, 300, 41)]:
        rng = np.random.default_rng(5)
        a_buf = rng.standard_normal((m, k + 3)).astype(np.float32)
        b_buf = rng.standard_normal((k, n + 5)).astype(np.float32)
        out_buf = np.full((m, n + 7), 123.0, dtype=np.float32)
        a, b, out = a_buf[:, 1:k + 1], b_buf[:, 2:n + 2], out_buf[:, 3:n + 3]
        backend.sgemm(a, b, None, "relu", out)
        check(f"{backend.name} leading dims {m}x{k}x{n}", out, a, b, None, "relu")
        global checks
        checks += 1
        if not ((out_buf[:, :3] == 123.0).all() and (out_buf[:, n + 3:] == 123.0).all()):
            failures.append(f"{backend.name} leading dims {m}x{k}x{n}: wrote outside out")


def run_depthwise(backend):
    global checks
    cases = [(2, 8, 9, 13, 3, 3, (1, 1), (1, 1, 1, 1)), (1, 9, 8, 32, 3, 3, (2, 2), (0, 1, 0, 1)),
             (1, 11, 12, 20, 5, 5, (2, 2), (1, 2, 1, 2)), (1, 10, 10, 8, 5, 5, (1, 1), (2, 2, 2, 2))]
    for n, h, w, c, kh, kw, strides, pads in cases:
        rng = np.random.default_rng(c)
        x = rng.standard_normal((n, h, w, c)).astype(np.float32)
        kernel = rng.standard_normal((kh, kw, c, 1)).astype(np.float32)
        bias = rng.standard_normal(c).astype(np.float32)
        got = backend.depthwise_conv2d(x, kernel, bias, strides=strides, pads=pads, activation="relu6")
        top, bottom, left, right = pads
        xp = np.zeros((n, h + top + bottom, w + left + right, c))
        xp[:, top:top + h, left:left + w] = x
        oh, ow = got.shape[1:3]
        expected = np.zeros((n, oh, ow, c)) + bias
        for i in range(oh):
            for j in range(ow):
                for p in range(kh):
                    for q in range(kw):
                        expected[:, i, j] += xp[:, i * strides[0] + p, j * strides[1] + q] * kernel[p, q, :, 0]
        expected = np.clip(expected, 0, 6)
        checks += 1
        if not np.allclose(got, expected, rtol=1e-5, atol=1e-5):
            failures.append(f"depthwise {x.shape} k{kh}x{kw} s{strides}: max error {float(np.max(np.abs(got - expected))):g}")


def run_conv2d(backend):
    global checks
    cases = [(1, 7, 7, 3, 3, 3, 8, (1, 1), (1, 1, 1, 1), 1), (2, 9, 8, 5, 3, 3, 13, (2, 2), (0, 1, 0, 1), 1),
             (1, 11, 11, 3, 7, 7, 17, (2, 2), (3, 3, 3, 3), 1), (3, 5, 5, 8, 3, 3, 12, (1, 1), (1, 1, 1, 1), 2),
             (1, 14, 14, 64, 3, 3, 32, (1, 1), (1, 1, 1, 1), 1),
             # K blocks (K = 360, 343 with gathered input rows, 300) and a second column block (Cout 140)
             (1, 5, 6, 40, 3, 3, 20, (1, 1), (1, 1, 1, 1), 1), (1, 9, 8, 7, 7, 7, 9, (1, 1), (3, 3, 3, 3), 1),
             (2, 3, 5, 300, 1, 1, 140, (1, 1), (0, 0, 0, 0), 1)]
    winograd = [(1, 7, 7, 3, 8, (1, 1, 1, 1)), (2, 6, 9, 5, 13, (0, 0, 0, 0)), (1, 9, 6, 7, 6, (2, 0, 1, 2)),
                (3, 8, 8, 12, 20, (1, 1, 1, 1)), (1, 28, 28, 128, 32, (1, 1, 1, 1))]
    cases += [(n, h, w, cin, 3, 3, cout, "winograd", pads, 1) for n, h, w, cin, cout, pads in winograd]
    for n, h, w, cin, kh, kw, cout, strides, pads, groups in cases:
        rng = np.random.default_rng(cin + cout)
        x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
        kernel = rng.standard_normal((kh, kw, cin // groups, cout)).astype(np.float32)
        bias = rng.standard_normal(cout).astype(np.float32)
        if strides == "winograd":
            got = backend.conv2d_winograd3x3(x, kernel, bias, pads=pads, activation="relu")
            strides = (1, 1)
        else:
            got = backend.conv2d(x, kernel, bias, strides=strides, pads=pads, groups=groups, activation="relu")
        top, bottom, left, right = pads
        xp = np.zeros((n, h + top + bottom, w + left + right, cin))
        xp[:, top:top + h, left:left + w] = x
        oh, ow = got.shape[1:3]
        cin_g, cout_g = cin // groups, cout // groups
        expected = np.zeros((n, oh, ow, cout)) + bias
        for i in range(oh):
            for j in range(ow):
                for p in range(kh):
                    for q in range(kw):
                        pixel = xp[:, i * strides[0] + p, j * strides[1] + q]
                        for g in range(groups):
                            expected[:, i, j, g * cout_g:(g + 1) * cout_g] += (
                                pixel[:, g * cin_g:(g + 1) * cin_g] @ kernel[p, q, :, g * cout_g:(g + 1) * cout_g])
        expected = np.maximum(expected, 0)
        checks += 1
        if not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
            failures.append(f"conv2d {x.shape} k{kernel.shape} s{strides} g{groups}: "
                            f"max error {float(np.max(np.abs(got - expected))):g}")


def run_prologue(backend):
    """conv2d with a batch-norm + ReLU prologue on a concat view (the first 20 of 52 channels)."""
    global checks
    rng = np.random.default_rng(12)
    for kh, pads, cin in ((1, (0, 0, 0, 0), 20), (3, (1, 1, 1, 1), 20), (1, (0, 0, 0, 0), 300)):
        buffer = rng.standard_normal((1, 6, 5, cin + 32)).astype(np.float32)
        x = buffer[..., :cin]
        kernel = rng.standard_normal((kh, kh, cin, 16)).astype(np.float32)
        s, t = rng.uniform(-2, 2, cin).astype(np.float32), rng.standard_normal(cin).astype(np.float32)
        got = backend.conv2d(x, kernel, None, None, s, t, pads=pads, in_activation="relu")
        a = np.maximum(x.astype(np.float64) * s + t, 0)
        top, bottom, left, right = pads
        ap = np.zeros((1, 6 + top + bottom, 5 + left + right, cin))
        ap[:, top:top + 6, left:left + 5] = a
        expected = np.zeros(got.shape)
        for i in range(got.shape[1]):
            for j in range(got.shape[2]):
                expected[:, i, j] = np.einsum("npqc,pqco->no", ap[:, i:i + kh, j:j + kh], kernel)
        checks += 1
        if not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
            failures.append(f"conv2d prologue k{kh} cin {cin}: max error {float(np.max(np.abs(got - expected))):g}")


def run_pool(backend):
    global checks
    cases = [(1, 114, 114, 64, (3, 3), (2, 2), (0, 0, 0, 0)), (2, 7, 7, 3, (2, 2), (2, 2), (0, 0, 0, 0)),
             (1, 9, 8, 13, (3, 3), (1, 1), (1, 1, 1, 1)), (3, 5, 6, 9, (2, 3), (1, 2), (1, 0, 2, 1))]
    for n, h, w, c, pool, strides, pads in cases:
        x = np.random.default_rng(h + c).standard_normal((n, h, w, c)).astype(np.float32)
        top, bottom, left, right = pads
        got_max = backend.max_pool2d(x, pool=pool, strides=strides, pads=pads)
        got_avg = backend.avg_pool2d(x, pool=pool, strides=strides, pads=pads)
        oh, ow = got_max.shape[1:3]
        expected_max, expected_avg = np.zeros((n, oh, ow, c)), np.zeros((n, oh, ow, c))
        for i in range(oh):
            for j in range(ow):
                r0, c0 = i * strides[0] - top, j * strides[1] - left
                cells = x[:, max(r0, 0):min(r0 + pool[0], h), max(c0, 0):min(c0 + pool[1], w)].reshape(n, -1, c)
                expected_max[:, i, j] = cells.max(axis=1)
                expected_avg[:, i, j] = cells.astype(np.float64).mean(axis=1)
        checks += 2
        if not np.array_equal(got_max, expected_max.astype(np.float32)):
            failures.append(f"max_pool2d {x.shape} pool {pool} s{strides} pads {pads}: differs")
        if not np.allclose(got_avg, expected_avg, rtol=1e-6, atol=1e-6):
            failures.append(f"avg_pool2d {x.shape} pool {pool} s{strides} pads {pads}: "
                            f"max error {float(np.max(np.abs(got_avg - expected_avg))):g}")


def run_scale_shift(backend):
    global checks
    for shape in [(7,), (2, 5, 5, 3), (1, 3, 3, 9), (1, 7, 7, 33)]:
        rng = np.random.default_rng(sum(shape))
        x = (4 * rng.standard_normal(shape)).astype(np.float32)
        scale = rng.standard_normal(shape[-1]).astype(np.float32)
        shift = rng.standard_normal(shape[-1]).astype(np.float32)
        got = backend.scale_shift(x, scale, shift, activation="relu6")
        expected = np.clip(x.astype(np.float64) * scale + shift, 0, 6)
        checks += 1
        if not np.allclose(got, expected, rtol=3e-7, atol=1e-6):
            failures.append(f"scale_shift {shape}: max error {float(np.max(np.abs(got - expected))):g}")


def main():
    library = sys.argv[1]
    with open(library, "rb") as handle:
        data = handle.read()
    # the browser path: bytes fetched by the worker, written to the in-memory FS, then dlopen'ed
    simd = fastpath.select_backend(("simd",), kernel_bytes=data)
    report = {"platform": sys.platform, "numpy": np.__version__, "backend": simd.name, "library": simd.path}
    run_gemm_grid(simd)
    run_depthwise(simd)
    run_conv2d(simd)
    run_prologue(simd)
    run_pool(simd)
    run_scale_shift(simd)
    try:
        blas = fastpath.select_backend(("openblas",))
    except fastpath.FastpathError as exc:
        report["openblas"] = f"skipped: {exc}"
    else:
        report["openblas"] = blas.name
        run_gemm_grid(blas)
    try:
        from app.kernels import gemm as engine
    except ImportError as exc:
        report["engine_hook"] = f"skipped: {exc}"
    else:
        fastpath.select_backend(("simd",), kernel_bytes=data)
        fastpath.install()
        a, b, _ = operands(100, 75, 30, 1)
        check("engine gemm hook", engine.gemm(a, b), a, b)
        report["engine_hook"] = engine.gemm_backend_name()
    report.update(checks=checks, failures=failures)
    print(json.dumps(report))
    sys.exit(1 if failures else 0)


main()
