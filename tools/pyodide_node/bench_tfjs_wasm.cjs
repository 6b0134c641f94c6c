// Reference timing: the same TF.js layers-model on TF.js's own `wasm` backend (XNNPACK, SIMD),
// single-threaded like a browser page without cross-origin isolation. Run it in the same time
// window as bench_model.py to compare under identical machine load.
//
//   node tools/pyodide_node/bench_tfjs_wasm.cjs NODE_MODULES_DIR MODEL_DIR [repeats]
//
// NODE_MODULES_DIR holds @tensorflow/tfjs@4.22.0 and @tensorflow/tfjs-backend-wasm@4.22.0
// (a scratch `npm install` in /tmp, never the repo's package.json). The input is a uniform(-1, 1)
// batch of one image of the model's input shape. Time is process CPU time (best of repeats).
const path = require("path");
const fs = require("fs");
const [modules, modelDir, repeatsArg] = process.argv.slice(2);
const tf = require(path.join(modules, "@tensorflow/tfjs"));
const wasm = require(path.join(modules, "@tensorflow/tfjs-backend-wasm"));

(async () => {
  wasm.setWasmPaths(path.join(modules, "@tensorflow/tfjs-backend-wasm/dist") + "/");
  wasm.setThreadsCount(1);
  await tf.setBackend("wasm");
  const topology = JSON.parse(fs.readFileSync(path.join(modelDir, "model.json"), "utf8"));
  const weightSpecs = [];
  const buffers = [];
  for (const group of topology.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(modelDir, p)));
  }
  const all = Buffer.concat(buffers);
  const model = await tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: topology.modelTopology, weightSpecs,
    weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) }));
  const shape = [1, ...model.inputs[0].shape.slice(1)];
  const x = tf.randomUniform(shape, -1, 1, "float32", 1);
  const run = async () => { const y = model.predict(x); await y.data(); y.dispose(); };
  await run();
  let best = Infinity;
  for (let i = 0; i < Number(repeatsArg || 3); i++) {
    const t0 = process.cpuUsage();  // CPU time, like bench_model.py: robust to a shared machine
    await run();
    const used = process.cpuUsage(t0);
    best = Math.min(best, (used.user + used.system) / 1000);
  }
  console.log(JSON.stringify({ tfjs: tf.version.tfjs, backend: tf.getBackend(),
    simd: await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT"), multithread: await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT"),
    threads: wasm.getThreadsCount ? wasm.getThreadsCount() : 1, model: modelDir, ms_per_image: best }));
})();
