"""Quantized weights: int8/uint8 (or int32 bias) initializers read as the reals they stand for.

Three ways an ONNX file stores a quantized weight, all read here into a float view that is
dequantized one chunk at a time (``graph.Affine``), never as a float copy of the whole model:

- QDQ (static quantization): ``DequantizeLinear(w_int8, scale, zero_point)`` feeding a float
  Conv/MatMul/Gemm. The dequantized value is a constant like any initializer.
- QOperator: ``QLinearConv``/``QLinearMatMul`` carry the weight with its scale and zero point.
- Dynamic quantization (onnxruntime's ``quantize_dynamic``): ``MatMulInteger``/``ConvInteger``
  take the int weight and its zero point; its scale appears only in the rescaling after them,
  ``Mul(Cast(MatMulInteger(...)), Mul(x_scale, w_scale))``, found by following that chain.
"""

from __future__ import annotations

import numpy as np

from ... import graph as g
from ...graph import Affine, Layer, Tensor
from .constant_folding import _Consts
from .proto_fields import _text

# op -> (position of the weight, of its scale, of its zero point); None: scale found after the op
WEIGHT_INPUTS = {
    "QLinearConv": (3, 4, 5),
    "QLinearMatMul": (3, 4, 5),
    "QGemm": (3, 4, 5),  # com.microsoft, from quantize_static's QOperator format
    "MatMulInteger": (1, None, 3),
    "ConvInteger": (1, None, 3),
}
# Ops whose only data input is the first: the others are weights, scales and zero points.
QUANTIZED_OPS = {*WEIGHT_INPUTS, "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
CONV_OPS = {"QLinearConv", "ConvInteger"}


def dequantized(stored: Tensor, scale: Tensor, zero_point: Tensor | None, axis: int, name: str | None = None) -> Tensor | None:
    """``stored`` (integers) as reals, chunk by chunk; None when the scale does not fit its axis."""
    scale_values = np.asarray(scale.values(), dtype=np.float32).reshape(-1)
    zero_values = np.asarray(zero_point.values()).reshape(-1) if zero_point is not None else np.zeros(1, np.int32)
    if scale_values.size == 0 or not np.all(np.isfinite(scale_values)):
        return None
    per_axis = scale_values.size > 1
    if per_axis and (not stored.ndim or stored.shape[axis % stored.ndim] != scale_values.size):
        return None
    if zero_values.size not in (1, scale_values.size):
        return None
    affine = Affine(scale_values, zero_values.astype(np.int32), axis % max(stored.ndim, 1) if per_axis else None)
    return Tensor(name or stored.name, stored.shape, "float32", stored._reader, convert=stored._convert, release=stored._release, affine=affine)


def rescaling_scales(nodes, consts: _Consts, rename) -> tuple[dict[str, str], dict[str, str]]:
    """For each MatMulInteger/ConvInteger weight: the value holding its scale, read off the
    rescaling that follows (dynamic quantization), by weight value name; and the rescaling
    steps themselves (Cast, Mul: output -> input), which belong to the layer they rescale."""
    producer = {}
    consumers: dict[str, list] = {}
    for node in nodes:
        for value in node.output:
            producer[rename(_text(value))] = node
        for value in node.input:
            consumers.setdefault(rename(_text(value)), []).append(node)
    found: dict[str, str] = {}
    links: dict[str, str] = {}
    for node in nodes:
        op = _text(node.op_type)
        if op not in ("MatMulInteger", "ConvInteger") or len(node.input) < 2 or not node.output:
            continue
        weight = rename(_text(node.input[1]))
        value = rename(_text(node.output[0]))
        for _ in range(2):  # through a Cast to float, into the Mul that rescales
            nxt = consumers.get(value, [])
            if len(nxt) != 1:
                break
            step = nxt[0]
            if _text(step.op_type) == "Cast":
                links[rename(_text(step.output[0]))] = value
                value = rename(_text(step.output[0]))
                continue
            if _text(step.op_type) == "Mul":
                other = [rename(_text(v)) for v in step.input if rename(_text(v)) != value]
                if len(other) == 1:
                    scale = _weight_scale(other[0], producer, consts, rename)
                    if scale is not None:
                        found[weight] = scale
                        links[rename(_text(step.output[0]))] = value
            break
    return found, links


def _weight_scale(value: str, producer: dict, consts: _Consts, rename) -> str | None:
    """The constant factor of ``Mul(x_scale, w_scale)`` (or a constant scale itself)."""

    def constant(name: str) -> bool:  # an initializer, or a Constant node not walked yet
        return consts.get(name) is not None or (name in producer and _text(producer[name].op_type) == "Constant")

    if constant(value):
        return value
    node = producer.get(value)
    if node is None or _text(node.op_type) != "Mul":
        return None
    found = [rename(_text(v)) for v in node.input if constant(rename(_text(v)))]
    return found[0] if len(found) == 1 else None


def classify_quantized(layer: Layer, op: str, inputs: list[str], consts: _Consts, scales: dict[str, str]) -> None:
    """A QLinearConv/QLinearMatMul/MatMulInteger/ConvInteger node as the Conv or linear layer it is."""
    position, scale_at, zero_at = WEIGHT_INPUTS[op]

    def const(i: int | None) -> Tensor | None:
        return consts.get(inputs[i]) if i is not None and len(inputs) > i and inputs[i] else None

    stored = const(position)
    scale = const(scale_at) if scale_at is not None else (consts.get(scales[inputs[position]]) if len(inputs) > position and inputs[position] in scales else None)
    if stored is None or stored.ndim < 2:
        layer.kind = g.MATMUL if op not in CONV_OPS else g.OTHER
        return
    if scale is None:  # the scale is computed at run time: the weight's reals cannot be read
        layer.kind = g.MATMUL if op not in CONV_OPS else g.OTHER
        layer.attrs["unread_quantized_weight"] = stored.name
        return
    conv = op in CONV_OPS
    transposed = op == "QGemm" and bool(layer.attrs.get("transB", 0))  # B stored [out, in]
    weight = dequantized(stored, scale, const(zero_at), 0 if conv or transposed else -1)
    if weight is None:
        layer.kind = g.OTHER
        layer.attrs["unread_quantized_weight"] = stored.name
        return
    layer.params["weight"] = weight
    layer.attrs["quantized"] = True
    if conv:
        groups = max(int(layer.attrs.get("group", 1) or 1), 1)
        layer.kind, layer.attrs["groups"] = g.CONV, groups
        layer.fan_in, layer.fan_out = g.conv_fans(weight.shape, groups)
        bias, x_scale = const(8), const(1)
        if op == "QLinearConv" and bias is not None and x_scale is not None and x_scale.size == 1:
            # int32 bias in units of x_scale·w_scale, zero point 0
            product = _scaled(scale, float(np.asarray(x_scale.values()).reshape(-1)[0]))
            bias_real = dequantized(bias, product, None, 0)
            if bias_real is not None:
                layer.params["bias"] = bias_real
    elif transposed:
        layer.kind, layer.unit_axis = g.LINEAR, 0
        layer.fan_in, layer.fan_out = weight.shape[1], weight.shape[0]
    else:
        layer.kind, layer.unit_axis = g.LINEAR, -1
        layer.fan_in, layer.fan_out = weight.shape[-2], weight.shape[-1]


def _scaled(scale: Tensor, factor: float) -> Tensor:
    values = np.asarray(scale.values(), dtype=np.float32) * np.float32(factor)
    return Tensor(f"{scale.name}*x_scale", values.shape, "float32", lambda values=values: values)
