"""Per-op CPU profile of one model's optimised graph (where the time of ``predict`` goes).

    node tools/pyodide_node/run_in_pyodide.mjs --index-url dist/pyodide --repo . \
        --mount .cache/fixtures:/fixtures --script tools/pyodide_node/profile_model.py -- \
        /fixtures/big/k2_webipred_densenet121 /repo/.cache/kernels/vitrine_kernels.wasm.so [repeats]

(also runs in CPython with the native library). Runs the engine's own plan node by node, as
``Plan.run`` does (prepared kernels after the first run), with the SIMD GEMM hook and every SIMD
kernel installed (``install_fastpath_kernels``), and sums process CPU time per op and per (op, shape) group; each node's time is the
best of ``repeats`` whole-graph runs. Prints the total, the top groups and the share of the time
spent outside kernels (the plan loop itself).
"""

import sys
import time
from collections import defaultdict

import numpy as np

import app
from app import fastpath
from app import kernels as engine_kernels


def cpu_clock():
    try:
        import js  # Pyodide under Node
        cpu_usage = js.process.cpuUsage

        def clock():
            usage = cpu_usage()
            return (usage.user + usage.system) / 1e6
        clock()
        return clock
    except (ImportError, AttributeError):
        return time.process_time


def describe(node, env, weights):
    x = env.get(node.inputs[0]) if node.inputs else None
    shape = tuple(getattr(x, "shape", ()))
    extra = ""
    if node.op in ("conv2d", "depthwise_conv2d"):
        kernel = weights[node.inputs[1]]
        extra = f" k{kernel.shape[0]}x{kernel.shape[1]}->{kernel.shape[-1]} s{node.attrs.get('strides', (1, 1))[0]}"
    if node.op == "concat":
        shape = tuple(getattr(env.get(n), "shape", ()) for n in node.inputs[:1]) + (f"+{len(node.inputs) - 1}",)
    return f"{node.op} {shape}{extra}"


def main():
    folder, library = sys.argv[1], sys.argv[2]
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    clock = cpu_clock()
    x = np.load(f"{folder}/io.npz")["input_0"][:1].astype(np.float32)
    model = app.load_model(folder)
    fastpath.select_backend(("simd",), kernel_path=library)
    fastpath.install()
    engine_kernels.install_fastpath_kernels()
    plan = model._plan
    best = [float("inf")] * len(plan.steps)
    totals = []
    prepared = [None] * len(plan.steps)  # as Plan.run does: kernel.prepare on the first run
    for _ in range(repeats + 1):  # the first run is a warm-up
        env = dict(plan.graph.weights)
        env[plan.graph.inputs[0].name] = x
        start = clock()
        for index, step in enumerate(plan.steps):
            node = step.node
            args = [env[n] for n in node.inputs]
            kernel = engine_kernels.KERNELS[node.op]
            t0 = clock()
            if prepared[index] is not None:
                result = prepared[index](*args)
            else:
                result = kernel(*args, **step.kwargs)
                prepare = getattr(kernel, "prepare", None)
                prepared[index] = prepare(*args, **step.kwargs) if prepare is not None else None
            best[index] = min(best[index], clock() - t0)
            if len(node.outputs) == 1:
                env[node.outputs[0]] = result
            else:
                env.update(zip(node.outputs, result))
            for name in step.release:
                env.pop(name, None)
        totals.append(clock() - start)
    t0 = clock()
    model.predict(x)
    predict_ms = 1000 * (clock() - t0)
    by_op, by_group, counts = defaultdict(float), defaultdict(float), defaultdict(int)
    env = dict(plan.graph.weights)
    env[plan.graph.inputs[0].name] = x
    for index, step in enumerate(plan.steps):
        node = step.node
        key = describe(node, env, plan.graph.weights)
        result = engine_kernels.KERNELS[node.op](*[env[n] for n in node.inputs], **step.kwargs)
        env.update(zip(node.outputs, result if len(node.outputs) > 1 else (result,)))
        by_op[node.op] += best[index]
        by_group[key] += best[index]
        counts[key] += 1
    kernel_ms = 1000 * sum(best)
    print(f"{folder}: {len(plan.steps)} nodes; predict {predict_ms:.1f} ms CPU; profiled run best "
          f"{1000 * min(totals[1:]):.1f} ms, sum of per-node bests {kernel_ms:.1f} ms")
    print("| op | ms | share |")
    print("|---|---:|---:|")
    for op, seconds in sorted(by_op.items(), key=lambda item: -item[1]):
        print(f"| {op} | {1000 * seconds:.1f} | {100 * seconds / sum(best):.0f}% |")
    print("top (op, input shape) groups:")
    for key, seconds in sorted(by_group.items(), key=lambda item: -item[1])[:40]:
        print(f"  {1000 * seconds:7.2f} ms  {counts[key]:3d} x {key}")


main()
