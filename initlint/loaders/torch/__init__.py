"""Read PyTorch models into a ModelGraph. torch is imported only here, only when needed.

Modules, one job each: ``spec_import`` (a user's module:callable), ``files`` (model files on
disk), ``pickle_refusal``, ``state_dict``, ``torchscript``, ``module_graph`` (a live nn.Module),
``fx_graph`` and ``export_graph`` (graphs to layers), ``classify`` and ``op_tables`` (what an op is).
"""

from .classify import classify_module
from .export_graph import graph_from_exported
from .files import load_pt2, load_safetensors, load_torch_file
from .module_graph import graph_from_module
from .pickle_refusal import PICKLE_HINT
from .spec_import import load_spec
from .tensors import tensor_of

__all__ = [
    "PICKLE_HINT",
    "classify_module",
    "graph_from_exported",
    "graph_from_module",
    "load_pt2",
    "load_safetensors",
    "load_spec",
    "load_torch_file",
    "tensor_of",
]
