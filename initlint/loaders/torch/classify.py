"""A module or a function call -> a layer's kind, parameters and fans."""

from __future__ import annotations

import operator

from ... import graph as g
from ...graph import Layer
from .op_tables import _FUNCTION_ACTIVATIONS, _FUNCTION_CONVS, _FUNCTION_NORMS, _FUNCTION_PASSTHROUGH, _FUNCTION_POOLS, _NORM_CLASS, _module_classes
from .tensors import tensor_of


def classify_module(torch, layer: Layer, module, prefix: str) -> None:
    """Fill kind, params and fans of ``layer`` from a leaf nn.Module."""
    nn = torch.nn
    activations, norms, pools, passthrough = _module_classes(torch)
    params = {n: tensor_of(f"{prefix}.{n}" if prefix else n, p) for n, p in module.named_parameters(recurse=True)}
    layer.params.update(params)
    cls, cls_name = _module_class(torch, module)
    if issubclass(cls, nn.Linear):
        # from the weight: a traced TorchScript module keeps no in_features/groups attributes
        layer.kind, layer.fan_in, layer.fan_out = g.LINEAR, module.weight.shape[1], module.weight.shape[0]
    elif issubclass(cls, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        layer.kind = g.CONV
        layer.attrs["groups"] = getattr(module, "groups", 1)
        layer.fan_in, layer.fan_out = g.conv_fans(tuple(module.weight.shape), layer.attrs["groups"])
    elif issubclass(cls, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        layer.kind, layer.unit_axis = g.CONV_TRANSPOSE, 1
        groups = layer.attrs["groups"] = getattr(module, "groups", 1)
        layer.fan_in, layer.fan_out = g.conv_fans(tuple(module.weight.shape), groups, transposed=True)
    elif issubclass(cls, (nn.Embedding, nn.EmbeddingBag)):
        layer.kind, layer.fan_in, layer.fan_out = g.EMBEDDING, 1, module.weight.shape[1]
    elif issubclass(cls, (nn.LSTM, nn.GRU, nn.RNN)):
        layer.kind = g.RNN
        layer.params["weight"] = params["weight_ih_l0"]
        layer.params["recurrent_weight"] = params["weight_hh_l0"]
        if "bias_ih_l0" in params:
            layer.params["bias"] = params["bias_ih_l0"]
        layer.fan_in, layer.fan_out = module.input_size, module.hidden_size
        layer.attrs["gates"] = {nn.LSTM: 4, nn.GRU: 3}.get(cls, 1)
    elif issubclass(cls, nn.MultiheadAttention):
        layer.kind = g.ATTENTION
        if module.in_proj_weight is not None:
            layer.params["weight"] = params["in_proj_weight"]
            layer.fan_in, layer.fan_out = module.embed_dim, 3 * module.embed_dim
        if "in_proj_bias" in params:
            layer.params["bias"] = params["in_proj_bias"]
    elif cls_name == "Conv1D" and hasattr(module, "nf"):  # HF transformers: weight stored [in, out]
        layer.kind, layer.unit_axis = g.LINEAR, 1
        layer.fan_in, layer.fan_out = module.weight.shape[0], module.weight.shape[1]
    elif issubclass(cls, norms) or _NORM_CLASS.search(cls_name):
        layer.kind = g.NORM
    elif cls in activations:
        layer.kind, layer.attrs["activation"] = g.ACTIVATION, activations[cls]
        if issubclass(cls, nn.LeakyReLU):
            layer.attrs["alpha"] = float(module.negative_slope)
        if issubclass(cls, nn.ELU):
            layer.attrs["alpha"] = float(module.alpha)
        if issubclass(cls, nn.PReLU):
            layer.attrs["alpha"] = float(module.weight.detach().float().mean())
        if issubclass(cls, nn.Hardtanh) and not issubclass(cls, nn.ReLU6) and (module.min_val, module.max_val) == (0.0, 6.0):
            layer.attrs["activation"] = "relu6"
    elif issubclass(cls, (nn.Softmax, nn.LogSoftmax)):
        layer.kind = g.SOFTMAX
    elif issubclass(cls, pools):
        layer.kind = g.POOL
    elif issubclass(cls, passthrough):
        layer.kind = g.PASSTHROUGH
    else:
        layer.kind = g.OTHER
        weights = [t for n, t in params.items() if n.endswith("weight") and t.ndim >= 2]
        if len(weights) == 1:
            # A custom leaf with one matrix: fans by torch's convention.
            layer.kind = g.LINEAR if weights[0].ndim == 2 else g.CONV
            layer.params["weight"] = weights[0]
            layer.fan_in, layer.fan_out = g.conv_fans(weights[0].shape)


def _module_class(torch, module) -> tuple[type, str]:
    """The nn class a module stands for; a TorchScript module stands for its original class."""
    if isinstance(module, torch.jit.ScriptModule):
        original = getattr(module, "original_name", "") or ""
        cls = getattr(torch.nn, original, None)
        return (cls if isinstance(cls, type) else type(module)), original
    return type(module), type(module).__name__


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
    packet = getattr(target, "overloadpacket", None)
    if packet is not None:  # an ATen op overload (torch.export): aten.relu_.default -> relu
        return packet.__name__.strip("_")
    return getattr(target, "__name__", str(target)).lstrip("_")


# torch.nn.functional's norms whose running statistics come before the affine parameters (aten's
# batch_norm and the layer/group norms take weight, bias first).
_STATS_FIRST_NORMS = {"batch_norm": ("input", "running_mean", "running_var", "weight", "bias"),
                      "instance_norm": ("input", "running_mean", "running_var", "weight", "bias")}


def _functional_norm_arguments(fname: str, node) -> dict | None:
    """The arguments of a torch.nn.functional batch/instance norm call by name, or None for any
    other call (timm's BatchNormAct2d calls F.batch_norm with the running mean second)."""
    roles = _STATS_FIRST_NORMS.get(fname)
    if roles is None or getattr(getattr(node, "target", None), "__module__", "") != "torch.nn.functional":
        return None
    named = dict(zip(roles, getattr(node, "args", ())))
    named.update({k: v for k, v in (getattr(node, "kwargs", None) or {}).items() if k in roles})
    return named


def _classify_function(layer: Layer, fname: str, node, inputs, consts) -> None:
    dynamic = [n for n in inputs if n.name not in consts]
    if fname in _FUNCTION_ACTIVATIONS:
        layer.kind, layer.attrs["activation"] = g.ACTIVATION, _FUNCTION_ACTIVATIONS[fname]
        slope = node.kwargs.get("negative_slope", node.args[1] if fname == "leaky_relu" and len(node.args) > 1 else None)
        if fname == "leaky_relu":
            layer.attrs["alpha"] = float(slope) if isinstance(slope, (int, float)) else 0.01
        if fname == "hardtanh" and _hardtanh_bounds(node) == (0.0, 6.0):
            layer.attrs["activation"] = "relu6"  # nn.ReLU6 reaches torch.export and TorchScript as hardtanh(x, 0, 6)
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
    elif fname in (*_FUNCTION_CONVS, "convolution") and len(inputs) >= 2 and inputs[1].name in consts:
        _classify_conv(layer, fname, node, inputs, consts)
    elif fname == "addmm" and len(inputs) >= 3 and inputs[2].name in consts and consts[inputs[2].name].ndim == 2:
        # addmm(bias, x, weight[in, out]): HF transformers' Conv1D after torch.export
        weight = consts[inputs[2].name]
        layer.kind, layer.params["weight"], layer.unit_axis = g.LINEAR, weight, -1
        layer.fan_in, layer.fan_out = weight.shape[0], weight.shape[1]
        if inputs[0].name in consts:
            layer.params["bias"] = consts[inputs[0].name]
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
        named = _functional_norm_arguments(fname, node)
        if named is not None:  # F.batch_norm(x, running_mean, running_var, weight, bias): stats first
            for role in ("weight", "bias"):
                if getattr(named.get(role), "name", None) in consts:
                    layer.params[role] = consts[named[role].name]
        else:
            affine = [consts[n.name] for n in inputs[1:] if n.name in consts]  # weight, bias (then running stats)
            for role, tensor in zip(("weight", "bias"), affine):
                layer.params[role] = tensor
    elif fname in _FUNCTION_POOLS:
        layer.kind = g.POOL
    elif fname in _FUNCTION_PASSTHROUGH:
        layer.kind = g.PASSTHROUGH
    elif fname in ("embedding",) and len(inputs) >= 2 and (inputs[1].name in consts or inputs[0].name in consts):
        # F.embedding(ids, weight); aten.embedding(weight, ids)
        weight = consts[inputs[1].name] if inputs[1].name in consts else consts[inputs[0].name]
        layer.kind, layer.params["weight"], layer.fan_in, layer.fan_out = g.EMBEDDING, weight, 1, weight.shape[-1]
    else:
        layer.kind = g.OTHER


def _hardtanh_bounds(node) -> tuple[float, float] | None:
    """(min_val, max_val) of a hardtanh call: positional (x, min_val, max_val) or keywords."""
    args = list(node.args)
    low = node.kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
    high = node.kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        return None
    return float(low), float(high)


def _classify_conv(layer: Layer, fname: str, node, inputs, consts) -> None:
    """conv1d/2d/3d, conv_transpose*d and aten.convolution with a constant weight."""
    weight = consts[inputs[1].name]
    args = list(node.args)
    if fname == "convolution":  # (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
        transposed = bool(args[6]) if len(args) > 6 else False
        groups = args[8] if len(args) > 8 else 1
    else:  # conv: (..., stride, padding, dilation, groups); transpose: (..., stride, padding, output_padding, groups, dilation)
        transposed = _FUNCTION_CONVS[fname]
        groups = args[6] if len(args) > 6 else node.kwargs.get("groups", 1)
    groups = int(groups) if isinstance(groups, int) else 1
    layer.params["weight"] = weight
    if len(inputs) >= 3 and inputs[2].name in consts:
        layer.params["bias"] = consts[inputs[2].name]
    layer.attrs["groups"] = groups
    if transposed:
        layer.kind, layer.unit_axis = g.CONV_TRANSPOSE, 1
    else:
        layer.kind = g.CONV
    layer.fan_in, layer.fan_out = g.conv_fans(weight.shape, groups, transposed=transposed)
