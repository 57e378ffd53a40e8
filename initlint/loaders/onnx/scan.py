"""Read an ONNX file's structure without copying its weight bytes.

``onnx.load`` reads the whole file into memory and parses it, so every initializer's
``raw_data`` exists twice while loading (peak memory ~2x the model). Here the file is
memory-mapped and its protobuf wire format walked just deep enough (ModelProto.graph ->
GraphProto.initializer -> TensorProto.raw_data) to cut the weight bytes out: protobuf parses a
copy of the file without them, and each initializer's bytes stay in the file, viewed in place.

Only the structure of the wire format is trusted here: anything this walker does not expect
raises :class:`ScanError` and the caller falls back to ``onnx.load``, whose verdict stands.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field

import numpy as np
import onnx

# Field numbers from onnx.proto3.
MODEL_GRAPH = 7
GRAPH_NODE = 1
GRAPH_INITIALIZER = 5
NODE_OP_TYPE = 4
NODE_ATTRIBUTE = 5
ATTRIBUTE_NAME = 1
ATTRIBUTE_TENSOR = 5
TENSOR_RAW_DATA = 9
_LENGTH_DELIMITED = 2


class ScanError(Exception):
    """The file is not wire-format protobuf this walker understands.

    ``malformed``: it breaks the wire format itself (protobuf would reject it too), so there is
    no point in handing the whole file to ``onnx.load``; otherwise it may be valid protobuf
    this walker leaves to protobuf (groups, a repeated graph field)."""

    def __init__(self, reason: str, malformed: bool = True):
        super().__init__(reason)
        self.malformed = malformed


@dataclass
class MappedFile:
    """A read-only memory map of one file; tensors are numpy views on it."""

    mm: mmap.mmap
    size: int

    @classmethod
    def open(cls, path) -> MappedFile:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        return cls(mm, size)

    def view(self, offset: int, count: int, dtype: np.dtype) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype)
        return np.frombuffer(self.mm, dtype=dtype, count=count, offset=offset)

    def release(self, offset: int, nbytes: int) -> None:
        """Drop the pages of [offset, offset + nbytes) from the resident set (they stay in the page cache)."""
        if self.mm is None or nbytes <= 0 or not hasattr(self.mm, "madvise"):
            return
        start = offset - offset % mmap.PAGESIZE
        end = min(offset + nbytes, self.size)
        try:
            self.mm.madvise(mmap.MADV_DONTNEED, start, end - start)
        except (OSError, ValueError):  # advice only; never fatal
            pass


@dataclass
class Structure:
    model: onnx.ModelProto
    file: MappedFile
    # Per graph initializer (in order): (offset, length) of its raw_data in the file, or None.
    raw_spans: list[tuple[int, int] | None] = field(default_factory=list)
    # Index of a top-level Constant node -> (offset, length) of its value's raw_data.
    constant_spans: dict[int, tuple[int, int]] = field(default_factory=dict)


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise ScanError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ScanError(f"varint too long at byte {pos}")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf, start: int, end: int):
    """(number, wire type, field start, value start, value end) of each field of buf[start:end]."""
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ScanError(f"field number 0 at byte {field_start}")
        value_start = pos
        if wire == 0:
            _, pos = _varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == _LENGTH_DELIMITED:
            length, pos = _varint(buf, pos, end)
            value_start = pos
            pos += length
        elif wire == 5:
            pos += 4
        elif wire in (3, 4):  # deprecated groups: valid protobuf, left to protobuf
            raise ScanError(f"group field at byte {field_start}", malformed=False)
        else:
            raise ScanError(f"invalid wire type {wire} at byte {field_start}")
        if pos > end:
            raise ScanError(f"field at byte {field_start} runs past the end of its message")
        yield number, wire, field_start, value_start, pos


def _delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def _strip_tensor(buf, start: int, end: int) -> tuple[bytes, tuple[int, int] | None]:
    """A TensorProto without its raw_data, and where that was."""
    kept = bytearray()
    raw = None
    for t_number, t_wire, t_start, t_value, t_end in _fields(buf, start, end):
        if t_number == TENSOR_RAW_DATA and t_wire == _LENGTH_DELIMITED:
            raw = (t_value, t_end - t_value)  # the last occurrence wins, as in protobuf
        else:
            kept += buf[t_start:t_end]
    return bytes(kept), raw


def _strip_constant_node(buf, start: int, end: int) -> tuple[bytes, tuple[int, int] | None] | None:
    """A Constant node without its value tensor's raw_data (and where that was), or None for
    any other node: a Constant holding a large tensor would otherwise be copied by the parse."""
    fields = list(_fields(buf, start, end))
    op_types = [bytes(buf[v:e]) for n, w, _, v, e in fields if n == NODE_OP_TYPE and w == _LENGTH_DELIMITED]
    if not op_types or op_types[-1] != b"Constant":
        return None
    out = bytearray()
    span = None
    for number, wire, field_start, value_start, value_end in fields:
        if number != NODE_ATTRIBUTE or wire != _LENGTH_DELIMITED:
            out += buf[field_start:value_end]
            continue
        attribute = list(_fields(buf, value_start, value_end))
        names = [bytes(buf[v:e]) for n, w, _, v, e in attribute if n == ATTRIBUTE_NAME and w == _LENGTH_DELIMITED]
        if not names or names[-1] != b"value":
            out += buf[field_start:value_end]
            continue
        kept = bytearray()
        for a_number, a_wire, a_start, a_value, a_end in attribute:
            if a_number == ATTRIBUTE_TENSOR and a_wire == _LENGTH_DELIMITED:
                tensor, span = _strip_tensor(buf, a_value, a_end)
                kept += _delimited(ATTRIBUTE_TENSOR, tensor)
            else:
                kept += buf[a_start:a_end]
        out += _delimited(NODE_ATTRIBUTE, bytes(kept))
    return bytes(out), span


def _strip_graph(buf, start: int, end: int, spans: list, constant_spans: dict | None = None) -> bytes:
    out = bytearray()
    node_index = 0
    for number, wire, field_start, value_start, value_end in _fields(buf, start, end):
        if number == GRAPH_NODE and wire == _LENGTH_DELIMITED and constant_spans is not None:
            stripped = _strip_constant_node(buf, value_start, value_end)
            if stripped is None:
                out += buf[field_start:value_end]
            else:
                node, span = stripped
                if span is not None:
                    constant_spans[node_index] = span
                out += _delimited(GRAPH_NODE, node)
            node_index += 1
            continue
        if number != GRAPH_INITIALIZER or wire != _LENGTH_DELIMITED:
            out += buf[field_start:value_end]
            continue
        tensor, raw = _strip_tensor(buf, value_start, value_end)
        spans.append(raw)
        out += _delimited(GRAPH_INITIALIZER, tensor)
    return bytes(out)


def read_structure(path) -> Structure:
    """The model without its initializers' raw bytes, and where those bytes are in the file.

    Raises ScanError for anything unexpected, OSError for an unreadable file and
    google.protobuf's DecodeError when protobuf rejects what is left.
    """
    file = MappedFile.open(path)
    if file.mm is None:
        raise ScanError("empty file")
    buf = file.mm
    out = bytearray()
    spans: list[tuple[int, int] | None] = []
    constant_spans: dict[int, tuple[int, int]] = {}
    graphs = 0
    for number, wire, field_start, value_start, value_end in _fields(buf, 0, file.size):
        if number == MODEL_GRAPH and wire == _LENGTH_DELIMITED:
            graphs += 1
            if graphs > 1:  # protobuf would merge repeated message fields; leave that to it
                raise ScanError("several graph fields", malformed=False)
            out += _delimited(MODEL_GRAPH, _strip_graph(buf, value_start, value_end, spans, constant_spans))
        else:
            out += buf[field_start:value_end]
    model = onnx.ModelProto()
    model.ParseFromString(bytes(out))
    if len(model.graph.initializer) != len(spans):
        raise ScanError("initializer count differs from the parse", malformed=False)
    if any(i >= len(model.graph.node) or model.graph.node[i].op_type != "Constant" for i in constant_spans):
        raise ScanError("node count differs from the parse", malformed=False)
    return Structure(model, file, spans, constant_spans)
