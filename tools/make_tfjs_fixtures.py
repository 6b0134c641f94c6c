"""Generate the small, committed TF.js layers-model fixtures in tests/fixtures/tfjs/<case>/.

Run inside the TensorFlow venv made by tools/fixture_env.sh (never the app's .venv):

    /opt/tfenv/bin/python tools/make_tfjs_fixtures.py                 # all cases + node oracle
    /opt/tfenv/bin/python tools/make_tfjs_fixtures.py --only k2_conv2d_same_s2 --no-node

Every case is built with the real Keras (Keras 2 = tf_keras, Keras 3 = keras), given seeded
weights, converted with the real tensorflowjs converter, and run by TensorFlow on seeded inputs
(batch 2, NHWC float32). Most builders take the Keras module as argument so the same model is
exported both ways (case names k2_* and k3_*). Keras-2 cases are re-run with TF.js in Node
(@tensorflow/tfjs 4.22.0, cpu) and the agreement is written into meta.json["tfjs_node_oracle"].
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tfjs_fixture_lib as lib  # noqa: E402

np = lib.np
tf = lib.tf

REPO = Path(__file__).resolve().parent.parent
OUT_ROOT = REPO / "tests" / "fixtures" / "tfjs"


@dataclass
class Case:
    """One fixture: ``build(K)`` returns an (unseeded) model for Keras module ``K``."""

    name: str
    build: Callable
    description: str
    kind: str = "features"
    kerases: tuple[str, ...] = ("2", "3")
    input_range: tuple[float, float] | None = None
    convert_kwargs: dict = field(default_factory=dict)
    # Keras 3 only: replace the converter's topology (which drops "module"/"registered_name")
    # by the untouched model.to_json(), as a hand-written Keras 3 model.json would carry it.
    raw_keras3_config: bool = False
    # Quantized cases: expected output = TF with the dequantized weights actually stored.
    quantized: bool = False


CASES: list[Case] = []


def case(name, description, **kwargs):
    def register(build):
        CASES.append(Case(name=name, build=build, description=description, **kwargs))
        return build
    return register


def single(name, description, input_shape, make_layer, **kwargs):
    """A one-layer functional model: Input -> layer."""
    def build(K):
        x = K.Input(shape=input_shape, name="image")
        return K.Model(x, make_layer(K)(x), name=name)
    CASES.append(Case(name=name, build=build, description=description, **kwargs))


def merge(name, description, make_layer, n_inputs=2, shape=(5, 6, 3), **kwargs):
    def build(K):
        xs = [K.Input(shape=shape, name=f"in{i}") for i in range(n_inputs)]
        return K.Model(xs, make_layer(K)(xs), name=name)
    CASES.append(Case(name=name, build=build, description=description, **kwargs))


# ---------------------------------------------------------------------------- convolutions
single("conv2d_valid_k3", "Conv2D 3x3 valid, odd input 9x11", (9, 11, 3),
       lambda K: K.layers.Conv2D(4, 3, name="conv"))
single("conv2d_same_s2_relu", "Conv2D 3x3 stride 2 same, fused relu, odd input", (9, 11, 3),
       lambda K: K.layers.Conv2D(5, 3, strides=2, padding="same", activation="relu", name="conv"))
single("conv2d_same_s2_even", "Conv2D 3x3 stride 2 same on even input (asymmetric pads)",
       (8, 10, 3), lambda K: K.layers.Conv2D(4, 3, strides=2, padding="same", name="conv"))
single("conv2d_k5_s3_same", "Conv2D 5x4 kernel stride (3,2) same", (11, 9, 2),
       lambda K: K.layers.Conv2D(3, (5, 4), strides=(3, 2), padding="same", name="conv"))
single("conv2d_valid_s2_nobias", "Conv2D 3x2 stride 2 valid, use_bias=False", (10, 9, 3),
       lambda K: K.layers.Conv2D(4, (3, 2), strides=2, use_bias=False, name="conv"))
single("conv2d_dilation2_same", "Conv2D 3x3 dilation 2 same", (12, 11, 3),
       lambda K: K.layers.Conv2D(4, 3, dilation_rate=2, padding="same", name="conv"))
single("conv2d_dilation2_valid_tanh", "Conv2D 3x3 dilation (2,3) valid, fused tanh", (12, 13, 2),
       lambda K: K.layers.Conv2D(3, 3, dilation_rate=(2, 3), activation="tanh", name="conv"))
single("conv2d_groups2", "Conv2D groups=2 3x3 same (4 -> 6 channels)", (8, 8, 4),
       lambda K: K.layers.Conv2D(6, 3, groups=2, padding="same", name="conv"))
single("conv2d_1x1_sigmoid", "Conv2D 1x1, fused sigmoid", (6, 7, 5),
       lambda K: K.layers.Conv2D(3, 1, activation="sigmoid", name="conv"))
single("depthwise_m1_same", "DepthwiseConv2D 3x3 depth_multiplier 1 same", (9, 9, 4),
       lambda K: K.layers.DepthwiseConv2D(3, padding="same", name="dw"))
single("depthwise_m2_s2_same", "DepthwiseConv2D 3x3 depth_multiplier 2 stride 2 same, relu",
       (9, 10, 3), lambda K: K.layers.DepthwiseConv2D(3, strides=2, padding="same",
                                                      depth_multiplier=2, activation="relu",
                                                      name="dw"))
single("depthwise_valid_nobias", "DepthwiseConv2D 5x5 valid, use_bias=False", (9, 8, 3),
       lambda K: K.layers.DepthwiseConv2D(5, use_bias=False, name="dw"))
single("separable_same", "SeparableConv2D 3x3 same, depth_multiplier 2, relu", (9, 9, 3),
       lambda K: K.layers.SeparableConv2D(6, 3, padding="same", depth_multiplier=2,
                                          activation="relu", name="sep"))
single("separable_s2_valid", "SeparableConv2D 3x3 stride 2 valid, no bias", (10, 9, 4),
       lambda K: K.layers.SeparableConv2D(5, 3, strides=2, use_bias=False, name="sep"))
single("conv_transpose_s2_same", "Conv2DTranspose 3x3 stride 2 same", (5, 5, 3),
       lambda K: K.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="deconv"))
single("conv_transpose_s2_valid", "Conv2DTranspose 3x3 stride 2 valid", (5, 6, 3),
       lambda K: K.layers.Conv2DTranspose(4, 3, strides=2, padding="valid", name="deconv"))
single("conv_transpose_k4_s2_same_relu", "Conv2DTranspose 4x4 stride 2 same, relu", (4, 4, 2),
       lambda K: K.layers.Conv2DTranspose(3, 4, strides=2, padding="same", activation="relu",
                                          name="deconv"))
single("conv_transpose_k2_s1_valid", "Conv2DTranspose 2x3 stride 1 valid, no bias", (4, 5, 2),
       lambda K: K.layers.Conv2DTranspose(3, (2, 3), use_bias=False, name="deconv"))

# ---------------------------------------------------------------------------- dense / norm
single("dense_2d_tanh", "Dense on a 2-D input, fused tanh", (7,),
       lambda K: K.layers.Dense(5, activation="tanh", name="fc"))
single("dense_4d", "Dense on a 4-D NHWC input (contracts channels)", (4, 4, 3),
       lambda K: K.layers.Dense(5, name="fc"))
single("batchnorm_standalone", "BatchNormalization alone, random moving stats", (6, 6, 4),
       lambda K: K.layers.BatchNormalization(epsilon=1e-3, name="bn"))
single("batchnorm_2d_no_scale", "BatchNormalization on 2-D input, scale=False", (6,),
       lambda K: K.layers.BatchNormalization(scale=False, epsilon=1e-2, name="bn"))
single("layernorm_4d", "LayerNormalization over channels of NHWC", (5, 5, 4),
       lambda K: K.layers.LayerNormalization(epsilon=1e-3, name="ln"))
single("layernorm_2d", "LayerNormalization on 2-D input", (8,),
       lambda K: K.layers.LayerNormalization(name="ln"))


@case("conv_bn_relu", "Conv2D(no bias) -> BatchNormalization -> ReLU (foldable)")
def _conv_bn_relu(K):
    x = K.Input((8, 8, 3), name="image")
    y = K.layers.Conv2D(6, 3, padding="same", use_bias=False, name="conv")(x)
    y = K.layers.BatchNormalization(name="bn")(y)
    y = K.layers.ReLU(name="relu")(y)
    return K.Model(x, y, name="conv_bn_relu")


# ---------------------------------------------------------------------------- activations
_ACTIVATIONS_BOTH = ["relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu", "swish",
                     "hard_sigmoid", "softplus", "softsign", "exponential", "linear", "mish"]
_ACTIVATIONS_K3_ONLY = ["relu6", "silu", "hard_swish", "hard_silu", "leaky_relu", "log_softmax"]
for _act in _ACTIVATIONS_BOTH + _ACTIVATIONS_K3_ONLY:
    single(f"act_{_act}", f"Activation('{_act}') on NHWC input", (4, 5, 6),
           (lambda a: lambda K: K.layers.Activation(a, name="act"))(_act),
           kerases=("2", "3") if _act in _ACTIVATIONS_BOTH else ("3",),
           kind="probabilities" if _act == "softmax" else "features")

single("relu_max_threshold_slope", "ReLU(max_value=2.5, threshold=0.3, negative_slope=0.1)",
       (4, 5, 3), lambda K: K.layers.ReLU(max_value=2.5, threshold=0.3, negative_slope=0.1,
                                          name="relu"))
single("relu6_layer", "ReLU(max_value=6) (Keras 2 spelling of relu6)", (4, 5, 3),
       lambda K: K.layers.ReLU(6.0, name="relu6"))
single("leaky_relu", "LeakyReLU with slope 0.2", (4, 5, 3),
       lambda K: (K.layers.LeakyReLU(alpha=0.2, name="lrelu") if K is lib.tf_keras
                  else K.layers.LeakyReLU(negative_slope=0.2, name="lrelu")))
single("prelu_shared_hw", "PReLU with shared_axes=[1, 2] (one alpha per channel)", (4, 5, 3),
       lambda K: K.layers.PReLU(shared_axes=[1, 2], name="prelu"))
single("prelu_full", "PReLU without shared axes (alpha per position)", (4, 5, 3),
       lambda K: K.layers.PReLU(name="prelu"))
single("elu_layer", "ELU(alpha=0.7)", (4, 5, 3), lambda K: K.layers.ELU(alpha=0.7, name="elu"))
single("softmax_layer", "Softmax layer over channels", (4, 5, 6),
       lambda K: K.layers.Softmax(name="softmax"), kind="probabilities")
single("softmax_axis1", "Softmax layer over axis 1 (height)", (4, 5, 6),
       lambda K: K.layers.Softmax(axis=1, name="softmax"), kind="probabilities")

# ---------------------------------------------------------------------------- merges
merge("merge_add3", "Add of three inputs", lambda K: K.layers.Add(name="add"), n_inputs=3)
merge("merge_subtract", "Subtract", lambda K: K.layers.Subtract(name="sub"))
merge("merge_multiply", "Multiply", lambda K: K.layers.Multiply(name="mul"))
merge("merge_average", "Average", lambda K: K.layers.Average(name="avg"))
merge("merge_maximum", "Maximum", lambda K: K.layers.Maximum(name="max"))
merge("merge_minimum", "Minimum", lambda K: K.layers.Minimum(name="min"))
merge("concat_channels", "Concatenate on the channel axis",
      lambda K: K.layers.Concatenate(name="concat"))
merge("concat_axis1", "Concatenate on axis 1 (height)",
      lambda K: K.layers.Concatenate(axis=1, name="concat"))

# ---------------------------------------------------------------------------- shape / pool
single("zeropad_asym", "ZeroPadding2D(((1, 2), (0, 3)))", (5, 6, 3),
       lambda K: K.layers.ZeroPadding2D(((1, 2), (0, 3)), name="pad"))
single("cropping_asym", "Cropping2D(((1, 0), (2, 1)))", (7, 8, 3),
       lambda K: K.layers.Cropping2D(((1, 0), (2, 1)), name="crop"))
single("maxpool_p3_s2_valid", "MaxPooling2D pool 3 stride 2 valid", (9, 10, 3),
       lambda K: K.layers.MaxPooling2D(3, strides=2, name="pool"))
single("maxpool_p3_s2_same", "MaxPooling2D pool 3 stride 2 same", (9, 10, 3),
       lambda K: K.layers.MaxPooling2D(3, strides=2, padding="same", name="pool"))
single("maxpool_p2_default", "MaxPooling2D pool 2 (stride = pool) on odd input", (9, 7, 3),
       lambda K: K.layers.MaxPooling2D(2, name="pool"))
single("avgpool_p3_s2_same", "AveragePooling2D pool 3 stride 2 same (edge counts exclude pad)",
       (9, 10, 3), lambda K: K.layers.AveragePooling2D(3, strides=2, padding="same",
                                                       name="pool"))
single("avgpool_p2_s1_valid", "AveragePooling2D pool (2,3) stride 1 valid", (6, 7, 3),
       lambda K: K.layers.AveragePooling2D((2, 3), strides=1, name="pool"))
single("avgpool_p3_s1_same", "AveragePooling2D pool 3 stride 1 same", (6, 7, 3),
       lambda K: K.layers.AveragePooling2D(3, strides=1, padding="same", name="pool"))
single("gap", "GlobalAveragePooling2D", (5, 6, 4),
       lambda K: K.layers.GlobalAveragePooling2D(name="gap"))
single("gap_keepdims", "GlobalAveragePooling2D(keepdims=True)", (5, 6, 4),
       lambda K: K.layers.GlobalAveragePooling2D(keepdims=True, name="gap"))
single("gmp", "GlobalMaxPooling2D", (5, 6, 4),
       lambda K: K.layers.GlobalMaxPooling2D(name="gmp"))
single("gmp_keepdims", "GlobalMaxPooling2D(keepdims=True)", (5, 6, 4),
       lambda K: K.layers.GlobalMaxPooling2D(keepdims=True, name="gmp"))
single("flatten", "Flatten of NHWC (row-major H, W, C order)", (3, 4, 2),
       lambda K: K.layers.Flatten(name="flatten"))
single("reshape", "Reshape((6, 4)) of a 3x4x2 input", (3, 4, 2),
       lambda K: K.layers.Reshape((6, 4), name="reshape"))
single("reshape_infer", "Reshape((-1, 2, 2))", (3, 4, 2),
       lambda K: K.layers.Reshape((-1, 2, 2), name="reshape"))
single("permute_hw", "Permute((2, 1, 3))", (3, 4, 2),
       lambda K: K.layers.Permute((2, 1, 3), name="permute"))
single("permute_chw", "Permute((3, 1, 2)) (NHWC -> NCHW)", (3, 4, 2),
       lambda K: K.layers.Permute((3, 1, 2), name="permute"))
single("upsample_nearest", "UpSampling2D size (2, 3) nearest", (3, 4, 2),
       lambda K: K.layers.UpSampling2D((2, 3), name="up"))
single("upsample_bilinear", "UpSampling2D size 2 bilinear", (3, 4, 2),
       lambda K: K.layers.UpSampling2D(2, interpolation="bilinear", name="up"))
single("rescaling", "Rescaling(1/127.5, offset=-1) on 0..255 pixels", (5, 5, 3),
       lambda K: K.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale"),
       input_range=(0.0, 255.0))
single("normalization_given", "Normalization with explicit mean/variance per channel",
       (5, 5, 3), lambda K: K.layers.Normalization(mean=[0.485, 0.456, 0.406],
                                                   variance=[0.052, 0.05, 0.051],
                                                   name="norm"), input_range=(0.0, 1.0))


@case("normalization_adapted", "Normalization adapted on seeded data (weights mean/variance/count)",
      input_range=(0.0, 1.0))
def _normalization_adapted(K):
    layer = K.layers.Normalization(axis=-1, name="norm")
    rng = np.random.default_rng(7)
    layer.adapt(rng.uniform(0.2, 0.9, (16, 5, 5, 3)).astype(np.float32)
                * np.array([1.0, 0.5, 0.25], np.float32))
    x = K.Input((5, 5, 3), name="image")
    return K.Model(x, layer(x), name="normalization_adapted")


@case("training_only_layers", "Dropout, SpatialDropout2D, GaussianNoise, GaussianDropout, "
      "ActivityRegularization between convs (all identity at inference)")
def _training_only(K):
    x = K.Input((8, 8, 3), name="image")
    y = K.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    y = K.layers.Dropout(0.5, name="dropout")(y)
    y = K.layers.SpatialDropout2D(0.3, name="spatial_dropout")(y)
    y = K.layers.GaussianNoise(0.4, name="gaussian_noise")(y)
    y = K.layers.GaussianDropout(0.2, name="gaussian_dropout")(y)
    y = K.layers.ActivityRegularization(l1=0.01, l2=0.01, name="activity_reg")(y)
    y = K.layers.Conv2D(3, 3, name="conv2")(y)
    return K.Model(x, y, name="training_only_layers")


# ---------------------------------------------------------------------------- model kinds
def _small_cnn_layers(K):
    return [
        K.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem_conv"),
        K.layers.BatchNormalization(name="stem_bn"),
        K.layers.ReLU(name="stem_relu"),
        K.layers.DepthwiseConv2D(3, padding="same", name="dw"),
        K.layers.BatchNormalization(name="dw_bn"),
        K.layers.ReLU(6.0, name="dw_relu6"),
        K.layers.MaxPooling2D(2, name="pool"),
        K.layers.Conv2D(12, 1, activation="relu", name="pw"),
        K.layers.GlobalAveragePooling2D(name="gap"),
        K.layers.Dropout(0.2, name="drop"),
        K.layers.Dense(5, activation="softmax", name="probs"),
    ]


@case("sequential_cnn", "Sequential with explicit InputLayer: conv/bn/relu/dw/pool/gap/dense "
      "softmax 5 classes", kind="probabilities")
def _sequential_cnn(K):
    return K.Sequential([K.layers.InputLayer(input_shape=(16, 16, 3), name="image")
                         if K is lib.tf_keras else K.layers.InputLayer(shape=(16, 16, 3),
                                                                       name="image")]
                        + _small_cnn_layers(K), name="sequential_cnn")


@case("sequential_no_inputlayer", "Sequential whose first layer carries input_shape "
      "(Keras 2 style, no explicit InputLayer)", kerases=("2",))
def _sequential_implicit(K):
    return K.Sequential([K.layers.Conv2D(4, 3, input_shape=(8, 8, 3), activation="elu",
                                         name="conv"),
                         K.layers.Flatten(name="flatten"),
                         K.layers.Dense(3, name="fc")], name="sequential_implicit")


@case("functional_classifier", "Custom functional CNN classifier: residual Add, Concatenate, "
      "BN, pooling, depthwise+pointwise, Dense softmax 5 classes", kind="probabilities", input_range=(0.0, 255.0))
def _functional_classifier(K):
    x = K.Input((24, 24, 3), name="image")
    y = K.layers.Rescaling(1 / 255.0, name="rescale")(x)
    y = K.layers.Conv2D(8, 3, strides=2, padding="same", name="conv1")(y)
    y = K.layers.BatchNormalization(name="bn1")(y)
    y = K.layers.Activation("relu", name="relu1")(y)
    r = K.layers.Conv2D(8, 3, padding="same", activation="relu", name="res_conv_a")(y)
    r = K.layers.Conv2D(8, 3, padding="same", name="res_conv_b")(r)
    y = K.layers.Add(name="res_add")([y, r])
    a = K.layers.MaxPooling2D(2, name="branch_max")(y)
    b = K.layers.AveragePooling2D(2, name="branch_avg")(y)
    y = K.layers.Concatenate(name="branch_concat")([a, b])
    # Depthwise + pointwise rather than SeparableConv2D: TF.js 4.22 refuses tf_keras 2.21's
    # SeparableConv2D config (kernel_initializer fields), which would lose the Node oracle here.
    y = K.layers.DepthwiseConv2D(3, padding="same", name="dw")(y)
    y = K.layers.Conv2D(12, 1, activation="relu", name="pw")(y)
    y = K.layers.GlobalAveragePooling2D(name="gap")(y)
    y = K.layers.Dense(16, activation="relu", name="fc1")(y)
    y = K.layers.Dense(5, activation="softmax", name="probs")(y)
    return K.Model(x, y, name="functional_classifier")


@case("slash_layer_names", "Layer names that nest as paths ('Conv', 'Conv/BatchNorm', "
      "'Conv/relu', 'head/fc') as in tf_keras MobileNetV3/DenseNet; tensorflowjs 4.22 drops the "
      "'Conv/BatchNorm' weights here, so the weights are re-written (meta converter_workaround)",
      kerases=("2",))
def _slash_names(K):
    x = K.Input((8, 8, 3), name="image")
    y = K.layers.Conv2D(6, 3, padding="same", use_bias=False, name="Conv")(x)
    y = K.layers.BatchNormalization(name="Conv/BatchNorm")(y)
    y = K.layers.ReLU(name="Conv/relu")(y)
    y = K.layers.GlobalAveragePooling2D(name="head/pool")(y)
    y = K.layers.Dense(4, name="head/fc")(y)
    return K.Model(x, y, name="slash_layer_names")


@case("logits_classifier", "Small CNN classifier ending in a linear Dense(6) (logits, no "
      "softmax); Conv2D -> BN -> ReLU6 -> AveragePooling -> Flatten -> Dense", kind="logits")
def _logits_classifier(K):
    x = K.Input((12, 12, 3), name="image")
    y = K.layers.Conv2D(6, 3, strides=2, padding="same", name="conv")(x)
    y = K.layers.BatchNormalization(name="bn")(y)
    y = K.layers.ReLU(6.0, name="relu6")(y)
    y = K.layers.AveragePooling2D(2, name="pool")(y)
    y = K.layers.Flatten(name="flatten")(y)
    y = K.layers.Dense(6, name="logits")(y)
    return K.Model(x, y, name="logits_classifier")


def _base_model(K, name="base"):
    x = K.Input((16, 16, 3), name="base_input")
    y = K.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="base_conv")(x)
    y = K.layers.BatchNormalization(name="base_bn")(y)
    y = K.layers.ReLU(6.0, name="base_relu")(y)
    y = K.layers.DepthwiseConv2D(3, padding="same", name="base_dw")(y)
    y = K.layers.Conv2D(10, 1, activation="relu", name="base_pw")(y)
    return K.Model(x, y, name=name)


@case("nested_application_head", "Functional base model used as a layer (like a Keras "
      "Application) + GAP/Dense head, softmax 4 classes", kind="probabilities")
def _nested(K):
    base = _base_model(K)
    x = K.Input((16, 16, 3), name="image")
    y = base(x)
    y = K.layers.GlobalAveragePooling2D(name="gap")(y)
    y = K.layers.Dropout(0.3, name="drop")(y)
    y = K.layers.Dense(4, activation="softmax", name="probs")(y)
    return K.Model(x, y, name="nested_application_head")


@case("nested_sequential_in_functional", "Sequential sub-model inside a functional model and "
      "a functional model inside a Sequential")
def _nested_seq(K):
    inner = K.Sequential([K.layers.Conv2D(4, 3, padding="same", activation="relu",
                                          name="inner_conv"),
                          K.layers.BatchNormalization(name="inner_bn")], name="inner_seq")
    x = K.Input((8, 8, 3), name="image")
    y = inner(x)
    y = K.layers.Conv2D(3, 1, name="outer_conv")(y)
    mid = K.Model(x, y, name="mid_functional")
    return K.Sequential([K.Input((8, 8, 3)), mid, K.layers.Flatten(name="flatten"),
                         K.layers.Dense(3, name="fc")], name="outer_seq")


@case("shared_layer", "One Conv2D applied to two inputs, then Add (layer with 2 inbound nodes)")
def _shared(K):
    a = K.Input((6, 6, 3), name="left")
    b = K.Input((6, 6, 3), name="right")
    conv = K.layers.Conv2D(4, 3, padding="same", activation="relu", name="shared_conv")
    y = K.layers.Add(name="add")([conv(a), conv(b)])
    return K.Model([a, b], y, name="shared_layer")


@case("two_inputs_two_outputs", "Two inputs of different shape, two outputs (probabilities "
      "and features); output order is model.outputs order")
def _two_io(K):
    img = K.Input((8, 8, 3), name="image")
    aux = K.Input((4,), name="aux")
    y = K.layers.Conv2D(4, 3, activation="relu", name="conv")(img)
    feat = K.layers.GlobalMaxPooling2D(name="gmp")(y)
    z = K.layers.Concatenate(name="concat")([feat, K.layers.Dense(4, name="aux_fc")(aux)])
    probs = K.layers.Dense(3, activation="softmax", name="probs")(z)
    reg = K.layers.Dense(2, name="regression")(z)
    return K.Model([img, aux], [probs, reg], name="two_inputs_two_outputs")


# ---------------------------------------------------------------------------- TFOpLambda
@case("tfoplambda_ops", "tf_keras TFOpLambda layers from ops on KerasTensors: x + 3, "
      "tf.nn.relu6, x / 6, x * y, x - 1, tf.math.reduce_mean", kerases=("2",))
def _tfoplambda(K):
    x = K.Input((5, 5, 3), name="x")
    y = K.Input((5, 5, 3), name="y")
    z = tf.nn.relu6(x + 3.0) / 6.0
    z = z * y
    z = z - 1.0
    z = tf.math.reduce_mean(z, axis=[1, 2], keepdims=True) + z
    return K.Model([x, y], z, name="tfoplambda_ops")


@case("mobilenetv3_block", "MobileNetV3-like block as keras.applications builds it in tf_keras: "
      "hard-swish = x * ReLU6(x + 3) * (1/6) via TFOpLambda, SE block (GAP keepdims, 1x1 convs, "
      "hard-sigmoid, Multiply), residual Add. Keras 3 export: the same code makes keras.ops "
      "nodes (class_name Add/Multiply from keras.src.ops.numpy with a constant in args) exactly "
      "as Keras 3's own MobileNetV3 does")
def _mnv3_block(K):
    layers = K.layers

    def hard_sigmoid(x, name):
        return layers.ReLU(6.0, name=name + "_relu6")(x + 3.0) * (1.0 / 6.0)

    def hard_swish(x, name):
        return layers.Multiply(name=name + "_mul")([x, hard_sigmoid(x, name)])

    inp = layers.Input((16, 16, 8), name="image")
    y = layers.Conv2D(16, 1, use_bias=False, name="expand")(inp)
    y = layers.BatchNormalization(name="expand_bn")(y)
    y = hard_swish(y, "expand_hs")
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(y)
    y = layers.BatchNormalization(name="depthwise_bn")(y)
    y = hard_swish(y, "depthwise_hs")
    s = layers.GlobalAveragePooling2D(keepdims=True, name="se_gap")(y)
    s = layers.Conv2D(4, 1, name="se_reduce")(s)
    s = layers.ReLU(name="se_relu")(s)
    s = layers.Conv2D(16, 1, name="se_expand")(s)
    s = hard_sigmoid(s, "se_hsig")
    y = layers.Multiply(name="se_mul")([y, s])
    y = layers.Conv2D(8, 1, use_bias=False, name="project")(y)
    y = layers.BatchNormalization(name="project_bn")(y)
    y = layers.Add(name="residual")([inp, y])
    return K.Model(inp, y, name="mobilenetv3_block")


@case("tfoplambda_more", "More tf_keras TFOpLambda / SlicingOpLambda forms: tf.math.sigmoid, "
      "tf.math.maximum with a constant, tf.concat, tf.reshape, x[..., :2] slicing, "
      "tf.nn.softmax, tf.math.reduce_max, x ** 2", kerases=("2",))
def _tfoplambda_more(K):
    x = K.Input((4, 4, 3), name="x")
    a = tf.math.sigmoid(x)
    b = tf.math.maximum(x, 0.1)
    c = tf.concat([a, b], axis=-1)
    d = tf.reshape(c, (-1, 16, 6))
    e = d[..., :2] ** 2
    f = tf.nn.softmax(d, axis=-1)
    g = tf.math.reduce_max(f, axis=1, keepdims=True)
    return K.Model(x, [e, g], name="tfoplambda_more")


@case("ops_on_tensors", "Keras 3 ops applied to KerasTensors in a functional model (serialized "
      "as keras.src.ops.* operations: Add/Subtract/Multiply/Divide with constants, Relu6, Mean)",
      kerases=("3",))
def _ops_on_tensors(K):
    ops = K.ops
    x = K.Input((5, 5, 3), name="x")
    y = K.Input((5, 5, 3), name="y")
    z = ops.relu6(x + 3.0) / 6.0
    z = z * y
    z = z - 1.0
    z = ops.mean(z, axis=(1, 2), keepdims=True) + z
    return K.Model([x, y], z, name="ops_on_tensors")


@case("mobilenetv3_block_k3", "MobileNetV3-like block in Keras 3 layers only: "
      "Activation('hard_swish'), SE block with Activation('hard_sigmoid') and Multiply",
      kerases=("3",))
def _mnv3_block_k3(K):
    layers = K.layers
    inp = layers.Input((16, 16, 8), name="image")
    y = layers.Conv2D(16, 1, use_bias=False, name="expand")(inp)
    y = layers.BatchNormalization(name="expand_bn")(y)
    y = layers.Activation("hard_swish", name="expand_hs")(y)
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(y)
    y = layers.BatchNormalization(name="depthwise_bn")(y)
    y = layers.Activation("hard_swish", name="depthwise_hs")(y)
    s = layers.GlobalAveragePooling2D(keepdims=True, name="se_gap")(y)
    s = layers.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = layers.Conv2D(16, 1, activation="hard_sigmoid", name="se_expand")(s)
    y = layers.Multiply(name="se_mul")([y, s])
    y = layers.Conv2D(8, 1, use_bias=False, name="project")(y)
    y = layers.BatchNormalization(name="project_bn")(y)
    y = layers.Add(name="residual")([inp, y])
    return K.Model(inp, y, name="mobilenetv3_block")


# ---------------------------------------------------------------------------- storage variants
for _dtype in ("float16", "uint8", "uint16"):
    CASES.append(Case(
        name=f"quant_{_dtype}", build=_functional_classifier, kind="probabilities",
        input_range=(0.0, 255.0), quantized=True,
        convert_kwargs={"quantization_dtype_map": {_dtype: True}},
        description=f"functional_classifier with every weight quantized to {_dtype} by the "
                    f"converter (quantization_dtype_map={{'{_dtype}': True}}); expected outputs "
                    f"are TensorFlow run on the dequantized weights stored in the shards"))
CASES.append(Case(
    name="raw_config_functional", build=_functional_classifier, kind="probabilities",
    input_range=(0.0, 255.0), kerases=("3",), raw_keras3_config=True,
    description="functional_classifier; modelTopology.model_config is Keras 3's own "
                "model.to_json() (keeps module/registered_name/build_config) instead of the "
                "converter's stripped copy; weights manifest from the converter"))
CASES.append(Case(
    name="raw_config_nested", build=_nested, kind="probabilities", kerases=("3",),
    raw_keras3_config=True,
    description="nested_application_head with Keras 3's untouched model.to_json() topology"))
CASES.append(Case(
    name="raw_config_mobilenetv3_block", build=_mnv3_block, kerases=("3",),
    raw_keras3_config=True,
    description="mobilenetv3_block with Keras 3's untouched model.to_json() topology: keras.ops "
                "nodes keep module 'keras.src.ops.numpy', which tells them from layers"))
CASES.append(Case(
    name="multi_shard", build=_functional_classifier, kind="probabilities",
    input_range=(0.0, 255.0), convert_kwargs={"weight_shard_size_bytes": 1024},
    description="functional_classifier with weight_shard_size_bytes=1024: one group, many "
                "shards; weights straddle shard boundaries"))
CASES.append(Case(
    name="multi_group", build=_functional_classifier, kind="probabilities",
    input_range=(0.0, 255.0),
    convert_kwargs={"split_weights_by_layer": True, "weight_shard_size_bytes": 2048},
    description="functional_classifier with split_weights_by_layer=True (one weight group per "
                "layer) and 2 KB shards"))


# ---------------------------------------------------------------------------- driver
def _seed_for(name: str) -> int:
    return zlib.crc32(name.encode())


def generate(case_obj: Case, keras_major: str, out_root: Path) -> Path:
    K = lib.keras_module(keras_major)
    K.backend.clear_session()
    name = f"k{keras_major}_{case_obj.name}"
    model = case_obj.build(K)
    lib.seed_weights(model, _seed_for(name))
    case_dir = out_root / name
    note = lib.convert(model, keras_major, case_dir, **case_obj.convert_kwargs)
    if case_obj.raw_keras3_config:
        lib.replace_topology_with_raw_config(model, case_dir)
    inputs = lib.make_inputs(model, _seed_for(name) + 1, batch=2, input_range=case_obj.input_range)
    meta = lib.base_meta(keras_major, case_obj.kind, case_obj.description)
    if note:
        meta["converter_workaround"] = note
    if case_obj.quantized:
        float_outputs = lib.predict(model, inputs)
        reference = lib.dequantized_reference_model(model, keras_major, case_dir)
        outputs = lib.predict(reference, inputs)
        meta["reference"] = "TensorFlow predict with the dequantized weights read from the shards"
        meta["max_abs_diff_vs_float_weights"] = max(
            float(np.max(np.abs(a - b))) for a, b in zip(outputs, float_outputs))
    else:
        outputs = lib.predict(model, inputs)
        meta["reference"] = "TensorFlow predict (training=False) with the float32 weights"
    meta["health"] = lib.check_healthy(name, outputs, case_obj.kind)
    meta["seed"] = _seed_for(name)
    meta["input_generation"] = (
        f"numpy.random.default_rng({_seed_for(name) + 1}); per input in model.inputs order: "
        + ("standard_normal" if case_obj.input_range is None
           else f"uniform{tuple(case_obj.input_range)}") + " of shape (2, *input_shape), float32")
    lib.write_case(case_dir, inputs, outputs, meta)
    check = lib.reload_check(keras_major, case_dir, inputs, original_model=model)
    if check["max_abs_diff"] > 1e-5:
        raise RuntimeError(f"{name}: model.json + shards reproduce the outputs only to "
                           f"{check['max_abs_diff']}")
    meta["tensorflow_reload_check"] = check
    lib.write_case(case_dir, inputs, outputs, meta)
    return case_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_ROOT)
    parser.add_argument("--only", action="append", default=[],
                        help="case directory name (k2_xxx / k3_xxx) or base name; repeatable")
    parser.add_argument("--no-node", action="store_true", help="skip the TF.js-in-Node oracle")
    parser.add_argument("--node-dir", type=Path, default=lib.DEFAULT_TFJS_NODE_DIR)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)

    jobs = [(c, k) for c in CASES for k in c.kerases]
    if args.only:
        jobs = [(c, k) for c, k in jobs if c.name in args.only or f"k{k}_{c.name}" in args.only]
        if not jobs:
            parser.error(f"no case matches --only {args.only}")
    if args.list:
        for c, k in jobs:
            print(f"k{k}_{c.name}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for c, k in jobs:
        case_dir = generate(c, k, args.out)
        size = sum(p.stat().st_size for p in case_dir.iterdir())
        print(f"{case_dir.name}: {size} bytes", flush=True)
        written.append(case_dir)

    if args.no_node:
        return 0
    if not lib.tfjs_node_available(args.node_dir):
        print(f"TF.js node oracle skipped: @tensorflow/tfjs not installed in {args.node_dir} "
              f"(run tools/fixture_env.sh)", file=sys.stderr)
        return 0
    results = lib.run_tfjs_node_oracle(written, args.node_dir)
    for case_dir in written:
        meta_path = case_dir / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["tfjs_node_oracle"] = results[case_dir.name]
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        r = results[case_dir.name]
        print(f"node {case_dir.name}: {r['status']} "
              f"{r.get('max_abs_diff', r.get('error', ''))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
