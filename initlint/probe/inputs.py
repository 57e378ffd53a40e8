"""The inputs the probe feeds a model: seeded random tensors shaped after the user's example,
--input-shape, the shapes the file declares, or the model's first layer, with a batch sized so
that the statistics are worth measuring (docs/science.md §8). Shared by the torch probe
(initlint.probe.model) and the forward-only one (initlint.probe.onnxruntime_forward). torch is
imported only by the functions here, only when the probe runs.
"""

from __future__ import annotations

import math

from .. import graph as g


# Raised here and by initlint.probe.model, which builds on this module.
class ProbeUnavailable(Exception):
    """The model cannot be run by the probe; the message says why (it becomes a note)."""


# Small defaults for dimensions nobody fixed (docs/science.md §8: a batch of a few hundred samples
# where the model is small, fewer where one sample is large).
SAMPLE_ELEMENTS_BUDGET = 2**20
MIN_BATCH, MAX_BATCH = 8, 256
# A convolution's statistics pool over positions as well as samples: a 28x28 image gives 784
# values per channel, so a smaller batch measures as well, at a fraction of the cost.
SPATIAL_ELEMENTS_BUDGET = 2**16
DEFAULT_SEQUENCE = 16
# Spatial sizes tried in order for a conv model with no example input: the first one the model
# accepts is used. 224 first for 2-D: the gradient-ratio thresholds were calibrated at the usual
# training size (ResNet-50 ≈ 48 at 224), and global average pooling makes the ratio grow as the
# input shrinks (measured on ResNet-50: 36 at 224, 57 at 112, 109 at 64, 295 at 32).
SPATIAL_CANDIDATES = {
    1: [(64,), (128,), (256,), (1024,), (16000,)],
    2: [(224, 224), (32, 32), (28, 28), (64, 64), (96, 96), (128, 128), (256, 256), (299, 299)],
    3: [(16, 112, 112), (8, 16, 16), (16, 32, 32)],
}


# A shape the model file declares is used as it is, batch included; past this many elements
# (1 GiB of float32, a thousand times the probe's own batches) it is taken as a hostile or
# mistaken declaration, not run. Free memory bounds it further.
MAX_DECLARED_INPUT_ELEMENTS = 2**28
# Activations and gradients of a pass hold many copies of the input's size.
INPUT_MEMORY_FACTOR = 16


def batch_for(sample_elements: int, budget: int = SAMPLE_ELEMENTS_BUDGET) -> int:
    batch = budget // max(sample_elements, 1)
    return int(min(MAX_BATCH, max(MIN_BATCH, batch)))


def check_declared_input(name: str, shape) -> None:
    """Refuse to allocate an input the file declares larger than the probe can afford."""
    from ..isolation import available_memory

    elements = math.prod(int(d) for d in shape)
    free = available_memory()
    limit = MAX_DECLARED_INPUT_ELEMENTS if not free else min(MAX_DECLARED_INPUT_ELEMENTS, free // (4 * INPUT_MEMORY_FACTOR))
    if elements > limit:
        dims = "x".join(str(d) for d in shape)
        raise ProbeUnavailable(f"the model declares input {name!r} as {dims} ({elements:,} elements), more than the probe allocates ({limit:,}); pass --input-shape to run it smaller")


def torch_inputs(torch, graph, module, example, input_shapes, input_dtype, widen_batch: bool = False):
    """From the user's example input, then --input-shape, then the first layer. ``widen_batch``:
    the example's samples, but as many as the probe's own batches hold (an example made for
    tracing often has one or two, and statistics over two samples, BatchNorm's included, are
    nothing like training's)."""
    vocab = _vocabulary(graph)
    if example is not None:
        if isinstance(example, torch.Tensor):
            specs = [(tuple(example.shape), _dtype_name(example.dtype), _id_range(example, vocab))]
            kw_names: list[str | None] = [None]
        elif isinstance(example, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in example):
            specs = [(tuple(t.shape), _dtype_name(t.dtype), _id_range(t, vocab)) for t in example]
            kw_names = [None] * len(specs)
        elif isinstance(example, dict) and all(isinstance(t, torch.Tensor) for t in example.values()):
            specs = [(tuple(t.shape), _dtype_name(t.dtype), _id_range(t, vocab)) for t in example.values()]
            kw_names = list(example.keys())
        else:
            raise ProbeUnavailable(f"the example input ({type(example).__name__}) is not a tensor, a tuple of tensors or a dict of tensors")
        if widen_batch:
            specs = _widened(specs)
    elif input_shapes:
        specs, kw_names = [], []
        for name, shape in input_shapes.items():
            dtype = input_dtype or ("int64" if _first_weighted_kind(graph) == g.EMBEDDING else "float32")
            specs.append((tuple(shape), dtype, vocab))
            kw_names.append(name or None)
    elif graph.inputs and all(dims and all(dims[1:]) for dims, _ in graph.inputs.values()):
        # A .pt2 archive records the shapes it was exported with, a Keras model its Input's (the
        # batch left open): positional, in order.
        specs = [(tuple(d or batch_for(math.prod(dims[1:])) for d in dims), input_dtype or dtype, vocab) for dims, dtype in graph.inputs.values()]
        for name, (shape, _, _) in zip(graph.inputs, specs):
            check_declared_input(name, shape)
        kw_names = [None] * len(specs)
    else:
        shape, dtype = _shape_from_first_layer(graph, module)
        specs, kw_names = [(shape, input_dtype or dtype, vocab)], [None]
    shapes = {(kw or f"input{i}"): list(s[0]) for i, (s, kw) in enumerate(zip(specs, kw_names))}

    def make_inputs(seed: int):
        gen = torch.Generator().manual_seed(seed)
        args, kwargs = [], {}
        for (shape, dtype, high), kw in zip(specs, kw_names):
            value = _random_tensor(torch, shape, dtype, high, gen)
            if kw is None:
                args.append(value)
            else:
                kwargs[kw] = value
        return tuple(args), kwargs

    return make_inputs, shapes


def _widened(specs: list) -> list:
    """The specs with their shared leading (batch) dimension raised to the probe's batch for
    the largest sample: 2^20 elements for flat inputs, 2^16 for images, whose statistics pool
    over positions too. Unchanged where the inputs do not share a leading dimension."""
    if not specs or any(len(shape) < 2 for shape, _, _ in specs) or len({shape[0] for shape, _, _ in specs}) != 1:
        return specs
    shape, dtype, _ = max(specs, key=lambda spec: math.prod(spec[0][1:]))
    batch = batch_for(math.prod(shape[1:]), _elements_budget(shape, dtype))
    if batch <= specs[0][0][0]:
        return specs
    return [((batch, *shape[1:]), dtype, high) for shape, dtype, high in specs]


def _elements_budget(shape, dtype) -> int:
    """Input elements per batch: fewer for images (float inputs with positions), whose
    statistics pool over positions too."""
    spatial = len(shape) >= 3 and not str(dtype).startswith(("int", "uint", "bool"))
    return SPATIAL_ELEMENTS_BUDGET if spatial else SAMPLE_ELEMENTS_BUDGET


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _id_range(tensor, vocab: int | None) -> int | None:
    if tensor.dtype.is_floating_point:
        return None
    return vocab or int(tensor.max().item()) + 1


def _random_tensor(torch, shape, dtype: str, high: int | None, gen):
    if dtype.startswith(("int", "uint")) or dtype == "bool":
        top = 2 if dtype == "bool" else max(int(high or 2), 1)
        value = torch.randint(0, top, shape, generator=gen)
        return value.bool() if dtype == "bool" else value.to(getattr(torch, dtype, torch.int64))
    value = torch.randn(shape, generator=gen)
    return value.to(getattr(torch, dtype, torch.float32))


def _vocabulary(graph) -> int | None:
    """Token ids must index every embedding: the smallest table bounds them."""
    sizes = [layer.weight.shape[0] for layer in graph.layers.values() if layer.kind == g.EMBEDDING and layer.weight is not None and layer.weight.ndim == 2]
    return min(sizes) if sizes else None


def _first_weighted_kind(graph) -> str | None:
    first = next(iter(graph.weighted_layers()), None)
    return first.kind if first is not None else None


def _shape_from_first_layer(graph, module) -> tuple[tuple[int, ...], str]:
    import torch

    nn = torch.nn
    global_pools = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
    first = None
    for _, sub in module.named_modules():
        if isinstance(sub, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding, nn.EmbeddingBag, nn.RNNBase, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            first = sub
            break
    if first is None:
        raise ProbeUnavailable("no example input and no Linear, Conv or Embedding layer to infer one from (use --input-shape)")
    if isinstance(first, (nn.Embedding, nn.EmbeddingBag)):
        return (batch_for(DEFAULT_SEQUENCE), DEFAULT_SEQUENCE), "int64"
    if isinstance(first, nn.Linear):
        return (batch_for(first.in_features), first.in_features), "float32"
    if isinstance(first, nn.RNNBase):
        per_sample = DEFAULT_SEQUENCE * first.input_size
        batch = batch_for(per_sample)
        return ((batch, DEFAULT_SEQUENCE, first.input_size) if first.batch_first else (DEFAULT_SEQUENCE, batch, first.input_size)), "float32"
    channels = first.in_channels
    tried = []
    candidates = SPATIAL_CANDIDATES[first.weight.ndim - 2]
    if not any(isinstance(sub, global_pools) for sub in module.modules()):
        # Without a global pooling the per-position statistics the ratios are made of do not
        # depend on the spatial size: the smallest size the model accepts costs the least.
        candidates = sorted(candidates, key=math.prod)
    for spatial in candidates:
        try:  # a model with a Flatten + Linear accepts one size only: find it on a batch of 2
            with torch.no_grad():
                module(torch.zeros((2, channels, *spatial)))
        except Exception:
            tried.append("x".join(map(str, spatial)))
            continue
        per_sample = channels * math.prod(spatial)
        return (batch_for(per_sample, SPATIAL_ELEMENTS_BUDGET), channels, *spatial), "float32"
    raise ProbeUnavailable(f"no example input, and the model accepted none of the input sizes tried ({', '.join(tried)}); use --input-shape")


def onnx_inputs(torch, graph, input_shapes, input_dtype, widen_batch: bool = False):
    """Random inputs by the graph's input specs; ``widen_batch`` replaces a batch fixed smaller
    than the probe's own (an export traced with one or a few samples)."""
    vocab = _vocabulary(graph)
    specs = []
    for position, (name, (dims, dtype)) in enumerate(graph.inputs.items()):
        given = input_shapes.get(name) or (input_shapes.get("") if position == 0 else None)
        if given is not None:
            shape = tuple(given)
        else:
            known = [d for d in dims[1:] if d]
            per_sample = int(math.prod(known)) if known else 1
            shape = tuple(d if d else (batch_for(per_sample) if i == 0 else DEFAULT_SEQUENCE) for i, d in enumerate(dims))
            if widen_batch and dims and dims[0]:
                shape = (max(dims[0], batch_for(per_sample, _elements_budget(dims, dtype))), *shape[1:])
            check_declared_input(name, shape)
        dtype = input_dtype if (input_dtype and position == 0) else dtype
        specs.append((name, shape, dtype))
    if not specs:
        raise ProbeUnavailable("the ONNX model has no graph inputs to feed")

    def make_inputs(seed: int):
        gen = torch.Generator().manual_seed(seed)
        return tuple(_random_tensor(torch, shape, dtype, vocab, gen) for _, shape, dtype in specs), {}

    return make_inputs, {name: list(shape) for name, shape, _ in specs}
