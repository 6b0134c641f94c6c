"""TFLite flatbuffer -> plain Python description of the model (tensors, operators, signatures).

Format only: this module knows the schema, not how to execute anything. Every index read from
the file (tensor, buffer, opcode, subgraph) is range-checked so that a corrupt file raises
:class:`~app.errors.ModelFormatError` naming the file, the record and the bad value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.errors import ModelFormatError, UnsupportedLayerError
from app.tflite import schema
from app.tflite.flatbuffer import Buffer, Table
from app.tflite.schema import (BufferField, ModelField, OperatorCodeField, OperatorField,
                               QuantField, SignatureDefField, SubGraphField, TensorField,
                               TensorMapField)

# Refuse absurd rank/size early: an image model never needs more, and it keeps a hostile file
# from asking numpy for petabytes.
MAX_RANK = 8
MAX_ELEMENTS = 1 << 28

#: How many input / output tensors each builtin Vitrine runs takes, as the TFLite reference kernels
#: check in their Prepare step: builtin -> ((min inputs, max inputs), (min outputs, max outputs));
#: None = no upper bound. The first ``min inputs`` inputs are required (not -1 = omitted).
#: Checked at load time so a kernel never indexes past an operator's tensor lists.
OPERATOR_ARITY: dict[str, tuple[tuple[int, int | None], tuple[int, int | None]]] = {
    "CONV_2D": ((2, 3), (1, 1)), "DEPTHWISE_CONV_2D": ((2, 3), (1, 1)), "TRANSPOSE_CONV": ((3, 4), (1, 1)),
    # a second output only in the (unsupported) shuffled-weights format
    "FULLY_CONNECTED": ((2, 3), (1, 2)),
    **{name: ((2, 2), (1, 1)) for name in ("ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM",
                                           "MEAN", "SUM", "REDUCE_MAX", "PRELU", "EXPAND_DIMS", "MIRROR_PAD",
                                           "TRANSPOSE", "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "GATHER",
                                           "ARG_MAX")},
    **{name: ((1, 1), (1, 1)) for name in ("MAX_POOL_2D", "AVERAGE_POOL_2D", "L2_NORMALIZATION", "SOFTMAX",
                                           "LOGISTIC", "TANH", "HARD_SWISH", "RSQRT", "SQRT", "EXP", "NEG", "ABS",
                                           "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "QUANTIZE", "DEQUANTIZE",
                                           "SQUEEZE", "SHAPE", "CAST")},
    "RESHAPE": ((1, 2), (1, 1)),
    "CONCATENATION": ((1, None), (1, 1)), "PACK": ((1, None), (1, 1)), "UNPACK": ((1, 1), (1, None)),
    "PAD": ((2, 3), (1, 1)), "PADV2": ((2, 3), (1, 1)),
    "STRIDED_SLICE": ((4, 4), (1, 1)), "SLICE": ((3, 3), (1, 1)),
    "SPLIT": ((2, 2), (1, None)), "SPLIT_V": ((3, 3), (1, None)),
}


def _count_text(low: int, high: int | None) -> str:
    if high is None:
        return f"at least {low}"
    return str(low) if low == high else f"{low} to {high}"


def check_operator_arity(op: "OperatorInfo", sub: int, source: str) -> None:
    """ModelFormatError when ``op`` has more or fewer input / output tensors than its builtin
    takes (:data:`OPERATOR_ARITY`), or omits a required input; builtins not listed (ones Vitrine
    does not run) are left to the support check, which names them."""
    arity = OPERATOR_ARITY.get(op.name)
    if arity is None:
        return
    for kind, tensors, (low, high) in (("input", op.inputs, arity[0]), ("output", op.outputs, arity[1])):
        if len(tensors) < low or (high is not None and len(tensors) > high):
            raise ModelFormatError(
                f"{source}: subgraph {sub} {op.label}: {op.name} expects {_count_text(low, high)} {kind} "
                f"tensor(s), received {len(tensors)}")
    missing = [position for position in range(arity[0][0]) if op.inputs[position] < 0]
    if missing:
        raise ModelFormatError(
            f"{source}: subgraph {sub} {op.label} omits its required input(s) {missing} (index -1); "
            f"{op.name} needs its first {arity[0][0]} inputs")


#: Fused activations LiteRT's kernels apply: each kernel turns the fused activation into a clamp
#: range (``CalculateActivationRange`` / ``...Quantized``). TANH and SIGN_BIT have no range, so
#: LiteRT 2.3 applies no activation at all (measured: float CONV_2D, DEPTHWISE_CONV_2D and ADD in
#: fixture fused_tanh_float32, int8 ADD and MUL in fused_tanh_int8), and FULLY_CONNECTED's Prepare
#: refuses them. The converter never fuses TANH; only other writers do.
CLAMP_ACTIVATIONS = ("linear", "relu", "relu_n1_to_1", "relu6")


def resolve_fused_activation(op: "OperatorInfo", sub: int, source: str) -> None:
    """Replace a fused TANH / SIGN_BIT by what LiteRT computes for it (no activation), keeping the
    file's value in ``options["declared_activation"]``; UnsupportedLayerError for a
    FULLY_CONNECTED, which LiteRT refuses to prepare with one."""
    declared = op.options.get("activation")
    if declared is None or declared in CLAMP_ACTIVATIONS:
        return
    if op.name == "FULLY_CONNECTED":
        raise UnsupportedLayerError(
            f"{source}: subgraph {sub} {op.label} has fused activation {declared.upper()}, which "
            f"LiteRT's FULLY_CONNECTED refuses (it takes NONE, RELU, RELU_N1_TO_1 or RELU6)")
    op.options = {**op.options, "activation": "linear", "declared_activation": declared}


@dataclass(frozen=True)
class Quantization:
    """Affine quantization: ``real = scale * (q - zero_point)``, per tensor or per channel."""

    scales: np.ndarray          # float32, shape (n,)
    zero_points: np.ndarray     # int64, shape (n,)
    quantized_dimension: int = 0

    @property
    def per_channel(self) -> bool:
        return self.scales.size > 1


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    type_name: str
    dtype: np.dtype | None
    data: np.ndarray | None           # constant tensors only (weights), read-only
    quantization: Quantization | None
    is_variable: bool = False

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass
class OperatorInfo:
    index: int
    name: str                         # builtin name (e.g. "CONV_2D") or "CUSTOM"
    custom_code: str | None
    version: int
    inputs: tuple[int, ...]           # -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"operator #{self.index} ({self.name})"


@dataclass
class SubGraphInfo:
    name: str
    tensors: list[TensorInfo]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: list[OperatorInfo]


@dataclass
class SignatureInfo:
    key: str
    subgraph_index: int
    inputs: dict[str, int]            # signature name -> tensor index
    outputs: dict[str, int]


@dataclass
class ModelInfo:
    source: str
    version: int
    description: str
    subgraphs: list[SubGraphInfo]
    signatures: list[SignatureInfo]


def parse_model(data: bytes, source: str = "model.tflite") -> ModelInfo:
    """Parse a ``.tflite`` file's bytes; raises ModelFormatError on anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ModelFormatError(f"{source}: expected the model file's bytes, got {type(data).__name__}")
    buf = Buffer(data, source)
    root = buf.root(schema.FILE_IDENTIFIER)
    version = root.scalar(ModelField.VERSION, "uint32", 0)
    if version != 3:
        raise ModelFormatError(f"{source}: unsupported TFLite schema version {version}, expected 3")
    opcodes = [_read_opcode(t, i, source)
               for i, t in enumerate(root.tables(ModelField.OPERATOR_CODES, "operator_codes"))]
    buffers = root.tables(ModelField.BUFFERS, "buffers")
    subgraph_tables = root.tables(ModelField.SUBGRAPHS, "subgraphs")
    if not subgraph_tables:
        raise ModelFormatError(f"{source}: the model has no subgraph")
    subgraphs = [_read_subgraph(t, i, opcodes, buffers, buf) for i, t in enumerate(subgraph_tables)]
    signatures = [_read_signature(t, i, subgraphs, source)
                  for i, t in enumerate(root.tables(ModelField.SIGNATURE_DEFS, "signature_defs"))]
    return ModelInfo(source=source, version=version,
                     description=root.string(ModelField.DESCRIPTION, "description", "") or "",
                     subgraphs=subgraphs, signatures=signatures)


def _read_opcode(table: Table, index: int, source: str) -> tuple[str, str | None, int]:
    # Codes < 127 live in the deprecated int8 field; newer ones only in the int32 field, and
    # writers put the larger of the two in builtin_code (schema comment on OperatorCode).
    deprecated = table.scalar(OperatorCodeField.DEPRECATED_BUILTIN_CODE, "int8", 0)
    code = max(deprecated, table.scalar(OperatorCodeField.BUILTIN_CODE, "int32", 0))
    version = table.scalar(OperatorCodeField.VERSION, "int32", 1)
    custom = table.string(OperatorCodeField.CUSTOM_CODE, f"operator_codes[{index}].custom_code")
    name = schema.BUILTIN_OPERATOR_NAMES.get(code)
    if name is None:
        raise UnsupportedLayerError(
            f"{source}: operator_codes[{index}] has builtin code {code}, unknown to this TFLite "
            f"schema (newer converter?)"
        )
    return name, custom, version


def _read_quantization(table: Table | None, what: str, source: str) -> Quantization | None:
    if table is None:
        return None
    if table.scalar(QuantField.DETAILS_TYPE, "uint8", 0) != 0:
        raise UnsupportedLayerError(f"{source}: {what} uses custom quantization details; only "
                                    f"affine (scale/zero_point) quantization is supported")
    scales = table.numbers(QuantField.SCALE, "float32", f"{what}.scale")
    zero_points = table.numbers(QuantField.ZERO_POINT, "int64", f"{what}.zero_point")
    if scales is None or scales.size == 0:
        return None
    if zero_points is None or zero_points.size == 0:
        zero_points = np.zeros(scales.size, np.int64)
    if zero_points.size != scales.size:
        raise ModelFormatError(f"{source}: {what} has {scales.size} scales but "
                               f"{zero_points.size} zero points")
    dim = table.scalar(QuantField.QUANTIZED_DIMENSION, "int32", 0)
    return Quantization(np.array(scales, np.float32), np.array(zero_points, np.int64), dim)


def _read_buffer(buffers: list[Table], index: int, buf: Buffer, what: str) -> memoryview | None:
    if index == 0:
        return None
    if index >= len(buffers):
        raise buf.fail(f"{what} refers to buffer {index}, but the model has {len(buffers)}")
    table = buffers[index]
    data = table.bytes_view(BufferField.DATA, f"buffers[{index}].data")
    if data is not None and len(data):
        return data
    offset = table.scalar(BufferField.OFFSET, "uint64", 0)
    size = table.scalar(BufferField.SIZE, "uint64", 0)
    # Models over 2 GB keep weights after the flatbuffer; offset is from the file start and 1 is
    # the converter's placeholder for "no data".
    if offset > 1 and size > 0:
        buf.check(offset, size, f"buffers[{index}] (stored outside the flatbuffer)")
        return memoryview(buf.data)[offset:offset + size]
    return None


def _read_tensor(table: Table, index: int, sub: int, buffers: list[Table], buf: Buffer) -> TensorInfo:
    what = f"subgraphs[{sub}].tensors[{index}]"
    source = buf.source
    shape_arr = table.numbers(TensorField.SHAPE, "int32", f"{what}.shape")
    shape = () if shape_arr is None else tuple(int(d) for d in shape_arr)
    sig_arr = table.numbers(TensorField.SHAPE_SIGNATURE, "int32", f"{what}.shape_signature")
    signature = shape if sig_arr is None else tuple(int(d) for d in sig_arr)
    name = table.string(TensorField.NAME, f"{what}.name", "") or f"tensor_{index}"
    if len(shape) > MAX_RANK or any(d < 0 for d in shape):
        raise ModelFormatError(f"{source}: tensor {name!r} ({what}) has an invalid shape {shape}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count > MAX_ELEMENTS:
        raise ModelFormatError(f"{source}: tensor {name!r} claims {count} elements")
    type_code = table.scalar(TensorField.TYPE, "int8", 0)
    type_name, dtype_name = schema.TENSOR_TYPES.get(type_code, (f"type code {type_code}", None))
    dtype = None if dtype_name is None else np.dtype(dtype_name)
    if table.has(TensorField.SPARSITY):
        raise UnsupportedLayerError(f"{source}: tensor {name!r} is sparse; sparse TFLite tensors "
                                    f"are not supported (convert without sparsification)")
    raw = _read_buffer(buffers, table.scalar(TensorField.BUFFER, "uint32", 0), buf, what)
    data = None
    if raw is not None:
        if dtype is None:
            raise UnsupportedLayerError(f"{source}: constant tensor {name!r} has type {type_name}, "
                                        f"which Vitrine cannot hold")
        expected = count * dtype.itemsize
        if len(raw) != expected:
            raise ModelFormatError(f"{source}: tensor {name!r} shape {shape} {type_name} needs "
                                   f"{expected} bytes, its buffer has {len(raw)}")
        data = np.frombuffer(raw, dtype=dtype.newbyteorder("<"), count=count).reshape(shape)
    quant = _read_quantization(table.table(TensorField.QUANTIZATION, f"{what}.quantization"),
                               f"tensor {name!r} quantization", source)
    if quant is not None and quant.per_channel and not 0 <= quant.quantized_dimension < max(len(shape), 1):
        raise ModelFormatError(f"{source}: tensor {name!r} quantized_dimension "
                               f"{quant.quantized_dimension} is outside its shape {shape}")
    return TensorInfo(index=index, name=name, shape=shape, shape_signature=signature,
                      type_name=type_name, dtype=dtype, data=data, quantization=quant,
                      is_variable=bool(table.scalar(TensorField.IS_VARIABLE, "bool", False)))


def _indices(table: Table, field_index: int, what: str, limit: int, source: str,
             allow_optional: bool) -> tuple[int, ...]:
    arr = table.numbers(field_index, "int32", what)
    if arr is None:
        return ()
    out = tuple(int(v) for v in arr)
    for v in out:
        if not (0 <= v < limit or (allow_optional and v == -1)):
            raise ModelFormatError(f"{source}: {what} refers to tensor {v}, but the subgraph has "
                                   f"{limit} tensors")
    return out


def _read_subgraph(table: Table, sub: int, opcodes, buffers, buf: Buffer) -> SubGraphInfo:
    source = buf.source
    tensors = [_read_tensor(t, i, sub, buffers, buf)
               for i, t in enumerate(table.tables(SubGraphField.TENSORS, f"subgraphs[{sub}].tensors"))]
    n = len(tensors)
    operators = []
    for i, op in enumerate(table.tables(SubGraphField.OPERATORS, f"subgraphs[{sub}].operators")):
        what = f"subgraphs[{sub}].operators[{i}]"
        opcode_index = op.scalar(OperatorField.OPCODE_INDEX, "uint32", 0)
        if opcode_index >= len(opcodes):
            raise ModelFormatError(f"{source}: {what} uses opcode {opcode_index}, but the model "
                                   f"has {len(opcodes)} operator codes")
        name, custom, version = opcodes[opcode_index]
        _, options_table = op.union_table(OperatorField.BUILTIN_OPTIONS_TYPE,
                                          OperatorField.BUILTIN_OPTIONS, f"{what}.builtin_options")
        try:
            options = schema.read_options(name, options_table)
        except ValueError as exc:
            raise ModelFormatError(f"{source}: {what} ({name}) has invalid options: {exc}") from None
        operators.append(OperatorInfo(
            index=i, name=name, custom_code=custom, version=version,
            inputs=_indices(op, OperatorField.INPUTS, f"{what}.inputs", n, source, True),
            outputs=_indices(op, OperatorField.OUTPUTS, f"{what}.outputs", n, source, False),
            options=options))
        check_operator_arity(operators[-1], sub, source)
        resolve_fused_activation(operators[-1], sub, source)
    return SubGraphInfo(
        name=table.string(SubGraphField.NAME, f"subgraphs[{sub}].name", "") or f"subgraph_{sub}",
        tensors=tensors,
        inputs=_indices(table, SubGraphField.INPUTS, f"subgraphs[{sub}].inputs", n, source, False),
        outputs=_indices(table, SubGraphField.OUTPUTS, f"subgraphs[{sub}].outputs", n, source, False),
        operators=operators)


def _read_signature(table: Table, index: int, subgraphs: list[SubGraphInfo], source: str) -> SignatureInfo:
    what = f"signature_defs[{index}]"
    sub = table.scalar(SignatureDefField.SUBGRAPH_INDEX, "uint32", 0)
    if sub >= len(subgraphs):
        raise ModelFormatError(f"{source}: {what} refers to subgraph {sub}, but the model has "
                               f"{len(subgraphs)}")
    limit = len(subgraphs[sub].tensors)

    def tensor_map(field_index: int, kind: str) -> dict[str, int]:
        out = {}
        for j, entry in enumerate(table.tables(field_index, f"{what}.{kind}")):
            name = entry.string(TensorMapField.NAME, f"{what}.{kind}[{j}].name", "") or f"{kind}_{j}"
            tensor = entry.scalar(TensorMapField.TENSOR_INDEX, "uint32", 0)
            if tensor >= limit:
                raise ModelFormatError(f"{source}: {what}.{kind}[{j}] refers to tensor {tensor}, "
                                       f"but subgraph {sub} has {limit}")
            out[name] = tensor
        return out

    return SignatureInfo(key=table.string(SignatureDefField.SIGNATURE_KEY, f"{what}.signature_key",
                                          "") or f"signature_{index}",
                         subgraph_index=sub, inputs=tensor_map(SignatureDefField.INPUTS, "inputs"),
                         outputs=tensor_map(SignatureDefField.OUTPUTS, "outputs"))
