"""Normalisation and per-channel affine kernels."""

from __future__ import annotations

import numpy as np

from . import register
from .activations import apply_activation


@register("scale_shift")
def scale_shift(x, scale, shift, *, activation="linear"):
    """x * scale + shift on the last axis (folded batch-norm, Rescaling, Normalization), then an
    optional fused activation (pre-activation BN + ReLU in DenseNet / ResNetV2)."""
    y = np.multiply(x, scale, dtype=np.float32)
    y += shift
    return apply_activation(y, activation)


@register("layer_norm")
def layer_norm(x, gamma=None, beta=None, *, axes=(-1,), epsilon=1e-3):
    """Keras LayerNormalization: normalise over ``axes``; gamma/beta shaped for broadcasting."""
    axes = tuple(axes)
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    variance = np.mean(np.square(centered), axis=axes, keepdims=True)
    y = centered / np.sqrt(variance + np.float32(epsilon))
    if gamma is not None:
        y *= gamma
    if beta is not None:
        y += beta
    return y.astype(np.float32, copy=False)


@register("batch_norm")
def batch_norm(x, gamma, beta, mean, variance, *, epsilon=1e-3, axis=-1):
    """Inference batch-norm on any axis (used only when it cannot become scale_shift)."""
    shape = [1] * x.ndim
    shape[axis] = -1
    inv = gamma / np.sqrt(variance + np.float32(epsilon))
    return (x - mean.reshape(shape)) * inv.reshape(shape) + beta.reshape(shape)
