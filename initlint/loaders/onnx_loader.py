"""Read an ONNX model into a ModelGraph without importing torch.

Weights stay where they are: raw data is viewed with ``numpy.frombuffer`` and external data is
memory-mapped, only from files inside the model's own directory.
"""

from __future__ import annotations

import ast
import math
import os
import re
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from .. import graph as g
from ..errors import InitlintError
from ..graph import Layer, ModelGraph, Tensor
from .onnx_scan import MappedFile, ScanError, read_structure
from .onnx_patterns import fold_decomposed_ops

# ONNX element type -> (numpy dtype of the stored bytes, dtype after conversion).
_RAW_DTYPES = {
    TensorProto.FLOAT: np.float32,
    TensorProto.DOUBLE: np.float64,
    TensorProto.FLOAT16: np.float16,
    TensorProto.BFLOAT16: np.uint16,  # converted to float32 on read
    TensorProto.INT8: np.int8,
    TensorProto.UINT8: np.uint8,
    TensorProto.INT16: np.int16,
    TensorProto.UINT16: np.uint16,
    TensorProto.INT32: np.int32,
    TensorProto.UINT32: np.uint32,
    TensorProto.INT64: np.int64,
    TensorProto.UINT64: np.uint64,
    TensorProto.BOOL: np.bool_,
}
FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}

ACTIVATIONS = {
    "Relu": "relu",
    "LeakyRelu": "leaky_relu",
    "PRelu": "prelu",
    "Elu": "elu",
    "Selu": "selu",
    "Celu": "elu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Softplus": "softplus",
    "Softsign": "softsign",
    "HardSigmoid": "hardsigmoid",
    "HardSwish": "hardswish",
    "Gelu": "gelu",
    "Mish": "mish",
    "Swish": "silu",
    "ThresholdedRelu": "relu",
}
NORMS = {
    "BatchNormalization",
    "LayerNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "RMSNormalization",
    "SimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "LpNormalization",
}
POOLS = {
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LpPool",
    "GlobalLpPool",
    "ReduceMean",
    "ReduceMax",
    "ReduceSum",
}
PASSTHROUGH = {
    "Reshape",
    "Flatten",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Dropout",
    "Identity",
    "Cast",
    "CastLike",
    "Expand",
    "Slice",
    "Split",
    "Pad",
    "Resize",
    "Upsample",
    "Tile",
    "Gather",
    "DepthToSpace",
    "SpaceToDepth",
    "Neg",
    "Sub",
    "Div",
}
# Ops whose inputs after the first are shapes, indices or scalars, never data.
DATA_INPUT_ONLY_FIRST = {"Reshape", "Expand", "Tile", "Slice", "Pad", "Resize", "Upsample", "Squeeze", "Unsqueeze", "Split", "Dropout", "ReduceMean", "ReduceMax", "ReduceSum", "Clip", "TopK", "CastLike"}
SHAPE_SOURCES = {"Shape", "Size"}


class _Source:
    """Where one model's tensor bytes live: the model file (raw data viewed in place) and the
    external-data files beside it, each memory-mapped once."""

    def __init__(self, model_path: Path, file: MappedFile | None = None, raw_spans=None):
        self.model_path = model_path
        self.target = str(model_path)
        self.file = file
        self.raw_spans = raw_spans or []
        self._external: dict[Path, MappedFile] = {}
        self.skipped_types: set[str] = set()

    def error(self, cause: str, hint: str | None = None) -> InitlintError:
        return InitlintError(self.target, cause, hint)

    def external(self, location: str) -> tuple[Path, MappedFile]:
        path = _external_path(self.model_path, location)
        if path not in self._external:
            try:
                self._external[path] = MappedFile.open(path)
            except (OSError, ValueError) as exc:
                raise self.error(f"external data file {location!r} cannot be read ({exc.strerror or exc})") from None
        return path, self._external[path]


def _external_path(model_path: Path, location: str) -> Path:
    """Resolve an external-data location, refusing anything outside the model's directory."""
    target = str(model_path)
    if not location or "\x00" in location or os.path.isabs(location) or Path(location).is_absolute() or ".." in Path(location).parts:
        raise InitlintError(target, f"external data location {location!r} is not a plain relative path inside the model's directory; refused")
    try:
        base = model_path.parent.resolve()
        resolved = (base / location).resolve()  # follows symlinks
        is_file = resolved.is_file()
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loops, names too long
        raise InitlintError(target, f"external data location {location!r} cannot be resolved ({exc})") from None
    if base != resolved and base not in resolved.parents:
        raise InitlintError(target, f"external data location {location!r} resolves outside the model's directory; refused")
    if not is_file:
        raise InitlintError(target, f"external data file {location!r} is missing or not a regular file")
    return resolved


# Initializer names an exporter made up: the TorchScript exporter's constant-folded weights
# (onnx::Conv_12, onnx::MatMul_7) and the dynamo exporter's transposed weights (val_245).
_GENERATED_NAME = re.compile(r"^(onnx::.*|val_\d+)$")


def _module_scope(node) -> str | None:
    """The torch module a node was exported from: the dynamo exporter's name scopes
    (['', 'encoder', 'encoder.layer.0', ..., 'linear']), or the TorchScript exporter's node
    name ('/layer2/layer2.0/conv1/Conv'); the last element is the op itself."""
    segments = None
    for prop in node.metadata_props:
        if _text(prop.key) == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(_text(prop.value))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                scopes = None
            if isinstance(scopes, list) and all(isinstance(x, str) for x in scopes):
                segments = scopes[:-1]
    name = _text(node.name)
    if segments is None and name.startswith("/"):
        segments = name.split("/")[1:-1]
    path = ""
    for segment in segments or ():
        if not segment:
            continue
        path = segment if path and segment.startswith(path + ".") or not path else f"{path}.{segment}"
    return path or None


def _name_generated_weights(graph: ModelGraph) -> None:
    """Give weights the exporter named (onnx::Conv_12, val_245) their module's parameter name,
    so findings point at `layer2.0.conv1.weight` as they do for the torch model."""
    renamed = False
    for layer in graph.layers.values():
        scope = layer.attrs.get("module_scope")
        if not scope:
            continue
        for role in ("weight", "bias"):
            tensor = layer.params.get(role)
            if tensor is None or not _GENERATED_NAME.match(tensor.name):
                continue
            wanted = f"{scope}.{role}"
            if wanted in graph.tensors or any(t.name == wanted for t in graph.tensors.values()):
                continue  # the real parameter is in the file: keep both names apart
            layer.attrs[f"exporter_{role}_name"] = tensor.name
            tensor.name = wanted
            renamed = True
    if renamed:
        graph.tensors = {tensor.name: tensor for tensor in graph.tensors.values()}


def _text(value) -> str:
    """A protobuf string field: protobuf hands back bytes when the file's text is not UTF-8."""
    return value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")


def _dtype_name(elem: int) -> str:
    return TensorProto.DataType.Name(elem) if elem in TensorProto.DataType.values() else str(elem)


def _bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32."""
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


MAX_DIMS = 32  # numpy's own limit is 64; no real weight comes near either


def _tensor_from_proto(proto, source: _Source, name: str | None = None, raw_span: tuple[int, int] | None = None) -> Tensor | None:
    """A lazy Tensor for ``proto``, its declared size checked against the bytes present first.

    None for element types no rule reads (strings, complex, 4/8-bit floats): they are skipped.
    """
    if not isinstance(proto, TensorProto):
        raise source.error(f"tensor {name!r} is not a tensor (malformed attribute)")
    name = name or _text(proto.name)
    shape = tuple(int(d) for d in proto.dims)
    if any(d < 0 for d in shape):
        raise source.error(f"tensor {name!r} has a negative dimension {shape}")
    if len(shape) > MAX_DIMS:
        raise source.error(f"tensor {name!r} has {len(shape)} dimensions; at most {MAX_DIMS} are supported")
    elem = proto.data_type
    if elem not in _RAW_DTYPES:
        source.skipped_types.add(_dtype_name(elem))
        return None
    stored = np.dtype(_RAW_DTYPES[elem])
    numel = math.prod(shape)  # exact integers: a hostile shape must not wrap around
    expected_bytes = numel * stored.itemsize

    def too_few(have: str) -> InitlintError:
        return source.error(f"tensor {name!r} declares {shape} = {numel:,} elements ({expected_bytes:,} bytes) but {have}")

    release = None
    if proto.data_location == TensorProto.EXTERNAL:
        info = {_text(entry.key): _text(entry.value) for entry in proto.external_data}
        path, mapped = source.external(info.get("location", ""))
        try:
            offset = int(info.get("offset", 0) or 0)
            length = int(info["length"]) if info.get("length") else expected_bytes
        except ValueError:
            raise source.error(f"tensor {name!r}: malformed external data offset/length") from None
        if offset < 0 or length < 0 or length != expected_bytes or offset + length > mapped.size:
            held = max(0, min(length, mapped.size - offset))
            raise too_few(f"its external data ({info.get('location')!r} at offset {offset:,}) holds {held:,} bytes")

        def read(mapped=mapped, offset=offset):
            return mapped.view(offset, numel, stored)

        def release(start, stop, mapped=mapped, offset=offset):
            mapped.release(offset + start * stored.itemsize, (stop - start) * stored.itemsize)

    elif raw_span is not None:
        offset, length = raw_span
        if length != expected_bytes:
            raise too_few(f"holds {length:,} bytes")
        mapped = source.file

        def read(mapped=mapped, offset=offset):
            return mapped.view(offset, numel, stored)

        def release(start, stop, mapped=mapped, offset=offset):
            mapped.release(offset + start * stored.itemsize, (stop - start) * stored.itemsize)

    elif proto.HasField("raw_data"):
        if len(proto.raw_data) != expected_bytes:
            raise too_few(f"holds {len(proto.raw_data):,} bytes")

        def read(proto=proto):
            return np.frombuffer(proto.raw_data, dtype=stored)

    else:
        field = _typed_field(proto)
        if len(field) != numel:
            raise too_few(f"holds {len(field):,} values")

        def read(field=field):
            if elem in (TensorProto.FLOAT16, TensorProto.BFLOAT16):  # stored as int32 bit patterns
                return np.asarray(field, dtype=np.int64).astype(np.uint16).view(stored)
            return np.asarray(field, dtype=stored)

    convert = _bf16_to_float32 if elem == TensorProto.BFLOAT16 else None
    dtype_name = "bfloat16" if elem == TensorProto.BFLOAT16 else stored.name
    return Tensor(name, shape, dtype_name, read, convert=convert, release=release)


def _typed_field(proto: TensorProto):
    elem = proto.data_type
    if elem == TensorProto.FLOAT:
        return proto.float_data
    if elem == TensorProto.DOUBLE:
        return proto.double_data
    if elem in (TensorProto.INT64,):
        return proto.int64_data
    if elem in (TensorProto.UINT32, TensorProto.UINT64):
        return proto.uint64_data
    return proto.int32_data


class _Consts:
    """Constant values of the graph: initializers, Constant nodes and aliases of them."""

    def __init__(self) -> None:
        self.values: dict[str, Tensor] = {}
        self.is_float: dict[str, bool] = {}

    def add(self, value_name: str, tensor: Tensor, is_float: bool) -> None:
        self.values[value_name] = tensor
        self.is_float[value_name] = is_float

    def get(self, value_name: str) -> Tensor | None:
        return self.values.get(value_name)

    def weight(self, value_name: str) -> Tensor | None:
        """A float constant usable as a weight, or None."""
        tensor = self.values.get(value_name)
        return tensor if tensor is not None and self.is_float.get(value_name) else None


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH or attr.type == onnx.AttributeProto.GRAPHS:
            continue
        try:
            out[_text(attr.name)] = onnx.helper.get_attribute_value(attr)
        except Exception:
            continue
    return out


def _alias(tensor: Tensor, name: str, shape=None, transform=None) -> Tensor:
    """The same values under the name the graph gives them (e.g. an Identity's output)."""
    reader = tensor._reader
    shape = shape if shape is not None else tensor.shape
    if transform is not None:  # element order changes: the source's byte ranges no longer apply
        return Tensor(name, shape, tensor.dtype, lambda: transform(np.asarray(reader()).reshape(tensor.shape)), convert=tensor._convert)
    return Tensor(name, shape, tensor.dtype, reader, convert=tensor._convert, release=tensor._release)


def load_onnx(path: str | os.PathLike) -> ModelGraph:
    model_path = Path(path)
    target = str(path)
    try:
        if not model_path.exists():
            raise InitlintError(target, "no such file")
        if not model_path.is_file():
            raise InitlintError(target, "not a regular file")
        if model_path.stat().st_size == 0:
            raise InitlintError(target, "empty file, not an ONNX model")
    except OSError as exc:
        raise InitlintError(target, f"cannot be read ({exc.strerror or exc})") from None
    file, raw_spans = None, None
    try:
        # Structure only: the weights' bytes stay in the file, viewed in place.
        structure = read_structure(model_path)
        model, file, raw_spans = structure.model, structure.file, structure.raw_spans
    except ScanError as exc:
        if exc.malformed:  # protobuf would refuse it too: no need to read it all into memory
            raise InitlintError(target, f"not a readable ONNX model (malformed protobuf: {exc})", "is the file truncated, or not ONNX?") from None
        model = None  # valid protobuf this reader does not walk: let onnx.load judge the file
    except OSError as exc:
        raise InitlintError(target, f"cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:
        raise InitlintError(target, f"not a readable ONNX model ({_first_line(exc)})") from None
    if model is None:
        try:
            model = onnx.load(str(model_path), load_external_data=False)
        except Exception as exc:
            raise InitlintError(target, f"not a readable ONNX model ({_first_line(exc)})") from None
    if not model.HasField("graph") or (len(model.graph.node) == 0 and len(model.graph.initializer) == 0):
        raise InitlintError(target, "not an ONNX model: the file parses but holds no graph (truncated or not ONNX?)")
    return build_graph(model, model_path, _Source(model_path, file, raw_spans))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else 'parse error'}"


def build_graph(model: onnx.ModelProto, model_path: Path, source: _Source | None = None) -> ModelGraph:
    target = str(model_path)
    source = source or _Source(Path(model_path))
    onnx_graph = model.graph
    graph = ModelGraph(target=target, format="onnx")
    graph.metadata = {
        "ir_version": int(model.ir_version),
        "opsets": {(_text(op.domain) or "ai.onnx"): int(op.version) for op in model.opset_import},
        "producer": f"{_text(model.producer_name)} {_text(model.producer_version)}".strip(),
    }
    consts = _Consts()
    for index, init in enumerate(onnx_graph.initializer):
        span = source.raw_spans[index] if index < len(source.raw_spans) else None
        tensor = _tensor_from_proto(init, source, raw_span=span)
        if tensor is None:
            continue
        consts.add(tensor.name, tensor, init.data_type in FLOAT_TYPES)
        graph.tensors[tensor.name] = tensor
    initializer_names = set(consts.values)
    for inp in onnx_graph.input:
        if _text(inp.name) in initializer_names:
            continue
        ttype = inp.type.tensor_type
        dims = tuple((d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None) for d in ttype.shape.dim)
        elem = ttype.elem_type
        dtype = np.dtype(_RAW_DTYPES[elem]).name if elem in _RAW_DTYPES and elem != TensorProto.BFLOAT16 else "float32"
        graph.inputs[_text(inp.name)] = (dims, dtype)

    producer: dict[str, str] = {}  # value name -> layer name
    shape_only: set[str] = set()  # values computed only from shapes and constants
    used_names: set[str] = set()

    for index, node in enumerate(onnx_graph.node):
        op = _text(node.op_type)
        attrs = _attrs(node)
        inputs = [_text(name) for name in node.input]
        outputs = [_text(name) for name in node.output if name]

        # Constants and aliases of constants are values, not layers.
        if op == "Constant":
            tensor = _constant_node_tensor(node, attrs, source)
            if tensor is not None and outputs:
                consts.add(outputs[0], tensor, tensor.dtype in ("float32", "float64", "float16", "bfloat16"))
                continue
        if op in ("Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten") and inputs and consts.get(inputs[0]) is not None and outputs:
            aliased = _alias_constant(op, attrs, consts, inputs, outputs[0])
            if aliased is not None:
                consts.add(outputs[0], aliased, consts.is_float.get(inputs[0], False) if op != "Cast" else _cast_is_float(attrs))
                if aliased.ndim >= 1 and consts.is_float.get(outputs[0]):
                    graph.tensors.setdefault(aliased.name, aliased)
                continue
        if op == "ConstantOfShape" and inputs and consts.get(inputs[0]) is not None and outputs:
            filled = _constant_of_shape(node, attrs, consts.get(inputs[0]), outputs[0], source)
            if filled is not None:
                consts.add(outputs[0], filled, filled.dtype.startswith(("float", "bfloat")))
                graph.tensors.setdefault(outputs[0], filled)
                continue
        data_inputs = [name for name in inputs if name]
        if op in SHAPE_SOURCES or (data_inputs and all(name in shape_only or consts.get(name) is not None for name in data_inputs) and op not in ACTIVATIONS):
            # Shape arithmetic: no data flows through it.
            shape_only.update(outputs)
            continue

        name = _text(node.name) or f"{op}_{index}"
        if name.startswith("output:"):  # reserved for the graph's output markers
            name = f"{op}_{index}_{name}"
        while name in used_names:
            name = f"{name}_{index}"
        used_names.add(name)
        layer = Layer(name=name, kind=g.OTHER, op=op, attrs={})
        _classify(layer, node, attrs, inputs, consts, graph)
        if layer.is_weighted:
            scope = _module_scope(node)
            if scope:
                layer.attrs["module_scope"] = scope

        data_positions = range(len(inputs)) if op not in DATA_INPUT_ONLY_FIRST else range(min(1, len(inputs)))
        for position in data_positions:
            value = inputs[position]
            if not value or value in shape_only:
                continue
            if value in producer:
                layer.inputs.append(producer[value])
            elif consts.get(value) is not None and position not in layer.const_inputs and not _claimed(layer, consts.get(value)):
                layer.const_inputs[position] = consts.get(value)
        graph.add(layer)
        for value in outputs:
            producer[value] = name

    for out in onnx_graph.output:
        out_name = _text(out.name)
        if out_name in producer and f"output:{out_name}" not in graph.layers:
            graph.add(Layer(name=f"output:{out_name}", kind=g.OUTPUT, op="output", inputs=[producer[out_name]]))
    _attach_bias_adds(graph)
    _name_generated_weights(graph)
    fold_decomposed_ops(graph)  # SiLU/GELU/Mish/RMSNorm written as elementwise subgraphs
    if any(_text(node.op_type) in ("If", "Loop", "Scan") for node in onnx_graph.node):
        graph.notes.append("control-flow subgraphs (If/Loop/Scan) are not inspected")
    if source.skipped_types:
        graph.notes.append(f"tensors of element types {', '.join(sorted(source.skipped_types))} are not inspected")
    return graph


def _claimed(layer: Layer, tensor: Tensor) -> bool:
    return any(t is tensor for t in layer.params.values())


def _cast_is_float(attrs: dict) -> bool:
    return attrs.get("to") in FLOAT_TYPES


def _constant_node_tensor(node, attrs: dict, source: _Source) -> Tensor | None:
    out = _text(node.output[0])
    if "value" in attrs:
        return _tensor_from_proto(attrs["value"], source, name=out)
    for key, dtype, shaped in (("value_float", np.float32, False), ("value_int", np.int64, False), ("value_floats", np.float32, True), ("value_ints", np.int64, True)):
        if key in attrs:
            try:  # an attribute of the wrong type is just not a constant we can use
                value = np.asarray(attrs[key], dtype=dtype)
            except (TypeError, ValueError, OverflowError):
                return None
            if value.ndim != int(shaped):
                return None
            return Tensor(out, value.shape, dtype.__name__, lambda value=value: value)
    return None


def _alias_constant(op: str, attrs: dict, consts: _Consts, inputs: list[str], out: str) -> Tensor | None:
    source = consts.get(inputs[0])
    # An Identity output is how the TorchScript exporter names a deduplicated parameter
    # (fc2.weight -> Identity(fc1.weight)); other ops keep the source's name, the user's one.
    if op == "Identity":
        return _alias(source, out)
    if op == "Cast":
        return _alias(source, source.name)
    if op == "Transpose":
        perm = attrs.get("perm") or list(reversed(range(source.ndim)))
        if not isinstance(perm, (list, tuple)) or sorted(perm) != list(range(source.ndim)):
            return None
        shape = tuple(source.shape[p] for p in perm)
        return _alias(source, source.name, shape, lambda a, perm=perm: np.transpose(a, perm))
    if op == "Reshape" and len(inputs) > 1 and consts.get(inputs[1]) is not None:
        spec = consts.get(inputs[1])
        if spec.size > 16 or not spec.dtype.startswith("int"):
            return None
        target = [int(d) for d in np.asarray(spec.values()).reshape(-1)]
        target = [source.shape[i] if d == 0 and i < source.ndim else d for i, d in enumerate(target)]
        if target.count(-1) == 1:
            known = math.prod(d for d in target if d != -1) or 1
            target[target.index(-1)] = source.size // known
        if any(d < 0 for d in target) or math.prod(target) != source.size:
            return None
        return _alias(source, source.name, tuple(target))
    if op == "Flatten" and source.ndim:
        return _alias(source, source.name, (source.shape[0], max(source.size // max(source.shape[0], 1), 1)))
    return None


# A ConstantOfShape is not backed by bytes in the file; bound what one may ask for so that a
# hostile shape cannot make the statistics pass run for minutes (1 GiB of float32).
MAX_CONSTANT_OF_SHAPE = 1 << 28


def _constant_of_shape(node, attrs: dict, shape_tensor: Tensor, out: str, source: _Source) -> Tensor | None:
    if shape_tensor.size > 16 or not shape_tensor.dtype.startswith("int"):
        return None
    shape = tuple(int(d) for d in np.asarray(shape_tensor.values()).reshape(-1))
    if any(d < 0 for d in shape) or math.prod(shape) > MAX_CONSTANT_OF_SHAPE:
        raise source.error(f"ConstantOfShape {_text(node.name) or out!r} asks for an invalid or huge shape {shape}")
    if "value" in attrs:
        fill = _tensor_from_proto(attrs["value"], source, name=out)
        if fill is None:
            return None
        value = np.asarray(fill.values()).reshape(-1)[:1]
        dtype = fill.dtype if fill.dtype != "bfloat16" else "float32"
        fill_value = value[0] if value.size else 0
    else:
        dtype, fill_value = "float32", 0.0
    np_dtype = np.dtype(dtype)
    return Tensor(out, shape, dtype, lambda: np.broadcast_to(np.asarray(fill_value, dtype=np_dtype), shape))


def _int_attr(attrs: dict, key: str, default: int) -> int:
    """An integer attribute, or ``default`` when it is missing or of another type."""
    value = attrs.get(key, default)
    return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else default


def _float_attr(attrs: dict, key: str, default: float) -> float:
    value = attrs.get(key, default)
    return float(value) if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else default


def _classify(layer: Layer, node, attrs: dict, inputs: list[str], consts: _Consts, graph: ModelGraph) -> None:
    op = _text(node.op_type)
    layer.attrs.update({k: v for k, v in attrs.items() if isinstance(v, (int, float, str, list, tuple))})

    def weight_at(i: int) -> Tensor | None:
        return consts.weight(inputs[i]) if len(inputs) > i and inputs[i] else None

    if op == "Gemm":
        b = weight_at(1)
        if b is not None and b.ndim == 2:
            layer.kind = g.LINEAR
            layer.params["weight"] = b
            if _int_attr(attrs, "transB", 0):
                layer.fan_in, layer.fan_out = b.shape[1], b.shape[0]
            else:
                layer.fan_in, layer.fan_out, layer.unit_axis = b.shape[0], b.shape[1], 1
            layer.attrs["alpha"] = _float_attr(attrs, "alpha", 1.0)
            c = weight_at(2)
            if c is not None:
                layer.params["bias"] = c
        else:
            layer.kind = g.MATMUL
    elif op in ("MatMul", "FusedMatMul"):
        right, left = weight_at(1), weight_at(0)
        if right is not None and right.ndim >= 2:
            layer.kind, layer.params["weight"] = g.LINEAR, right
            layer.fan_in, layer.fan_out, layer.unit_axis = right.shape[-2], right.shape[-1], -1
        elif left is not None and left.ndim >= 2:
            layer.kind, layer.params["weight"] = g.LINEAR, left
            layer.fan_in, layer.fan_out, layer.unit_axis = left.shape[-1], left.shape[-2], -2
        else:
            layer.kind = g.MATMUL
    elif op in ("Conv", "ConvTranspose"):
        w = weight_at(1)
        groups = max(_int_attr(attrs, "group", 1), 1)
        layer.attrs["groups"] = groups
        if w is not None and w.ndim >= 3:
            receptive = math.prod(w.shape[2:])
            layer.params["weight"] = w
            if op == "Conv":
                layer.kind = g.CONV
                layer.fan_in = w.shape[1] * receptive
                layer.fan_out = (w.shape[0] // groups) * receptive
            else:  # [C_in, C_out/groups, k...]: the roles swap
                layer.kind, layer.unit_axis = g.CONV_TRANSPOSE, 1
                layer.fan_in = (w.shape[0] // groups) * receptive
                layer.fan_out = w.shape[1] * receptive
            b = weight_at(2)
            if b is not None:
                layer.params["bias"] = b
        else:
            layer.kind = g.OTHER
    elif op == "Gather" and weight_at(0) is not None and weight_at(0).ndim == 2 and len(inputs) > 1 and consts.get(inputs[1]) is None:
        w = weight_at(0)
        layer.kind, layer.params["weight"] = g.EMBEDDING, w
        # A one-hot row selection: fan_in * Var(W) is the output variance.
        layer.fan_in, layer.fan_out = 1, w.shape[1]
    elif op in ("LSTM", "GRU", "RNN"):
        w, r = weight_at(1), weight_at(2)
        if w is not None and w.ndim >= 2:
            layer.kind = g.RNN
            layer.params["weight"] = w
            hidden = _int_attr(attrs, "hidden_size", w.shape[-2])
            layer.fan_in, layer.fan_out = w.shape[-1], hidden
            if r is not None:
                layer.params["recurrent_weight"] = r
            b = weight_at(3)
            if b is not None:
                layer.params["bias"] = b
    elif op in NORMS:
        layer.kind = g.NORM
        names = ["weight", "bias", "running_mean", "running_var"] if op == "BatchNormalization" else ["weight", "bias"]
        if op == "SkipLayerNormalization":
            positions = {2: "weight", 3: "bias"}
        else:
            positions = {i + 1: role for i, role in enumerate(names)}
        for position, role in positions.items():
            t = weight_at(position)
            if t is not None:
                layer.params[role] = t
    elif op in ACTIVATIONS:
        layer.kind = g.ACTIVATION
        layer.attrs["activation"] = ACTIVATIONS[op]
        if op == "LeakyRelu":
            layer.attrs["alpha"] = _float_attr(attrs, "alpha", 0.01)
        if op == "PRelu" and weight_at(1) is not None:
            layer.params["weight"] = weight_at(1)
    elif op == "Clip":
        lo = consts.get(inputs[1]) if len(inputs) > 1 and inputs[1] else None
        hi = consts.get(inputs[2]) if len(inputs) > 2 and inputs[2] else None
        lo_v = float(np.asarray(lo.values()).reshape(-1)[0]) if lo is not None and lo.size == 1 else attrs.get("min")
        hi_v = float(np.asarray(hi.values()).reshape(-1)[0]) if hi is not None and hi.size == 1 else attrs.get("max")
        if lo_v == 0:
            layer.kind, layer.attrs["activation"] = g.ACTIVATION, "relu6" if hi_v is not None else "relu"
        elif lo_v == -1 and hi_v == 1:
            layer.kind, layer.attrs["activation"] = g.ACTIVATION, "hardtanh"
        else:
            layer.kind = g.PASSTHROUGH
    elif op in ("Softmax", "LogSoftmax"):
        layer.kind = g.SOFTMAX
    elif op in ("Add", "Sum"):
        dynamic = [name for name in inputs if name and consts.get(name) is None]
        layer.kind = g.ADD if len(dynamic) >= 2 else g.PASSTHROUGH
        if len(dynamic) < 2:
            layer.attrs["bias_add"] = True
    elif op == "Mul":
        layer.kind = g.MUL
    elif op == "Concat":
        layer.kind = g.CONCAT
    elif op in POOLS:
        layer.kind = g.POOL
    elif op in PASSTHROUGH:
        layer.kind = g.PASSTHROUGH
    elif op == "Attention" or op == "MultiHeadAttention":
        layer.kind = g.ATTENTION
        w = weight_at(1)
        if w is not None and w.ndim == 2:
            layer.params["weight"] = w
            layer.fan_in, layer.fan_out = w.shape[0], w.shape[1]
    else:
        layer.kind = g.OTHER


def _attach_bias_adds(graph: ModelGraph) -> None:
    """MatMul followed by Add(constant) is a linear layer with a bias (how exporters write nn.Linear)."""
    for layer in graph.layers.values():
        if not layer.attrs.get("bias_add") or len(layer.inputs) != 1 or not layer.const_inputs:
            continue
        producer = graph.layers.get(layer.inputs[0])
        const = next(iter(layer.const_inputs.values()))
        if (
            producer is not None
            and producer.kind in (g.LINEAR, g.CONV)
            and producer.bias is None
            and const.dtype.startswith(("float", "bfloat"))
            and const.size == producer.units
            and len(graph.consumers(producer)) == 1
        ):
            producer.params["bias"] = const
