"""Generate the big (not committed) TF.js fixtures in .cache/fixtures/big/<case>/.

Run inside the TensorFlow venv made by tools/fixture_env.sh:

    /opt/tfenv/bin/python tools/make_big_fixtures.py                       # every case
    /opt/tfenv/bin/python tools/make_big_fixtures.py --only k2_densenet121 --no-node

Same layout as the small fixtures (model.json + shards, io.npz, meta.json; see tools/README.md).
Models are the real Keras Applications architectures with ``weights=None`` and a 7-class head,
plus WebIPred's real DenseNet121 chest X-ray topology (read from ../shared, never committed).

Random weights through ~100 BatchNorms would explode or vanish, hiding bugs behind inf/0, so
weights are made *healthy*: seeded He-like kernels, then every BatchNormalization gets moving
statistics equal to its real input statistics on a separate seeded calibration batch (one
``training=True`` pass gives them all) times a seeded perturbation, and every Dense kernel is
rescaled so its pre-activation output has standard deviation ~1.5 (softmax neither flat nor
saturated).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tfjs_fixture_lib as lib  # noqa: E402

np = lib.np

REPO = Path(__file__).resolve().parent.parent
OUT_ROOT = REPO / ".cache" / "fixtures" / "big"
WEBIPRED_MODEL_JSON = REPO.parent / "shared" / "anchors" / "webipred" / "model16-model.json"
CLASSES = 7


@dataclass
class BigCase:
    name: str
    keras: str
    build: Callable
    description: str
    input_range: tuple[float, float]
    kind: str = "probabilities"


def _app(module_name: str, app_name: str, size: int = 224, **kwargs):
    # Fixed spatial size: several applications default to (None, None, 3).
    kwargs.setdefault("input_shape", (size, size, 3))

    def build():
        K = lib.keras_module(module_name)
        return getattr(K.applications, app_name)(weights=None, classes=CLASSES, **kwargs)
    return build


def _webipred_topology() -> dict:
    if not WEBIPRED_MODEL_JSON.is_file():
        raise FileNotFoundError(f"WebIPred topology not found at {WEBIPRED_MODEL_JSON}")
    return json.loads(WEBIPRED_MODEL_JSON.read_text())


def _build_webipred():
    topology = _webipred_topology()["modelTopology"]
    return lib.tf_keras.models.model_from_json(json.dumps(topology["model_config"]))


_PIXELS = (0.0, 255.0)     # apps whose graph starts with its own Rescaling/Normalization
_CENTERED = (-1.0, 1.0)    # apps that expect already-preprocessed input

BIG_CASES = [
    BigCase("k2_densenet121", "2", _app("2", "DenseNet121"),
            "tf_keras.applications.DenseNet121(weights=None, classes=7)", _CENTERED),
    BigCase("k2_resnet50", "2", _app("2", "ResNet50"),
            "tf_keras.applications.ResNet50(weights=None, classes=7)", _CENTERED),
    BigCase("k2_mobilenetv2", "2", _app("2", "MobileNetV2"),
            "tf_keras.applications.MobileNetV2(weights=None, classes=7)", _CENTERED),
    BigCase("k2_mobilenetv3small", "2", _app("2", "MobileNetV3Small"),
            "tf_keras.applications.MobileNetV3Small(weights=None, classes=7) (Rescaling inside, "
            "hard-swish as TFOpLambda)", _PIXELS),
    BigCase("k2_efficientnetb0", "2", _app("2", "EfficientNetB0"),
            "tf_keras.applications.EfficientNetB0(weights=None, classes=7) (Rescaling + "
            "Normalization inside)", _PIXELS),
    BigCase("k2_inceptionv3", "2", _app("2", "InceptionV3", size=299),
            "tf_keras.applications.InceptionV3(weights=None, classes=7), 299x299", _CENTERED),
    BigCase("k2_convnexttiny", "2", _app("2", "ConvNeXtTiny"),
            "tf_keras.applications.ConvNeXtTiny(weights=None, classes=7) (Normalization inside, "
            "LayerScale, LayerNormalization, GELU)", _PIXELS),
    # The rest of the Keras Applications AUCMEDI trains on: each brings a layer mix the ones above
    # do not (CustomScaleLayer, separable convs, NASNet's cropping/padding cells, ResNetV2's
    # pre-activation, EfficientNetV2's fused MBConv, MobileNet V1's ReLU(6.)).
    BigCase("k2_inceptionresnetv2", "2", _app("2", "InceptionResNetV2", size=299),
            "tf_keras.applications.InceptionResNetV2(weights=None, classes=7), 299x299 "
            "(CustomScaleLayer)", _CENTERED),
    BigCase("k2_xception", "2", _app("2", "Xception", size=299),
            "tf_keras.applications.Xception(weights=None, classes=7), 299x299 (SeparableConv2D)",
            _CENTERED),
    BigCase("k2_nasnetmobile", "2", _app("2", "NASNetMobile"),
            "tf_keras.applications.NASNetMobile(weights=None, classes=7)", _CENTERED),
    BigCase("k2_vgg16", "2", _app("2", "VGG16"),
            "tf_keras.applications.VGG16(weights=None, classes=7)", _CENTERED),
    BigCase("k2_resnet50v2", "2", _app("2", "ResNet50V2"),
            "tf_keras.applications.ResNet50V2(weights=None, classes=7)", _CENTERED),
    BigCase("k2_efficientnetv2b0", "2", _app("2", "EfficientNetV2B0"),
            "tf_keras.applications.EfficientNetV2B0(weights=None, classes=7) (Rescaling inside)",
            _PIXELS),
    BigCase("k2_mobilenet", "2", _app("2", "MobileNet"),
            "tf_keras.applications.MobileNet(weights=None, classes=7) (V1, ReLU(6.))", _CENTERED),
    BigCase("k3_mobilenetv2", "3", _app("3", "MobileNetV2"),
            "keras.applications.MobileNetV2(weights=None, classes=7), Keras 3 export", _CENTERED),
    BigCase("k3_mobilenetv3small", "3", _app("3", "MobileNetV3Small"),
            "keras.applications.MobileNetV3Small(weights=None, classes=7), Keras 3 export "
            "(hard-swish as keras.ops nodes Add/Multiply with constants)", _PIXELS),
    BigCase("k3_densenet121", "3", _app("3", "DenseNet121"),
            "keras.applications.DenseNet121(weights=None, classes=7), Keras 3 export", _CENTERED),
    BigCase("k2_webipred_densenet121", "2", _build_webipred,
            "WebIPred's real chest X-ray topology (model16-model.json: DenseNet121 + Dense 512 + "
            "Dropout + Dense 2 + softmax, Keras 2.8, converter 4.0) rebuilt with tf_keras, seeded "
            "weights; model.json keeps the original modelTopology verbatim", (0.0, 1.0)),
]


# ------------------------------------------------------------------------------------------
# Healthy weights for deep random networks
# ------------------------------------------------------------------------------------------

def _bn_layers(model):
    return [layer for layer in lib._all_layers(model)
            if type(layer).__name__ == "BatchNormalization"]


def calibrate(model, keras_major: str, calibration: list[np.ndarray], seed: int) -> None:
    """Set BN moving stats to the real statistics of their inputs and scale Dense kernels."""
    K = lib.keras_module(keras_major)
    rng = np.random.default_rng(seed)
    feed = calibration if len(calibration) > 1 else calibration[0]
    bns = _bn_layers(model)
    # training=True also runs Dropout, whose random ops need a seed under op determinism.
    lib.tf.random.set_seed(seed)
    lib.keras.utils.set_random_seed(seed % (2**31))
    if bns:
        probe = K.Model(model.inputs, [bn.input for bn in bns])
        # training=True: each BN normalizes with its batch statistics, which is exactly what
        # the network computes once every BN's moving statistics equal those statistics.
        bn_inputs = probe(feed, training=True)
        if not isinstance(bn_inputs, (list, tuple)):
            bn_inputs = [bn_inputs]
        for bn, x in zip(bns, bn_inputs):
            x = np.asarray(x, dtype=np.float64)
            axes = tuple(range(x.ndim - 1))
            mean = x.mean(axis=axes)
            var = x.var(axis=axes) + 1e-3
            names = [lib._weight_short_name(v) for v in bn.weights]
            values = []
            for name, v in zip(names, bn.weights):
                if name == "moving_mean":
                    values.append((mean + 0.1 * np.sqrt(var) * rng.standard_normal(mean.shape))
                                  .astype(np.float32))
                elif name == "moving_variance":
                    values.append((var * rng.uniform(0.8, 1.25, var.shape)).astype(np.float32))
                else:
                    values.append(np.asarray(v.numpy()))
            bn.set_weights(values)
    denses = [layer for layer in lib._all_layers(model) if type(layer).__name__ == "Dense"]
    for dense in denses:
        probe = K.Model(model.inputs, dense.input)
        x = np.asarray(probe(feed, training=False), dtype=np.float64)
        kernel, *rest = dense.get_weights()
        pre = x.reshape(-1, x.shape[-1]) @ kernel
        scale = 1.5 / max(float(pre.std()), 1e-6)
        dense.set_weights([(kernel * scale).astype(np.float32), *rest])


# ------------------------------------------------------------------------------------------

def _seed_for(name: str) -> int:
    return zlib.crc32(name.encode())


def _keep_original_topology(case_dir: Path) -> dict:
    """Replace the converter's topology by WebIPred's original one; check the manifests agree."""
    original = _webipred_topology()
    path = case_dir / "model.json"
    ours = json.loads(path.read_text())
    theirs_specs = {w["name"]: (w["shape"], w["dtype"])
                    for g in original["weightsManifest"] for w in g["weights"]}
    our_specs = {w["name"]: (w["shape"], w["dtype"])
                 for g in ours["weightsManifest"] for w in g["weights"]}
    if theirs_specs != our_specs:
        raise RuntimeError("rebuilt WebIPred model's weights differ from the original manifest: "
                           f"{sorted(set(theirs_specs) ^ set(our_specs))[:10]}")
    ours["modelTopology"] = original["modelTopology"]
    path.write_text(json.dumps(ours))
    return {"original_format": original.get("format"),
            "original_generated_by": original.get("generatedBy"),
            "original_converted_by": original.get("convertedBy"),
            "weights_manifest": "ours (same names/shapes/dtypes as the original, checked)"}


def generate(case: BigCase, out_root: Path, batch: int) -> Path:
    K = lib.keras_module(case.keras)
    K.backend.clear_session()
    started = time.time()
    model = case.build()
    seed = _seed_for(case.name)
    lib.seed_weights(model, seed)
    calibration = lib.make_inputs(model, seed + 2, batch=4, input_range=case.input_range)
    calibrate(model, case.keras, calibration, seed + 3)
    case_dir = out_root / case.name
    note = lib.convert(model, case.keras, case_dir)
    meta = lib.base_meta(case.keras, case.kind, case.description)
    if note:
        meta["converter_workaround"] = note
    if case.name == "k2_webipred_densenet121":
        meta["webipred"] = _keep_original_topology(case_dir)
    inputs = lib.make_inputs(model, seed + 1, batch=batch, input_range=case.input_range)
    outputs = lib.predict(model, inputs)
    meta["reference"] = "TensorFlow predict (training=False) with the float32 weights"
    meta["health"] = lib.check_healthy(case.name, outputs, case.kind)
    meta["seed"] = seed
    meta["input_generation"] = (f"numpy.random.default_rng({seed + 1}); uniform"
                                f"{tuple(case.input_range)} of shape ({batch}, *input_shape), "
                                f"float32")
    meta["weights"] = ("seeded He-like kernels; BN moving stats = input statistics on a seeded "
                       "calibration batch x perturbation; Dense kernels scaled to pre-activation "
                       "std 1.5 (tools/make_big_fixtures.py)")
    lib.write_case(case_dir, inputs, outputs, meta)
    check = lib.reload_check(case.keras, case_dir, inputs, original_model=model)
    if check["max_abs_diff"] > 1e-4:
        raise RuntimeError(f"{case.name}: model.json + shards reproduce the outputs only to "
                           f"{check['max_abs_diff']}")
    meta["tensorflow_reload_check"] = check
    meta["generation_seconds"] = round(time.time() - started, 1)
    lib.write_case(case_dir, inputs, outputs, meta)
    return case_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_ROOT)
    parser.add_argument("--only", action="append", default=[], help="case name; repeatable")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--no-node", action="store_true", help="skip the TF.js-in-Node oracle")
    parser.add_argument("--node-dir", type=Path, default=lib.DEFAULT_TFJS_NODE_DIR)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    cases = [c for c in BIG_CASES if not args.only or c.name in args.only]
    if not cases:
        parser.error(f"no case matches --only {args.only}; known: {[c.name for c in BIG_CASES]}")
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        if case.name == "k2_webipred_densenet121" and not WEBIPRED_MODEL_JSON.is_file():
            print(f"{case.name}: skipped, {WEBIPRED_MODEL_JSON} absent", flush=True)
            continue
        case_dir = generate(case, args.out, args.batch)
        size = sum(p.stat().st_size for p in case_dir.iterdir())
        meta = json.loads((case_dir / "meta.json").read_text())
        print(f"{case.name}: {size / 1e6:.1f} MB, {meta['generation_seconds']} s, "
              f"outputs {meta['health']['outputs']}", flush=True)
        if not args.no_node and case.keras == "2" and lib.tfjs_node_available(args.node_dir):
            result = lib.run_tfjs_node_oracle([case_dir], args.node_dir)[case_dir.name]
            meta["tfjs_node_oracle"] = result
            (case_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
            print(f"node {case.name}: {result['status']} "
                  f"{result.get('max_abs_diff', result.get('error', ''))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
