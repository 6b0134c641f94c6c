"""Enums and per-operator option layouts of the TFLite flatbuffer schema.

Field indices follow ``tensorflow/compiler/mlir/lite/schema/schema.fbs`` (TFLite schema v3, as
shipped with TensorFlow 2.21 / LiteRT 2.3). Only the tables Vitrine reads are described; every
builtin code is named so that an unsupported operator can be reported by name.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from app.tflite.flatbuffer import Table

FILE_IDENTIFIER = b"TFL3"

# TensorType -> (name, numpy dtype or None when Vitrine cannot hold it).
TENSOR_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("FLOAT32", "float32"), 1: ("FLOAT16", "float16"), 2: ("INT32", "int32"),
    3: ("UINT8", "uint8"), 4: ("INT64", "int64"), 5: ("STRING", None), 6: ("BOOL", "bool"),
    7: ("INT16", "int16"), 8: ("COMPLEX64", "complex64"), 9: ("INT8", "int8"),
    10: ("FLOAT64", "float64"), 11: ("COMPLEX128", "complex128"), 12: ("UINT64", "uint64"),
    13: ("RESOURCE", None), 14: ("VARIANT", None), 15: ("UINT32", "uint32"),
    16: ("UINT16", "uint16"), 17: ("INT4", None), 18: ("BFLOAT16", None), 19: ("INT2", None),
    20: ("UINT4", None), 21: ("FLOAT8_E4M3FN", None), 22: ("FLOAT8_E5M2", None),
}

# Table field indices (schema order; a union occupies two slots: type then value).
class TensorField:
    SHAPE, TYPE, BUFFER, NAME, QUANTIZATION, IS_VARIABLE, SPARSITY, SHAPE_SIGNATURE = range(8)


class QuantField:
    MIN, MAX, SCALE, ZERO_POINT, DETAILS_TYPE, DETAILS, QUANTIZED_DIMENSION = range(7)


class OperatorField:
    OPCODE_INDEX, INPUTS, OUTPUTS, BUILTIN_OPTIONS_TYPE, BUILTIN_OPTIONS, CUSTOM_OPTIONS = range(6)
    BUILTIN_OPTIONS_2_TYPE, BUILTIN_OPTIONS_2 = 11, 12


class OperatorCodeField:
    DEPRECATED_BUILTIN_CODE, CUSTOM_CODE, VERSION, BUILTIN_CODE = range(4)


class SubGraphField:
    TENSORS, INPUTS, OUTPUTS, OPERATORS, NAME = range(5)


class BufferField:
    DATA, OFFSET, SIZE = range(3)


class ModelField:
    VERSION, OPERATOR_CODES, SUBGRAPHS, DESCRIPTION, BUFFERS, METADATA_BUFFER, METADATA = range(7)
    SIGNATURE_DEFS = 7


class SignatureDefField:
    INPUTS, OUTPUTS, SIGNATURE_KEY = 0, 1, 2
    SUBGRAPH_INDEX = 4


class TensorMapField:
    NAME, TENSOR_INDEX = 0, 1


# ActivationFunctionType -> IR activation name (SIGN_BIT is never emitted by the converter).
FUSED_ACTIVATIONS = {0: "linear", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh",
                     5: "sign_bit"}
PADDING = {0: "SAME", 1: "VALID"}
MIRROR_PAD_MODES = {0: "reflect", 1: "symmetric"}

BUILTIN_OPERATOR_NAMES = {
    0: "ADD",
    1: "AVERAGE_POOL_2D",
    2: "CONCATENATION",
    3: "CONV_2D",
    4: "DEPTHWISE_CONV_2D",
    5: "DEPTH_TO_SPACE",
    6: "DEQUANTIZE",
    7: "EMBEDDING_LOOKUP",
    8: "FLOOR",
    9: "FULLY_CONNECTED",
    10: "HASHTABLE_LOOKUP",
    11: "L2_NORMALIZATION",
    12: "L2_POOL_2D",
    13: "LOCAL_RESPONSE_NORMALIZATION",
    14: "LOGISTIC",
    15: "LSH_PROJECTION",
    16: "LSTM",
    17: "MAX_POOL_2D",
    18: "MUL",
    19: "RELU",
    20: "RELU_N1_TO_1",
    21: "RELU6",
    22: "RESHAPE",
    23: "RESIZE_BILINEAR",
    24: "RNN",
    25: "SOFTMAX",
    26: "SPACE_TO_DEPTH",
    27: "SVDF",
    28: "TANH",
    29: "CONCAT_EMBEDDINGS",
    30: "SKIP_GRAM",
    31: "CALL",
    32: "CUSTOM",
    33: "EMBEDDING_LOOKUP_SPARSE",
    34: "PAD",
    35: "UNIDIRECTIONAL_SEQUENCE_RNN",
    36: "GATHER",
    37: "BATCH_TO_SPACE_ND",
    38: "SPACE_TO_BATCH_ND",
    39: "TRANSPOSE",
    40: "MEAN",
    41: "SUB",
    42: "DIV",
    43: "SQUEEZE",
    44: "UNIDIRECTIONAL_SEQUENCE_LSTM",
    45: "STRIDED_SLICE",
    46: "BIDIRECTIONAL_SEQUENCE_RNN",
    47: "EXP",
    48: "TOPK_V2",
    49: "SPLIT",
    50: "LOG_SOFTMAX",
    51: "DELEGATE",
    52: "BIDIRECTIONAL_SEQUENCE_LSTM",
    53: "CAST",
    54: "PRELU",
    55: "MAXIMUM",
    56: "ARG_MAX",
    57: "MINIMUM",
    58: "LESS",
    59: "NEG",
    60: "PADV2",
    61: "GREATER",
    62: "GREATER_EQUAL",
    63: "LESS_EQUAL",
    64: "SELECT",
    65: "SLICE",
    66: "SIN",
    67: "TRANSPOSE_CONV",
    68: "SPARSE_TO_DENSE",
    69: "TILE",
    70: "EXPAND_DIMS",
    71: "EQUAL",
    72: "NOT_EQUAL",
    73: "LOG",
    74: "SUM",
    75: "SQRT",
    76: "RSQRT",
    77: "SHAPE",
    78: "POW",
    79: "ARG_MIN",
    80: "FAKE_QUANT",
    81: "REDUCE_PROD",
    82: "REDUCE_MAX",
    83: "PACK",
    84: "LOGICAL_OR",
    85: "ONE_HOT",
    86: "LOGICAL_AND",
    87: "LOGICAL_NOT",
    88: "UNPACK",
    89: "REDUCE_MIN",
    90: "FLOOR_DIV",
    91: "REDUCE_ANY",
    92: "SQUARE",
    93: "ZEROS_LIKE",
    94: "FILL",
    95: "FLOOR_MOD",
    96: "RANGE",
    97: "RESIZE_NEAREST_NEIGHBOR",
    98: "LEAKY_RELU",
    99: "SQUARED_DIFFERENCE",
    100: "MIRROR_PAD",
    101: "ABS",
    102: "SPLIT_V",
    103: "UNIQUE",
    104: "CEIL",
    105: "REVERSE_V2",
    106: "ADD_N",
    107: "GATHER_ND",
    108: "COS",
    109: "WHERE",
    110: "RANK",
    111: "ELU",
    112: "REVERSE_SEQUENCE",
    113: "MATRIX_DIAG",
    114: "QUANTIZE",
    115: "MATRIX_SET_DIAG",
    116: "ROUND",
    117: "HARD_SWISH",
    118: "IF",
    119: "WHILE",
    120: "NON_MAX_SUPPRESSION_V4",
    121: "NON_MAX_SUPPRESSION_V5",
    122: "SCATTER_ND",
    123: "SELECT_V2",
    124: "DENSIFY",
    125: "SEGMENT_SUM",
    126: "BATCH_MATMUL",
    127: "PLACEHOLDER_FOR_GREATER_OP_CODES",
    128: "CUMSUM",
    129: "CALL_ONCE",
    130: "BROADCAST_TO",
    131: "RFFT2D",
    132: "CONV_3D",
    133: "IMAG",
    134: "REAL",
    135: "COMPLEX_ABS",
    136: "HASHTABLE",
    137: "HASHTABLE_FIND",
    138: "HASHTABLE_IMPORT",
    139: "HASHTABLE_SIZE",
    140: "REDUCE_ALL",
    141: "CONV_3D_TRANSPOSE",
    142: "VAR_HANDLE",
    143: "READ_VARIABLE",
    144: "ASSIGN_VARIABLE",
    145: "BROADCAST_ARGS",
    146: "RANDOM_STANDARD_NORMAL",
    147: "BUCKETIZE",
    148: "RANDOM_UNIFORM",
    149: "MULTINOMIAL",
    150: "GELU",
    151: "DYNAMIC_UPDATE_SLICE",
    152: "RELU_0_TO_1",
    153: "UNSORTED_SEGMENT_PROD",
    154: "UNSORTED_SEGMENT_MAX",
    155: "UNSORTED_SEGMENT_SUM",
    156: "ATAN2",
    157: "UNSORTED_SEGMENT_MIN",
    158: "SIGN",
    159: "BITCAST",
    160: "BITWISE_XOR",
    161: "RIGHT_SHIFT",
    162: "STABLEHLO_LOGISTIC",
    163: "STABLEHLO_ADD",
    164: "STABLEHLO_DIVIDE",
    165: "STABLEHLO_MULTIPLY",
    166: "STABLEHLO_MAXIMUM",
    167: "STABLEHLO_RESHAPE",
    168: "STABLEHLO_CLAMP",
    169: "STABLEHLO_CONCATENATE",
    170: "STABLEHLO_BROADCAST_IN_DIM",
    171: "STABLEHLO_CONVOLUTION",
    172: "STABLEHLO_SLICE",
    173: "STABLEHLO_CUSTOM_CALL",
    174: "STABLEHLO_REDUCE",
    175: "STABLEHLO_ABS",
    176: "STABLEHLO_AND",
    177: "STABLEHLO_COSINE",
    178: "STABLEHLO_EXPONENTIAL",
    179: "STABLEHLO_FLOOR",
    180: "STABLEHLO_LOG",
    181: "STABLEHLO_MINIMUM",
    182: "STABLEHLO_NEGATE",
    183: "STABLEHLO_OR",
    184: "STABLEHLO_POWER",
    185: "STABLEHLO_REMAINDER",
    186: "STABLEHLO_RSQRT",
    187: "STABLEHLO_SELECT",
    188: "STABLEHLO_SUBTRACT",
    189: "STABLEHLO_TANH",
    190: "STABLEHLO_SCATTER",
    191: "STABLEHLO_COMPARE",
    192: "STABLEHLO_CONVERT",
    193: "STABLEHLO_DYNAMIC_SLICE",
    194: "STABLEHLO_DYNAMIC_UPDATE_SLICE",
    195: "STABLEHLO_PAD",
    196: "STABLEHLO_IOTA",
    197: "STABLEHLO_DOT_GENERAL",
    198: "STABLEHLO_REDUCE_WINDOW",
    199: "STABLEHLO_SORT",
    200: "STABLEHLO_WHILE",
    201: "STABLEHLO_GATHER",
    202: "STABLEHLO_TRANSPOSE",
    203: "DILATE",
    204: "STABLEHLO_RNG_BIT_GENERATOR",
    205: "REDUCE_WINDOW",
    206: "STABLEHLO_COMPOSITE",
    207: "STABLEHLO_SHIFT_LEFT",
    208: "STABLEHLO_CBRT",
    209: "STABLEHLO_CASE",
}

BUILTIN_CODES = {name: code for code, name in BUILTIN_OPERATOR_NAMES.items()}


def _activation(table: Table | None, index: int) -> str:
    code = 0 if table is None else table.scalar(index, "int8", 0)
    if code not in FUSED_ACTIVATIONS:
        raise ValueError(f"unknown fused activation code {code}")
    return FUSED_ACTIVATIONS[code]


def _int(t: Table | None, i: int, default: int = 0) -> int:
    return default if t is None else t.scalar(i, "int32", default)


def _bool(t: Table | None, i: int, default: bool = False) -> bool:
    return default if t is None else bool(t.scalar(i, "bool", default))


def _float(t: Table | None, i: int, default: float = 0.0) -> float:
    return default if t is None else t.scalar(i, "float32", default)


def _padding(t: Table | None, i: int) -> str:
    code = 0 if t is None else t.scalar(i, "int8", 0)
    if code not in PADDING:
        raise ValueError(f"unknown padding code {code}")
    return PADDING[code]


def _ints(t: Table | None, i: int, what: str) -> tuple[int, ...] | None:
    if t is None:
        return None
    arr = t.numbers(i, "int32", what)
    return None if arr is None else tuple(int(v) for v in arr)


def _conv(t):
    return dict(padding=_padding(t, 0), stride_w=_int(t, 1, 1), stride_h=_int(t, 2, 1),
                activation=_activation(t, 3), dilation_w=_int(t, 4, 1), dilation_h=_int(t, 5, 1))


def _depthwise(t):
    return dict(padding=_padding(t, 0), stride_w=_int(t, 1, 1), stride_h=_int(t, 2, 1),
                depth_multiplier=_int(t, 3, 1), activation=_activation(t, 4),
                dilation_w=_int(t, 5, 1), dilation_h=_int(t, 6, 1))


def _pool(t):
    return dict(padding=_padding(t, 0), stride_w=_int(t, 1, 1), stride_h=_int(t, 2, 1),
                filter_w=_int(t, 3, 1), filter_h=_int(t, 4, 1), activation=_activation(t, 5))


def _fully_connected(t):
    return dict(activation=_activation(t, 0), weights_format=_int8(t, 1),
                keep_num_dims=_bool(t, 2), asymmetric_quantize_inputs=_bool(t, 3))


def _int8(t, i, default=0):
    return default if t is None else t.scalar(i, "int8", default)


def _transpose_conv(t):
    return dict(padding=_padding(t, 0), stride_w=_int(t, 1, 1), stride_h=_int(t, 2, 1),
                activation=_activation(t, 3))


def _fused_only(t):
    return dict(activation=_activation(t, 0))


def _concat(t):
    return dict(axis=_int(t, 0), activation=_activation(t, 1))


def _strided_slice(t):
    return dict(begin_mask=_int(t, 0), end_mask=_int(t, 1), ellipsis_mask=_int(t, 2),
                new_axis_mask=_int(t, 3), shrink_axis_mask=_int(t, 4), offset=_bool(t, 5))


def _resize_bilinear(t):
    return dict(align_corners=_bool(t, 2), half_pixel_centers=_bool(t, 3))


def _resize_nearest(t):
    return dict(align_corners=_bool(t, 0), half_pixel_centers=_bool(t, 1))


def _tensor_type(t, i):
    return TENSOR_TYPES.get(_int8(t, i), ("?", None))[1]


# Builtin name -> reader of its options table (a missing options table reads as defaults).
OPTION_READERS: dict[str, Callable[[Table | None], dict]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "AVERAGE_POOL_2D": _pool,
    "MAX_POOL_2D": _pool,
    "L2_POOL_2D": _pool,
    "FULLY_CONNECTED": _fully_connected,
    "TRANSPOSE_CONV": _transpose_conv,
    "ADD": _fused_only, "SUB": _fused_only, "MUL": _fused_only, "DIV": _fused_only,
    "L2_NORMALIZATION": _fused_only,
    "CONCATENATION": _concat,
    "SOFTMAX": lambda t: dict(beta=_float(t, 0, 1.0) if t is not None else 1.0),
    "MEAN": lambda t: dict(keep_dims=_bool(t, 0)),
    "SUM": lambda t: dict(keep_dims=_bool(t, 0)),
    "REDUCE_MAX": lambda t: dict(keep_dims=_bool(t, 0)),
    "REDUCE_MIN": lambda t: dict(keep_dims=_bool(t, 0)),
    "RESHAPE": lambda t: dict(new_shape=_ints(t, 0, "ReshapeOptions.new_shape")),
    "SQUEEZE": lambda t: dict(squeeze_dims=_ints(t, 0, "SqueezeOptions.squeeze_dims") or ()),
    "PACK": lambda t: dict(values_count=_int(t, 0), axis=_int(t, 1)),
    "UNPACK": lambda t: dict(num=_int(t, 0), axis=_int(t, 1)),
    "SPLIT": lambda t: dict(num_splits=_int(t, 0)),
    "SPLIT_V": lambda t: dict(num_splits=_int(t, 0)),
    "STRIDED_SLICE": _strided_slice,
    "RESIZE_BILINEAR": _resize_bilinear,
    "RESIZE_NEAREST_NEIGHBOR": _resize_nearest,
    "GATHER": lambda t: dict(axis=_int(t, 0), batch_dims=_int(t, 1)),
    "ARG_MAX": lambda t: dict(output_type=_tensor_type(t, 0) or "int64"),
    "LEAKY_RELU": lambda t: dict(alpha=_float(t, 0)),
    "MIRROR_PAD": lambda t: dict(mode=MIRROR_PAD_MODES.get(_int8(t, 0), "reflect")),
    "CAST": lambda t: dict(in_type=_tensor_type(t, 0), out_type=_tensor_type(t, 1)),
}


def read_options(op_name: str, table: Table | None) -> dict:
    """Options of one builtin operator as a plain dict ({} for option-less ops)."""
    reader = OPTION_READERS.get(op_name)
    return {} if reader is None else reader(table)


def np_dtype(type_code: int) -> np.dtype | None:
    entry = TENSOR_TYPES.get(type_code)
    return None if entry is None or entry[1] is None else np.dtype(entry[1])
