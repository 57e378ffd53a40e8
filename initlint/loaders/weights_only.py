"""Layers for weights-only files (state dicts, .safetensors), guessed from names and shapes.

Without the model the edges are unknown (``has_structure`` stays False and structure rules do
not run), but each ``<module>.weight`` matrix or kernel still becomes an unconnected layer so
the weight-value rules (IL102 constant, IL103 duplicate units, IL105 nonzero mean) can judge it
with torch's layout: units along axis 0, fan-in = shape[1] x receptive field.
"""

from __future__ import annotations

from .. import graph as g
from ..graph import Layer, ModelGraph

# Parameter names that mark an embedding table (rows are tokens, not output units).
EMBEDDING_HINTS = ("embed", "wte", "wpe", "tok_emb", "pos_emb", "word_emb", "shared")


def add_weight_layers(graph: ModelGraph) -> None:
    guessed = 0
    for name, tensor in list(graph.tensors.items()):
        prefix, _, leaf = name.rpartition(".")
        if leaf != "weight" or tensor.ndim < 2 or not tensor.dtype.startswith(("float", "bfloat")):
            continue
        layer = Layer(name=prefix or name, kind=g.LINEAR, op="weights-only", params={"weight": tensor})
        if any(hint in name.lower() for hint in EMBEDDING_HINTS) and tensor.ndim == 2:
            layer.kind, layer.fan_in, layer.fan_out = g.EMBEDDING, 1, tensor.shape[1]
        else:
            layer.kind = g.LINEAR if tensor.ndim == 2 else g.CONV
            layer.fan_in, layer.fan_out = g.conv_fans(tensor.shape)
        bias = graph.tensors.get(f"{prefix}.bias") if prefix else None
        if bias is not None and bias.shape == tensor.shape[:1]:
            layer.params["bias"] = bias
        if layer.name in graph.layers:
            continue
        graph.add(layer)
        guessed += 1
    if guessed:
        graph.notes.append(f"{guessed} layer kind(s) guessed from parameter names and shapes (torch layout: units along axis 0)")
