"""Where a tensor's bytes live, checked before they are read.

Weights stay where they are: raw data is viewed with ``numpy.frombuffer`` and external data is
memory-mapped, only from files inside the model's own directory.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from onnx import TensorProto

from ...errors import InitlintError
from ...graph import Tensor
from .proto_fields import _text
from .scan import MappedFile


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


class _Source:
    """Where one model's tensor bytes live: the model file (raw data viewed in place) and the
    external-data files beside it, each memory-mapped once."""

    def __init__(self, model_path: Path, file: MappedFile | None = None, raw_spans=None, constant_spans=None):
        self.model_path = model_path
        self.target = str(model_path)
        self.file = file
        self.raw_spans = raw_spans or []
        self.constant_spans = constant_spans or {}  # top-level Constant node index -> raw_data span
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
