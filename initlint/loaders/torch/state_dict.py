"""torch.save output that is a state dict (or a checkpoint holding one): weights without structure."""

from __future__ import annotations

from ...errors import InitlintError
from ...graph import ModelGraph
from ..weights_only import add_weight_layers
from .tensors import _flatten_tensors, tensor_of


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
