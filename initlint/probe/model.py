"""Turn a ModelGraph into something the probe can run: a private copy of the model as a torch
module, the inputs to feed it, and which of its modules and parameters are which graph layers
and tensors. torch is imported only by the functions here, only when the probe runs.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import graph as g
from ..graph import ModelGraph
from .onnx_ops import register_converters, rewrite_ml_ops

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


def _check_declared_input(name: str, shape) -> None:
    """Refuse to allocate an input the file declares larger than the probe can afford."""
    from ..isolation import available_memory

    elements = math.prod(int(d) for d in shape)
    free = available_memory()
    limit = MAX_DECLARED_INPUT_ELEMENTS if not free else min(MAX_DECLARED_INPUT_ELEMENTS, free // (4 * INPUT_MEMORY_FACTOR))
    if elements > limit:
        dims = "x".join(str(d) for d in shape)
        raise ProbeUnavailable(f"the model declares input {name!r} as {dims} ({elements:,} elements), more than the probe allocates ({limit:,}); pass --input-shape to run it smaller")


class ProbeUnavailable(Exception):
    """The model cannot be run by the probe; the message says why (it becomes a note)."""


@dataclass
class Runnable:
    module: Any  # a private torch.nn.Module copy, on the probe's device
    make_inputs: Callable[[int], tuple[tuple, dict]]  # seed -> (args, kwargs)
    # graph layer name -> module name inside ``module`` (only layers that are modules)
    layer_modules: dict[str, str] = field(default_factory=dict)
    # parameter name inside ``module`` -> the user's tensor name (graph.tensors key)
    param_names: dict[str, str] = field(default_factory=dict)
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The user's example exactly as given, for a model that refuses the widened batch.
    exact_inputs: tuple[Callable[[int], tuple[tuple, dict]], dict[str, list[int]]] | None = None


def batch_for(sample_elements: int, budget: int = SAMPLE_ELEMENTS_BUDGET) -> int:
    batch = budget // max(sample_elements, 1)
    return int(min(MAX_BATCH, max(MIN_BATCH, batch)))


def set_probe_mode(module) -> None:
    """Normalization layers use batch statistics, as in training (docs/science.md §10: an ONNX export
    run in inference form makes healthy BatchNorm nets look broken); dropout stays off so the
    measurement is not noise."""
    import torch

    module.eval()
    for sub in module.modules():
        if isinstance(sub, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.instancenorm._InstanceNorm)):
            sub.train()


def prepare(graph: ModelGraph, input_shapes: dict[str, tuple[int, ...]], input_dtype: str | None, device: str) -> Runnable:
    if graph.format == "onnx":
        runnable = _from_onnx(graph, input_shapes, input_dtype)
    elif graph.metadata.get("framework") == "keras" and graph.metadata.get("module") is not None:
        from .keras_model import from_keras

        runnable = from_keras(graph, input_shapes, input_dtype)
    elif graph.metadata.get("module") is not None:
        runnable = _from_torch(graph, input_shapes, input_dtype)
    elif graph.metadata.get("probe_unavailable"):
        raise ProbeUnavailable(graph.metadata["probe_unavailable"])
    else:
        raise ProbeUnavailable(f"the probe cannot run a {graph.format} model (it needs a module:callable spec or an ONNX file)")
    runnable.module.to(device)
    set_probe_mode(runnable.module)
    make = runnable.make_inputs
    runnable.make_inputs = lambda seed: _to_device(make(seed), device)
    return runnable


def _to_device(inputs, device: str):
    if device == "cpu":
        return inputs
    args, kwargs = inputs
    move = lambda v: v.to(device) if hasattr(v, "to") else v  # noqa: E731
    return tuple(move(a) for a in args), {k: move(v) for k, v in kwargs.items()}


# --- torch modules ----------------------------------------------------------------------------


def _from_torch(graph: ModelGraph, input_shapes, input_dtype) -> Runnable:
    import torch

    user_module = graph.metadata["module"]
    try:
        module = copy.deepcopy(user_module)  # never touch the user's model
    except Exception as exc:
        raise ProbeUnavailable(f"the model could not be copied for the probe ({type(exc).__name__}: {exc})") from None
    names = dict(module.named_modules())
    layer_modules = {}
    for layer in graph.layers.values():
        base = layer.name.split("#", 1)[0]
        if base in names and base:
            layer_modules.setdefault(layer.name, base)
    param_names = {name: name for name, _ in module.named_parameters()}
    example = graph.metadata.get("example_input")
    make_inputs, shapes = _torch_inputs(torch, graph, module, example, input_shapes, input_dtype)
    exact = None
    if example is not None and not input_shapes:
        exact = (make_inputs, shapes)
        make_inputs, shapes = _torch_inputs(torch, graph, module, example, input_shapes, input_dtype, widen_batch=True)
    return Runnable(module, make_inputs, layer_modules, param_names, shapes, exact_inputs=exact if shapes != (exact or (None, None))[1] else None)


def _torch_inputs(torch, graph, module, example, input_shapes, input_dtype, widen_batch: bool = False):
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
            _check_declared_input(name, shape)
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
    largest = max(specs, key=lambda spec: math.prod(spec[0][1:]))
    spatial = len(largest[0]) >= 3 and not largest[1].startswith(("int", "uint", "bool"))
    batch = batch_for(math.prod(largest[0][1:]), SPATIAL_ELEMENTS_BUDGET if spatial else SAMPLE_ELEMENTS_BUDGET)
    if batch <= specs[0][0][0]:
        return specs
    return [((batch, *shape[1:]), dtype, high) for shape, dtype, high in specs]


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


# --- ONNX models, through onnx2torch --------------------------------------------------------------


def _from_onnx(graph: ModelGraph, input_shapes, input_dtype) -> Runnable:
    import onnx
    import torch

    try:
        import onnx2torch
    except ImportError:
        raise ProbeUnavailable("running an ONNX model needs onnx2torch (pip install onnx2torch)") from None
    try:
        proto = onnx.load(graph.target)
    except Exception as exc:
        raise ProbeUnavailable(f"the ONNX file could not be loaded with its weights ({type(exc).__name__}: {exc})") from None
    # The loader's own names for the top-level nodes: one naming, shared with the findings.
    layer_of_node = dict(graph.metadata.get("onnx_layer_of_node") or _onnx_layer_names(proto))
    fed = None
    if any(node.op_type == "If" for node in proto.graph.node):
        fed, layer_of_node = _inline_ifs(proto, graph, layer_of_node, input_shapes, input_dtype)
    original_initializers = {init.name for init in proto.graph.initializer}
    for index, node in enumerate(proto.graph.node):
        node.name = f"n{index}"  # module names onnx2torch can use, and that map back to layers
    _training_form(proto)
    _add_missing_converters()
    register_converters()
    rewrite_ml_ops(proto)
    try:  # shapes on every value: converters such as BatchNorm's pick their module by rank
        proto = onnx.shape_inference.infer_shapes(proto)
    except Exception:
        pass
    notes = _older_converters(proto)
    restored = _restore_folded_norms(proto, graph, layer_of_node)
    if restored:
        notes.append(
            f"the probe put back {restored} BatchNorm layers that the eval-mode export folded into convolutions "
            "(as at init: scale 1, shift 0, batch statistics), so it measures the network as it trains (docs/science.md §10)"
        )
    try:
        module = onnx2torch.convert(proto, attach_onnx_mapping=True)
    except NotImplementedError as exc:
        raise ProbeUnavailable(f"onnx2torch cannot convert this model: {' '.join(str(exc).split())[:200]}") from None
    except Exception as exc:
        raise ProbeUnavailable(f"onnx2torch failed on this model ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    param_names = _onnx_parameters(torch, module, proto, original_initializers)
    layer_modules = {}
    for node in proto.graph.node:
        if not node.name[1:].isdigit():
            continue  # a node the probe added (a restored BatchNorm)
        name = layer_of_node.get(int(node.name[1:]))
        if name in graph.layers and hasattr(module, node.name):
            layer_modules[name] = node.name
    make_inputs, shapes = fed or _onnx_inputs(torch, graph, input_shapes, input_dtype)
    first = next(iter(graph.inputs.values()), ((), ""))[0]
    if fed is None and not input_shapes and first and first[0] == 1:
        # Exports often fix the batch at 1; BatchNorm statistics over one sample are nothing like
        # training's. Many graphs still accept a larger batch: use one where they do.
        wider, wider_shapes = _onnx_inputs(torch, graph, input_shapes, input_dtype, widen_batch=True)
        if wider_shapes != shapes and _accepts(torch, module, wider):
            make_inputs, shapes = wider, wider_shapes
            notes.append(f"the export fixes the batch at 1; the graph accepts {list(shapes.values())[0][0]}, which the probe used")
    return Runnable(module, make_inputs, layer_modules, param_names, shapes, notes)


def _inline_ifs(proto, graph, layer_of_node, input_shapes, input_dtype):
    """Ifs whose branch the probe's inputs decide become that branch's nodes (onnx2torch has no
    If). The inputs are chosen as for onnxruntime (sizes the model accepts, selector values such
    as a sample rate), since they decide the branch. Returns ((make_inputs, shapes) or None, the
    layer of each node after inlining)."""
    import torch

    try:
        from .onnxruntime_forward import _feeds, _input_specs, evaluate
        from .onnx_control_flow import inline_static_ifs
    except ImportError:
        return None, layer_of_node
    try:
        specs = _input_specs(proto, graph, dict(input_shapes or {}), input_dtype)
        layer_of_output = dict(graph.metadata.get("onnx_layer_of_output") or {})
        for index, name in layer_of_node.items():
            layer_of_output[proto.graph.node[int(index)].output[0]] = name
        if not inline_static_ifs(proto, _feeds(specs, 0), evaluate):
            return None, layer_of_node
    except Exception:  # no onnxruntime, or sizes it refuses: the conversion says what is missing
        return None, layer_of_node
    layer_of_node = {i: layer_of_output[n.output[0]] for i, n in enumerate(proto.graph.node) if n.output and n.output[0] in layer_of_output}

    def make_inputs(seed: int):
        return tuple(torch.from_numpy(v) for v in _feeds(specs, seed).values()), {}

    return (make_inputs, {name: list(shape) for name, shape, _, _ in specs}), layer_of_node


def _accepts(torch, module, make_inputs) -> bool:
    args, kwargs = make_inputs(0)
    try:
        with torch.no_grad():
            module(*args, **kwargs)
    except Exception:
        return False
    return True


def _add_missing_converters() -> None:
    """Converters onnx2torch lacks for ops common in transformer exports (Gelu is opset 20)."""
    import torch
    from onnx2torch.node_converters import registry
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    if registry.OperationDescription("", "Gelu", 20) in registry._CONVERTER_REGISTRY:
        return

    @registry.add_converter(operation_type="Gelu", version=20)
    def _gelu(node, graph):  # noqa: ARG001
        approximate = node.attributes.get("approximate", "none")
        approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
        return OperationConverterResult(torch_module=torch.nn.GELU(approximate=approximate), onnx_mapping=onnx_mapping_from_node(node=node))


def _older_converters(proto) -> list[str]:
    """onnx2torch registers converters per opset version of an op and lags behind ONNX: where an
    op of this model has no converter at its version, use the newest older one (new versions of
    Identity, Reshape, Relu, ... mostly widen the accepted types) and say so."""
    from onnx import defs
    from onnx2torch.node_converters import registry

    opset = {(op.domain or ""): op.version for op in proto.opset_import}
    table = registry._CONVERTER_REGISTRY
    notes = []
    for op_type in sorted({node.op_type for node in proto.graph.node if node.domain in ("", "ai.onnx")}):
        try:
            since = defs.get_schema(op_type, max_inclusive_version=opset.get("", 1), domain="").since_version
        except Exception:
            continue
        wanted = registry.OperationDescription("", op_type, since)
        if wanted in table:
            continue
        older = sorted(d.version for d in table if d.domain == "" and d.operation_type == op_type and d.version < since)
        if older:
            table[wanted] = table[registry.OperationDescription("", op_type, older[-1])]
            notes.append(f"the probe ran ONNX {op_type} (opset {since}) with onnx2torch's opset-{older[-1]} converter")
    return notes


def _restore_folded_norms(proto, graph: ModelGraph, layer_of_node: dict[int, str]) -> int:
    """Insert a fresh BatchNormalization after every convolution the static signal found to have
    absorbed one at export: without it the probe would measure an inference-form network."""
    from onnx import helper, numpy_helper

    from ..signal import signal_of

    try:
        folded = signal_of(graph).folded_norm
    except Exception:  # no signal, no restoration: the probe then measures the file as it is
        return 0
    if not folded:
        return 0
    nodes = list(proto.graph.node)
    rebuilt = []
    count = 0
    for node in nodes:
        rebuilt.append(node)
        layer = graph.layers.get(layer_of_node.get(int(node.name[1:]), "")) if node.name[1:].isdigit() else None
        if node.op_type != "Conv" or layer is None or layer.name not in folded or layer.weight is None:
            continue
        channels = layer.weight.shape[0]
        prefix = f"{node.name}_restored_bn"
        for suffix, value in (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0)):
            proto.graph.initializer.append(numpy_helper.from_array(np.full(channels, value, np.float32), f"{prefix}.{suffix}"))
        conv_out = node.output[0]
        node.output[0] = f"{prefix}.input"
        rebuilt.append(
            helper.make_node(
                "BatchNormalization",
                [node.output[0], f"{prefix}.scale", f"{prefix}.bias", f"{prefix}.mean", f"{prefix}.var"],
                [conv_out],
                name=prefix,
            )
        )
        count += 1
    del proto.graph.node[:]
    proto.graph.node.extend(rebuilt)
    return count


def _onnx_layer_names(proto) -> dict[int, str]:
    """The layer name the ONNX loader gives each node (node name, or op_index when unnamed)."""
    names: dict[int, str] = {}
    used: set[str] = set()
    for index, node in enumerate(proto.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        while name in used:
            name = f"{name}_{index}"
        used.add(name)
        names[index] = name
    return names


def _training_form(proto) -> None:
    """Run normalization as in training: a training-mode export's BatchNormalization also
    returns running statistics, which onnx2torch cannot convert and the probe does not need.
    Constant nodes become initializers (onnx2torch has no converter for newer opsets' Constant)."""
    from onnx import numpy_helper

    for node in list(proto.graph.node):
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and value is not None and len(node.output) == 1:
            tensor = numpy_helper.to_array(value.t)
            proto.graph.initializer.append(numpy_helper.from_array(tensor, node.output[0]))
            proto.graph.node.remove(node)
    # The TorchScript exporter links shared initializers through Identity nodes (docs/science.md §10);
    # onnx2torch wants the weights of Conv/Gemm as initializers, so point the uses at the source.
    initializers = {init.name for init in proto.graph.initializer}
    graph_outputs = {o.name for o in proto.graph.output}
    alias = {}
    for node in list(proto.graph.node):
        if node.op_type == "Identity" and node.input and node.input[0] in initializers and node.output[0] not in graph_outputs:
            alias[node.output[0]] = node.input[0]
            proto.graph.node.remove(node)
    if alias:
        for node in proto.graph.node:
            for i, name in enumerate(node.input):
                if name in alias:
                    node.input[i] = alias[name]
    # The dynamo exporter writes Reshape(allowzero=1), which onnx2torch refuses; it only differs
    # from allowzero=0 when the target shape holds a 0, so drop it where the shape is a constant without one.
    constants = {init.name: init for init in proto.graph.initializer}
    for node in proto.graph.node:
        allowzero = next((a for a in node.attribute if a.name == "allowzero"), None)
        if node.op_type == "Reshape" and allowzero is not None and len(node.input) > 1 and node.input[1] in constants:
            if 0 not in numpy_helper.to_array(constants[node.input[1]]).reshape(-1).tolist():
                node.attribute.remove(allowzero)
    used = {name for node in proto.graph.node for name in node.input} | graph_outputs
    for node in proto.graph.node:
        if node.op_type == "BatchNormalization" and len(node.output) > 1 and not any(o in used for o in node.output[1:]):
            del node.output[1:]
            kept = [a for a in node.attribute if a.name != "training_mode"]
            del node.attribute[:]
            node.attribute.extend(kept)


def _onnx_parameters(torch, module, proto, trainable: set[str]) -> dict[str, str]:
    """Map each trainable tensor of the converted module to its ONNX initializer name.

    onnx2torch moves a node's weights into its module (Conv, Gemm, BatchNorm: in input order)
    and keeps other initializers as buffers, one per use. The model's own floating-point
    initializers (``trainable``; not the constants folded in for conversion) become
    parameters, as they are in training: a gate such as ReZero's alpha must be able to move.
    """
    initializers = {init.name for init in proto.graph.initializer}
    names: dict[str, str] = {}
    for node in proto.graph.node:
        sub = getattr(module, node.name, None)
        if sub is None:
            continue
        own = list(sub.named_parameters())
        inits = [name for name in node.input[1:] if name in initializers]
        for pname, param in own:
            match = next((n for n in inits if _numel(proto, n) == param.numel()), None)
            if match is not None:
                inits.remove(match)
                names[f"{node.name}.{pname}"] = match
    # Which buffer holds which initializer: read off the converted graph itself (each module
    # call's arguments follow its onnx_mapping inputs), not re-counted here.
    for fx_node in module.graph.nodes:
        if fx_node.op != "call_module":
            continue
        mapping = getattr(module.get_submodule(fx_node.target), "onnx_mapping", None)
        for value, arg in zip(getattr(mapping, "inputs", ()), fx_node.args):
            if value in trainable and getattr(arg, "op", None) == "get_attr" and module.get_buffer(str(arg.target)).is_floating_point():
                names[str(arg.target)] = value  # class labels and indices are not weights
    container = getattr(module, "initializers", None)
    if container is not None:
        for key, value in list(container.named_buffers(recurse=False)):
            if f"initializers.{key}" in names and value.is_floating_point():
                delattr(container, key)
                container.register_parameter(key, torch.nn.Parameter(value.clone()))
    for pname, param in module.named_parameters():
        if pname not in names:
            param.requires_grad_(False)  # not a weight the user knows by name
    return names


def _numel(proto, name: str) -> int:
    for init in proto.graph.initializer:
        if init.name == name:
            n = 1
            for d in init.dims:
                n *= d
            return n
    return -1


def _onnx_inputs(torch, graph, input_shapes, input_dtype, widen_batch: bool = False):
    """Random inputs by the graph's input specs; ``widen_batch`` replaces a batch fixed at 1."""
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
            if widen_batch and dims and dims[0] == 1:
                shape = (batch_for(per_sample), *shape[1:])
            _check_declared_input(name, shape)
        dtype = input_dtype if (input_dtype and position == 0) else dtype
        specs.append((name, shape, dtype))
    if not specs:
        raise ProbeUnavailable("the ONNX model has no graph inputs to feed")

    def make_inputs(seed: int):
        gen = torch.Generator().manual_seed(seed)
        return tuple(_random_tensor(torch, shape, dtype, vocab, gen) for _, shape, dtype in specs), {}

    return make_inputs, {name: list(shape) for name, shape, _ in specs}
