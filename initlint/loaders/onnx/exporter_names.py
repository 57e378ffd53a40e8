"""Recovering the torch module and parameter names an exporter replaced (onnx::Conv_12, val_245)."""

from __future__ import annotations

import ast
import re

from ...graph import ModelGraph
from .proto_fields import _text


# Initializer names an exporter made up: the TorchScript exporter's constant-folded weights
# (onnx::Conv_12, onnx::MatMul_7) and the dynamo exporter's transposed weights (val_245).
_GENERATED_NAME = re.compile(r"^(onnx::.*|val_\d+)$")


def _module_scope(node) -> str | None:
    """The torch module a node was exported from: the dynamo exporter's name scopes
    (['', 'encoder', 'encoder.layer.0', ..., 'linear']), or the TorchScript exporter's node
    name ('/layer2/layer2.0/conv1/Conv'); the last element is the op itself."""
    segments = None
    for prop in node.metadata_props:
        if _text(prop.key) == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(_text(prop.value))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                scopes = None
            if isinstance(scopes, list) and all(isinstance(x, str) for x in scopes):
                segments = scopes[:-1]
    name = _text(node.name)
    if segments is None and name.startswith("/"):
        segments = name.split("/")[1:-1]
    path = ""
    for segment in segments or ():
        if not segment:
            continue
        path = segment if path and segment.startswith(path + ".") or not path else f"{path}.{segment}"
    return path or None


def _name_generated_weights(graph: ModelGraph) -> None:
    """Give weights the exporter named (onnx::Conv_12, val_245) their module's parameter name,
    so findings point at `layer2.0.conv1.weight` as they do for the torch model."""
    renamed = False
    for layer in graph.layers.values():
        scope = layer.attrs.get("module_scope")
        if not scope:
            continue
        for role in ("weight", "bias"):
            tensor = layer.params.get(role)
            if tensor is None or not _GENERATED_NAME.match(tensor.name):
                continue
            wanted = f"{scope}.{role}"
            if wanted in graph.tensors or any(t.name == wanted for t in graph.tensors.values()):
                continue  # the real parameter is in the file: keep both names apart
            layer.attrs[f"exporter_{role}_name"] = tensor.name
            tensor.name = wanted
            renamed = True
    if renamed:
        graph.tensors = {tensor.name: tensor for tensor in graph.tensors.values()}
