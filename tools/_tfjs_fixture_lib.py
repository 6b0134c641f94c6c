"""Shared helpers for the TF.js fixture generators (run ONLY inside the /opt/tfenv venv).

Not part of the ``app`` package: it imports TensorFlow, tf_keras, Keras 3 and tensorflowjs.
``tools/make_tfjs_fixtures.py`` (small committed cases) and ``tools/make_big_fixtures.py``
(big cached cases) both use it so both write exactly the same fixture layout:

    <case>/model.json, <case>/group*-shard*of*.bin   (written by the tensorflowjs converter)
    <case>/io.npz     input_0.. (float32, NHWC, batch 2) and output_0.. (TensorFlow's outputs)
    <case>/meta.json  {"keras", "kind", "description", "tf_version", "tfjs_version", ...}
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# Keras 3 must be imported before the jax stub below: Keras 3 probes for jax at import time and
# would pick up the empty stub module.
import keras  # noqa: E402  (Keras 3, bundled with TensorFlow 2.21)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402  (Keras 2)

# tensorflowjs imports these optional heavy packages at import time although the layers-model
# converter never uses them; empty stand-ins keep /opt/tfenv small (see tools/fixture_env.sh).
for _optional in ("tensorflow_decision_forests", "tensorflow_hub", "jax", "jax.experimental",
                  "jax.experimental.jax2tf", "flax", "flax.nnx"):
    if _optional not in sys.modules:
        try:
            __import__(_optional)
        except ImportError:
            sys.modules[_optional] = types.ModuleType(_optional)

import tensorflowjs  # noqa: E402
from tensorflowjs import read_weights  # noqa: E402
from tensorflowjs.converters import converter as tfjs_converter  # noqa: E402
from tensorflowjs.converters import keras_h5_conversion as conversion  # noqa: E402

tf.config.experimental.enable_op_determinism()

TF_VERSION = tf.__version__
KERAS3_VERSION = keras.__version__
TF_KERAS_VERSION = tf_keras.__version__
TFJS_VERSION = tensorflowjs.__version__
TFJS_NODE_VERSION = "4.22.0"
DEFAULT_TFJS_NODE_DIR = Path(os.environ.get("TFJS_NODE_DIR", "/tmp/tfjsnode"))


def keras_module(keras_major: str):
    """The Keras module for an export flavour: "2" -> tf_keras, "3" -> keras (Keras 3)."""
    if keras_major == "2":
        return tf_keras
    if keras_major == "3":
        return keras
    raise ValueError(f"keras_major must be '2' or '3', received {keras_major!r}")


# ------------------------------------------------------------------------------------------
# Seeded, healthy weights
# ------------------------------------------------------------------------------------------

def _all_layers(model):
    """Every leaf layer, recursing into nested models (Keras 2 and 3)."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _all_layers(layer)
        else:
            yield layer


def _weight_short_name(variable) -> str:
    # tf_keras: "conv2d/kernel:0"; Keras 3: "kernel" (path "conv2d/kernel").
    return variable.name.split("/")[-1].split(":")[0]


def _seeded_value(layer, short_name: str, shape: tuple[int, ...], rng: np.random.Generator,
                  gain: float) -> np.ndarray | None:
    """A random value that keeps activations O(1): He-like kernels, small biases, BN statistics
    far from the identity (so a loader that ignores them fails visibly)."""
    cls = type(layer).__name__
    shape = tuple(int(s) for s in shape)
    if short_name in ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings"):
        if cls == "Conv2DTranspose":
            fan_in = shape[0] * shape[1] * shape[3]
        elif short_name == "depthwise_kernel" or cls == "DepthwiseConv2D":
            fan_in = shape[0] * shape[1]
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else shape[0]
        return (rng.standard_normal(shape) * gain / np.sqrt(max(fan_in, 1))).astype(np.float32)
    if short_name == "bias":
        return rng.uniform(-0.2, 0.2, shape).astype(np.float32)
    if short_name == "gamma":
        return rng.uniform(0.6, 1.4, shape).astype(np.float32)
    if short_name == "beta":
        return rng.uniform(-0.3, 0.3, shape).astype(np.float32)
    if short_name == "moving_mean":
        return rng.uniform(-0.3, 0.3, shape).astype(np.float32)
    if short_name == "moving_variance":
        return rng.uniform(0.5, 1.6, shape).astype(np.float32)
    if short_name == "alpha":  # PReLU
        return rng.uniform(0.05, 0.35, shape).astype(np.float32)
    return None  # e.g. Normalization mean/variance/count: keep what adapt()/config produced


def seed_weights(model, seed: int, gain: float = 1.3) -> None:
    """Replace every trainable/statistics weight of ``model`` by seeded random values."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        variables = layer.weights
        if not variables:
            continue
        new_values = []
        for variable in variables:
            value = _seeded_value(layer, _weight_short_name(variable), tuple(variable.shape),
                                  rng, gain)
            new_values.append(np.asarray(variable.numpy()) if value is None else value)
        layer.set_weights(new_values)


# ------------------------------------------------------------------------------------------
# Conversion with the real tensorflowjs converter
# ------------------------------------------------------------------------------------------

def convert(model, keras_major: str, out_dir: Path, quantization_dtype_map=None,
            weight_shard_size_bytes: int = 4 * 1024 * 1024, split_weights_by_layer: bool = False):
    """Save ``model`` with its own Keras and convert it with tensorflowjs's layers-model path:
    Keras 2 -> .h5 -> ``dispatch_keras_h5_to_tfjs_layers_model_conversion``;
    Keras 3 -> .keras -> ``dispatch_keras_keras_to_tfjs_layers_model_conversion``."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        if keras_major == "2":
            saved = os.path.join(tmp, "model.h5")
            model.save(saved, save_format="h5")
            tfjs_converter.dispatch_keras_h5_to_tfjs_layers_model_conversion(
                saved, output_dir=str(out_dir), quantization_dtype_map=quantization_dtype_map,
                split_weights_by_layer=split_weights_by_layer,
                weight_shard_size_bytes=weight_shard_size_bytes)
            note = _repair_dropped_keras2_weights(model, saved, out_dir, quantization_dtype_map,
                                                  weight_shard_size_bytes,
                                                  split_weights_by_layer)
        else:
            saved = os.path.join(tmp, "model.keras")
            model.save(saved)
            tfjs_converter.dispatch_keras_keras_to_tfjs_layers_model_conversion(
                saved, output_dir=str(out_dir), quantization_dtype_map=quantization_dtype_map,
                split_weights_by_layer=split_weights_by_layer,
                weight_shard_size_bytes=weight_shard_size_bytes)
            note = None
    normalize_model_json(out_dir)
    return note


def _repair_dropped_keras2_weights(model, h5_path, out_dir, quantization_dtype_map,
                                   weight_shard_size_bytes, split_weights_by_layer):
    """tensorflowjs 4.22 walks the top-level h5 groups and stops at a group that has
    ``weight_names``: when a layer name is a path prefix of another (tf_keras MobileNetV3: "Conv"
    and "Conv/BatchNorm"), the nested layer's weights are silently dropped from the manifest.
    Then re-write the weights with the converter's own ``write_artifacts`` from the model's
    variables (same names the converter uses: variable name without ":0"). Returns a note for
    meta.json, or None when the converter's output was complete."""
    manifest = json.loads((out_dir / "model.json").read_text())["weightsManifest"]
    written = {w["name"] for group in manifest for w in group["weights"]}
    expected = [(v.name[:-2] if v.name.endswith(":0") else v.name, v) for v in model.weights]
    missing = [name for name, _ in expected if name not in written]
    if not missing:
        return None
    topology, _ = conversion.h5_merged_saved_model_to_tfjs_format(h5_path)
    by_layer: dict[str, list] = {}
    for layer in _all_layers(model):
        for v in layer.weights:
            name = v.name[:-2] if v.name.endswith(":0") else v.name
            by_layer.setdefault(layer.name, []).append({"name": name, "data": v.numpy()})
    groups = list(by_layer.values()) if split_weights_by_layer else [
        [entry for entries in by_layer.values() for entry in entries]]
    shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    conversion.write_artifacts(topology, groups, str(out_dir), quantization_dtype_map,
                               weight_shard_size_bytes=weight_shard_size_bytes)
    return (f"tensorflowjs {TFJS_VERSION} dropped {len(missing)} weights (e.g. {missing[:3]}) "
            f"because layer names nest as h5 paths; weights re-written with "
            f"keras_h5_conversion.write_artifacts from the model variables")


def _renumber_shared_object_ids(node, mapping: dict) -> None:
    # Keras 3 writes id(python object) as "shared_object_id": renumber by first appearance so a
    # regenerated model.json is byte-identical (the ids only pair up shared configs).
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "shared_object_id" and isinstance(value, int):
                node[key] = mapping.setdefault(value, len(mapping) + 1)
            else:
                _renumber_shared_object_ids(value, mapping)
    elif isinstance(node, list):
        for item in node:
            _renumber_shared_object_ids(item, mapping)


def normalize_model_json(case_dir: Path) -> None:
    """Make model.json deterministic (shared_object_id renumbering only; nothing else changes)."""
    path = case_dir / "model.json"
    model_json = json.loads(path.read_text())
    _renumber_shared_object_ids(model_json, {})
    path.write_text(json.dumps(model_json))


def replace_topology_with_raw_config(model, case_dir: Path) -> None:
    """Swap modelTopology.model_config for Keras 3's own, unstripped ``model.to_json()``."""
    path = case_dir / "model.json"
    model_json = json.loads(path.read_text())
    model_json["modelTopology"]["model_config"] = json.loads(model.to_json())
    _renumber_shared_object_ids(model_json, {})
    path.write_text(json.dumps(model_json))


def assign_manifest_weights(model, entries) -> None:
    """Assign decoded (dequantized) manifest entries to a tf_keras model by name: tf_keras
    manifest names are the variable names without ":0"."""
    by_name = {entry["name"]: np.asarray(entry["data"]) for entry in entries}
    used = set()
    for layer in _all_layers(model):
        for variable in layer.weights:
            full = variable.name[:-2] if variable.name.endswith(":0") else variable.name
            # tf_keras Normalization adapted outside a model saves unscoped names ("mean").
            short = _weight_short_name(variable)
            candidates = [full, f"{layer.name}/{short}", short]
            name = next((c for c in candidates if c in by_name), None)
            if name is None or name in used:
                raise RuntimeError(f"layer {layer.name}: no manifest entry for {candidates}")
            used.add(name)
            variable.assign(by_name[name].astype(variable.dtype.as_numpy_dtype
                                                 if hasattr(variable.dtype, "as_numpy_dtype")
                                                 else np.float32).reshape(variable.shape))
        # Normalization derives its working mean/variance from the variables only here
        # (Keras's own h5 loader calls it too).
        if layer.weights and hasattr(layer, "finalize_state"):
            layer.finalize_state()
    if used != set(by_name):
        raise RuntimeError(f"manifest entries not used: {sorted(set(by_name) - used)[:10]}")


def load_tfjs_into_tf_keras(case_dir: Path):
    """Rebuild a Keras-2 TF.js layers-model in tf_keras (topology + dequantized weights).
    (tensorflowjs 4.22's own keras_tfjs_loader.load_keras_model fails with KeyError '' on
    tf_keras 2.21, hence this.)"""
    model_json = json.loads((case_dir / "model.json").read_text())
    topology = model_json["modelTopology"]
    config = topology.get("model_config", topology)
    model = tf_keras.models.model_from_json(json.dumps(config))
    entries = read_weights.read_weights(model_json["weightsManifest"], str(case_dir), flatten=True)
    assign_manifest_weights(model, entries)
    return model


def reload_check(keras_major: str, case_dir: Path, inputs, original_model=None) -> dict:
    """Rebuild the model from the written model.json + shards alone (no Python model object) and
    compare its TensorFlow outputs with io.npz: proves the artifacts, not only the in-memory
    model, produce the expected outputs."""
    model_json = json.loads((case_dir / "model.json").read_text())
    if keras_major == "2":
        try:
            model = load_tfjs_into_tf_keras(case_dir)
            method = "model rebuilt from model.json topology + decoded shards, TF predict"
        except (TypeError, ValueError) as error:
            # Application-private layers (ConvNeXt's LayerScale/StochasticDepth) are not
            # registered, so tf_keras cannot rebuild them from JSON: clone the architecture and
            # still check every weight read back from the shards.
            if original_model is None:
                raise
            model = tf_keras.models.clone_model(original_model)
            entries = read_weights.read_weights(model_json["weightsManifest"], str(case_dir),
                                                flatten=True)
            assign_manifest_weights(model, entries)
            method = ("weights from the decoded shards, architecture cloned from the Keras model "
                      f"because tf_keras cannot rebuild the JSON: {str(error)[:160]}")
    else:
        import h5py
        from keras.src.models.functional import Functional
        # The converter strips "module", so the model classes must be named explicitly.
        try:
            model = keras.models.model_from_json(
                json.dumps(model_json["modelTopology"]["model_config"]),
                custom_objects={"Functional": Functional, "Sequential": keras.Sequential})
            method = "model rebuilt from model.json topology + decoded shards, TF predict"
        except (ValueError, TypeError) as error:
            # Without "module", a keras.ops node (e.g. class_name "Add" from keras.src.ops.numpy
            # with a constant argument) deserializes as the *layer* Add and fails: check the
            # shards with Keras's own topology instead, and say so.
            if original_model is None:
                raise
            model = keras.models.model_from_json(original_model.to_json())
            method = ("weights from the decoded shards, topology from Keras's model.to_json() "
                      f"because the converter's stripped topology does not rebuild in Keras: "
                      f"{str(error)[:200]}")
        entries = read_weights.read_weights(model_json["weightsManifest"], str(case_dir),
                                            flatten=True)
        with tempfile.TemporaryDirectory() as tmp:
            weights_path = os.path.join(tmp, "model.weights.h5")
            model.save_weights(weights_path)
            with h5py.File(weights_path, "r+") as h5:
                for entry in entries:
                    h5[entry["name"]][...] = np.asarray(entry["data"], dtype=np.float32)
            model.load_weights(weights_path)
    with np.load(case_dir / "io.npz") as io:
        expected = [io[f"output_{i}"] for i in range(sum(k.startswith("output_") for k in io))]
    got = predict(model, inputs)
    return {"max_abs_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(got, expected)),
            "method": method}


def dequantized_reference_model(model, keras_major: str, case_dir: Path):
    """For quantized fixtures the truth is TensorFlow run on the weights the shards actually hold:
    the dequantized values are written back into the model and TensorFlow predicts with them."""
    model_json = json.loads((case_dir / "model.json").read_text())
    entries = read_weights.read_weights(model_json["weightsManifest"], str(case_dir), flatten=True)
    if keras_major == "2":
        assign_manifest_weights(model, entries)
        return model
    # Keras 3: manifest names are the paths inside the .keras archive's model.weights.h5.
    import h5py
    with tempfile.TemporaryDirectory() as tmp:
        weights_path = os.path.join(tmp, "model.weights.h5")
        model.save_weights(weights_path)
        with h5py.File(weights_path, "r+") as h5:
            for entry in entries:
                dataset = h5[entry["name"]]
                dataset[...] = np.asarray(entry["data"], dtype=dataset.dtype)
        model.load_weights(weights_path)
    return model


# ------------------------------------------------------------------------------------------
# Inputs, outputs, health checks
# ------------------------------------------------------------------------------------------

def make_inputs(model, seed: int, batch: int = 2, input_range=None) -> list[np.ndarray]:
    """Seeded float32 inputs, one per model input; ``input_range`` (lo, hi) gives uniform values
    (e.g. pixels 0..255), default is N(0, 1)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in model.inputs:
        shape = (batch,) + tuple(int(d) for d in spec.shape[1:])
        if input_range is None:
            arrays.append(rng.standard_normal(shape).astype(np.float32))
        else:
            arrays.append(rng.uniform(input_range[0], input_range[1], shape).astype(np.float32))
    return arrays


def predict(model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Inference-mode outputs as a list of float32 arrays."""
    outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.asarray(o, dtype=np.float32) for o in outputs]


def check_healthy(name: str, outputs: list[np.ndarray], kind: str) -> dict:
    """Refuse fixtures that could hide bugs: NaN/inf, constant outputs, saturated softmax."""
    stats = []
    for i, out in enumerate(outputs):
        if not np.all(np.isfinite(out)):
            raise RuntimeError(f"{name}: output_{i} has NaN/inf")
        if out.size > 1 and float(np.std(out)) < 1e-4:
            raise RuntimeError(f"{name}: output_{i} is nearly constant (std {np.std(out):.2e})")
        if kind == "probabilities":
            if float(out.max()) > 0.995 or float(out.min()) < 1e-5:
                raise RuntimeError(f"{name}: output_{i} softmax saturated "
                                   f"(min {out.min():.2e}, max {out.max():.4f})")
        stats.append({"shape": list(out.shape), "min": float(out.min()),
                      "max": float(out.max()), "std": float(out.std())})
    return {"outputs": stats}


def write_case(case_dir: Path, inputs, outputs, meta: dict) -> None:
    """io.npz + meta.json beside the converter's model.json/shards."""
    arrays = {f"input_{i}": a for i, a in enumerate(inputs)}
    arrays.update({f"output_{i}": a for i, a in enumerate(outputs)})
    np.savez_compressed(case_dir / "io.npz", **arrays)
    (case_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def base_meta(keras_major: str, kind: str, description: str) -> dict:
    return {
        "keras": keras_major,
        "kind": kind,
        "description": description,
        "tf_version": TF_VERSION,
        "keras_version": TF_KERAS_VERSION if keras_major == "2" else KERAS3_VERSION,
        "tfjs_version": TFJS_VERSION,
    }


# ------------------------------------------------------------------------------------------
# Second oracle: TF.js itself, in Node (@tensorflow/tfjs 4.22.0, cpu backend)
# ------------------------------------------------------------------------------------------

_NODE_PREDICT_JS = r"""
// Runs TF.js layers-models from disk on raw float32 inputs. argv[2] = jobs.json:
// [{"case_dir", "work_dir", "inputs": [{"file", "shape"}]}]; writes work_dir/result.json.
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
async function runOne(job) {
  const modelJson = JSON.parse(fs.readFileSync(path.join(job.case_dir, 'model.json'), 'utf8'));
  const weightSpecs = [];
  const buffers = [];
  for (const group of modelJson.weightsManifest) {
    for (const spec of group.weights) weightSpecs.push(spec);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(job.case_dir, p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: modelJson.modelTopology, weightSpecs, weightData}));
  const xs = job.inputs.map((inp) => {
    const b = fs.readFileSync(inp.file);
    const f = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    return tf.tensor(f, inp.shape, 'float32');
  });
  let ys = model.predict(xs.length === 1 ? xs[0] : xs);
  if (!Array.isArray(ys)) ys = [ys];
  const outs = [];
  for (let i = 0; i < ys.length; i++) {
    const data = await ys[i].data();
    const file = path.join(job.work_dir, `tfjs_output_${i}.bin`);
    fs.writeFileSync(file, Buffer.from(new Float32Array(data).buffer));
    outs.push({file, shape: ys[i].shape});
  }
  return outs;
}
(async () => {
  await tf.setBackend('cpu');
  const jobs = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  for (const job of jobs) {
    let result;
    try {
      result = {ok: true, outputs: await runOne(job)};
    } catch (e) {
      result = {ok: false, error: String(e && e.message ? e.message : e).slice(0, 500)};
    }
    fs.writeFileSync(path.join(job.work_dir, 'result.json'), JSON.stringify(result));
  }
  console.log(`tfjs ${tf.version.tfjs} backend ${tf.getBackend()}`);
})();
"""


def tfjs_node_available(node_dir: Path = DEFAULT_TFJS_NODE_DIR) -> bool:
    return (node_dir / "node_modules" / "@tensorflow" / "tfjs" / "package.json").is_file()


def run_tfjs_node_oracle(case_dirs: list[Path], node_dir: Path = DEFAULT_TFJS_NODE_DIR,
                         atol: float = 1e-4) -> dict[str, dict]:
    """Run every case with TF.js in Node and compare with the TensorFlow outputs in io.npz.
    Returns {case_name: {"status": "agree"|"disagree"|"error", ...}}."""
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for case_dir in case_dirs:
            work = Path(tmp) / case_dir.name
            work.mkdir()
            with np.load(case_dir / "io.npz") as io:
                inputs = [io[f"input_{i}"] for i in range(sum(k.startswith("input_") for k in io))]
            specs = []
            for i, array in enumerate(inputs):
                file = work / f"input_{i}.bin"
                np.ascontiguousarray(array, dtype="<f4").tofile(file)
                specs.append({"file": str(file), "shape": list(array.shape)})
            jobs.append({"case_dir": str(case_dir.resolve()), "work_dir": str(work),
                         "inputs": specs})
        script = node_dir / "vitrine_predict.cjs"
        script.write_text(_NODE_PREDICT_JS)
        (Path(tmp) / "jobs.json").write_text(json.dumps(jobs))
        proc = subprocess.run(["node", str(script), str(Path(tmp) / "jobs.json")],
                              cwd=node_dir, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"node oracle failed: {proc.stderr[-2000:]}")
        for case_dir in case_dirs:
            work = Path(tmp) / case_dir.name
            result = json.loads((work / "result.json").read_text())
            entry = {"tfjs_node_version": TFJS_NODE_VERSION, "backend": "cpu", "atol": atol}
            if not result["ok"]:
                entry.update(status="error", error=result["error"])
            else:
                with np.load(case_dir / "io.npz") as io:
                    diffs = []
                    for i, out in enumerate(result["outputs"]):
                        got = np.fromfile(out["file"], dtype="<f4").reshape(out["shape"])
                        expected = io[f"output_{i}"]
                        if got.shape != expected.shape:
                            diffs.append(float("inf"))
                        else:
                            diffs.append(float(np.max(np.abs(got - expected))))
                worst = max(diffs)
                entry.update(status="agree" if worst <= atol else "disagree",
                             max_abs_diff=worst)
            results[case_dir.name] = entry
    return results
