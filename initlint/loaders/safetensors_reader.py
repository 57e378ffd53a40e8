"""Read ``.safetensors`` files with numpy alone (no torch, no safetensors package).

Format: an 8-byte little-endian header length N, N bytes of JSON
(``{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}``),
then the raw tensor bytes, offsets counted from the end of the header. The file is
memory-mapped; every declared shape, dtype and offset is checked against the bytes actually
present before any tensor is touched, so a tiny file that claims a huge tensor is an error.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os

import numpy as np

from ..errors import InitlintError
from ..graph import ModelGraph, Tensor
from .weights_only import add_weight_layers

MAX_HEADER_BYTES = 100 * 2**20  # the reference implementation's limit
MAX_DIMS = 64  # numpy's (and torch's) limit
MAX_DIM = 2**62  # past it, element counts overflow the int64 that array libraries index with

# safetensors dtype -> (numpy storage dtype, name reported by initlint)
DTYPES = {
    "F64": (np.dtype("<f8"), "float64"),
    "F32": (np.dtype("<f4"), "float32"),
    "F16": (np.dtype("<f2"), "float16"),
    "BF16": (np.dtype("<u2"), "bfloat16"),
    "I64": (np.dtype("<i8"), "int64"),
    "I32": (np.dtype("<i4"), "int32"),
    "I16": (np.dtype("<i2"), "int16"),
    "I8": (np.dtype("i1"), "int8"),
    "U64": (np.dtype("<u8"), "uint64"),
    "U32": (np.dtype("<u4"), "uint32"),
    "U16": (np.dtype("<u2"), "uint16"),
    "U8": (np.dtype("u1"), "uint8"),
    "BOOL": (np.dtype("?"), "bool"),
}
FLOAT8 = {"F8_E4M3", "F8_E5M2"}


def load_safetensors(path: str) -> ModelGraph:
    # A header may list a million tensors: the cyclic garbage collector would rescan every
    # object made so far again and again while they are built (minutes instead of seconds),
    # and nothing made here is cyclic garbage.
    with _collector_paused():
        return _load(path)


@contextlib.contextmanager
def _collector_paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load(path: str) -> ModelGraph:
    header, data_start, file_size = read_header(path)
    data_len = file_size - data_start
    graph = ModelGraph(target=path, format="safetensors", has_structure=False)
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not isinstance(metadata, dict):
        raise InitlintError(path, "corrupt safetensors header: __metadata__ is not an object")
    graph.metadata["safetensors_metadata"] = metadata or {}
    mapped = np.memmap(path, dtype=np.uint8, mode="r") if data_len > 0 else np.zeros(0, np.uint8)
    skipped: list[str] = []
    for name, entry in header.items():
        dtype_code, shape, begin, end = _validate_entry(path, name, entry, data_len)
        if dtype_code in FLOAT8:
            skipped.append(name)
            continue
        storage, dtype_name = DTYPES[dtype_code]
        graph.tensors[name] = Tensor(name, shape, dtype_name, _reader(mapped, data_start + begin, data_start + end, storage, dtype_name))
    add_weight_layers(graph)
    graph.notes.append("a .safetensors file holds weights only: the structure rules need the model (a module:callable spec, .pt2 or ONNX)")
    if skipped:
        graph.notes.append(f"{len(skipped)} float8 tensor(s) not checked: {', '.join(skipped[:5])}")
    return graph


def read_header(path: str) -> tuple[dict, int, int]:
    """The parsed JSON header, where the data starts, and the file size."""
    try:
        file_size = os.path.getsize(path)
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise InitlintError(path, f"not a safetensors file: {file_size} bytes, shorter than the 8-byte header length")
            header_len = int.from_bytes(prefix, "little")
            if header_len > MAX_HEADER_BYTES or header_len > file_size - 8:
                raise InitlintError(path, f"corrupt safetensors file: header length {header_len:,} does not fit in the {file_size:,}-byte file")
            raw = handle.read(header_len)
    except OSError as exc:
        raise InitlintError(path, f"cannot read the file ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InitlintError(path, f"corrupt safetensors header: not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise InitlintError(path, "corrupt safetensors header: not a JSON object")
    return header, 8 + header_len, file_size


def _validate_entry(path: str, name: str, entry, data_len: int) -> tuple[str, tuple[int, ...], int, int]:
    def bad(why: str) -> InitlintError:
        return InitlintError(path, f"corrupt safetensors header: tensor {name!r} {why}")

    if not isinstance(entry, dict):
        raise bad("is not an object")
    dtype_code = entry.get("dtype")
    if not isinstance(dtype_code, str) or (dtype_code not in DTYPES and dtype_code not in FLOAT8):
        raise bad(f"has unknown dtype {dtype_code!r}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad(f"has an invalid shape {str(shape)[:80]}")
    if len(shape) > MAX_DIMS:
        raise bad(f"has {len(shape)} dimensions (at most {MAX_DIMS} are supported)")
    if any(d > MAX_DIM for d in shape):
        raise bad(f"has a dimension of {max(shape):.3g}, more elements than any array can hold")
    offsets = entry.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise bad(f"has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise bad(f"lies outside the file (bytes {begin:,}..{end:,} of {data_len:,})")
    itemsize = 1 if dtype_code in FLOAT8 else DTYPES[dtype_code][0].itemsize
    count = 1
    for d in shape:  # python ints: no overflow on absurd shapes
        count *= d
    if count * itemsize != end - begin:
        raise bad(f"declares shape {shape} ({count:,} x {itemsize} bytes) but spans {end - begin:,} bytes")
    return dtype_code, tuple(shape), begin, end


def _reader(mapped: np.ndarray, start: int, stop: int, storage: np.dtype, dtype_name: str):
    def read() -> np.ndarray:
        raw = mapped[start:stop].view(storage)  # a view on the mapped file, no copy
        if dtype_name == "bfloat16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        if dtype_name == "float16":
            return raw.astype(np.float32)
        return raw

    return read
