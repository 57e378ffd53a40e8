"""A live nn.Module -> a ModelGraph: torch.fx first, then torch.export, then module order."""

from __future__ import annotations

from ... import graph as g
from ...errors import InitlintError, require_torch
from ...graph import Layer, ModelGraph
from .classify import _module_class, classify_module
from .export_graph import graph_from_exported
from .fx_graph import _graph_from_fx, _trace_keeping_norms
from .quiet import _quiet_torch, _short
from .tensors import _flatten_tensors, _share_tensors, tensor_of


def graph_from_module(module, target: str, example_input=None, options=None) -> ModelGraph:
    """Trace ``module`` with torch.fx; when that fails, torch.export with an example input; then module order.

    Each trace is tried in training mode, then in eval mode: layer drop and stochastic depth
    (torchaudio's wav2vec2 and Conformer, HF Wav2Vec2, DETR) branch on a random draw only while
    training, and their eval-mode graph has the same layers and weights."""
    from ..keras import graph_from_keras, is_keras_model

    if is_keras_model(module):  # a Keras 3 model is an nn.Module whose layers torch cannot see
        return graph_from_keras(module, target, fmt="torch", options=options)
    torch = require_torch(target)
    graph = ModelGraph(target=target, format="torch")
    graph.metadata["module"] = module  # the live module: source lines of findings, and the probe (never mutated)
    for name, param in module.named_parameters():
        graph.tensors[name] = tensor_of(name, param)
    fx_failure = ""
    for mode in _modes(module):
        try:
            with _mode(module, mode):
                traced = _trace_keeping_norms(torch, module)
        except Exception as exc:
            fx_failure = fx_failure or f"torch.fx could not trace the model ({type(exc).__name__}: {_short(exc)[:160]})"
            continue
        _graph_from_fx(torch, module, traced, graph)
        if mode == "eval":
            graph.notes.append(f"{fx_failure} in training mode; the graph comes from torch.fx in eval mode")
        return graph
    args, kwargs, where = _example_arguments(torch, target, module, example_input, options)
    export_failure = ""
    if args is None:
        export_failure = "torch.export needs an example input: return (model, example_input) from the callable or pass --input-shape (and --input-dtype int64 for token ids)"
    for mode in _modes(module) if args is not None else ():
        try:
            with _quiet_torch(), _mode(module, mode):
                program = torch.export.export(_tensor_outputs(torch, module), args, kwargs, strict=False)
        except Exception as exc:
            export_failure = export_failure or f"torch.export with the example input {where} failed too ({type(exc).__name__}: {_short(exc)[:160]})"
            continue
        exported = graph_from_exported(program, target, "torch", strip_prefix=_WRAPPED + ".", canonical=_canonical_names(module))
        in_eval = " in eval mode (it failed in training mode)" if mode == "eval" else ""
        exported.notes.insert(0, f"{fx_failure}; the graph comes from torch.export with the example input {where}{in_eval}")
        exported.metadata["module"] = module  # the live module, for source lines and the probe
        return exported
    graph.notes.append(
        f"{fx_failure}; {export_failure}; the graph follows module registration order, "
        "so residual connections and functional activations are not seen"
    )
    _graph_from_module_order(torch, module, graph)
    return graph


_WRAPPED = "wrapped"


def _modes(module) -> tuple[str, ...]:
    return ("train", "eval") if any(m.training for m in module.modules()) else ("eval",)


class _mode:
    """Every submodule in ``mode`` for the duration, then each back in its own mode (the
    user's module is left as it was)."""

    def __init__(self, module, mode: str):
        self.module, self.mode = module, mode

    def __enter__(self):
        self.saved = [(m, m.training) for m in self.module.modules()]
        if self.mode == "eval":
            for m, _ in self.saved:
                m.training = False
        return self

    def __exit__(self, *exc):
        for m, training in self.saved:
            m.training = training
        return False


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
