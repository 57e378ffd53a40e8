"""torch.save output that is a state dict (or a checkpoint holding one): weights without structure."""

from __future__ import annotations

from ...errors import InitlintError
from ...graph import ModelGraph
from ..weights_only import add_weight_layers
from .tensors import _flatten_tensors, tensor_of


# Keys under which training scripts commonly nest the model's weights in a checkpoint.
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module", "net", "network", "ema")


def _graph_from_state_dict(torch, target: str, obj) -> ModelGraph:
    graph = ModelGraph(target=target, format="state_dict", has_structure=False)
    if isinstance(obj, dict):
        nested = [k for k in _CHECKPOINT_KEYS if isinstance(obj.get(k), dict) and _has_tensors(torch, obj[k])]
        if nested:
            graph.notes.append(f"checkpoint: reading the weights under {nested[0]!r}")
            obj = obj[nested[0]]
    dropped: list[str] = []
    obj = _without_optimizer_state(obj, "", dropped)
    if dropped:
        graph.notes.append(f"checkpoint: skipped the optimizer state under {', '.join(repr(p) for p in dropped[:3])}: it holds no model weights")
    for name, value in _flatten_tensors(torch, obj, ""):
        graph.tensors[name] = tensor_of(name, value)
    if not graph.tensors and obj is None:
        raise InitlintError(target, "holds an optimizer state only, no model weights", "initlint reads a state dict: a mapping of parameter names to tensors")
    if not graph.tensors:
        raise InitlintError(target, f"holds no tensors (a {type(obj).__name__})", "initlint reads a state dict: a mapping of parameter names to tensors")
    add_weight_layers(graph)
    graph.notes.append("a state dict holds weights only: the structure rules need the model (a module:callable spec, .pt2 or ONNX)")
    return graph


def _has_tensors(torch, mapping: dict) -> bool:
    return any(isinstance(v, torch.Tensor) for v in mapping.values())


def _is_optimizer_state(value) -> bool:
    """torch.optim.Optimizer.state_dict(): {"state": {param index: {"exp_avg": ...}}, "param_groups": [...]}."""
    return isinstance(value, dict) and isinstance(value.get("state"), dict) and isinstance(value.get("param_groups"), list)


def _without_optimizer_state(obj, prefix: str, dropped: list[str]):
    """``obj`` without the optimizer states a training checkpoint saves beside the weights
    (Adam's moments are tensors of the parameters' shapes, not parameters); their paths go to ``dropped``."""
    if _is_optimizer_state(obj):
        dropped.append(prefix or "(the whole file)")
        return None
    if isinstance(obj, dict):
        kept = {key: _without_optimizer_state(value, f"{prefix}.{key}" if prefix else str(key), dropped) for key, value in obj.items()}
        return {key: value for key, value in kept.items() if value is not None or obj[key] is None}
    if isinstance(obj, (list, tuple)):
        return [_without_optimizer_state(value, f"{prefix}.{index}" if prefix else str(index), dropped) for index, value in enumerate(obj)]
    return obj
