// Peer engines for bench/inference.py. Every function returns plain JSON-able objects; timings
// are performance.now() differences taken in this page, around exactly what a caller of the
// library waits for (input tensor creation, inference, reading the output back).
"use strict";

const LIB = "/__bench/node_modules/";

async function fetchFloat32(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Float32Array(await response.arrayBuffer());
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const benchTfjs = {
  model: null,

  /** Select the wasm backend (single-threaded: no cross-origin isolation here, as on GitHub Pages). */
  async init() {
    tf.wasm.setWasmPaths(LIB + "@tensorflow/tfjs-backend-wasm/dist/");
    const ok = await tf.setBackend("wasm");
    if (!ok || tf.getBackend() !== "wasm") throw new Error(`TF.js wasm backend failed to initialise (backend ${tf.getBackend()})`);
    await tf.ready();
    return {
      version: tf.version.tfjs,
      backend: tf.getBackend(),
      simd: await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT"),
      multithread: await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT"),
      cross_origin_isolated: self.crossOriginIsolated === true,
    };
  },

  async load(modelUrl) {
    if (this.model) { this.model.dispose(); this.model = null; }
    const started = performance.now();
    this.model = await tf.loadLayersModel(modelUrl);
    return { load_ms: performance.now() - started, inputs: this.model.inputs.map((t) => t.shape) };
  },

  /** One timed inference: tensor from the bytes, predict, read every output back. */
  async infer(data, shape) {
    const started = performance.now();
    const x = tf.tensor(data, shape, "float32");
    const y = this.model.predict(x, { batchSize: shape[0] });
    const outputs = Array.isArray(y) ? y : [y];
    const values = [];
    for (const out of outputs) values.push({ shape: out.shape, values: Array.from(await out.data()) });
    const elapsed = performance.now() - started;
    x.dispose();
    outputs.forEach((t) => t.dispose());
    return { elapsed, values };
  },

  async run(inputUrl, shape, warmup, runs) {
    const data = await fetchFloat32(inputUrl);
    let last = null;
    for (let i = 0; i < warmup; i++) last = await this.infer(data, shape);
    const times = [];
    for (let i = 0; i < runs; i++) { last = await this.infer(data, shape); times.push(last.elapsed); }
    return { times_ms: times, median_ms: runs ? median(times) : null, outputs: last === null ? null : last.values,
             wasm_memory_bytes: tf.memory().numBytes };
  },
};

const benchOrt = {
  session: null,

  async init() {
    ort.env.wasm.wasmPaths = LIB + "onnxruntime-web/dist/";
    ort.env.wasm.numThreads = 1;   // no SharedArrayBuffer without cross-origin isolation anyway
    ort.env.wasm.simd = true;
    return { version: ort.env.versions ? ort.env.versions.web : null, cross_origin_isolated: self.crossOriginIsolated === true };
  },

  async load(modelUrl) {
    const started = performance.now();
    this.session = await ort.InferenceSession.create(modelUrl, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    return { load_ms: performance.now() - started, inputs: this.session.inputNames, outputs: this.session.outputNames };
  },

  async run(inputUrl, shape, warmup, runs) {
    const data = await fetchFloat32(inputUrl);
    const name = this.session.inputNames[0];
    const once = async () => {
      const started = performance.now();
      const feeds = { [name]: new ort.Tensor("float32", data, shape) };
      const results = await this.session.run(feeds);
      const first = results[this.session.outputNames[0]];
      const values = Array.from(first.data.slice(0, 16));
      return { elapsed: performance.now() - started, shape: first.dims, head: values };
    };
    let last = null;
    for (let i = 0; i < warmup; i++) last = await once();
    const times = [];
    for (let i = 0; i < runs; i++) { last = await once(); times.push(last.elapsed); }
    return { times_ms: times, median_ms: runs ? median(times) : null, output_shape: last === null ? null : last.shape,
             output_head: last === null ? null : last.head };
  },
};

window.benchTfjs = benchTfjs;
window.benchOrt = benchOrt;
document.body.setAttribute("data-harness", "ready");
