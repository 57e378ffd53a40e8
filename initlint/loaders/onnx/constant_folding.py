"""Constants of the graph: initializers, Constant nodes, and ops applied to constants only."""

from __future__ import annotations

import math

import numpy as np

from ...graph import Tensor
from .byte_sources import FLOAT_TYPES, _Source, _tensor_from_proto
from .proto_fields import _text


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


def _alias(tensor: Tensor, name: str, shape=None, transform=None) -> Tensor:
    """The same values under the name the graph gives them (e.g. an Identity's output)."""
    reader = tensor._reader
    shape = shape if shape is not None else tensor.shape
    if transform is not None:  # element order changes: the source's byte ranges no longer apply
        return Tensor(name, shape, tensor.dtype, lambda: transform(np.asarray(reader()).reshape(tensor.shape)), convert=tensor._convert)
    return Tensor(name, shape, tensor.dtype, reader, convert=tensor._convert, release=tensor._release)


def _cast_is_float(attrs: dict) -> bool:
    return attrs.get("to") in FLOAT_TYPES


def _constant_node_tensor(node, attrs: dict, source: _Source, raw_span: tuple[int, int] | None = None) -> Tensor | None:
    out = _text(node.output[0])
    if "value" in attrs:
        return _tensor_from_proto(attrs["value"], source, name=out, raw_span=raw_span)
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
