"""The committed LiteRT fixtures together exercise every operator and fused activation issue 8
asks for, in float and, where LiteRT has one, in 8-bit form. Computed by parsing the committed
``tests/fixtures/tflite/<case>/model.tflite`` files (the ones test_fixtures.py compares against
LiteRT), so a converter that fuses or decomposes an op cannot hide a gap."""

from __future__ import annotations

from pathlib import Path

from app.tflite.loader import parse_model
from app.tflite.ops import SUPPORTED_OPS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "model.tflite").exists()) if FIXTURES.exists() else []

# Issue 8, "Builtin ops found in image models", verbatim.
ISSUE_OPS = """CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV,
  ADD, SUB, MUL, DIV, MEAN, SUM, MAXIMUM, MINIMUM, MAX_POOL_2D, AVERAGE_POOL_2D, L2_NORMALIZATION,
  SOFTMAX, LOGISTIC, TANH, RELU, RELU6, RELU_N1_TO_1, LEAKY_RELU, PRELU, HARD_SWISH, RESHAPE,
  SQUEEZE, EXPAND_DIMS, CONCATENATION, PACK, UNPACK, PAD, PADV2, MIRROR_PAD, TRANSPOSE,
  RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR, STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, GATHER, ARG_MAX,
  QUANTIZE, DEQUANTIZE, CAST"""
ISSUE_OPS = tuple(name.strip() for name in ISSUE_OPS.split(","))
# ActivationFunctionType values the converter emits (SIGN_BIT is never emitted).
FUSED_ACTIVATIONS = ("linear", "relu", "relu_n1_to_1", "relu6", "tanh")

# Ops whose data input is never float32 / never 8-bit in a model LiteRT runs, with the reason.
NO_FLOAT_FORM = {
    "DEQUANTIZE": "takes int8 / float16 tensors, never float32 (both are asserted below)",
    "CAST": "the converter casts ARG_MAX's int64 indices to float (asserted below), not float data",
}
NO_8BIT_FORM = {
    "CAST": "the converter casts ARG_MAX's int64 indices, never 8-bit data",
}
NO_8BIT_ACTIVATION: dict[str, str] = {}


# Ops whose data tensor is not their first input (TRANSPOSE_CONV: output_shape, weights, data;
# SPLIT: axis, data).
DATA_INPUT = {"TRANSPOSE_CONV": 2, "SPLIT": 1}


def _inventory():
    """op -> set of data-input type names; activation -> set of (op, data-input type name)."""
    ops: dict[str, set[str]] = {}
    activations: dict[str, set[tuple[str, str]]] = {}
    for case in CASES:
        model = parse_model((FIXTURES / case / "model.tflite").read_bytes(), case)
        for sub in model.subgraphs:
            for op in sub.operators:
                position = DATA_INPUT.get(op.name, 0)
                data = op.inputs[position] if len(op.inputs) > position else -1
                kind = sub.tensors[data].type_name if data >= 0 else "NONE"
                ops.setdefault(op.name, set()).add(kind)
                if "activation" in op.options:   # as the file declares it (see resolve_fused_activation)
                    declared = op.options.get("declared_activation", op.options["activation"])
                    activations.setdefault(declared, set()).add((op.name, kind))
    return ops, activations


def test_issue_ops_are_all_implemented():
    assert len(ISSUE_OPS) == 45
    assert not set(ISSUE_OPS) - set(SUPPORTED_OPS)


def test_every_issue_op_is_in_a_fixture():
    ops, _ = _inventory()
    assert not [name for name in ISSUE_OPS if name not in ops]


def test_every_supported_op_is_in_a_fixture():
    ops, _ = _inventory()
    assert not [name for name in SUPPORTED_OPS if name not in ops]


def test_every_issue_op_in_float_and_8bit_form():
    ops, _ = _inventory()
    no_float = [name for name in ISSUE_OPS if name not in NO_FLOAT_FORM and "FLOAT32" not in ops.get(name, ())]
    no_8bit = [name for name in ISSUE_OPS
               if name not in NO_8BIT_FORM and not ops.get(name, set()) & {"INT8", "UINT8"}]
    assert (no_float, no_8bit) == ([], [])
    assert "FLOAT16" in ops["DEQUANTIZE"] and "INT8" in ops["DEQUANTIZE"] and "INT64" in ops["CAST"]


def test_every_fused_activation_in_a_fixture():
    _, activations = _inventory()
    float_missing = [a for a in FUSED_ACTIVATIONS if not any(kind == "FLOAT32" for _, kind in activations.get(a, ()))]
    int_missing = [a for a in FUSED_ACTIVATIONS if a not in NO_8BIT_ACTIVATION
                   and not any(kind in ("INT8", "UINT8") for _, kind in activations.get(a, ()))]
    assert (float_missing, int_missing) == ([], [])
