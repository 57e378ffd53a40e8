"""Chains of weighted layers and activations joined without normalization or skips: the
structure the IL2xx/IL3xx rules judge a run of layers on (docs/science.md §1, §4)."""

from __future__ import annotations

import math

from . import graph as g


def reliable(graph: g.ModelGraph) -> bool:
    """False where the loader had to guess the edges (module registration order): no ratios then."""
    return graph.has_structure and graph.metadata.get("structure") != "module-order"


FEEDING_KINDS = (g.LINEAR, g.CONV, g.CONV_TRANSPOSE)


def feeding_layer(graph: g.ModelGraph, activation: g.Layer) -> g.Layer | None:
    """The weighted layer whose output is ``activation``'s input (through reshapes, pooling, bias adds)."""
    before = graph.upstream(activation)
    if len(before) == 1 and reliable(graph) and before[0].is_weighted and before[0].kind in FEEDING_KINDS:
        return before[0]
    return None


def feeds_only_weighted(graph: g.ModelGraph, layer: g.Layer) -> g.Layer | None:
    """The single weighted layer that consumes ``layer``'s output, or None (a gate, a skip, a head)."""
    after = graph.downstream(layer)
    if len(after) == 1 and after[0].is_weighted and after[0].kind in FEEDING_KINDS:
        return after[0]
    return None


def plain_chains(graph: g.ModelGraph, member) -> list[list[tuple[g.Layer, g.Layer]]]:
    """Maximal chains of (weighted layer, activation) pairs joined without normalization or skips.

    ``member(layer, activation)`` says whether a pair belongs; consecutive pairs are linked when
    the activation's only consumer is the next weighted layer and nothing else feeds it.
    """
    pair_of: dict[str, tuple[g.Layer, g.Layer]] = {}
    if not reliable(graph):
        return []
    for layer in graph.layers.values():
        if layer.kind != g.ACTIVATION:
            continue
        weighted = feeding_layer(graph, layer)
        if weighted is not None and member(weighted, layer):
            pair_of[weighted.name] = (weighted, layer)
    chains: list[list[tuple[g.Layer, g.Layer]]] = []
    linked: set[str] = set()
    for name, pair in pair_of.items():
        if name in linked:
            continue
        chain = [pair]
        linked.add(name)
        while True:
            nxt = feeds_only_weighted(graph, chain[-1][1])
            if nxt is None or nxt.name not in pair_of or nxt.name in linked or graph.upstream(nxt) != [chain[-1][1]]:
                break
            chain.append(pair_of[nxt.name])
            linked.add(nxt.name)
        chains.append(chain)
    # Pairs are visited in topological order, so every chain is entered at its head.
    return chains


# Elementwise ops that scale their one computed input by a constant operand, by their name in
# either loader (torch mul / truediv, aten mul.Tensor, ONNX Mul / Div).
_SCALING_OPS = {"mul": "mul", "imul": "mul", "div": "div", "truediv": "div", "itruediv": "div"}


def scalar_scale(graph: g.ModelGraph, sig, layer: g.Layer) -> float | None:
    """The factor on the variance of a layer that multiplies or divides its one computed input
    by a fixed positive scalar (``x * d**-0.5``, ``x / 4``): q_out/q_in of the signal ``sig``.
    None for any other layer (a vector, a zero gate, ``c / x``, a product of two values)."""
    op = _SCALING_OPS.get(layer.op.split(".")[0].lower())
    if layer.is_weighted or len(layer.inputs) != 1 or not layer.const_inputs or (op is None and layer.kind != g.MUL):
        return None
    if any(t.size != 1 for t in layer.const_inputs.values()) or (op == "div" and 0 in layer.const_inputs):
        return None
    row = sig.get(layer.name)
    factor = row.gain_fwd if row is not None else None
    return factor if factor is not None and math.isfinite(factor) and factor > 0 else None


def scales_around(graph: g.ModelGraph, sig, layer: g.Layer) -> tuple[float, list[g.Layer]]:
    """The fixed scalar scales right before ``layer``'s input and right after its output, as one
    factor on the variance (T5 multiplies the decoder output by d_model**-0.5 before its head),
    and the first layers after them. Walks single-input reshapes, dropout, pooling and such scales."""
    factor, node = 1.0, layer
    while len(node.inputs) == 1 and node.inputs[0] in graph.layers:
        before = graph.layers[node.inputs[0]]
        scale = scalar_scale(graph, sig, before)
        if scale is None and before.kind not in g.TRANSPARENT_KINDS:
            break
        factor *= scale or 1.0
        node = before
    node = layer
    while len(after := graph.consumers(node)) == 1:
        scale = scalar_scale(graph, sig, after[0])
        if scale is None and after[0].kind not in g.TRANSPARENT_KINDS:
            break
        factor *= scale or 1.0
        node = after[0]
    return factor, graph.downstream(node)
