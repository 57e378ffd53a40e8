"""The framework-neutral model graph that every rule reads.

Loaders (ONNX, PyTorch) build a :class:`ModelGraph`; rules only read it. A graph is an ordered
set of :class:`Layer` objects (topological order) joined by edges, plus every parameter tensor
of the model as a lazily read :class:`Tensor` whose statistics are computed once and cached.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from .stats import CHUNK_ELEMENTS, TensorStats, compute_stats

# Layer kinds. Weighted kinds own a weight whose fans are known.
LINEAR = "linear"
CONV = "conv"
CONV_TRANSPOSE = "conv_transpose"
EMBEDDING = "embedding"
RNN = "rnn"
ATTENTION = "attention"
NORM = "norm"
ACTIVATION = "activation"
ADD = "add"  # residual addition of two computed values
MUL = "mul"  # elementwise product (gates, scales)
CONCAT = "concat"
POOL = "pool"
MATMUL = "matmul"  # product of two computed values (attention scores)
SOFTMAX = "softmax"
PASSTHROUGH = "passthrough"  # reshape, dropout, cast, transpose, identity, bias add, ...
OUTPUT = "output"
OTHER = "other"

WEIGHTED_KINDS = frozenset({LINEAR, CONV, CONV_TRANSPOSE, EMBEDDING, RNN, ATTENTION})
# Ops that do not change which activation follows a layer.
TRANSPARENT_KINDS = frozenset({PASSTHROUGH, POOL})

# Canonical activation names (Layer.attrs["activation"]), shared by both loaders.
RELU_FAMILY = frozenset({"relu", "relu6", "leaky_relu", "prelu"})
SATURATING = frozenset({"sigmoid", "tanh", "hardsigmoid", "hardtanh"})


_BATCH_NORM_OPS = ("batchnorm", "batch_norm", "batchnormalization", "syncbatchnorm")


def is_batch_norm(layer: "Layer") -> bool:
    """A normalization over the batch (per channel), not across a sample's units."""
    return layer.op.lower().replace("2d", "").replace("1d", "").replace("3d", "") in _BATCH_NORM_OPS


def conv_fans(weight_shape: tuple[int, ...], groups: int = 1, transposed: bool = False) -> tuple[int, int]:
    """(fan_in, fan_out) of a convolution or matrix weight, counted per group (docs/science.md §2).

    A convolution stores [C_out, C_in/groups, k...] in torch and ONNX alike: fan_in is
    C_in/groups times the kernel size, fan_out C_out/groups times it (torch's own formula
    overstates a depthwise fan_out by the number of groups). A transposed convolution stores
    [C_in, C_out/groups, k...]: the roles swap. A 2-D weight is a matrix [out, in].
    """
    groups = max(int(groups), 1)
    receptive = math.prod(int(d) for d in weight_shape[2:])
    if transposed:
        return (int(weight_shape[0]) // groups) * receptive, int(weight_shape[1]) * receptive
    return int(weight_shape[1]) * receptive, (int(weight_shape[0]) // groups) * receptive


class Tensor:
    """A parameter tensor, read only when its values or statistics are asked for.

    ``reader`` returns the values as a numpy array, ideally a view on the file's bytes;
    ``shape`` and ``dtype`` cost no IO.
    """

    def __init__(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: str,
        reader: Callable[[], np.ndarray],
        convert: Callable[[np.ndarray], np.ndarray] | None = None,
        release: Callable[[int, int], None] | None = None,
        affine: "Affine | None" = None,
    ):
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.dtype = dtype
        self._reader = reader
        # Applied to each chunk of the stored values (e.g. bfloat16 bits -> float32), so a
        # large tensor is never converted whole.
        self._convert = convert
        # Called with a flat element range [start, stop) once the pass no longer needs it, so
        # memory-mapped pages leave the resident set instead of piling up to the model's size.
        self._release = release
        # Stored integers and how they map to reals (a quantized weight): applied per chunk too.
        self._affine = affine
        # Axes other than 0 that index a layer's units (e.g. -1 for a MatMul weight stored
        # [in, out]): their per-unit statistics come out of the same single pass.
        self.unit_axes: set[int] = set()

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # exact: numpy's int64 product can wrap on hostile shapes

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def values(self) -> np.ndarray:
        """The values as an array of self.shape (a float32 copy only for bfloat16 sources)."""
        stored = np.asarray(self._reader())
        values = (self._convert(stored) if self._convert else stored).reshape(self.shape)
        return self._affine.apply(values, self.ndim, 0, 0) if self._affine else values

    def chunks(self, axis: int = 0, reuse: bool = False) -> Iterator[np.ndarray]:
        """Whole rows (slices along ``axis``) at a time, each converted to float64 on its own:
        memory stays bounded by one chunk, never a float64 copy of the whole tensor.

        ``reuse``: every chunk is written into the same buffer, valid only until the next chunk
        is asked for (for single-pass consumers: it spares the allocator a fresh MB per chunk)."""
        stored = np.asarray(self._reader())
        if self.ndim < 2:
            stored, row_len = stored.reshape(-1), 1  # one row: any split will do
        else:
            # Views: moving an axis or slicing rows of the stored bytes copies nothing.
            stored = np.moveaxis(stored.reshape(self.shape), axis, 0)
            row_len = self.size // stored.shape[0] if stored.shape[0] else 0
        if not self.size:
            return
        step = max(1, CHUNK_ELEMENTS // max(row_len, 1))
        buffer = np.empty(min(step, stored.shape[0]) * row_len, np.float64) if reuse else None
        for start in range(0, stored.shape[0], step):
            part = stored[start : start + step]
            part = self._convert(part) if self._convert else part
            if self._affine is not None:
                part = self._affine.apply(part, self.ndim, axis, start)
            if buffer is None:
                yield np.ascontiguousarray(part, dtype=np.float64).reshape(-1)
            else:
                out = buffer[: part.size].reshape(part.shape)
                np.copyto(out, part, casting="unsafe")
                yield out.reshape(-1)
            if self._release and axis == 0:
                self._release(start * row_len, (start + part.shape[0]) * row_len)
        if self._release and axis != 0:  # strided reads touched every page until the end
            self._release(0, self.size)

    @functools.cached_property
    def stats(self) -> TensorStats:
        return compute_stats(self.shape, self.chunks(reuse=True), self.unit_axes)

    def stats_along(self, axis: int) -> TensorStats:
        """Statistics with ``axis`` as the unit (row) axis; axis 0 is the shared single pass."""
        axis = axis % self.ndim if self.ndim else 0
        if axis == 0:
            return self.stats
        if "stats" not in self.__dict__:
            self.unit_axes.add(axis)  # not read yet: one pass serves both axes
        if axis in self.stats.along:
            return self.stats.along[axis]
        cache = self.__dict__.setdefault("_stats_along", {})
        if axis not in cache:  # values were read before this axis was asked for, or hold NaN/inf
            moved_shape = (self.shape[axis], *self.shape[:axis], *self.shape[axis + 1 :])
            cache[axis] = compute_stats(moved_shape, self.chunks(axis, reuse=True))
        return cache[axis]


@dataclass(frozen=True)
class Affine:
    """real = (stored - zero_point) · scale: a quantized tensor (ONNX DequantizeLinear), per
    tensor (``axis`` None) or per slice along ``axis``, applied to one chunk at a time so no
    float copy of the whole tensor is made."""

    scale: np.ndarray  # scalar, or one value per slice along ``axis``
    zero_point: np.ndarray
    axis: int | None = None

    def apply(self, part: np.ndarray, ndim: int, chunk_axis: int, start: int) -> np.ndarray:
        """``part``: rows [start, start + len(part)) along ``chunk_axis`` (moved to the front),
        or a flat run of elements from ``start`` when the tensor has fewer than 2 dimensions."""
        scale, zero = self.scale.reshape(-1), self.zero_point.reshape(-1)
        if self.axis is None or scale.size == 1:
            return (part.astype(np.float32) - zero[:1].astype(np.float32)) * scale[:1].astype(np.float32)
        axis = self.axis % max(ndim, 1)
        shape = [1] * part.ndim
        if ndim < 2 or axis == chunk_axis % ndim:  # the slices run along the chunked axis
            stop = start + part.shape[0]
            scale, zero = scale[start:stop], zero[start:stop] if zero.size > 1 else zero
            shape[0] = -1
        else:  # moved to the front, the other axes keep their order
            others = [a for a in range(ndim) if a != chunk_axis % ndim]
            shape[1 + others.index(axis)] = -1
        zero = zero.reshape(shape) if zero.size > 1 else zero[:1]
        return (part.astype(np.float32) - zero.astype(np.float32)) * scale.reshape(shape).astype(np.float32)


@dataclass
class Layer:
    """One operation of the model, named as the user named it."""

    name: str
    kind: str
    op: str  # the source op: "Gemm", "Conv", "Linear", "aten.relu", ...
    params: dict[str, Tensor] = field(default_factory=dict)  # role -> tensor ("weight", "bias", ...)
    fan_in: int | None = None
    fan_out: int | None = None
    attrs: dict = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)  # names of producer layers, in argument order
    # Inputs that are constants rather than computed values (for Add/Mul/Concat judgements).
    const_inputs: dict[int, Tensor] = field(default_factory=dict)
    source: str | None = None  # "file.py:line" where the layer was defined, when known
    # Axis of the weight that indexes output units: 0 for torch Linear/Conv and ONNX Gemm
    # with transB, -1 for a MatMul weight stored [in, out], 1 for ConvTranspose.
    unit_axis: int = 0

    @property
    def weight(self) -> Tensor | None:
        return self.params.get("weight")

    @property
    def bias(self) -> Tensor | None:
        return self.params.get("bias")

    @property
    def units(self) -> int | None:
        """Number of output units (neurons, filters) of a weighted layer."""
        if self.weight is None or not self.weight.ndim:
            return None
        units = self.weight.shape[self.unit_axis]
        return units * int(self.attrs.get("groups", 1)) if self.kind == CONV_TRANSPOSE else units

    def unit_stats(self) -> TensorStats | None:
        """Weight statistics with one row per output unit."""
        return self.weight.stats_along(self.unit_axis) if self.weight is not None and self.weight.ndim >= 2 else None

    @property
    def activation(self) -> str | None:
        return self.attrs.get("activation")

    @property
    def is_weighted(self) -> bool:
        return self.kind in WEIGHTED_KINDS and self.weight is not None


@dataclass
class ModelGraph:
    target: str
    format: str  # "onnx", "torch", "pt2", "torchscript", "state_dict", "safetensors"
    layers: dict[str, Layer] = field(default_factory=dict)
    # Every parameter of the model by its own name, including those no layer claims.
    tensors: dict[str, Tensor] = field(default_factory=dict)
    # False when only weights are known (a state dict): structure rules do not run.
    has_structure: bool = True
    notes: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    # Graph inputs: name -> (shape with None for dynamic dims, numpy dtype name).
    inputs: dict[str, tuple[tuple, str]] = field(default_factory=dict)

    def add(self, layer: Layer) -> Layer:
        if layer.name in self.layers:
            raise ValueError(f"duplicate layer name {layer.name!r}")
        self.layers[layer.name] = layer
        for role, tensor in layer.params.items():
            self.tensors.setdefault(tensor.name, tensor)
        if layer.weight is not None and layer.weight.ndim >= 2 and layer.unit_axis % layer.weight.ndim:
            layer.weight.unit_axes.add(layer.unit_axis % layer.weight.ndim)
        for cached in ("_consumers", "depth", "labels"):
            self.__dict__.pop(cached, None)
        return layer

    @functools.cached_property
    def _consumers(self) -> dict[str, list[Layer]]:
        # Keyed by name, each consumer once (a layer may read one producer twice): linear in
        # the edges, where comparing Layer dataclasses in a list was quadratic in a value's readers.
        consumers: dict[str, dict[str, Layer]] = {name: {} for name in self.layers}
        for layer in self.layers.values():
            for producer in layer.inputs:
                if producer in consumers:
                    consumers[producer].setdefault(layer.name, layer)
        return {name: list(readers.values()) for name, readers in consumers.items()}

    def consumers(self, layer: Layer) -> list[Layer]:
        return self._consumers.get(layer.name, [])

    def producers(self, layer: Layer) -> list[Layer]:
        return [self.layers[name] for name in layer.inputs if name in self.layers]

    def weighted_layers(self) -> list[Layer]:
        return [layer for layer in self.layers.values() if layer.is_weighted]

    def downstream(self, layer: Layer, through: frozenset[str] = TRANSPARENT_KINDS) -> list[Layer]:
        """The first layers after ``layer`` that are not of a kind in ``through``."""
        found: list[Layer] = []
        stack = deque(self.consumers(layer))
        seen: set[str] = set()
        while stack:
            nxt = stack.popleft()
            if nxt.name in seen:
                continue
            seen.add(nxt.name)
            if nxt.kind in through:
                stack.extend(self.consumers(nxt))
            else:
                found.append(nxt)
        return found

    def upstream(self, layer: Layer, through: frozenset[str] = TRANSPARENT_KINDS) -> list[Layer]:
        """The nearest layers before ``layer`` that are not of a kind in ``through``."""
        found: list[Layer] = []
        stack = deque(self.producers(layer))
        seen: set[str] = set()
        while stack:
            prev = stack.popleft()
            if prev.name in seen:
                continue
            seen.add(prev.name)
            if prev.kind in through:
                stack.extend(self.producers(prev))
            else:
                found.append(prev)
        return found

    def activation_after(self, layer: Layer) -> Layer | None:
        """The activation applied to ``layer``'s output (through reshapes, dropout, pooling, casts)."""
        following = self.downstream(layer)
        if len(following) == 1 and following[0].kind == ACTIVATION:
            return following[0]
        return None

    @functools.cached_property
    def depth(self) -> dict[str, int]:
        """Per layer: the number of weighted layers on the longest path ending at it."""
        depth: dict[str, int] = {}
        for layer in self.layers.values():  # topological order
            before = max((depth.get(p, 0) for p in layer.inputs), default=0)
            depth[layer.name] = before + (1 if layer.is_weighted else 0)
        return depth

    @property
    def max_depth(self) -> int:
        return max(self.depth.values(), default=0)

    @functools.cached_property
    def labels(self) -> dict[str, str]:
        """Per layer: its name as the user knows it, the module its weight belongs to (``fc1``
        for ``fc1.weight``, ``dense`` for ``dense/kernel``), so that notes and probe rows name a
        layer as findings name its parameters. A layer without such a weight, or whose module
        would name two layers (tied weights), keeps its graph name (``/fc1/Relu``)."""
        modules = {}
        for layer in self.layers.values():
            weight = layer.weight
            separator = max(weight.name.rfind("."), weight.name.rfind("/")) if weight is not None else -1
            if separator > 0:
                modules[layer.name] = weight.name[:separator]
        taken = Counter(modules.values())
        return {
            name: modules[name] if name in modules and taken[modules[name]] == 1 and self.layers.get(modules[name], self.layers[name]) is self.layers[name] else name
            for name in self.layers
        }

    def label(self, name: str) -> str:
        """The user-facing name of the layer called ``name`` in the graph (see :attr:`labels`)."""
        return self.labels.get(name, name)
