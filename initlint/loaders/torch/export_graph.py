"""A torch.export ExportedProgram -> a ModelGraph named by the user's parameter names."""

from __future__ import annotations

from ...errors import require_torch
from ...graph import ModelGraph, Tensor
from .fx_graph import _graph_from_fx
from .tensors import tensor_of


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
