"""Read an ONNX model into a ModelGraph without importing torch.

Weights stay where they are: raw data is viewed with ``numpy.frombuffer`` and external data is
memory-mapped, only from files inside the model's own directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from .. import graph as g
from ..errors import InitlintError
from ..graph import Layer, ModelGraph, Tensor
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


def _external_path(model_path: Path, location: str) -> Path:
    """Resolve an external-data location, refusing anything outside the model's directory."""
    base = model_path.parent.resolve()
    if not location or os.path.isabs(location) or Path(location).is_absolute() or ".." in Path(location).parts:
        raise InitlintError(str(model_path), f"external data location {location!r} is not a plain relative path inside the model's directory; refused")
    resolved = (base / location).resolve()  # follows symlinks
    if base != resolved and base not in resolved.parents:
        raise InitlintError(str(model_path), f"external data location {location!r} resolves outside the model's directory; refused")
    if not resolved.is_file():
        raise InitlintError(str(model_path), f"external data file {location!r} is missing")
    return resolved


def _tensor_from_proto(proto: TensorProto, model_path: Path, name: str | None = None) -> Tensor:
    name = name or proto.name
    shape = tuple(int(d) for d in proto.dims)
    if any(d < 0 for d in shape):
        raise InitlintError(str(model_path), f"tensor {name!r} has a negative dimension {shape}")
    elem = proto.data_type
    if elem not in _RAW_DTYPES:
        raise InitlintError(str(model_path), f"tensor {name!r} has unsupported element type {TensorProto.DataType.Name(elem) if elem in TensorProto.DataType.values() else elem}")
    stored = np.dtype(_RAW_DTYPES[elem])
    numel = int(np.prod(shape, dtype=np.float64)) if shape else 1
    expected_bytes = numel * stored.itemsize

    if proto.data_location == TensorProto.EXTERNAL:
        info = {entry.key: entry.value for entry in proto.external_data}
        path = _external_path(model_path, info.get("location", ""))
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else expected_bytes
        except ValueError:
            raise InitlintError(str(model_path), f"tensor {name!r}: malformed external data offset/length") from None
        file_size = path.stat().st_size
        if offset < 0 or length != expected_bytes or offset + length > file_size:
            raise InitlintError(str(model_path), f"tensor {name!r} declares {numel:,} elements ({expected_bytes:,} bytes) but its external data holds {max(0, min(length, file_size - offset)):,} bytes")

        def read(path=path, offset=offset):
            if numel == 0:
                return np.zeros(shape, stored)
            return np.memmap(path, dtype=stored, mode="r", offset=offset, shape=(numel,))

    elif proto.HasField("raw_data"):
        if len(proto.raw_data) != expected_bytes:
            raise InitlintError(str(model_path), f"tensor {name!r} declares {numel:,} elements ({expected_bytes:,} bytes) but holds {len(proto.raw_data):,} bytes")

        def read(proto=proto):
            return np.frombuffer(proto.raw_data, dtype=stored)

    else:
        field = _typed_field(proto)
        have = len(field) if field is not None else 0
        if have != numel and not (numel > 0 and have == 0 and elem in FLOAT_TYPES and False):
            if not (elem in (TensorProto.FLOAT16, TensorProto.BFLOAT16) and have == numel):
                raise InitlintError(str(model_path), f"tensor {name!r} declares {numel:,} elements but holds {have:,}")

        def read(proto=proto, field=field):
            if elem in (TensorProto.FLOAT16, TensorProto.BFLOAT16):
                return np.asarray(field, dtype=np.int32).astype(np.uint16).view(stored)
            return np.asarray(field, dtype=stored)

    if elem == TensorProto.BFLOAT16:
        inner = read

        def read(inner=inner):  # bfloat16 is the top half of a float32
            return (np.asarray(inner()).astype(np.uint32) << 16).view(np.float32)

    dtype_name = "bfloat16" if elem == TensorProto.BFLOAT16 else stored.name
    return Tensor(name, shape, dtype_name, read)


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
            out[attr.name] = onnx.helper.get_attribute_value(attr)
        except Exception:
            continue
    return out


def _alias(tensor: Tensor, name: str, shape=None, transform=None) -> Tensor:
    """The same values under the name the graph gives them (e.g. an Identity's output)."""
    reader = tensor._reader
    if transform is not None:
        return Tensor(name, shape if shape is not None else tensor.shape, tensor.dtype, lambda: transform(np.asarray(reader()).reshape(tensor.shape)))
    return Tensor(name, shape if shape is not None else tensor.shape, tensor.dtype, reader)


def load_onnx(path: str | os.PathLike) -> ModelGraph:
    model_path = Path(path)
    target = str(path)
    if not model_path.exists():
        raise InitlintError(target, "no such file")
    if not model_path.is_file():
        raise InitlintError(target, "not a regular file")
    if model_path.stat().st_size == 0:
        raise InitlintError(target, "empty file, not an ONNX model")
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:
        raise InitlintError(target, f"not a readable ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'parse error'})") from None
    if not model.HasField("graph") or (len(model.graph.node) == 0 and len(model.graph.initializer) == 0):
        raise InitlintError(target, "not an ONNX model: the file parses but holds no graph (truncated or not ONNX?)")
    return build_graph(model, model_path)


def build_graph(model: onnx.ModelProto, model_path: Path) -> ModelGraph:
    target = str(model_path)
    onnx_graph = model.graph
    graph = ModelGraph(target=target, format="onnx")
    graph.metadata = {
        "ir_version": int(model.ir_version),
        "opsets": {(op.domain or "ai.onnx"): int(op.version) for op in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
    }
    consts = _Consts()
    for init in onnx_graph.initializer:
        tensor = _tensor_from_proto(init, model_path)
        consts.add(init.name, tensor, init.data_type in FLOAT_TYPES)
        graph.tensors[init.name] = tensor
    initializer_names = set(consts.values)
    for inp in onnx_graph.input:
        if inp.name in initializer_names:
            continue
        ttype = inp.type.tensor_type
        dims = tuple((d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None) for d in ttype.shape.dim)
        elem = ttype.elem_type
        dtype = np.dtype(_RAW_DTYPES[elem]).name if elem in _RAW_DTYPES and elem != TensorProto.BFLOAT16 else "float32"
        graph.inputs[inp.name] = (dims, dtype)

    producer: dict[str, str] = {}  # value name -> layer name
    shape_only: set[str] = set()  # values computed only from shapes and constants
    used_names: set[str] = set()

    for index, node in enumerate(onnx_graph.node):
        op = node.op_type
        attrs = _attrs(node)
        inputs = [name for name in node.input]
        outputs = [name for name in node.output if name]

        # Constants and aliases of constants are values, not layers.
        if op == "Constant":
            tensor = _constant_node_tensor(node, attrs, model_path)
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
            filled = _constant_of_shape(node, attrs, consts.get(inputs[0]), outputs[0], model_path)
            if filled is not None:
                consts.add(outputs[0], filled, filled.dtype.startswith(("float", "bfloat")))
                graph.tensors.setdefault(outputs[0], filled)
                continue
        data_inputs = [name for name in inputs if name]
        if op in SHAPE_SOURCES or (data_inputs and all(name in shape_only or consts.get(name) is not None for name in data_inputs) and op not in ACTIVATIONS):
            # Shape arithmetic: no data flows through it.
            shape_only.update(outputs)
            continue

        name = node.name or f"{op}_{index}"
        while name in used_names:
            name = f"{name}_{index}"
        used_names.add(name)
        layer = Layer(name=name, kind=g.OTHER, op=op, attrs={})
        _classify(layer, node, attrs, inputs, consts, graph, model_path)

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
        if out.name in producer:
            graph.add(Layer(name=f"output:{out.name}", kind=g.OUTPUT, op="output", inputs=[producer[out.name]]))
    _attach_bias_adds(graph)
    fold_decomposed_ops(graph)  # SiLU/GELU/Mish/RMSNorm written as elementwise subgraphs
    if any(node.op_type in ("If", "Loop", "Scan") for node in onnx_graph.node):
        graph.notes.append("control-flow subgraphs (If/Loop/Scan) are not inspected")
    return graph


def _claimed(layer: Layer, tensor: Tensor) -> bool:
    return any(t is tensor for t in layer.params.values())


def _cast_is_float(attrs: dict) -> bool:
    return attrs.get("to") in FLOAT_TYPES


def _constant_node_tensor(node, attrs: dict, model_path: Path) -> Tensor | None:
    out = node.output[0]
    if "value" in attrs:
        proto = attrs["value"]
        return _tensor_from_proto(proto, model_path, name=out)
    for key, dtype in (("value_float", np.float32), ("value_int", np.int64)):
        if key in attrs:
            value = np.asarray(attrs[key], dtype=dtype)
            return Tensor(out, (), dtype.__name__, lambda value=value: value)
    for key, dtype in (("value_floats", np.float32), ("value_ints", np.int64)):
        if key in attrs:
            value = np.asarray(attrs[key], dtype=dtype)
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
        if len(perm) != source.ndim:
            return None
        shape = tuple(source.shape[p] for p in perm)
        return _alias(source, source.name, shape, lambda a, perm=perm: np.transpose(a, perm))
    if op == "Reshape" and len(inputs) > 1 and consts.get(inputs[1]) is not None:
        spec = consts.get(inputs[1])
        if spec.size > 16:
            return None
        target = [int(d) for d in np.asarray(spec.values()).reshape(-1)]
        target = [source.shape[i] if d == 0 and i < source.ndim else d for i, d in enumerate(target)]
        if target.count(-1) == 1:
            known = int(np.prod([d for d in target if d != -1])) or 1
            target[target.index(-1)] = source.size // known
        if any(d < 0 for d in target) or int(np.prod(target)) != source.size:
            return None
        return _alias(source, source.name, tuple(target))
    if op == "Flatten" and source.ndim:
        return _alias(source, source.name, (source.shape[0], max(source.size // max(source.shape[0], 1), 1)))
    return None


def _constant_of_shape(node, attrs: dict, shape_tensor: Tensor, out: str, model_path: Path) -> Tensor | None:
    if shape_tensor.size > 16:
        return None
    shape = tuple(int(d) for d in np.asarray(shape_tensor.values()).reshape(-1))
    if any(d < 0 for d in shape) or np.prod(shape, dtype=np.float64) > 2**34:
        raise InitlintError(str(model_path), f"ConstantOfShape {node.name or out!r} asks for an invalid or huge shape {shape}")
    if "value" in attrs:
        fill = _tensor_from_proto(attrs["value"], model_path, name=out)
        value = np.asarray(fill.values()).reshape(-1)[:1]
        dtype = fill.dtype if fill.dtype != "bfloat16" else "float32"
        fill_value = value[0] if value.size else 0
    else:
        dtype, fill_value = "float32", 0.0
    np_dtype = np.dtype(dtype)
    return Tensor(out, shape, dtype, lambda: np.broadcast_to(np.asarray(fill_value, dtype=np_dtype), shape))


def _classify(layer: Layer, node, attrs: dict, inputs: list[str], consts: _Consts, graph: ModelGraph, model_path: Path) -> None:
    op = node.op_type
    layer.attrs.update({k: v for k, v in attrs.items() if isinstance(v, (int, float, str, list, tuple))})

    def weight_at(i: int) -> Tensor | None:
        return consts.weight(inputs[i]) if len(inputs) > i and inputs[i] else None

    if op == "Gemm":
        b = weight_at(1)
        if b is not None and b.ndim == 2:
            layer.kind = g.LINEAR
            layer.params["weight"] = b
            if attrs.get("transB", 0):
                layer.fan_in, layer.fan_out = b.shape[1], b.shape[0]
            else:
                layer.fan_in, layer.fan_out, layer.unit_axis = b.shape[0], b.shape[1], 1
            layer.attrs["alpha"] = float(attrs.get("alpha", 1.0))
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
        groups = int(attrs.get("group", 1)) or 1
        layer.attrs["groups"] = groups
        if w is not None and w.ndim >= 3:
            receptive = int(np.prod(w.shape[2:]))
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
    elif op == "Gather" and weight_at(0) is not None and weight_at(0).ndim == 2 and consts.get(inputs[1]) is None:
        w = weight_at(0)
        layer.kind, layer.params["weight"] = g.EMBEDDING, w
        # A one-hot row selection: fan_in * Var(W) is the output variance.
        layer.fan_in, layer.fan_out = 1, w.shape[1]
    elif op in ("LSTM", "GRU", "RNN"):
        w, r = weight_at(1), weight_at(2)
        if w is not None:
            layer.kind = g.RNN
            layer.params["weight"] = w
            hidden = int(attrs.get("hidden_size", w.shape[-2]))
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
            layer.attrs["alpha"] = float(attrs.get("alpha", 0.01))
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
