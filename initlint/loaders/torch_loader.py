"""Read PyTorch models into a ModelGraph. torch is imported only here, only when needed."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import operator
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import graph as g
from ..errors import InitlintError, require_torch
from ..graph import Layer, ModelGraph, Tensor


def load_spec(spec: str, options) -> ModelGraph:
    """``package.module:callable`` or ``path/to/file.py:callable`` returning an nn.Module."""
    torch = require_torch(spec)
    module_part, _, attr = spec.rpartition(":")
    try:
        if module_part.endswith(".py"):
            path = Path(module_part)
            if not path.is_file():
                raise InitlintError(spec, f"no such file {module_part!r}")
            name = f"_initlint_spec_{abs(hash(str(path.resolve())))}"
            loader_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            sys.path.insert(0, str(path.parent.resolve()))
            try:
                loader_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.parent.resolve()))
        else:
            sys.path.insert(0, ".")
            try:
                module = importlib.import_module(module_part)
            finally:
                sys.path.remove(".")
    except InitlintError:
        raise
    except ImportError as exc:
        raise InitlintError(spec, f"cannot import {module_part!r}: {exc}") from None
    except Exception as exc:
        raise InitlintError(spec, f"importing {module_part!r} raised {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InitlintError(spec, f"{module_part!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InitlintError(spec, f"{attr!r} is not callable")
    try:
        model = obj() if not isinstance(obj, torch.nn.Module) else obj
    except Exception as exc:
        raise InitlintError(spec, f"calling {attr}() raised {type(exc).__name__}: {exc}") from None
    example_input = None
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], torch.nn.Module):
        model, example_input = model  # the callable may return (model, example_input)
    if not isinstance(model, torch.nn.Module):
        raise InitlintError(spec, f"{attr}() returned {type(model).__name__}, not a torch.nn.Module")
    if example_input is None:
        example_input = getattr(model, "example_input", None)
    graph = graph_from_module(model, spec)
    graph.metadata["example_input"] = example_input
    return graph


def load_pt2(target: str, options) -> ModelGraph:
    require_torch(target)
    raise InitlintError(target, "torch.export archives (.pt2) are not supported yet")


def load_torch_file(target: str, options) -> ModelGraph:
    require_torch(target)
    raise InitlintError(target, "TorchScript and state-dict files are not supported yet")


def load_safetensors(target: str) -> ModelGraph:
    raise InitlintError(target, ".safetensors files are not supported yet")


# --- nn.Module -> ModelGraph ----------------------------------------------------------------


def tensor_of(name: str, value) -> Tensor:
    """A lazy view of a torch tensor (detached; fp16/bf16 converted to float32 on read)."""

    def read(value=value):
        data = value.detach()
        if data.device.type != "cpu":
            data = data.cpu()
        if data.dtype.is_floating_point and data.element_size() < 4:
            data = data.float()
        return data.numpy()

    return Tensor(name, tuple(value.shape), str(value.dtype).replace("torch.", ""), read)


def _module_classes(torch):
    nn = torch.nn
    activations = {
        nn.ReLU: "relu",
        nn.ReLU6: "relu6",
        nn.LeakyReLU: "leaky_relu",
        nn.PReLU: "prelu",
        nn.ELU: "elu",
        nn.CELU: "elu",
        nn.SELU: "selu",
        nn.GELU: "gelu",
        nn.SiLU: "silu",
        nn.Mish: "mish",
        nn.Tanh: "tanh",
        nn.Sigmoid: "sigmoid",
        nn.Softplus: "softplus",
        nn.Hardswish: "hardswish",
        nn.Hardsigmoid: "hardsigmoid",
        nn.Hardtanh: "hardtanh",
        nn.Softsign: "softsign",
    }
    norms = tuple(
        getattr(nn, n)
        for n in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "RMSNorm", "LocalResponseNorm")
        if hasattr(nn, n)
    )
    pools = tuple(
        getattr(nn, n)
        for n in dir(nn)
        if n.endswith(("Pool1d", "Pool2d", "Pool3d")) and isinstance(getattr(nn, n), type)
    )
    passthrough = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.Flatten, nn.Unflatten, nn.Upsample, nn.ZeroPad2d, nn.PixelShuffle)
    return activations, norms, pools, passthrough


_FUNCTION_ACTIVATIONS = {
    "relu": "relu",
    "relu_": "relu",
    "relu6": "relu6",
    "leaky_relu": "leaky_relu",
    "elu": "elu",
    "selu": "selu",
    "celu": "elu",
    "gelu": "gelu",
    "silu": "silu",
    "mish": "mish",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "softplus": "softplus",
    "hardswish": "hardswish",
    "hardsigmoid": "hardsigmoid",
    "hardtanh": "hardtanh",
    "softsign": "softsign",
    "prelu": "prelu",
}
_FUNCTION_PASSTHROUGH = {
    "flatten", "reshape", "view", "permute", "transpose", "contiguous", "squeeze", "unsqueeze", "dropout",
    "getitem", "chunk", "split", "expand", "repeat", "to", "float", "type_as", "clone", "detach", "pad",
    "interpolate", "neg", "sub", "truediv", "div", "t", "narrow", "roll", "flip", "unbind", "select",
}
_FUNCTION_POOLS = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "mean", "amax", "sum"}
_FUNCTION_NORMS = {"layer_norm", "batch_norm", "group_norm", "instance_norm", "rms_norm", "normalize"}
_SHAPE_FUNCTIONS = {"size", "dim", "numel", "shape", "getattr"}


def _fans(weight_shape: tuple[int, ...], groups: int = 1) -> tuple[int, int]:
    receptive = int(np.prod(weight_shape[2:])) if len(weight_shape) > 2 else 1
    return weight_shape[1] * receptive, (weight_shape[0] // max(groups, 1)) * receptive


def classify_module(torch, layer: Layer, module, prefix: str) -> None:
    """Fill kind, params and fans of ``layer`` from a leaf nn.Module."""
    nn = torch.nn
    activations, norms, pools, passthrough = _module_classes(torch)
    params = {n: tensor_of(f"{prefix}.{n}" if prefix else n, p) for n, p in module.named_parameters(recurse=True)}
    layer.params.update(params)
    cls_name = type(module).__name__
    if isinstance(module, nn.Linear):
        layer.kind, layer.fan_in, layer.fan_out = g.LINEAR, module.in_features, module.out_features
    elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        layer.kind = g.CONV
        layer.attrs["groups"] = module.groups
        layer.fan_in, layer.fan_out = _fans(tuple(module.weight.shape), module.groups)
    elif isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        layer.kind, layer.unit_axis = g.CONV_TRANSPOSE, 1
        layer.attrs["groups"] = module.groups
        shape = tuple(module.weight.shape)
        receptive = int(np.prod(shape[2:]))
        layer.fan_in, layer.fan_out = (shape[0] // module.groups) * receptive, shape[1] * receptive
    elif isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        layer.kind, layer.fan_in, layer.fan_out = g.EMBEDDING, 1, module.embedding_dim
    elif isinstance(module, (nn.LSTM, nn.GRU, nn.RNN)):
        layer.kind = g.RNN
        layer.params["weight"] = params["weight_ih_l0"]
        layer.params["recurrent_weight"] = params["weight_hh_l0"]
        if "bias_ih_l0" in params:
            layer.params["bias"] = params["bias_ih_l0"]
        layer.fan_in, layer.fan_out = module.input_size, module.hidden_size
        layer.attrs["gates"] = {nn.LSTM: 4, nn.GRU: 3}.get(type(module), 1)
    elif isinstance(module, nn.MultiheadAttention):
        layer.kind = g.ATTENTION
        if module.in_proj_weight is not None:
            layer.params["weight"] = params["in_proj_weight"]
            layer.fan_in, layer.fan_out = module.embed_dim, 3 * module.embed_dim
        if "in_proj_bias" in params:
            layer.params["bias"] = params["in_proj_bias"]
    elif cls_name == "Conv1D" and hasattr(module, "nf"):  # HF transformers: weight stored [in, out]
        layer.kind, layer.unit_axis = g.LINEAR, 1
        layer.fan_in, layer.fan_out = module.weight.shape[0], module.weight.shape[1]
    elif isinstance(module, norms) or cls_name.endswith(("RMSNorm", "LayerNorm")):
        layer.kind = g.NORM
    elif type(module) in activations:
        layer.kind, layer.attrs["activation"] = g.ACTIVATION, activations[type(module)]
        if isinstance(module, nn.LeakyReLU):
            layer.attrs["alpha"] = float(module.negative_slope)
        if isinstance(module, nn.ELU):
            layer.attrs["alpha"] = float(module.alpha)
        if isinstance(module, nn.PReLU):
            layer.attrs["alpha"] = float(module.weight.detach().float().mean())
        if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6) and (module.min_val, module.max_val) == (0.0, 6.0):
            layer.attrs["activation"] = "relu6"
    elif isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        layer.kind = g.SOFTMAX
    elif isinstance(module, pools):
        layer.kind = g.POOL
    elif isinstance(module, passthrough):
        layer.kind = g.PASSTHROUGH
    else:
        layer.kind = g.OTHER
        weights = [t for n, t in params.items() if n.endswith("weight") and t.ndim >= 2]
        if len(weights) == 1:
            # A custom leaf with one matrix: fans by torch's convention.
            layer.kind = g.LINEAR if weights[0].ndim == 2 else g.CONV
            layer.params["weight"] = weights[0]
            layer.fan_in, layer.fan_out = _fans(weights[0].shape)


def _function_name(target) -> str:
    if isinstance(target, str):
        return target
    if target in (operator.add, operator.iadd):
        return "add"
    if target in (operator.mul, operator.imul):
        return "mul"
    if target is operator.matmul:
        return "matmul"
    if target is operator.getitem:
        return "getitem"
    return getattr(target, "__name__", str(target)).lstrip("_")


def graph_from_module(module, target: str) -> ModelGraph:
    """Trace ``module`` with torch.fx; fall back to module order when tracing fails."""
    torch = require_torch(target)
    graph = ModelGraph(target=target, format="torch")
    graph.metadata["module"] = module  # the live module, for the dynamic probe (never mutated)
    for name, param in module.named_parameters():
        graph.tensors[name] = tensor_of(name, param)
    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception as exc:
        graph.notes.append(
            f"torch.fx could not trace the model ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); "
            "the graph follows module registration order, so residual connections and functional activations are not seen"
        )
        _graph_from_module_order(torch, module, graph)
        return graph
    _graph_from_fx(torch, module, traced, graph)
    return graph


def _graph_from_module_order(torch, module, graph: ModelGraph) -> None:
    previous: str | None = None
    for name, child in module.named_modules():
        if not name or any(True for _ in child.children()):
            continue
        layer = Layer(name=name, kind=g.OTHER, op=type(child).__name__)
        classify_module(torch, layer, child, name)
        _share_tensors(graph, layer)
        if previous is not None:
            layer.inputs.append(previous)
        graph.add(layer)
        previous = name
    if previous is not None:
        graph.add(Layer(name="output", kind=g.OUTPUT, op="output", inputs=[previous]))


def _share_tensors(graph: ModelGraph, layer: Layer) -> None:
    """Use the graph's Tensor objects so that statistics are computed once per parameter."""
    for role, tensor in list(layer.params.items()):
        layer.params[role] = graph.tensors.get(tensor.name, tensor)


def _graph_from_fx(torch, root, traced, graph: ModelGraph) -> None:
    modules = dict(root.named_modules())
    consts: dict[str, Tensor] = {}
    shape_only: set[str] = set()
    produced: dict[str, str] = {}  # fx node name -> layer name
    used: set[str] = set()
    for node in traced.graph.nodes:
        inputs = [n for n in node.all_input_nodes]
        if node.op == "placeholder":
            graph.inputs[node.name] = ((), "float32")
            continue
        if node.op == "get_attr":
            value = _fetch_attr(root, node.target)
            if isinstance(value, torch.Tensor):
                consts[node.name] = graph.tensors.get(node.target) or tensor_of(node.target, value)
            continue
        if node.op == "output":
            for producer in inputs:
                if producer.name in produced:
                    graph.add(Layer(name=f"output:{producer.name}", kind=g.OUTPUT, op="output", inputs=[produced[producer.name]]))
            continue
        fname = _function_name(node.target) if node.op != "call_module" else ""
        if node.op != "call_module" and (fname in _SHAPE_FUNCTIONS or (inputs and all(n.name in shape_only or n.name in consts for n in inputs) and not _has_tensor_const(inputs, consts))):
            shape_only.add(node.name)
            continue
        if node.op == "call_module":
            name = node.target
            if name in used:
                name = f"{name}#{node.name}"  # a module called twice (shared weights)
            layer = Layer(name=name, kind=g.OTHER, op=type(modules[node.target]).__name__)
            classify_module(torch, layer, modules[node.target], node.target)
            _share_tensors(graph, layer)
        else:
            layer = Layer(name=node.name, kind=g.OTHER, op=fname)
            _classify_function(layer, fname, node, inputs, consts)
        layer.source = _source_of(node)
        used.add(layer.name)
        for position, producer in enumerate(inputs):
            if producer.name in produced:
                layer.inputs.append(produced[producer.name])
            elif producer.name in consts and not any(t is consts[producer.name] for t in layer.params.values()):
                layer.const_inputs[position] = consts[producer.name]
        for arg in node.args:  # python scalars: `x * 2.0`
            if isinstance(arg, (int, float)) and not isinstance(arg, bool) and layer.kind == g.MUL:
                value = np.asarray(float(arg), dtype=np.float32)
                layer.const_inputs[len(layer.const_inputs) + 100] = Tensor(f"{node.name}.scalar", (), "float32", lambda value=value: value)
        graph.add(layer)
        produced[node.name] = layer.name


def _has_tensor_const(inputs, consts) -> bool:
    return any(n.name in consts for n in inputs)


def _fetch_attr(root, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _source_of(node) -> str | None:
    trace = node.meta.get("stack_trace") if hasattr(node, "meta") else None
    if not trace:
        return None
    last = [line for line in trace.strip().splitlines() if line.strip().startswith("File ")]
    return last[-1].strip() if last else None


def _classify_function(layer: Layer, fname: str, node, inputs, consts) -> None:
    dynamic = [n for n in inputs if n.name not in consts]
    if fname in _FUNCTION_ACTIVATIONS:
        layer.kind, layer.attrs["activation"] = g.ACTIVATION, _FUNCTION_ACTIVATIONS[fname]
        slope = node.kwargs.get("negative_slope", node.args[1] if fname == "leaky_relu" and len(node.args) > 1 else None)
        if fname == "leaky_relu":
            layer.attrs["alpha"] = float(slope) if isinstance(slope, (int, float)) else 0.01
    elif fname in ("add", "iadd"):
        layer.kind = g.ADD if len(dynamic) >= 2 else g.PASSTHROUGH
    elif fname in ("mul", "imul"):
        layer.kind = g.MUL
    elif fname in ("cat", "concat", "stack"):
        layer.kind = g.CONCAT
    elif fname in ("linear",) and len(inputs) >= 2 and inputs[1].name in consts:
        weight = consts[inputs[1].name]
        layer.kind, layer.params["weight"] = g.LINEAR, weight
        layer.fan_in, layer.fan_out = weight.shape[1], weight.shape[0]
        if len(inputs) >= 3 and inputs[2].name in consts:
            layer.params["bias"] = consts[inputs[2].name]
    elif fname in ("matmul", "mm", "bmm"):
        const = [consts[n.name] for n in inputs if n.name in consts]
        if const and const[0].ndim >= 2 and len(dynamic) == 1:
            weight = const[0]
            layer.kind, layer.params["weight"], layer.unit_axis = g.LINEAR, weight, -1
            layer.fan_in, layer.fan_out = weight.shape[-2], weight.shape[-1]
        else:
            layer.kind = g.MATMUL
    elif fname in ("softmax", "log_softmax"):
        layer.kind = g.SOFTMAX
    elif fname in _FUNCTION_NORMS:
        layer.kind = g.NORM
    elif fname in _FUNCTION_POOLS:
        layer.kind = g.POOL
    elif fname in _FUNCTION_PASSTHROUGH:
        layer.kind = g.PASSTHROUGH
    elif fname in ("embedding",) and len(inputs) >= 2 and inputs[1].name in consts:
        weight = consts[inputs[1].name]
        layer.kind, layer.params["weight"], layer.fan_in, layer.fan_out = g.EMBEDDING, weight, 1, weight.shape[-1]
    else:
        layer.kind = g.OTHER
