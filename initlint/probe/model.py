"""Turn a ModelGraph into something the probe can run: a private copy of the model as a torch
module (directly, or from ONNX through onnx2torch), the inputs to feed it (made by
initlint.probe.inputs), and which of its modules and parameters are which graph layers and
tensors. torch is imported only by the functions here, only when the probe runs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..graph import ModelGraph
from .inputs import ProbeUnavailable, onnx_inputs, torch_inputs
from .onnx_ops import register_converters, rewrite_ml_ops


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


def private_copy(module):
    """A deep copy of ``module`` that the probe may change. Tensors a forward pass left in a
    module's attributes (timm's LeViT caches its attention biases) carry autograd history, which
    deepcopy refuses: they are copied detached."""
    import torch

    memo = {}
    for sub in module.modules():
        for value in vars(sub).values():
            candidates = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else (value,)
            for tensor in candidates:
                if isinstance(tensor, torch.Tensor) and tensor.grad_fn is not None:
                    memo[id(tensor)] = tensor.detach().clone()
    return copy.deepcopy(module, memo)


def _from_torch(graph: ModelGraph, input_shapes, input_dtype) -> Runnable:
    import torch

    user_module = graph.metadata["module"]
    try:
        module = private_copy(user_module)  # never touch the user's model
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
    make_inputs, shapes = torch_inputs(torch, graph, module, example, input_shapes, input_dtype)
    exact = None
    if example is not None and not input_shapes:
        wider, wider_shapes = torch_inputs(torch, graph, module, example, input_shapes, input_dtype, widen_batch=True)
        if wider_shapes != shapes:
            exact, (make_inputs, shapes) = (make_inputs, shapes), (wider, wider_shapes)
    return Runnable(module, make_inputs, layer_modules, param_names, shapes, exact_inputs=exact)


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
    # Named as the graph names them: the loader gives weights the exporter named (onnx::Conv_12)
    # their module's parameter name, and findings' claims use that name.
    renamed = {layer.attrs[f"exporter_{role}_name"]: tensor.name for layer in graph.layers.values() for role, tensor in layer.params.items()
               if f"exporter_{role}_name" in layer.attrs}
    param_names = {inner: renamed.get(name, name) for inner, name in _onnx_parameters(torch, module, proto, original_initializers).items()}
    layer_modules = {}
    for node in proto.graph.node:
        if not node.name[1:].isdigit():
            continue  # a node the probe added (a restored BatchNorm)
        name = layer_of_node.get(int(node.name[1:]))
        if name in graph.layers and hasattr(module, node.name):
            layer_modules[name] = node.name
    make_inputs, shapes = fed or onnx_inputs(torch, graph, input_shapes, input_dtype)
    first = next(iter(graph.inputs.values()), ((), ""))[0]
    if fed is None and not input_shapes and first and first[0]:
        # Exports often fix the batch at the one or few samples they were traced with; statistics
        # over those (BatchNorm's, "inactive on every sample") are nothing like training's. Many
        # graphs still accept a larger batch: use one where they do.
        wider, wider_shapes = onnx_inputs(torch, graph, input_shapes, input_dtype, widen_batch=True)
        if wider_shapes != shapes and _accepts(torch, module, wider):
            make_inputs, shapes = wider, wider_shapes
            notes.append(f"the export fixes the batch at {first[0]}; the graph accepts {list(shapes.values())[0][0]}, which the probe used")
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
    # The TorchScript exporter stores equal initializers once and links the others to it through
    # Identity nodes (docs/science.md §10): the zero convolutions of a zero-gain ResNet share one.
    # onnx2torch wants the weights of Conv/Gemm as initializers, and each was a parameter of its
    # own in the model: each alias becomes an initializer of its own, under its own name (the
    # name the loader reports the layer's weight by).
    initializers = {init.name: init for init in proto.graph.initializer}
    graph_outputs = {o.name for o in proto.graph.output}
    for node in list(proto.graph.node):
        if node.op_type == "Identity" and node.input and node.input[0] in initializers and node.output[0] not in graph_outputs:
            proto.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(initializers[node.input[0]]), node.output[0]))
            proto.graph.node.remove(node)
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
