"""Read an ONNX model into a ModelGraph without importing torch.

Modules, one job each: ``scan`` (the file's structure without its weight bytes),
``byte_sources`` (where each tensor's bytes live; external data confined to the model's
directory), ``constant_folding``, ``node_classifier``, ``exporter_names`` (module names the
exporter replaced), and ``loader`` (the file checks and the node walk). Elementwise subgraphs
folded into one activation or norm: ``initlint.loaders.patterns``, shared with the torch loader.
"""

from .loader import build_graph, load_onnx

__all__ = ["build_graph", "load_onnx"]
