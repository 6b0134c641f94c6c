"""Grad-CAM and segmentation fixtures for ``app.explain`` (run ONLY inside /opt/tfenv).

    /opt/tfenv/bin/python tools/make_gradcam_fixtures.py            # all cases (~1 min)
    /opt/tfenv/bin/python tools/make_gradcam_fixtures.py --only small_cnn

Each case in ``tests/fixtures/gradcam/<case>/`` holds what the tensorflowjs 4.22 converter wrote
(``model.json`` + shards, Keras 2 = tf_keras export) and ``io.npz``:

* Grad-CAM cases: ``input`` (N,H,W,C float32), ``class_index`` (N,) int64 (the top class unless
  the case names one), ``layer`` (0-d str), ``logits`` (N,K), ``output`` (N,K, model output),
  ``heatmap`` (N,h,w: TensorFlow's Grad-CAM at the layer's resolution), ``heatmap_upsampled``
  (N,H,W); ``runner_up_class`` / ``runner_up_heatmap`` / ``runner_up_heatmap_upsampled`` the
  same for each image's second-highest logit. Reference = the Keras Grad-CAM example, per image: a ``GradientTape`` over
  ``Model(inputs, [layer.output, logits])``; class score = the class's logit (the final Dense's
  pre-activation ``x @ kernel + bias`` when the Dense carries softmax/sigmoid, else the input of
  the final Activation layer); alpha_k = mean over H,W of d score / d A; map = ReLU(sum_k alpha_k
  A_k) / max. Upsampling: ``tf.image.resize(map, (H, W), method="bilinear")`` (TF2: half-pixel
  centers, no antialias), applied to the normalised map.
* Segmentation cases: ``input``, ``output`` (N,H,W,C probabilities), ``masks`` (N,H,W) int64 =
  argmax over classes (single sigmoid channel: ``p > 0.5``). Inputs are drawn from successive
  seeds until every pixel's top-2 margin (or |p - 0.5|) is at least ``MIN_MARGIN``, so the masks
  are free of near-ties and must match exactly.

``meta.json`` records versions, seeds, the layer, the class indices and the chosen margins.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# TensorFlow 2.21's oneDNN Conv2DBackpropFilter segfaults on the residual_add case (stride-2 convs
# after the target; the tape asks for the filter gradient too) and corrupts the heap when several
# cases run in one process; the plain Eigen kernels give the same maps (3.6e-7 from the committed
# fixture) without crashing.
import os  # noqa: E402

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tfjs_fixture_lib as lib  # noqa: E402  (imports TensorFlow, stubs optional modules)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

OUT_ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gradcam"
MIN_MARGIN = 2e-5  # >> the engine-vs-TF probability error (~1e-6), so masks must agree exactly
K = lib.keras_module("2")
L = K.layers


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    build: Callable
    layer: str | None = None          # Grad-CAM target layer (None: segmentation case)
    class_index: int | None = None    # None: the top class of each image
    input_range: tuple | None = None


def _small_cnn():
    x = inputs = L.Input((20, 28, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(12, 3, padding="same", activation="relu", name="last_conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(5, activation="softmax", name="predictions")(x)
    return K.Model(inputs, outputs, name="small_cnn")


def _bn_dropout_head():
    x = inputs = L.Input((24, 24, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv1")(x)
    x = L.Conv2D(16, 3, padding="valid", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.BatchNormalization(name="head_bn")(x)
    x = L.Dropout(0.5, name="head_dropout")(x)
    x = L.Dense(10, activation="relu", name="fc")(x)
    outputs = L.Dense(4, activation="softmax", name="predictions")(x)
    return K.Model(inputs, outputs, name="bn_dropout_head")


def _densenet_concat():
    x = inputs = L.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem_conv")(x)
    stem = L.Activation("relu", name="stem_relu")(x)
    y = L.BatchNormalization(name="block_bn1")(stem)
    y = L.Activation("relu", name="block_relu1")(y)
    y = L.Conv2D(8, 1, use_bias=False, name="block_conv1")(y)
    y = L.BatchNormalization(name="block_bn2")(y)
    y = L.Activation("relu", name="block_relu2")(y)
    y = L.Conv2D(4, 3, padding="same", use_bias=False, name="block_conv2")(y)
    x = L.Concatenate(name="block_concat")([stem, y])
    x = L.BatchNormalization(name="transition_bn")(x)
    x = L.Activation("relu", name="transition_relu")(x)
    x = L.Conv2D(6, 1, name="transition_conv")(x)
    x = L.AveragePooling2D(2, name="transition_pool")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(3, activation="softmax", name="predictions")(x)
    return K.Model(inputs, outputs, name="densenet_concat")


def _residual_add():
    x = inputs = L.Input((18, 18, 3))
    stem = L.Conv2D(8, 3, padding="same", activation="relu", name="stem_conv")(x)
    y = L.Conv2D(12, 3, strides=2, padding="same", name="res_conv1")(stem)
    y = L.BatchNormalization(name="res_bn1")(y)
    y = L.Activation("relu", name="res_relu1")(y)
    y = L.Conv2D(12, 3, padding="same", name="res_conv2")(y)
    shortcut = L.Conv2D(12, 1, strides=2, name="res_shortcut")(stem)
    x = L.Add(name="res_add")([y, shortcut])
    x = L.Activation("relu", name="res_out")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(4, activation="softmax", name="predictions")(x)
    return K.Model(inputs, outputs, name="residual_add")


def _multilabel_sigmoid():
    x = inputs = L.Input((16, 20, 1))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    outputs = L.Dense(3, activation="sigmoid", name="labels")(x)
    return K.Model(inputs, outputs, name="multilabel_sigmoid")


def _fused_activation_target():
    x = inputs = L.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = L.Conv2D(10, 3, padding="same", use_bias=False, name="conv2")(x)
    x = L.BatchNormalization(name="conv2_bn")(x)
    x = L.Activation("relu", name="conv2_relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(3, name="logits")(x)
    outputs = L.Activation("softmax", name="probabilities")(x)
    return K.Model(inputs, outputs, name="fused_activation_target")


def _layernorm_head():
    """ConvNeXt's classifier head: GAP -> LayerNormalization -> Dense(softmax)."""
    x = inputs = L.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = L.Conv2D(12, 3, strides=2, padding="same", name="last_conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.LayerNormalization(epsilon=1e-6, name="head_layernorm")(x)
    outputs = L.Dense(5, activation="softmax", name="head_dense")(x)
    return K.Model(inputs, outputs, name="layernorm_head")


def _convnext_block():
    """A ConvNeXt block between the target and the score: patchify stem + channel LayerNorm
    (target), depthwise 7x7 -> LayerNorm -> Dense(4C) -> GELU -> Dense(C) (Dense on a 4-D tensor
    = 1x1 conv) -> Add, then GAP -> LayerNorm -> Dense(softmax)."""
    inputs = L.Input((32, 32, 3))
    x = L.Conv2D(16, 4, strides=4, name="stem_conv")(inputs)
    stem = L.LayerNormalization(epsilon=1e-6, name="stem_layernorm")(x)
    x = L.DepthwiseConv2D(7, padding="same", name="block_depthwise_conv")(stem)
    x = L.LayerNormalization(epsilon=1e-6, name="block_layernorm")(x)
    x = L.Dense(64, name="block_pointwise_conv_1")(x)
    x = L.Activation("gelu", name="block_gelu")(x)
    x = L.Dense(16, name="block_pointwise_conv_2")(x)
    x = L.Add(name="block_add")([stem, x])
    x = L.GlobalAveragePooling2D(name="head_gap")(x)
    x = L.LayerNormalization(epsilon=1e-6, name="head_layernorm")(x)
    outputs = L.Dense(4, activation="softmax", name="head_dense")(x)
    return K.Model(inputs, outputs, name="convnext_block")


def _upsample_head():
    """FPN-like head between the target and the score: bilinear UpSampling2D of the coarse target,
    Concatenate with the finer map, Conv2D, Conv2DTranspose (stride 2, "same"), nearest
    UpSampling2D, then GAP -> Dense(softmax)."""
    inputs = L.Input((16, 16, 3))
    fine = L.Conv2D(6, 3, padding="same", activation="relu", name="fine_conv")(inputs)
    x = L.MaxPooling2D(2, name="pool")(fine)
    coarse = L.Conv2D(8, 3, padding="same", activation="relu", name="coarse_conv")(x)
    x = L.UpSampling2D(2, interpolation="bilinear", name="up_bilinear")(coarse)
    x = L.Concatenate(name="merge")([x, fine])
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="merge_conv")(x)
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same", activation="relu", name="deconv")(x)
    x = L.UpSampling2D(2, interpolation="nearest", name="up_nearest")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(3, activation="softmax", name="scores")(x)
    return K.Model(inputs, outputs, name="upsample_head")


def _tiny_unet(classes: int, activation: str, size: int = 32):
    def block(x, filters, name):
        x = L.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
        x = L.BatchNormalization(name=f"{name}_bn")(x)
        return L.Activation("relu", name=f"{name}_relu")(x)

    def build():
        inputs = L.Input((size, size, 3))
        e1 = block(inputs, 8, "enc1")
        e2 = block(L.MaxPooling2D(2, name="pool1")(e1), 12, "enc2")
        b = block(L.MaxPooling2D(2, name="pool2")(e2), 16, "bottleneck")
        d2 = L.UpSampling2D(2, name="up2")(b)
        d2 = block(L.Concatenate(name="skip2")([d2, e2]), 12, "dec2")
        d1 = L.Conv2DTranspose(8, 2, strides=2, name="up1")(d2)
        d1 = block(L.Concatenate(name="skip1")([d1, e1]), 8, "dec1")
        outputs = L.Conv2D(classes, 1, activation=activation, name="mask")(d1)
        return K.Model(inputs, outputs, name=f"tiny_unet_{classes}")

    return build


CASES = [
    Case("small_cnn", "Conv-Pool-Conv-GAP-Dense(softmax); non-square input", _small_cnn, layer="last_conv"),
    Case("bn_dropout_head", "GAP -> BatchNorm -> Dropout -> Dense(relu) -> Dense(softmax); target = a valid conv",
         _bn_dropout_head, layer="conv2"),
    Case("densenet_concat", "target before a DenseNet-style block: BN-ReLU-Conv1x1-BN-ReLU-Conv3x3, Concatenate, "
         "transition BN-ReLU-Conv1x1-AvgPool, GAP, Dense(softmax)", _densenet_concat, layer="stem_relu"),
    Case("residual_add", "target feeds a residual block (stride-2 convs, BN, Add, ReLU) then GAP-Dense",
         _residual_add, layer="stem_conv"),
    Case("multilabel_sigmoid", "MaxPool-Flatten-Dense(sigmoid), explicit class 1", _multilabel_sigmoid,
         layer="conv2", class_index=1),
    Case("fused_activation_target", "target = Activation after Conv+BN (folded and fused by app.optimize), "
         "separate softmax Activation layer", _fused_activation_target, layer="conv2_relu"),
    Case("layernorm_head", "ConvNeXt's head: GAP -> LayerNormalization -> Dense(softmax)", _layernorm_head,
         layer="last_conv"),
    Case("convnext_block", "target = stem LayerNorm; a ConvNeXt block (depthwise 7x7, LayerNorm, Dense 4C, GELU, "
         "Dense C, Add), GAP, LayerNorm, Dense(softmax)", _convnext_block, layer="stem_layernorm"),
    Case("upsample_head", "target = coarse conv; bilinear UpSampling2D, Concatenate, Conv2D, Conv2DTranspose "
         "(stride 2), nearest UpSampling2D, GAP, Dense(softmax)", _upsample_head, layer="coarse_conv"),
    Case("unet_softmax", "tiny U-Net (MaxPool, UpSampling2D, Conv2DTranspose, Concatenate), 4-class softmax",
         _tiny_unet(4, "softmax")),
    Case("unet_sigmoid", "tiny U-Net, single sigmoid channel (threshold 0.5)", _tiny_unet(1, "sigmoid")),
]


def _seed_for(name: str) -> int:
    return zlib.crc32(f"gradcam_{name}".encode())


def _logit_function(model):
    """(input of the classifier's last layer -> logits) and that input tensor, following the
    Keras Grad-CAM example: the pre-activation of a softmax/sigmoid Dense, or the input of a
    final Activation layer."""
    last = model.layers[-1]
    if isinstance(last, L.Dense):
        kernel, bias = last.kernel, last.bias
        return last.input, (lambda pen: tf.matmul(pen, kernel) + bias)
    if isinstance(last, L.Activation):
        return last.input, (lambda pen: pen)
    raise ValueError(f"no logit rule for final layer {last.name} ({type(last).__name__})")


def _gradcam(model, layer_name, x, class_index, allow_zero=False):
    """Per-image Grad-CAM; ``class_index`` None = top logit, an int, or one int per image."""
    penultimate, to_logits = _logit_function(model)
    grad_model = K.Model(model.inputs, [model.get_layer(layer_name).output, penultimate])
    maps, upsampled, logits, chosen = [], [], [], []
    for image in x:
        with tf.GradientTape() as tape:
            features, pen = grad_model(image[None], training=False)
            image_logits = to_logits(pen)
            if class_index is None:
                index = int(tf.argmax(image_logits[0]))
            else:
                index = int(class_index[len(chosen)]) if np.ndim(class_index) else int(class_index)
            score = image_logits[:, index]
        grads = tape.gradient(score, features)
        weights = tf.reduce_mean(grads, axis=(0, 1, 2))
        heat = tf.maximum(tf.reduce_sum(features[0] * weights, axis=-1), 0.0)
        peak = float(tf.reduce_max(heat))
        if peak <= 0:
            if not allow_zero:
                raise RuntimeError(f"{model.name}: all-zero Grad-CAM map for class {index}: choose another input")
            peak = 1.0  # TF would divide 0 by 0; the contract is "an all-zero map stays zero"
        heat = heat / peak
        maps.append(heat.numpy())
        upsampled.append(tf.image.resize(heat[None, :, :, None], x.shape[1:3], method="bilinear")[0, :, :, 0].numpy())
        logits.append(image_logits[0].numpy())
        chosen.append(index)
    return (np.stack(maps).astype(np.float32), np.stack(upsampled).astype(np.float32),
            np.stack(logits).astype(np.float32), np.asarray(chosen, dtype=np.int64))


def _masks_with_margin(model, seed: int):
    """Inputs (from successive seeds) whose every pixel is a clear decision, their outputs, masks."""
    for attempt in range(200):
        x = lib.make_inputs(model, seed + attempt, batch=2)[0]
        probabilities = lib.predict(model, [x])[0]
        if probabilities.shape[-1] == 1:
            margin = float(np.min(np.abs(probabilities - 0.5)))
            masks = (probabilities[..., 0] > 0.5).astype(np.int64)
        else:
            top2 = np.sort(probabilities, axis=-1)[..., -2:]
            margin = float(np.min(top2[..., 1] - top2[..., 0]))
            masks = np.argmax(probabilities, axis=-1).astype(np.int64)
        counts = np.bincount(masks.ravel(), minlength=max(2, probabilities.shape[-1]))
        if margin >= MIN_MARGIN and np.count_nonzero(counts) >= 2:
            return x, probabilities, masks, margin, seed + attempt
    raise RuntimeError(f"{model.name}: no input without near-ties in 200 seeds")


def generate(case: Case, out_root: Path) -> Path:
    K.backend.clear_session()
    model = case.build()
    seed = _seed_for(case.name)
    lib.seed_weights(model, seed)
    case_dir = out_root / case.name
    lib.convert(model, "2", case_dir)
    meta = lib.base_meta("2", "gradcam" if case.layer else "segmentation", case.description)
    meta["seed"] = seed
    if case.layer is None:
        x, probabilities, masks, margin, input_seed = _masks_with_margin(model, seed + 1)
        arrays = {"input": x, "output": probabilities, "masks": masks}
        meta["min_top2_margin"] = margin
        meta["input_generation"] = f"numpy.random.default_rng({input_seed}).standard_normal((2, *input_shape))"
        meta["reference"] = "TensorFlow model(x, training=False); masks = argmax (sigmoid: p > 0.5)"
    else:
        x = lib.make_inputs(model, seed + 1, batch=2)[0]
        heat, upsampled, logits, chosen = _gradcam(model, case.layer, x, case.class_index)
        output = lib.predict(model, [x])[0]
        # a second, non-top class per image (the runner-up logit) checks class selection and, when
        # its map is all zero, the zero-map rule
        runner_up = np.argsort(logits, axis=1)[:, -2]
        heat2, upsampled2, _, _ = _gradcam(model, case.layer, x, runner_up, allow_zero=True)
        arrays = {"input": x, "class_index": chosen, "layer": np.array(case.layer), "logits": logits,
                  "output": output, "heatmap": heat, "heatmap_upsampled": upsampled,
                  "runner_up_class": runner_up, "runner_up_heatmap": heat2,
                  "runner_up_heatmap_upsampled": upsampled2}
        meta.update(layer=case.layer, class_index=chosen.tolist(),
                    class_index_rule="top logit per image" if case.class_index is None else "given",
                    heatmap_shape=list(heat.shape),
                    input_generation=f"numpy.random.default_rng({seed + 1}).standard_normal((2, *input_shape))",
                    reference="Keras Grad-CAM example per image (GradientTape, logit score, spatial-mean "
                              "weights, ReLU, / max); tf.image.resize bilinear (half-pixel centers)")
    np.savez_compressed(case_dir / "io.npz", **arrays)
    (case_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return case_dir


REPO = Path(__file__).resolve().parent.parent
BIG_ROOT = REPO / ".cache" / "fixtures" / "big"
BIG_OUT_ROOT = REPO / ".cache" / "fixtures" / "gradcam_big"
# big case (tools/make_big_fixtures.py) -> a "deep" target whose backward pass crosses a whole
# block of the real architecture; the default target (last spatial layer) is always added.
BIG_DEEP_LAYERS = {
    "k2_densenet121": "conv5_block15_concat",      # dense block 16 (BN-ReLU-Conv-BN-ReLU-Conv-Concat), final BN-ReLU
    "k2_webipred_densenet121": "conv5_block15_concat",  # + WebIPred's Dense-Dropout-Dense-Activation head
    "k2_resnet50": "conv5_block2_out",             # a bottleneck block with Add
    "k2_mobilenetv2": "block_16_project_BN",       # Conv_1, BN, ReLU(6)
    "k2_efficientnetb0": "block7a_project_bn",     # top_conv, BN, swish, GAP, Dropout
    # the last ConvNeXt block (depthwise 7x7, LayerNorm, Dense, GELU, Dense, LayerScale, Add), then
    # the head GAP -> LayerNorm -> Dense
    "k2_convnexttiny": "tf.__operators__.add_16",
    # Conv_1 -> BN -> hard swish (TFOpLambda add / ReLU(6) / multiply) -> GAP -> Conv_2 -> hard swish
    # -> Dropout -> Logits conv -> Flatten -> softmax
    "k2_mobilenetv3small": "expanded_conv_10/Add",
}


def _last_spatial_layer(model) -> str:
    for layer in reversed(model.layers):
        shape = layer.output.shape
        if len(shape) == 4 and shape[1] > 1 and shape[2] > 1:
            return layer.name
    raise ValueError(f"{model.name}: no spatial layer")


def _activations_and_gradients(model, layer_name, x, classes):
    """The layer's output A and d logit[class] / d A per image (TensorFlow GradientTape)."""
    penultimate, to_logits = _logit_function(model)
    grad_model = K.Model(model.inputs, [model.get_layer(layer_name).output, penultimate])
    values, grads = [], []
    for image, index in zip(x, classes):
        with tf.GradientTape() as tape:
            features, pen = grad_model(image[None], training=False)
            score = to_logits(pen)[:, int(index)]
        grads.append(tape.gradient(score, features)[0].numpy())
        values.append(features[0].numpy())
    return np.stack(values).astype(np.float32), np.stack(grads).astype(np.float32)


def _rebuild_big(name: str, model_dir: Path):
    """The cached big model in tf_keras: from its model.json, or (ConvNeXt: tf_keras cannot rebuild
    its private LayerScale from JSON) the same application built again, with the shards' weights."""
    try:
        return lib.load_tfjs_into_tf_keras(model_dir)
    except (TypeError, ValueError):
        import make_big_fixtures
        from tensorflowjs import read_weights

        case = next(c for c in make_big_fixtures.BIG_CASES if c.name == name)
        model = case.build()
        model_json = json.loads((model_dir / "model.json").read_text())
        # TFOpLambda names ("tf.__operators__.add_16") count up per process: take model.json's, by
        # position, so layer names are the ones the converted model (and so Vitrine) has
        saved = model_json["modelTopology"]["model_config"]["config"]["layers"]
        if [entry["class_name"] for entry in saved] != [type(layer).__name__ for layer in model.layers]:
            raise RuntimeError(f"{name}: the rebuilt application's layers differ from {model_dir}/model.json")
        for layer, entry in zip(model.layers, saved):
            layer._name = entry["config"]["name"]
        lib.assign_manifest_weights(model, read_weights.read_weights(model_json["weightsManifest"], str(model_dir),
                                                                     flatten=True))
        return model


def generate_big(names) -> list[Path]:
    """Grad-CAM references for cached big models (tools/make_big_fixtures.py), not committed:
    each model is rebuilt in tf_keras from its model.json + shards, inputs are its io.npz inputs."""
    written = []
    for name in names:
        model_dir = BIG_ROOT / name
        if not (model_dir / "model.json").is_file():
            print(f"skip {name}: {model_dir} is missing (run tools/make_big_fixtures.py --only {name})")
            continue
        K.backend.clear_session()
        model = _rebuild_big(name, model_dir)
        with np.load(model_dir / "io.npz") as data:
            x = data["input_0"]
            # the rebuilt model is the one the big fixture recorded
            np.testing.assert_allclose(lib.predict(model, [x])[0], data["output_0"], atol=1e-5, err_msg=name)
        arrays = {"input": x}
        layers = {"default": _last_spatial_layer(model), "deep": BIG_DEEP_LAYERS[name]}
        for role, layer in layers.items():
            heat, upsampled, logits, chosen = _gradcam(model, layer, x, None)
            arrays.update({f"{role}_layer": np.array(layer), f"{role}_heatmap": heat,
                           f"{role}_heatmap_upsampled": upsampled, "class_index": chosen, "logits": logits})
        # the deep layer's own activations and gradients: they let a test check the backward pass
        # alone, from TensorFlow's activations (seeded random weights put many ReLU inputs near 0,
        # so float32 forward differences flip ReLU masks and move an end-to-end deep map ~1e-3)
        arrays["deep_activations"], arrays["deep_gradients"] = _activations_and_gradients(
            model, layers["deep"], x, arrays["class_index"])
        out = BIG_OUT_ROOT / name
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "io.npz", **arrays)
        meta = lib.base_meta("2", "gradcam", f"Grad-CAM of the cached big case {name} (top class per image)")
        meta.update(model_dir=str(model_dir.relative_to(REPO)), layers=layers, class_index=arrays["class_index"].tolist())
        (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        print(f"{name}: layers {layers}, classes {meta['class_index']}", flush=True)
        written.append(out)
    return written


# ---- browser (UI) fixtures: real image files through the model card's preprocessing ----------
# The page decodes an image file and preprocesses it by the model card; these cases start from
# such files, so a browser test can compare what the page shows with TensorFlow.
DEMO_DIR = REPO / "static" / "demo"
DEMO_PNG_SAMPLES = ("ct_head.png", "mr_abdomen.png", "microscopy_cell.png", "photo_camera.png")
UI_UNET_CLASSES = ("background", "lesion", "organ")
UI_UNET_SIZE = 48


def generate_demo_gradcam(out_root: Path) -> Path:
    """Grad-CAM of the bundled demo model (static/demo/demo-model.zip, rebuilt in tf_keras from its
    model.json + shard) on its PNG samples. Inputs: static/demo/expected_inputs.npz (the float32
    model inputs tools/make_demo_model.py computed with Pillow / OpenCV, independently of app)."""
    import tempfile
    import zipfile

    K.backend.clear_session()
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(DEMO_DIR / "demo-model.zip") as archive:
            archive.extractall(tmp)
        model = lib.load_tfjs_into_tf_keras(Path(tmp))
    expected = json.loads((DEMO_DIR / "expected.json").read_text())
    with np.load(DEMO_DIR / "expected_inputs.npz") as inputs:
        x = np.concatenate([inputs[name].reshape(1, *model.input_shape[1:]) for name in DEMO_PNG_SAMPLES])
    probabilities = lib.predict(model, [x])[0]
    for name, row in zip(DEMO_PNG_SAMPLES, probabilities):  # the rebuilt model is the demo model
        np.testing.assert_allclose(row, expected["samples"][name]["probabilities"], atol=1e-5)
    layer = _last_spatial_layer(model)
    heat, upsampled, logits, chosen = _gradcam(model, layer, x, None)
    runner_up = np.argsort(logits, axis=1)[:, -2]
    heat2, upsampled2, _, _ = _gradcam(model, layer, x, runner_up, allow_zero=True)
    case_dir = out_root / "demo_model"
    case_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(case_dir / "io.npz", files=np.array(DEMO_PNG_SAMPLES), input=x, layer=np.array(layer),
                        class_index=chosen, logits=logits, output=probabilities, heatmap=heat,
                        heatmap_upsampled=upsampled, runner_up_class=runner_up, runner_up_heatmap=heat2,
                        runner_up_heatmap_upsampled=upsampled2)
    meta = lib.base_meta("2", "gradcam", "the bundled demo model on its PNG samples (browser test reference)")
    meta.update(model="static/demo/demo-model.zip", files=list(DEMO_PNG_SAMPLES), layer=layer,
                class_index=chosen.tolist(), runner_up_class=runner_up.tolist(),
                input_generation="static/demo/expected_inputs.npz (tools/make_demo_model.py)",
                reference="Keras Grad-CAM example per image (GradientTape, logit score, spatial-mean weights, "
                          "ReLU, / max); tf.image.resize bilinear (half-pixel centers)")
    (case_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return case_dir


def _synthetic_scan(rng: np.random.Generator, size: int) -> np.ndarray:
    """A uint8 RGB image with some structure (a gradient, bright and dark blobs, noise), so a
    segmentation overlay has regions to show."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = 60.0 + 80.0 * rows[..., None] * np.array([1.0, 0.9, 0.8], dtype=np.float32)
    for _ in range(4):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.25)
        blob = np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * r * r))[..., None]
        image = image + rng.uniform(-120, 150) * blob * rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    image = image + rng.normal(0, 12, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _png_rgb(image: np.ndarray) -> bytes:
    """A plain 8-bit RGB PNG (no filters; zlib + struct only: this env has no Pillow)."""
    import struct

    height, width, _ = image.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + np.ascontiguousarray(row, dtype=np.uint8).tobytes() for row in image)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _deterministic_zip(entries: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def generate_ui_unet(out_root: Path) -> Path:
    """A tiny 3-class U-Net as the TF.js zip a user would open (model.json + shard +
    model-card.json: input 48x48 RGB, standardize "tf" = x / 127.5 - 1) and a PNG image whose
    every pixel is a clear decision (top-2 margin >= MIN_MARGIN) with all classes present;
    ``masks`` = TensorFlow's argmax, ``areas`` = its pixel count per class."""
    name = "ui_unet"
    K.backend.clear_session()
    model = _tiny_unet(len(UI_UNET_CLASSES), "softmax", UI_UNET_SIZE)()
    seed = _seed_for(name)
    lib.seed_weights(model, seed)
    case_dir = out_root / name
    lib.convert(model, "2", case_dir)
    for attempt in range(2000):
        image = _synthetic_scan(np.random.default_rng(seed + 1 + attempt), UI_UNET_SIZE)
        x = image.astype(np.float32)
        x /= 127.5  # Keras imagenet_utils.preprocess_input(mode="tf"), in float32 as Keras does it
        x -= 1.0
        probabilities = lib.predict(model, [x[None]])[0]
        top2 = np.sort(probabilities, axis=-1)[..., -2:]
        margin = float(np.min(top2[..., 1] - top2[..., 0]))
        masks = np.argmax(probabilities, axis=-1).astype(np.int64)
        areas = np.bincount(masks.ravel(), minlength=len(UI_UNET_CLASSES))
        if margin >= MIN_MARGIN and np.all(areas > 0):
            break
    else:
        raise RuntimeError(f"{name}: no image without near-ties and with every class present in 2000 seeds")
    card = {"schema_version": 1, "name": "Vitrine test fixture: tiny U-Net (random weights, not a real model)",
            "classes": list(UI_UNET_CLASSES), "multi_label": False, "input_size": [UI_UNET_SIZE, UI_UNET_SIZE],
            "channels": 3, "resize_mode": 1, "standardize": "tf", "pad_square": False,
            "description": "Seeded random weights; exists only to test the segmentation view. Not for clinical use."}
    card_bytes = (json.dumps(card, indent=2) + "\n").encode()
    (case_dir / "model-card.json").write_bytes(card_bytes)
    files = {p.name: p.read_bytes() for p in sorted(case_dir.iterdir()) if p.name != "model.zip"}
    (case_dir / "model.zip").write_bytes(_deterministic_zip(files))
    (case_dir / "image.png").write_bytes(_png_rgb(image))
    np.savez_compressed(case_dir / "io.npz", image=image, input=x[None], output=probabilities, masks=masks,
                        areas=areas.astype(np.int64))
    meta = lib.base_meta("2", "segmentation", "tiny 3-class U-Net as a TF.js zip with a model card, PNG input "
                                              "(browser test of the segmentation view)")
    meta.update(seed=seed, image_seed=seed + 1 + attempt, min_top2_margin=margin, classes=list(UI_UNET_CLASSES),
                areas=areas.tolist(), input_generation="_synthetic_scan(default_rng(image_seed), 48) -> x / 127.5 - 1",
                reference="TensorFlow model(x, training=False); masks = argmax over classes")
    (case_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return case_dir


UI_CASES = {"demo_model": generate_demo_gradcam, "ui_unet": generate_ui_unet}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_ROOT)
    parser.add_argument("--only", action="append", default=[], help="case name; repeatable")
    parser.add_argument("--big", action="store_true",
                        help=f"only the uncommitted references for cached big models in "
                             f"{BIG_OUT_ROOT.relative_to(REPO)} (--only selects among {sorted(BIG_DEEP_LAYERS)})")
    args = parser.parse_args(argv)
    if args.big:
        generate_big([n for n in BIG_DEEP_LAYERS if not args.only or n in args.only])
        return 0
    cases = [c for c in CASES if not args.only or c.name in args.only]
    ui_cases = [name for name in UI_CASES if not args.only or name in args.only]
    if not cases and not ui_cases:
        parser.error(f"no case matches --only {args.only}; cases: {[c.name for c in CASES] + list(UI_CASES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        case_dir = generate(case, args.out)
        size = sum(p.stat().st_size for p in case_dir.iterdir())
        print(f"{case.name}: {size} bytes", flush=True)
    for name in ui_cases:
        case_dir = UI_CASES[name](args.out)
        size = sum(p.stat().st_size for p in case_dir.iterdir())
        print(f"{name}: {size} bytes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
