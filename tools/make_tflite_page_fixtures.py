"""Build the TFLite fixtures of the page test (tests/browser/test_tflite_page.py) and of
tests/tflite/test_page_fixtures.py: real models as the ``.tflite`` files and zips a user opens,
with LiteRT's outputs on real image files.

Run with the LiteRT venv (``bash tools/litert_env.sh`` creates it), NOT the project .venv::

    /opt/litertenv/bin/python tools/make_tflite_page_fixtures.py
    /opt/litertenv/bin/python tools/make_tflite_page_fixtures.py --real   # EfficientNet-Lite0 (PyPI)

Pinned oracle: tensorflow-cpu 2.21.0 (converter; tf_keras 2.21.0 rebuilds the TF.js models) and
ai-edge-litert 2.3.0 run with ``OpResolverType.BUILTIN_REF``. Vitrine's code is not used.

Models (written to ``tests/fixtures/tflite/page/``):

* ``demo_float32.tflite`` / ``demo_int8.tflite``: the bundled demo model
  (``static/demo/demo-model.zip``, rebuilt in tf_keras from its model.json + shard) with its
  standardisation ``x / 127.5 - 1`` moved INTO the model (a Keras ``Rescaling`` layer), so the bare
  file, opened without a model card, takes the resized 0..255 pixels the page gives a card-less
  model. float32, and full integer (int8 weights, activations, input and output).
* ``demo_tflite.zip``: the plain demo model as ``model.tflite`` (float16 weights) plus the demo's
  own ``model-card.json`` (class names, ``standardize: "tf"``).
* ``unet_tflite.zip``: the tiny 3-class U-Net of ``tests/fixtures/gradcam/ui_unet`` (UpSampling2D,
  Conv2DTranspose, Concatenate) converted to float32 TFLite, with that fixture's model card; its
  PNG image (``tests/fixtures/gradcam/ui_unet/image.png``) is the input. ``unet_int8.zip``: the
  same U-Net fully int8 with the same card (CPython test only: its masks have exact ties between
  classes, which only a bit-exact int8 interpreter reproduces).
* Bad files: ``truncated.tflite`` (the first 40 % of demo_float32.tflite), ``corrupt.tflite``
  (demo_float32.tflite whose root-table offset points past the end of the file),
  ``custom_op.tflite`` (RGB -> HSV inside the model: the converter emits the custom op
  ``FlexRGBToHSV``), ``unsupported_op.tflite`` (a cumulative sum: the builtin ``CUMSUM``).
  ``meta.json`` records what LiteRT itself says about each (the op names come from LiteRT's
  ``_get_ops_details``).

Images: the demo's PNG and DICOM samples (``static/demo/samples``; JPEG is left out because
Pyodide's libjpeg decodes differently, docs/imaging.md). Their resized uint8 pixels and float
inputs are ``static/demo/expected_inputs.npz``, computed by tools/make_demo_model.py with Pillow /
pydicom / OpenCV INTER_LINEAR (independently of Vitrine); this script checks them against the
SHA-256 digests in ``static/demo/expected.json``.

``expected.npz``: ``pixels`` (N, 64, 64, 3) uint8 and ``inputs_tf`` (N, 64, 64, 3) float32 per
image (order ``files``); per model ``<model>__output`` (float32, dequantized for int8) and, for
int8, ``<model>__output_q`` (the int8 LiteRT output) and ``<model>__input_q``; U-Net:
``unet__probabilities``, ``unet__masks``, ``unet_int8__masks``; ``tf__<model>`` TensorFlow's own
outputs for comparison (meta.json has the max differences).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "tflite" / "page"
DEMO = ROOT / "static" / "demo"
UNET = ROOT / "tests" / "fixtures" / "gradcam" / "ui_unet"
FILES = ("ct_head.png", "ct_small.dcm", "microscopy_cell.png", "mr_abdomen.png", "mr_small.dcm",
         "photo_camera.png")
ORACLE = "ai-edge-litert 2.3.0 OpResolverType.BUILTIN_REF"
# a pixel of a U-Net mask is only a fair test when its top-2 probabilities are apart by more than
# the float error of two independent implementations (~4e-7, docs/explain.md)
MIN_MARGIN = 2e-5


# ------------------------------------------------------------------------------ TF.js -> tf_keras
def read_tfjs_zip(path: Path):
    """A Keras-2 TF.js layers-model zip rebuilt in tf_keras (topology + float32 weights), and the
    zip's other entries (the model card)."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    model_json = json.loads(entries["model.json"])
    topology = model_json["modelTopology"]
    model = tf_keras.models.model_from_json(json.dumps(topology.get("model_config", topology)))
    weights = {}
    for group in model_json["weightsManifest"]:
        data = b"".join(entries[p] for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            if spec["dtype"] != "float32" or spec.get("quantization"):
                raise ValueError(f"{path}: weight {spec['name']} is {spec['dtype']} / quantized; only float32 is read")
            count = int(np.prod(spec["shape"], dtype=np.int64))
            weights[spec["name"]] = np.frombuffer(data, "<f4", count, offset).reshape(spec["shape"])
            offset += 4 * count
    used = set()
    for variable in model.weights:
        name = variable.name[:-2] if variable.name.endswith(":0") else variable.name
        variable.assign(weights[name])
        used.add(name)
    if used != set(weights):
        raise ValueError(f"{path}: manifest weights not assigned: {sorted(set(weights) - used)}")
    return model, entries


# ------------------------------------------------------------------------------ conversion
def fixed_batch_function(model, shape):
    """The model as a tf.function with batch 1, as TFLite models are usually exported (no
    dynamic-batch SHAPE arithmetic in the graph)."""
    @tf.function(input_signature=[tf.TensorSpec([1, *shape], tf.float32, name="image")])
    def serve(image):
        return model(image, training=False)
    return serve


def convert(function, variant: str, representative=None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant in ("int8", "int8_float_input"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8 if variant == "int8" else tf.float32
        converter.inference_output_type = tf.int8
    elif variant != "float32":
        raise ValueError(variant)
    return converter.convert()


def litert_ops(model_bytes: bytes) -> list[str]:
    return sorted({d["op_name"] for d in Interpreter(model_content=model_bytes)._get_ops_details()})


def litert_quantize(float_input_model: bytes, inputs: np.ndarray, quantization) -> np.ndarray:
    """The int8 values LiteRT's own QUANTIZE op makes of float ``inputs``: the model converted
    with float input starts with QUANTIZE (float -> int8, the input tensor's scale / zero point,
    std::round half away from zero); its output is read with experimental_preserve_all_tensors."""
    interpreter = Interpreter(model_content=float_input_model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    first = interpreter._get_ops_details()[0]
    if first["op_name"] != "QUANTIZE":
        raise SystemExit(f"the float-input int8 model starts with {first['op_name']}, not QUANTIZE")
    (quantized_index,) = first["outputs"]
    detail = next(d for d in interpreter.get_tensor_details() if d["index"] == quantized_index)
    if [float(v) for v in detail["quantization"]] != [float(v) for v in quantization]:
        raise SystemExit(f"QUANTIZE output {detail['quantization']} differs from the int8 model's input {quantization}")
    values = []
    for x in inputs:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[None].astype(np.float32))
        interpreter.invoke()
        values.append(interpreter.get_tensor(quantized_index)[0].copy())
    return np.stack(values)


def run_litert(model_bytes: bytes, inputs: np.ndarray, float_input_model: bytes | None = None):
    """LiteRT BUILTIN_REF on each image (batch 1). For an integer input tensor the float inputs
    are quantized by LiteRT itself (:func:`litert_quantize` on ``float_input_model``). Returns
    (fed inputs, raw outputs, dequantized outputs, input and output quantization)."""
    interpreter = Interpreter(model_content=model_bytes, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    if np.issubdtype(inp["dtype"], np.integer):
        inputs = litert_quantize(float_input_model, inputs, inp["quantization"])
    fed, raw = [], []
    for x in inputs:
        fed.append(x[None].astype(inp["dtype"]))
        interpreter.set_tensor(inp["index"], fed[-1])
        interpreter.invoke()
        raw.append(interpreter.get_tensor(out["index"])[0].copy())
    raw = np.stack(raw)
    if np.issubdtype(out["dtype"], np.integer):
        scale, zero_point = out["quantization"]
        values = (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    else:
        values = raw.astype(np.float32)
    return np.concatenate(fed), raw, values, [float(v) for v in inp["quantization"]], \
        [float(v) for v in out["quantization"]]


def litert_refusal(model_bytes: bytes) -> str:
    """What LiteRT says when asked to load and run the file (evidence that it is bad for LiteRT too)."""
    try:
        interpreter = Interpreter(model_content=model_bytes, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
    except Exception as exc:  # noqa: BLE001 - recorded as evidence, whatever LiteRT raises
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
    return "LiteRT ran it"


def deterministic_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------ inputs
def demo_inputs():
    """(pixels uint8 (N, 64, 64, 3), inputs_tf float32 (N, 64, 64, 3)) of FILES, from
    static/demo/expected_inputs.npz, checked against expected.json's digests."""
    expected = json.loads((DEMO / "expected.json").read_text())["samples"]
    pixels, inputs = [], []
    with np.load(DEMO / "expected_inputs.npz") as data:
        for name in FILES:
            x = np.ascontiguousarray(data[name][0], dtype="<f4")
            sample = expected[name]
            if sha256(x[None].tobytes()) != sample["input_sha256"]:
                raise SystemExit(f"{name}: expected_inputs.npz does not hold the input expected.json describes")
            # x = u8 / 127.5 - 1 in float32, so (x + 1) * 127.5 is u8 within 1e-4: recover the pixels
            restored = (x.astype(np.float64) + 1.0) * 127.5
            u8 = np.round(restored)
            if np.abs(restored - u8).max() > 1e-3:
                raise SystemExit(f"{name}: the input is not u8 / 127.5 - 1")
            u8 = u8.astype(np.uint8)
            if sha256(u8.tobytes()) != sample["resized_uint8_sha256"]:
                raise SystemExit(f"{name}: the recovered pixels differ from expected.json's resized image")
            pixels.append(u8)
            inputs.append(x)
    return np.stack(pixels), np.stack(inputs)


def representative_pixels(pixels: np.ndarray, count: int = 96) -> np.ndarray:
    """Seeded variations of the sample images (flips, contrast, brightness) plus black and white
    frames, so the int8 input range spans 0..255."""
    rng = np.random.default_rng(20240607)
    views = [np.zeros_like(pixels[0]), np.full_like(pixels[0], 255)]
    while len(views) < count:
        view = pixels[rng.integers(len(pixels))].astype(np.float32)
        if rng.random() < 0.5:
            view = view[:, ::-1]
        view = (view - 127.5) * rng.uniform(0.7, 1.3) + 127.5 + rng.uniform(-30, 30)
        views.append(np.clip(np.round(view), 0, 255).astype(np.uint8))
    return np.stack(views).astype(np.float32)


# ------------------------------------------------------------------------------ the cases
def bad_models(model_float: bytes) -> dict[str, bytes]:
    truncated = model_float[: int(len(model_float) * 0.4)]
    corrupt = (len(model_float) + 4096).to_bytes(4, "little") + model_float[4:]  # root table past the end

    @tf.function(input_signature=[tf.TensorSpec([1, 64, 64, 3], tf.float32, name="image")])
    def hsv_features(image):
        hsv = tf.image.rgb_to_hsv(image / 255.0)
        return tf.nn.softmax(tf.reduce_mean(hsv, axis=[1, 2]))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([hsv_features.get_concrete_function()], hsv_features)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    custom = converter.convert()

    @tf.function(input_signature=[tf.TensorSpec([1, 64, 64, 3], tf.float32, name="image")])
    def integral_features(image):
        integral = tf.cumsum(tf.cumsum(image / 255.0, axis=1), axis=2)
        return tf.nn.softmax(tf.reduce_mean(integral, axis=[1, 2]))

    unsupported = convert(integral_features, "float32")
    return {"truncated.tflite": truncated, "corrupt.tflite": corrupt, "custom_op.tflite": custom,
            "unsupported_op.tflite": unsupported}


REAL_PHOTOS = ("chelsea.png", "camera.png")  # scikit-image samples: an RGB photo of a cat, a grey photo


def _load_by_path(module_name: str, path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_real() -> int:
    """``--real``: LiteRT's outputs of the pretrained uint8 EfficientNet-Lite0 from PyPI
    (tests/tflite/real_models.py, sha256-pinned, cached, not committed) on real photographs
    (tools/fetch_sample_images.py), decoded with Pillow (``convert("RGB")``) and resized with
    OpenCV INTER_LINEAR to 224x224, fed as uint8 pixels (TFLite's convention for uint8 image
    models). Writes ``tests/fixtures/tflite/page/real/efficientnet_lite0_uint8.{npz,json}``."""
    import cv2
    from PIL import Image

    real_models = _load_by_path("real_models", ROOT / "tests" / "tflite" / "real_models.py")
    sys.path.insert(0, str(ROOT / "tools"))
    import fetch_sample_images

    case = "efficientnet_lite0_uint8"
    real_models.fetch(packages=real_models.QUANTIZED_PACKAGES)
    model_bytes = real_models.model_path(case).read_bytes()
    photos = fetch_sample_images.fetch()
    interpreter = Interpreter(model_content=model_bytes, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    if inp["dtype"] != np.uint8:
        raise SystemExit(f"{case}: expected uint8 input, found {inp['dtype']}")
    height, width = int(inp["shape"][1]), int(inp["shape"][2])
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:  # TFLite metadata: labels.txt appended
        labels = archive.read(next(n for n in archive.namelist() if n.endswith(".txt"))).decode().split("\n")
    arrays, top5 = {"files": np.array(REAL_PHOTOS)}, {}
    for i, name in enumerate(REAL_PHOTOS):
        rgb = np.asarray(Image.open(photos / name).convert("RGB"))
        pixels = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
        interpreter.set_tensor(inp["index"], pixels[None])
        interpreter.invoke()
        scores = interpreter.get_tensor(out["index"])[0].copy()
        arrays[f"pixels_{i}"] = pixels
        arrays[f"output_q_{i}"] = scores
        order = [int(k) for k in np.argsort(-scores.astype(np.int64), kind="stable")[:5]]
        top5[name] = [{"index": k, "score": int(scores[k]), "label": labels[k]} for k in order]
    target = OUT / "real"
    target.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target / f"{case}.npz", **arrays)
    meta = {"case": case, "model_sha256": sha256(model_bytes), "oracle": ORACLE,
            "generator": "tools/make_tflite_page_fixtures.py --real", "opencv": cv2.__version__,
            "photos": {name: sha256((photos / name).read_bytes()) for name in REAL_PHOTOS},
            "input": "Pillow convert('RGB') -> cv2.resize INTER_LINEAR to 224x224 -> uint8 pixels fed as they are",
            "input_quantization": [float(v) for v in inp["quantization"]],
            "output_quantization": [float(v) for v in out["quantization"]], "top5": top5}
    (target / f"{case}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(top5, indent=1))
    return 0


def main() -> int:
    if "--real" in sys.argv[1:]:
        return build_real()
    OUT.mkdir(parents=True, exist_ok=True)
    pixels, inputs_tf = demo_inputs()
    arrays = {"files": np.array(FILES), "pixels": pixels, "inputs_tf": inputs_tf}
    meta: dict = {"generator": "tools/make_tflite_page_fixtures.py", "oracle": ORACLE,
                  "tensorflow": tf.__version__, "tf_keras": tf_keras.__version__, "files": list(FILES),
                  "inputs": "static/demo/expected_inputs.npz (tools/make_demo_model.py: Pillow / pydicom decode, "
                            "cv2.resize INTER_LINEAR to 64x64); pixels = round((x + 1) * 127.5)",
                  "models": {}}

    demo, demo_entries = read_tfjs_zip(DEMO / "demo-model.zip")
    expected = json.loads((DEMO / "expected.json").read_text())["samples"]
    keras_out = demo.predict(inputs_tf, verbose=0)
    for name, row in zip(FILES, keras_out):  # the rebuilt model is the demo model
        np.testing.assert_allclose(row, expected[name]["probabilities"], atol=1e-5, err_msg=name)

    image = tf_keras.Input((64, 64, 3), name="image")
    standardized = tf_keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="standardize_tf")(image)
    demo_raw = tf_keras.Model(image, demo(standardized), name="demo_with_standardization")
    tf_raw = demo_raw.predict(pixels.astype(np.float32), verbose=0)

    card = json.loads(demo_entries["model-card.json"])
    card["name"] = "Vitrine demo: image kind, TFLite float16 (not for clinical use)"
    card["source"] = {"version": "vitrine-demo-1", "file": "demo_tflite.zip"}
    card["description"] = ("The bundled demo model converted to TFLite (float16 weights) by "
                           "tools/make_tflite_page_fixtures.py; a test fixture. " + card["description"])
    demo_raw_function = fixed_batch_function(demo_raw, (64, 64, 3))
    calibration = representative_pixels(pixels)
    models = {
        "demo_float32.tflite": (convert(demo_raw_function, "float32"), pixels, tf_raw),
        "demo_int8.tflite": (convert(demo_raw_function, "int8", calibration), pixels, tf_raw),
        "demo_tflite.zip": (convert(fixed_batch_function(demo, (64, 64, 3)), "float16"), inputs_tf, keras_out),
    }
    demo_int8_float_input = convert(demo_raw_function, "int8_float_input", calibration)
    for file_name, (model_bytes, x, tf_out) in models.items():
        fed, raw, values, in_q, out_q = run_litert(model_bytes, x, demo_int8_float_input)
        key = file_name.split(".")[0]
        arrays[f"{key}__output"] = values
        if raw.dtype != np.float32:
            arrays[f"{key}__output_q"] = raw
            arrays[f"{key}__input_q"] = fed
        arrays[f"tf__{key}"] = tf_out
        if file_name.endswith(".zip"):
            data = deterministic_zip({"model.tflite": model_bytes,
                                      "model-card.json": (json.dumps(card, indent=2) + "\n").encode()})
        else:
            data = model_bytes
        (OUT / file_name).write_bytes(data)
        meta["models"][file_name] = {
            "sha256": sha256(data), "tflite_sha256": sha256(model_bytes), "tflite_bytes": len(model_bytes),
            "ops": litert_ops(model_bytes), "input_quantization": in_q, "output_quantization": out_q,
            "input": "pixels (0..255)" if x is pixels else "inputs_tf (x / 127.5 - 1, the card's standardize 'tf')",
            "max_abs_litert_minus_tensorflow": float(np.abs(values - tf_out).max()),
            "litert_top_class": [int(i) for i in np.argmax(values, axis=1)],
        }
        print(f"{file_name}: {len(data)} bytes, ops {meta['models'][file_name]['ops']}, "
              f"|LiteRT - TF| {meta['models'][file_name]['max_abs_litert_minus_tensorflow']:.2e}")

    # the U-Net: masks from LiteRT, checked against TensorFlow's argmax in the ui_unet fixture
    unet, unet_entries = read_tfjs_zip(UNET / "model.zip")
    with np.load(UNET / "io.npz") as data:
        unet_x, unet_tf_masks = data["input"], data["masks"]
    size = tuple(unet.input_shape[1:])
    unet_float = convert(fixed_batch_function(unet, size), "float32")
    _, _, probabilities, _, _ = run_litert(unet_float, unet_x)
    top2 = np.sort(probabilities, axis=-1)[..., -2:]
    margin = float(np.min(top2[..., 1] - top2[..., 0]))
    masks = np.argmax(probabilities, axis=-1)
    if margin < MIN_MARGIN or not np.array_equal(masks, unet_tf_masks):
        raise SystemExit(f"U-Net: LiteRT's masks differ from TensorFlow's or have near-ties (margin {margin})")
    representative = np.stack([unet_x[0]] + [np.clip(unet_x[0] + np.random.default_rng(i).normal(0, 0.2, unet_x.shape[1:]),
                                                     -1, 1) for i in range(31)]).astype(np.float32)
    unet_int8 = convert(fixed_batch_function(unet, size), "int8", representative)
    unet_int8_input_q, raw_int8, _, _, _ = run_litert(unet_int8, unet_x,
                                                      convert(fixed_batch_function(unet, size), "int8_float_input",
                                                              representative))
    int8_sorted = np.sort(raw_int8.astype(np.int32), axis=-1)
    int8_ties = int(np.sum(int8_sorted[..., -1] == int8_sorted[..., -2]))
    arrays.update(unet__probabilities=probabilities, unet__masks=masks.astype(np.int64),
                  unet_int8__input_q=unet_int8_input_q, unet_int8__output_q=raw_int8, unet_int8__masks=np.argmax(raw_int8, axis=-1).astype(np.int64))
    unet_card = unet_entries["model-card.json"]
    unet_zip = deterministic_zip({"model.tflite": unet_float, "model-card.json": unet_card})
    (OUT / "unet_tflite.zip").write_bytes(unet_zip)
    unet_int8_zip = deterministic_zip({"model.tflite": unet_int8, "model-card.json": unet_card})
    (OUT / "unet_int8.zip").write_bytes(unet_int8_zip)
    meta["unet"] = {"source": "tests/fixtures/gradcam/ui_unet/model.zip", "image": "tests/fixtures/gradcam/ui_unet/image.png",
                    "zip_sha256": sha256(unet_zip), "int8_zip_sha256": sha256(unet_int8_zip),
                    "ops": litert_ops(unet_float), "int8_ops": litert_ops(unet_int8), "min_top2_margin": margin,
                    "areas": np.bincount(masks.ravel(), minlength=probabilities.shape[-1]).tolist(),
                    "int8_pixels_with_tied_top2": int8_ties,
                    "int8_pixels_differing_from_float_mask": int(np.sum(arrays["unet_int8__masks"] != masks)),
                    "masks": "argmax over classes of LiteRT's output (first index on ties); float masks equal "
                             "TensorFlow's (ui_unet io.npz) exactly"}
    print(f"unet: ops {meta['unet']['ops']}, margin {margin:.2e}, int8 ties {int8_ties}")

    meta["bad"] = {}
    for file_name, data in bad_models(models["demo_float32.tflite"][0]).items():
        (OUT / file_name).write_bytes(data)
        entry = {"sha256": sha256(data), "bytes": len(data), "litert": litert_refusal(data)}
        if file_name in ("custom_op.tflite", "unsupported_op.tflite"):
            entry["ops"] = litert_ops(data)
        meta["bad"][file_name] = entry
        print(f"{file_name}: {entry}")

    np.savez_compressed(OUT / "expected.npz", **arrays)
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
