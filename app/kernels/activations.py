"""Activations (Keras semantics: https://keras.io/api/layers/activations/).

``apply_activation`` is what conv / dense use for their fused ``activation`` attribute; it may
work in place because those kernels hand it a freshly allocated buffer."""

from __future__ import annotations

import math

import numpy as np

from . import register

_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


@register("linear", "identity")
def linear(x):
    return x


@register("relu")
def relu(x):
    return np.maximum(x, 0)


@register("relu6")
def relu6(x):
    return np.clip(x, 0, 6)


@register("sigmoid")
def sigmoid(x):
    # tanh form is overflow-free and as accurate as 1/(1+exp(-x)) in float32
    return _sigmoid_into(x, np.empty_like(x))


@register("tanh")
def tanh(x):
    return np.tanh(x)


@register("elu")
def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False)


@register("selu")
def selu(x):
    return (_SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0)))).astype(x.dtype, copy=False)


@register("gelu")
def gelu(x, approximate=False):
    if approximate:
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
        return (0.5 * x * (1.0 + np.tanh(inner))).astype(x.dtype, copy=False)
    # 0.5 x (1 + erf(x / sqrt 2)) with erf(|z|) = 1 - q, q = poly(t) exp(-z^2) (A&S 7.1.26), in
    # place: ConvNeXt applies it to 4x-expanded feature maps, so temporaries dominate otherwise.
    z = np.abs(x) * np.float32(1.0 / math.sqrt(2.0))
    t = z * np.float32(0.3275911)
    t += 1
    np.reciprocal(t, out=t)
    q = t * np.float32(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        q += np.float32(coefficient)
        q *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    q *= z  # q = 1 - erf(|x| / sqrt 2)
    y = np.where(x >= 0, np.float32(2) - q, q)
    y *= x
    y *= np.float32(0.5)
    return y


@register("swish", "silu")
def swish(x):
    return x * _sigmoid_into(x, np.empty_like(x))


@register("hard_sigmoid")
def hard_sigmoid(x, variant="keras3"):
    """Keras 2: clip(0.2x + 0.5, 0, 1); Keras 3: relu6(x + 3) / 6."""
    if variant == "keras2":
        return np.clip(0.2 * x + 0.5, 0, 1).astype(x.dtype, copy=False)
    return (np.clip(x + 3, 0, 6) * np.float32(1.0 / 6.0)).astype(x.dtype, copy=False)


@register("hard_swish", "hard_silu")
def hard_swish(x):
    return x * (np.clip(x + 3, 0, 6) * np.float32(1.0 / 6.0))


@register("softplus")
def softplus(x):
    return np.logaddexp(np.float32(0), x).astype(x.dtype, copy=False)


@register("softsign")
def softsign(x):
    return x / (1 + np.abs(x))


@register("exponential")
def exponential(x):
    return np.exp(x)


@register("mish")
def mish(x):
    return x * np.tanh(softplus(x))


@register("softmax")
def softmax(x, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


@register("log_softmax")
def log_softmax(x, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


@register("leaky_relu")
def leaky_relu(x, alpha=0.3):
    return np.where(x >= 0, x, x * np.float32(alpha)).astype(x.dtype, copy=False)


@register("relu_ex")
def relu_ex(x, max_value=None, threshold=0.0, negative_slope=0.0):
    """Keras ``ReLU`` layer: x >= max_value -> max_value; threshold <= x -> x; else slope*(x-threshold)."""
    below = np.float32(negative_slope) * (x - np.float32(threshold)) if negative_slope else np.float32(0)
    y = np.where(x >= threshold, x, below)
    if max_value is not None:
        y = np.minimum(y, np.float32(max_value))
    return y.astype(x.dtype, copy=False)


@register("clip")
def clip(x, min=None, max=None):  # noqa: A002 - attribute names are the IR contract
    return np.clip(x, min, max)


@register("prelu")
def prelu(x, alpha):
    return np.where(x >= 0, x, x * alpha).astype(x.dtype, copy=False)


# Activations conv/dense may carry as their fused ``activation`` attribute (no parameters).
FUSABLE_ACTIVATIONS = frozenset(
    {"linear", "relu", "relu6", "sigmoid", "tanh", "swish", "silu", "gelu", "selu", "softplus",
     "softsign", "hard_swish", "hard_silu", "mish", "exponential", "elu"}
)


def _sigmoid_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    np.multiply(x, np.float32(0.5), out=out)
    np.tanh(out, out=out)
    out *= np.float32(0.5)
    out += np.float32(0.5)
    return out


def apply_activation(y: np.ndarray, name: str) -> np.ndarray:
    """Apply a fused activation to a freshly allocated float32 ``y`` (in place where it saves
    temporaries: they dominate in Pyodide, where numpy's loops are not vectorised)."""
    if name == "linear":
        return y
    if name == "relu":
        return np.maximum(y, 0, out=y)
    if name == "relu6":
        return np.clip(y, 0, 6, out=y)
    if name in ("swish", "silu"):
        gate = _sigmoid_into(y, np.empty_like(y))
        y *= gate
        return y
    if name == "sigmoid":
        return _sigmoid_into(y, y)
    return _UNARY[name](y)


_UNARY = {
    "sigmoid": sigmoid, "tanh": tanh, "swish": swish, "silu": swish, "gelu": gelu, "selu": selu,
    "softplus": softplus, "softsign": softsign, "hard_swish": hard_swish, "hard_silu": hard_swish,
    "mish": mish, "exponential": exponential, "elu": elu,
}
