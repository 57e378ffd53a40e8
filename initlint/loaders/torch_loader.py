"""Read PyTorch models into a ModelGraph. torch is imported only here, only when needed."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import operator
import re
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import graph as g
from ..errors import InitlintError, require_torch
from ..graph import Layer, ModelGraph, Tensor
from .archive import check_zip, is_zip, strip_root
from .weights_only import add_weight_layers


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
    graph = graph_from_module(model, spec, example_input=example_input, options=options)
    graph.metadata["example_input"] = example_input
    return graph


PICKLE_HINT = (
    "pass --trust-pickle only if you trust where the file came from: unpickling runs arbitrary code from it; "
    "or save a state dict / .safetensors / torch.export .pt2 instead"
)


def load_pt2(target: str, options) -> ModelGraph:
    """A torch.export archive: zip-checked, refused where loading would unpickle, then its ATen graph."""
    torch = require_torch(target)
    _require_file(target)
    names = check_zip(target)
    if not getattr(options, "trust_pickle", False):
        _refuse_pt2_code(torch, target, names)
    try:
        with _quiet_torch_logs(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(target)
    except Exception as exc:
        raise InitlintError(target, f"not a loadable torch.export archive ({type(exc).__name__}: {_short(exc)})") from None
    graph = graph_from_exported(program, target, "pt2")
    try:
        graph.metadata["module"] = program.module()  # runnable: the probe runs a copy
    except Exception as exc:
        graph.notes.append(f"the exported program cannot be run here ({type(exc).__name__}); the probe will not run")
    return graph


def load_torch_file(target: str, options) -> ModelGraph:
    """``.pt/.pth/...``: a TorchScript archive, or torch.save output (a state dict unless --trust-pickle)."""
    torch = require_torch(target)
    _require_file(target)
    if is_zip(target):
        names = strip_root(check_zip(target))
        if any(n.startswith("code/") for n in names) or "constants.pkl" in names:
            return _load_torchscript(torch, target)
    return _load_torch_save(torch, target, options)


def load_safetensors(target: str) -> ModelGraph:
    _require_file(target)
    from .safetensors_reader import load_safetensors as read

    return read(target)


def _require_file(target: str) -> None:
    if not os.path.isfile(target):
        raise InitlintError(target, "no such file")


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


@contextlib.contextmanager
def _quiet_torch_logs():
    """torch.export logs warnings through `logging`; initlint reports problems itself, on one line."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _refuse_pt2_code(torch, target: str, names: list[str]) -> None:
    """torch.export.load unpickles with weights_only=False in places (pickled tensor subclasses,
    opaque constants, the sample-inputs fallback, the pre-2.8 layout) and can load compiled
    AOTInductor libraries. Refuse every such archive unless --trust-pickle."""
    import io
    import json
    import zipfile

    members = dict(zip(strip_root(names), names))
    if "archive_version" not in members:
        raise InitlintError(target, "refused: an old-layout .pt2 archive can only be read by unpickling it", PICKLE_HINT)
    risky = [n for n in members if n.startswith("data/aotinductor/") or n.endswith((".so", ".dll", ".dylib"))]
    if risky:
        raise InitlintError(target, f"refused: the archive contains compiled code ({risky[0]}) that loading would run", PICKLE_HINT)
    with zipfile.ZipFile(target) as archive:
        for name, full in members.items():
            if name.startswith(("data/weights/", "data/constants/")) and name.endswith("_config.json"):
                try:
                    config = json.loads(archive.read(full)).get("config", {})
                except (ValueError, AttributeError) as exc:
                    raise InitlintError(target, f"corrupt .pt2 archive: {name} is not valid JSON ({exc})") from None
                for fqn, meta in config.items() if isinstance(config, dict) else ():
                    path = str(meta.get("path_name", "")) if isinstance(meta, dict) else ""
                    if not isinstance(meta, dict) or meta.get("use_pickle") or not path.startswith(("weight_", "tensor_")):
                        raise InitlintError(target, f"refused: {fqn!r} is stored as a pickled object, and loading it would unpickle", PICKLE_HINT)
            elif name.endswith(".pt"):  # sample inputs, old-layout weights: torch.load tries weights_only=True first
                try:
                    torch.load(io.BytesIO(archive.read(full)), weights_only=True, map_location="cpu")
                except Exception:
                    raise InitlintError(target, f"refused: archive member {name} needs full unpickling", PICKLE_HINT) from None


def _load_torchscript(torch, target: str) -> ModelGraph:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
            module = torch.jit.load(target, map_location="cpu")
    except Exception as exc:
        raise InitlintError(target, f"not a loadable TorchScript archive ({type(exc).__name__}: {_short(exc)})") from None

    def empty_graph() -> ModelGraph:
        graph = ModelGraph(target=target, format="torchscript")
        for name, param in module.named_parameters():
            graph.tensors[name] = tensor_of(name, param)
        return graph

    graph = empty_graph()
    try:
        _graph_from_torchscript(torch, module, graph)
        return graph
    except Exception as exc:  # an unusual TorchScript graph: fall back to what the modules say
        failure = f"{type(exc).__name__}: {_short(exc)[:120]}"
    graph = empty_graph()
    _graph_from_module_order(torch, module, graph)
    graph.notes.append(
        f"TorchScript: its inlined graph could not be read ({failure}); the graph follows the order in which submodules "
        "were registered, so residual connections and functional activations are not seen"
    )
    return graph


class _JitValue:
    """A TorchScript graph value in the shape the fx classifiers read (``.name``)."""

    def __init__(self, name: str):
        self.name = name


class _JitNode:
    """A TorchScript node in the shape the fx classifiers read (``.args``, ``.kwargs``)."""

    def __init__(self, args: list):
        self.args = args
        self.kwargs: dict = {}


def _graph_from_torchscript(torch, module, graph: ModelGraph) -> None:
    """Layers from the module's inlined TorchScript graph, classified like torch.fx / torch.export
    nodes. An ``if`` on a constant (F.relu's ``inplace``) is followed into the branch it takes;
    other control flow (BatchNorm's input checks) is skipped."""
    jit_graph = module.inlined_graph
    state = _JitState(torch, graph)
    inputs = list(jit_graph.inputs())
    state.owners[inputs[0].debugName()], state.paths[inputs[0].debugName()] = module, ""
    for value in inputs[1:]:
        graph.inputs[value.debugName()] = ((), "float32")
    state.walk(jit_graph.nodes())
    for value in jit_graph.outputs():
        for name in state.items(value.debugName()):
            state.hidden_used |= name in state.hidden
            if name in state.produced:
                layer_name = state.produced[name]
                graph.add(Layer(name=f"output:{layer_name}", kind=g.OUTPUT, op="output", inputs=[layer_name]))
    if not any(layer.kind != g.OUTPUT for layer in graph.layers.values()):
        raise ValueError("no operations found in the TorchScript graph")
    claimed = {t.name for layer in graph.layers.values() for t in layer.params.values()}
    missed = [name for name, t in graph.tensors.items() if t.ndim >= 2 and name not in claimed]
    if state.hidden_used and missed:
        raise ValueError(f"control flow hides the layers of {len(missed)} weight(s) such as {missed[0]}")
    if state.hidden_used:
        graph.notes.append("TorchScript: tensors computed inside if/loop blocks are not followed, so some edges may be missing")


class _JitState:
    def __init__(self, torch, graph: ModelGraph):
        self.torch, self.graph = torch, graph
        self.owners: dict[str, object] = {}  # value -> the module or tensor it refers to
        self.paths: dict[str, str] = {}  # value -> dotted attribute path from self
        self.consts: dict[str, Tensor] = {}
        self.lists: dict[str, list[str]] = {}  # ListConstruct / TupleConstruct value -> items
        self.alias: dict[str, str] = {}  # an if's output -> the value its taken branch returns
        self.produced: dict[str, str] = {}  # value -> layer name
        self.used: set[str] = set()
        self.hidden: set[str] = set()
        self.hidden_used = False

    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def items(self, name: str) -> list[str]:
        name = self.resolve(name)
        return [self.resolve(item) for item in self.lists.get(name, [name])]

    def known(self, name: str) -> bool:
        return name in self.consts or name in self.produced or name in self.graph.inputs

    def walk(self, nodes) -> None:
        for node in nodes:
            kind = node.kind()
            names = [self.resolve(v.debugName()) for v in node.inputs()]
            outputs = [v.debugName() for v in node.outputs()]
            if kind == "prim::GetAttr":
                self._get_attr(node, names[0], outputs[0])
            elif kind in ("prim::ListConstruct", "prim::TupleConstruct"):
                self.lists[outputs[0]] = names
            elif kind == "prim::If" and isinstance(self._condition(node, names[0]), bool):
                taken = list(node.blocks())[0 if self._condition(node, names[0]) else 1]
                self.walk(taken.nodes())
                for output, returned in zip(outputs, taken.outputs()):
                    self.alias[output] = self.resolve(returned.debugName())
            elif any(True for _ in node.blocks()):
                self.hidden.update(v.debugName() for v in node.outputs() if isinstance(v.type(), self.torch._C.TensorType))
            elif kind.startswith("aten::") and len(outputs) == 1:
                self._op(node, kind.split("::", 1)[1].strip("_"), names, outputs[0])

    def _condition(self, node, name: str):
        """A constant condition, or a bool module attribute (``self.training``, ``self.inplace``)."""
        value = _jit_constant(node, 0)
        return value if isinstance(value, bool) else self.owners.get(name)

    def _get_attr(self, node, parent: str, output: str) -> None:
        if parent not in self.owners:
            return
        attr = node.s("name")
        path = f"{self.paths[parent]}.{attr}" if self.paths[parent] else attr
        value = getattr(self.owners[parent], attr, None)
        self.owners[output], self.paths[output] = value, path
        if isinstance(value, self.torch.Tensor):
            self.consts[output] = self.graph.tensors.get(path) or tensor_of(path, value)

    def _op(self, node, fname: str, names: list[str], output: str) -> None:
        flat = list(dict.fromkeys(item for name in names for item in self.items(name)))  # unique, as fx's
        if any(name in self.hidden for name in flat):
            self.hidden_used = True
        if fname in _SHAPE_FUNCTIONS or not any(n in self.produced or n in self.graph.inputs for n in flat):
            return  # a size, or computed from constants only (a weight transpose)
        args = [_JitValue(n) if self.known(n) else _jit_constant(node, i) for i, n in enumerate(names)]
        inputs = [_JitValue(n) for n in flat if self.known(n)]
        layer = Layer(name=output, kind=g.OTHER, op=fname)
        _classify_function(layer, fname, _JitNode(args), inputs, self.consts)
        owner = layer.params.get("weight") or layer.params.get("bias")
        base = owner.name.rsplit(".", 1)[0] if owner is not None and "." in owner.name else fname
        layer.name = base if base not in self.used else f"{base}#{output}"
        self.used.add(layer.name)
        for position, value in enumerate(inputs):
            if value.name in self.produced:
                layer.inputs.append(self.produced[value.name])
            elif value.name in self.consts and not any(t is self.consts[value.name] for t in layer.params.values()):
                layer.const_inputs[position] = self.consts[value.name]
        self.graph.add(layer)
        self.produced[output] = layer.name


def _jit_constant(node, index: int):
    """The Python value of a constant input of a TorchScript node (None when not constant)."""
    value = list(node.inputs())[index]
    producer = value.node()
    if producer.kind() != "prim::Constant" or not producer.hasAttribute("value"):
        return None
    try:
        return value.toIValue()
    except Exception:
        return None


def _load_torch_save(torch, target: str, options) -> ModelGraph:
    import pickle

    trusted = getattr(options, "trust_pickle", False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol notices; initlint reports problems itself
            # mmap: a zip-format checkpoint's tensors stay views on the file, read once by the stats pass
            obj = torch.load(target, map_location="cpu", weights_only=not trusted, mmap=is_zip(target))
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            found = _unsupported_global(str(exc))
            raise InitlintError(
                target,
                f"refused: the file is a pickle of Python objects{found}, not only tensors; initlint does not unpickle by default",
                PICKLE_HINT,
            ) from None
        raise InitlintError(target, f"not a readable PyTorch file ({_short(exc)})") from None
    except Exception as exc:
        raise InitlintError(target, f"not a readable PyTorch file ({type(exc).__name__}: {_short(exc)})") from None
    if isinstance(obj, torch.jit.ScriptModule):
        return _load_torchscript(torch, target)
    if isinstance(obj, torch.nn.Module):
        graph = graph_from_module(obj, target, example_input=getattr(obj, "example_input", None), options=options)
        graph.notes.append("unpickled with --trust-pickle")
        return graph
    return _graph_from_state_dict(torch, target, obj)


def _unsupported_global(message: str) -> str:
    import re

    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    return f" (it references {match.group(1)})" if match else ""


# Keys under which training scripts commonly nest the model's weights in a checkpoint.
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "ema")


def _graph_from_state_dict(torch, target: str, obj) -> ModelGraph:
    graph = ModelGraph(target=target, format="state_dict", has_structure=False)
    if isinstance(obj, dict):
        nested = [k for k in _CHECKPOINT_KEYS if isinstance(obj.get(k), dict) and _has_tensors(torch, obj[k])]
        if nested:
            graph.notes.append(f"checkpoint: reading the weights under {nested[0]!r}")
            obj = obj[nested[0]]
    for name, value in _flatten_tensors(torch, obj, ""):
        graph.tensors[name] = tensor_of(name, value)
    if not graph.tensors:
        raise InitlintError(target, f"holds no tensors (a {type(obj).__name__})", "initlint reads a state dict: a mapping of parameter names to tensors")
    add_weight_layers(graph)
    graph.notes.append("a state dict holds weights only: the structure rules need the model (a module:callable spec, .pt2 or ONNX)")
    return graph


def _has_tensors(torch, mapping: dict) -> bool:
    return any(isinstance(v, torch.Tensor) for v in mapping.values())


def _flatten_tensors(torch, obj, prefix: str):
    if isinstance(obj, torch.Tensor):
        yield prefix or "tensor", obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _flatten_tensors(torch, value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _flatten_tensors(torch, value, f"{prefix}.{index}" if prefix else str(index))


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
_SHAPE_FUNCTIONS = {"size", "dim", "numel", "shape", "getattr", "sym_size", "sym_numel", "sym_stride"}
# ATen spellings (torch.export graphs) of ops the tables above already cover.
_FUNCTION_PASSTHROUGH |= {
    "to_copy", "unsafe_view", "slice", "alias", "native_dropout", "split_with_sizes", "expand_as", "view_as",
    "reshape_as", "flatten_using_ints", "assert_tensor_metadata", "upsample_nearest2d", "upsample_bilinear2d",
    "constant_pad_nd", "lift_fresh_copy",
}
_FUNCTION_NORMS |= {"native_layer_norm", "native_batch_norm_legit_functional", "native_batch_norm_legit_no_training", "native_group_norm"}
_FUNCTION_POOLS |= {"adaptive_avg_pool3d", "max_pool2d_with_indices", "adaptive_max_pool1d", "avg_pool"}
_FUNCTION_CONVS = {"conv1d": False, "conv2d": False, "conv3d": False, "conv_transpose1d": True, "conv_transpose2d": True, "conv_transpose3d": True}


def _fans(weight_shape: tuple[int, ...], groups: int = 1) -> tuple[int, int]:
    receptive = int(np.prod(weight_shape[2:])) if len(weight_shape) > 2 else 1
    return weight_shape[1] * receptive, (weight_shape[0] // max(groups, 1)) * receptive


# Normalization modules by class name: nn.LayerNorm, BatchNorm2d, and hand-written ones
# (LlamaRMSNorm, T5LayerNorm, ...).
_NORM_CLASS = re.compile(r"Norm(\d+d)?$")


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
        layer.fan_in, layer.fan_out = _fans(tuple(module.weight.shape), layer.attrs["groups"])
    elif issubclass(cls, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        layer.kind, layer.unit_axis = g.CONV_TRANSPOSE, 1
        groups = layer.attrs["groups"] = getattr(module, "groups", 1)
        shape = tuple(module.weight.shape)
        receptive = int(np.prod(shape[2:]))
        layer.fan_in, layer.fan_out = (shape[0] // groups) * receptive, shape[1] * receptive
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
            layer.fan_in, layer.fan_out = _fans(weights[0].shape)


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


def graph_from_module(module, target: str, example_input=None, options=None) -> ModelGraph:
    """Trace ``module`` with torch.fx; when that fails, torch.export with an example input; then module order."""
    torch = require_torch(target)
    graph = ModelGraph(target=target, format="torch")
    graph.metadata["module"] = module  # the live module: source lines of findings, and the probe (never mutated)
    for name, param in module.named_parameters():
        graph.tensors[name] = tensor_of(name, param)
    try:
        traced = _trace_keeping_norms(torch, module)
    except Exception as exc:
        fx_failure = f"torch.fx could not trace the model ({type(exc).__name__}: {_short(exc)[:160]})"
    else:
        _graph_from_fx(torch, module, traced, graph)
        return graph
    args, kwargs, where = _example_arguments(torch, target, module, example_input, options)
    if args is None:
        export_failure = "torch.export needs an example input: return (model, example_input) from the callable or pass --input-shape (and --input-dtype int64 for token ids)"
    else:
        try:
            with _quiet_torch_logs():
                program = torch.export.export(_tensor_outputs(torch, module), args, kwargs, strict=False)
        except Exception as exc:
            export_failure = f"torch.export with the example input {where} failed too ({type(exc).__name__}: {_short(exc)[:160]})"
        else:
            exported = graph_from_exported(program, target, "torch", strip_prefix=_WRAPPED + ".", canonical=_canonical_names(module))
            exported.notes.insert(0, f"{fx_failure}; the graph comes from torch.export with the example input {where}")
            exported.metadata["module"] = module  # the live module, for source lines and the probe
            return exported
    graph.notes.append(
        f"{fx_failure}; {export_failure}; the graph follows module registration order, "
        "so residual connections and functional activations are not seen"
    )
    _graph_from_module_order(torch, module, graph)
    return graph


_WRAPPED = "wrapped"


def _canonical_names(module) -> dict[str, str]:
    """Every name of a shared (tied) parameter -> the one name named_parameters() reports."""
    first: dict[int, str] = {}
    names: dict[str, str] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        names[name] = first.setdefault(id(param), name)
    return names


def _tensor_outputs(torch, module):
    """``module`` returning only the tensors of its output: torch.export cannot return objects
    such as transformers' DynamicCache, and the lint needs only the computation."""

    class TensorOutputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            setattr(self, _WRAPPED, module)

        def forward(self, *args, **kwargs):
            return [t for _, t in _flatten_tensors(torch, _plain(getattr(self, _WRAPPED)(*args, **kwargs)), "")]

    return TensorOutputs()


def _plain(output):
    """Mappings (transformers' ModelOutput), tuples and lists as plain containers; other objects dropped."""
    if isinstance(output, dict):
        return {k: _plain(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return [_plain(v) for v in output]
    return output if hasattr(output, "shape") and hasattr(output, "dtype") else None


def _example_arguments(torch, target, module, example_input, options):
    """(args, kwargs, description) for torch.export, from the spec's example or --input-shape."""
    if example_input is not None:
        if isinstance(example_input, dict):
            return (), dict(example_input), "from the spec"
        if isinstance(example_input, (tuple, list)):
            return tuple(example_input), {}, "from the spec"
        return (example_input,), {}, "from the spec"
    shapes = dict(getattr(options, "input_shapes", None) or {})
    if not shapes:
        dummy = getattr(module, "dummy_inputs", None)  # transformers models describe their own inputs
        if isinstance(dummy, dict) and dummy and all(isinstance(v, torch.Tensor) for v in dummy.values()):
            return (), dict(dummy), "model.dummy_inputs"
        return None, None, ""
    dtype_name = getattr(options, "input_dtype", None) or "float32"
    dtype = getattr(torch, dtype_name, None)
    if not isinstance(dtype, torch.dtype):
        raise InitlintError(target, f"unknown --input-dtype {dtype_name!r}", "e.g. float32, float16, int64")

    def make(shape):
        if dtype.is_floating_point:
            return torch.randn(shape, dtype=dtype)
        return torch.zeros(shape, dtype=dtype)  # token ids: 0 is valid for every vocabulary

    described = ", ".join(f"{n + '=' if n else ''}{'x'.join(map(str, s))}" for n, s in shapes.items())
    if list(shapes) == [""]:
        return (make(shapes[""]),), {}, f"{described} {dtype_name} from --input-shape"
    return (), {name: make(shape) for name, shape in shapes.items()}, f"{described} {dtype_name} from --input-shape"


def graph_from_exported(program, target: str, fmt: str, strip_prefix: str = "", canonical: dict[str, str] | None = None) -> ModelGraph:
    """The ModelGraph of a torch.export ExportedProgram, named by the user's parameter FQNs
    (``strip_prefix``: the attribute under which a wrapper held the user's module)."""
    torch = require_torch(target)
    graph = ModelGraph(target=target, format=fmt)
    signature = program.graph_signature
    values = {**dict(program.state_dict), **dict(getattr(program, "constants", {}) or {})}
    lifted: dict[str, Tensor] = {}
    sources = [
        (signature.inputs_to_parameters, True),
        (signature.inputs_to_buffers, False),
        (getattr(signature, "inputs_to_lifted_tensor_constants", {}) or {}, False),
    ]
    for mapping, is_param in sources:
        for placeholder, fqn in mapping.items():
            value = values.get(fqn)
            if not isinstance(value, torch.Tensor):
                continue
            if strip_prefix and fqn.startswith(strip_prefix):
                fqn = fqn[len(strip_prefix):]
            fqn = (canonical or {}).get(fqn, fqn)  # a tied weight: the name named_parameters() gives it
            tensor = tensor_of(fqn, value)
            if is_param:
                tensor = graph.tensors.setdefault(fqn, tensor)
            lifted[placeholder] = tensor
    _graph_from_fx(torch, None, program.graph_module, graph, lifted=lifted, strip_prefix=strip_prefix)
    return graph


def _graph_from_module_order(torch, module, graph: ModelGraph) -> None:
    graph.metadata["structure"] = "module-order"  # edges are guessed: the signal rules stand down
    previous: str | None = None
    for name, child in module.named_modules():
        if not name or any(True for _ in child.children()):
            continue
        layer = Layer(name=name, kind=g.OTHER, op=_module_class(torch, child)[1])
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


def _module_path(node, strip_prefix: str = "") -> str | None:
    stack = node.meta.get("nn_module_stack") if hasattr(node, "meta") else None
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    if not isinstance(path, str) or not path or "[" in path:  # strict-mode paths look like L['self'].fc
        return None
    return path[len(strip_prefix):] if strip_prefix and path.startswith(strip_prefix) else path


def _trace_keeping_norms(torch, module):
    """torch.fx tracing that keeps normalization modules whole: a hand-written RMSNorm is one
    layer to its user, not a pow/mean/rsqrt/mul chain."""

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, child, qualified_name):
            return bool(_NORM_CLASS.search(type(child).__name__)) or super().is_leaf_module(child, qualified_name)

    return torch.fx.GraphModule(module, Tracer().trace(module))


def _graph_from_fx(torch, root, traced, graph: ModelGraph, lifted: dict[str, Tensor] | None = None, strip_prefix: str = "") -> None:
    """``lifted``: for a torch.export graph, the placeholders that are parameters, buffers or
    constants (by placeholder name); layers are then named after their weight's module."""
    modules = dict(root.named_modules()) if root is not None else {}
    consts: dict[str, Tensor] = {}
    shape_only: set[str] = set()
    produced: dict[str, str] = {}  # fx node name -> layer name
    used: set[str] = set()
    aten = lifted is not None
    open_call: tuple[str, str] | None = None  # (module-call key, layer name) of a composite module
    for node in traced.graph.nodes:
        inputs = [n for n in node.all_input_nodes]
        if node.op == "placeholder":
            if aten and node.name in lifted:
                consts[node.name] = lifted[node.name]
                continue
            value = node.meta.get("val") if hasattr(node, "meta") else None
            shape = tuple(d if isinstance(d, int) else None for d in getattr(value, "shape", ()))
            dtype = str(getattr(value, "dtype", "torch.float32")).replace("torch.", "")
            graph.inputs[node.name] = (shape, dtype)
            continue
        if aten and node.op == "call_function" and inputs and all(n.name in consts or n.name in shape_only for n in inputs):
            # Computed from constants only (a transposed weight, a buffer update): not a layer.
            const_inputs = [consts[n.name] for n in inputs if n.name in consts]
            if _function_name(node.target) in _FUNCTION_PASSTHROUGH and len(const_inputs) == 1:
                consts[node.name] = const_inputs[0]
            else:
                shape_only.add(node.name)
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
        composite = _composite_module(node, strip_prefix) if node.op != "call_module" else None
        if composite is not None and open_call is not None and open_call[0] == composite[0]:
            # Another op of the same module call (RMSNorm's rsqrt, gelu_new's tanh): it joins that one layer.
            layer = graph.layers[open_call[1]]
            for producer in inputs:
                source = produced.get(producer.name)
                if source is not None and source != layer.name and source not in layer.inputs:
                    layer.inputs.append(source)
                elif layer.kind == g.NORM and producer.name in consts:
                    _add_norm_param(layer, consts[producer.name])
            graph.__dict__.pop("_consumers", None)
            graph.__dict__.pop("depth", None)
            produced[node.name] = layer.name
            continue
        open_call = None
        if node.op == "call_module":
            name = node.target
            if name in used:
                name = f"{name}#{node.name}"  # a module called twice (shared weights)
            layer = Layer(name=name, kind=g.OTHER, op=type(modules[node.target]).__name__)
            classify_module(torch, layer, modules[node.target], node.target)
            _share_tensors(graph, layer)
        elif composite is not None:
            key, path, class_name, kind, activation = composite
            name = path if path not in used and path not in graph.layers else f"{path}#{node.name}"
            if kind == g.NORM:
                layer = Layer(name=name, kind=g.OTHER, op=fname)
                _classify_function(layer, fname, node, inputs, consts)  # aten layer_norm/batch_norm: params by role
                layer.kind, layer.op = g.NORM, class_name
                for producer in inputs:
                    if producer.name in consts and not any(t is consts[producer.name] for t in layer.params.values()):
                        _add_norm_param(layer, consts[producer.name])
            else:
                layer = Layer(name=name, kind=g.ACTIVATION, op=class_name, attrs={"activation": activation})
            open_call = (key, name)
        else:
            layer = Layer(name=node.name, kind=g.OTHER, op=fname)
            _classify_function(layer, fname, node, inputs, consts)
            owner = layer.params.get("weight") or layer.params.get("bias")
            if aten and owner is not None:
                # Named as the module is (fc2), from export's module stack or else the weight's name.
                layer.name = _module_path(node, strip_prefix) or (owner.name.rsplit(".", 1)[0] if "." in owner.name else node.name)
                if layer.name in used or layer.name in graph.layers:
                    layer.name = f"{layer.name}#{node.name}"  # a module called twice (shared weights)
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


# Activation modules written as several elementwise ops (transformers' gelu_new is
# 0.5x(1 + tanh(...)), quick_gelu x*sigmoid(1.702x)). Traced, they fall apart into mul/pow/tanh/add
# nodes whose Add looks like a residual; each call is read as one activation, as its nn counterpart.
_COMPOSITE_ACTIVATIONS = {
    "NewGELUActivation": "gelu",
    "GELUActivation": "gelu",
    "FastGELUActivation": "gelu",
    "QuickGELUActivation": "gelu",
    "AccurateGELUActivation": "gelu",
    "ClippedGELUActivation": "gelu",
    "GELUTanh": "gelu",
    "PytorchGELUTanh": "gelu",
    "QuickGELU": "gelu",
    "SiLUActivation": "silu",
    "Swish": "silu",
    "MishActivation": "mish",
    "Mish": "mish",
}


def _composite_module(node, strip_prefix: str = "") -> tuple[str, str, str, str, str | None] | None:
    """(module-call key, module path, class name, kind, activation) when ``node`` is an op inside
    a module that is one layer to its user but traces as several ops: the activation modules
    above, and normalization modules (HF's RMSNorm is pow, mean, rsqrt and mul)."""
    stack = node.meta.get("nn_module_stack") if hasattr(node, "meta") else None
    if not stack:
        return None
    key, value = list(stack.items())[-1]
    path, cls = value if isinstance(value, tuple) and len(value) == 2 else (None, None)
    class_name = getattr(cls, "__name__", None) or str(cls).rsplit(".", 1)[-1].strip("'>")
    activation = _COMPOSITE_ACTIVATIONS.get(class_name)
    kind = g.ACTIVATION if activation is not None else g.NORM if _NORM_CLASS.search(class_name) else None
    if kind is None or not isinstance(path, str):
        return None
    if not path or "[" in path:  # strict-mode paths look like L['self'].act: name the layer after the node
        path = node.name
    path = path[len(strip_prefix):] if strip_prefix and path.startswith(strip_prefix) else path
    return str(key), path, class_name, kind, activation


def _add_norm_param(layer: Layer, tensor: Tensor) -> None:
    """A hand-written norm's 1-D constants: its scale, then its shift."""
    if tensor.ndim == 1:
        layer.params.setdefault("weight" if "weight" not in layer.params else "bias", tensor)


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
    shape = weight.shape
    if transposed:
        receptive = int(np.prod(shape[2:]))
        layer.kind, layer.unit_axis = g.CONV_TRANSPOSE, 1
        layer.fan_in, layer.fan_out = (shape[0] // groups) * receptive, shape[1] * receptive
    else:
        layer.kind = g.CONV
        layer.fan_in, layer.fan_out = _fans(shape, groups)
