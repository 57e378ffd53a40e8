"""An ONNX node -> a layer's kind, parameters and fans."""

from __future__ import annotations

import numpy as np

from ... import graph as g
from ...graph import Layer, ModelGraph, Tensor
from .constant_folding import _Consts
from .proto_fields import _text


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
            layer.params["weight"] = w
            if op == "Conv":
                layer.kind = g.CONV
            else:  # [C_in, C_out/groups, k...]
                layer.kind, layer.unit_axis = g.CONV_TRANSPOSE, 1
            layer.fan_in, layer.fan_out = g.conv_fans(w.shape, groups, transposed=op == "ConvTranspose")
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
