"""Which layers are one unit wide at init, and whether training can widen them (docs/science.md §5, §11).

A layer whose output units are all copies of one unit (every row of the weight equal: a
constant layer, or one row tiled) computes a single feature, repeated. Its neighbours tell the
copies apart only through their own random rows and columns, so the outcome depends on how many
such layers there are:

- one such layer among random ones is broken out of symmetry by its neighbours, slowly (a
  6-layer ReLU MLP with one constant layer reaches 63 % train accuracy in 300 SGD steps where the
  healthy one reaches 99.8 %): recoverable;
- when every hidden layer is one unit wide the whole representation is a chain of scalars: every
  ReLU of a layer is on or off together, one negative link switches the network off for every
  input, and the measured gradients are then exactly zero: fatal.

Zero layers are left to the constant-flow analysis (IL101): their output carries no feature at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import graph as g

# Layers whose rows are units that can be copies of each other (embedding rows are tokens).
UNIT_KINDS = frozenset({g.LINEAR, g.CONV, g.CONV_TRANSPOSE})


class Harm(enum.IntEnum):
    RECOVERABLE = 1
    FATAL = 2


@dataclass(frozen=True)
class Symmetry:
    collapsed: tuple[str, ...]  # layers whose units are all copies of one unit (not all zero)
    hidden: tuple[str, ...]  # unit layers with a weighted layer before and after them

    @property
    def everywhere(self) -> bool:
        """Every hidden layer (at least two) is one unit wide: no random layer between them to widen it."""
        return len(self.hidden) >= 2 and set(self.hidden) <= set(self.collapsed)

    def harm(self, layer_name: str) -> Harm | None:
        if layer_name not in self.collapsed:
            return None
        return Harm.FATAL if self.everywhere and layer_name in self.hidden else Harm.RECOVERABLE


def one_unit_wide(layer: g.Layer) -> bool:
    """Every output unit of ``layer`` repeats one unit: all rows equal (constant or tiled), not zero."""
    if layer.kind not in UNIT_KINDS or layer.weight is None or layer.weight.ndim < 2:
        return False
    stats = layer.weight.stats
    if stats.all_zero or stats.nonfinite_count:
        return False
    if stats.all_equal:
        return (layer.units or 0) >= 2
    unit_stats = layer.unit_stats()
    return unit_stats is not None and unit_stats.rows >= 2 and unit_stats.zero_rows == 0 and unit_stats.duplicate_rows == unit_stats.rows - 1


def symmetry_of(graph: g.ModelGraph) -> Symmetry:
    """The one-unit-wide layers of ``graph`` and its hidden layers (cached on the graph)."""
    cached = graph.__dict__.get("_symmetry")
    if cached is None:
        units = [layer for layer in graph.layers.values() if layer.kind in UNIT_KINDS and layer.is_weighted]
        collapsed = tuple(layer.name for layer in units if one_unit_wide(layer))
        hidden = tuple(layer.name for layer in units if graph.has_structure and _is_hidden(graph, layer)) if collapsed else ()
        cached = graph.__dict__["_symmetry"] = Symmetry(collapsed, hidden)
    return cached


def _is_hidden(graph: g.ModelGraph, layer: g.Layer) -> bool:
    return graph.depth.get(layer.name, 0) >= 2 and _weighted_after(graph)[layer.name]


def _weighted_after(graph: g.ModelGraph) -> dict[str, bool]:
    """Per layer: a weighted layer reads its output, directly or further on."""
    cached = graph.__dict__.get("_weighted_after")
    if cached is None:
        cached = {}
        for layer in reversed(list(graph.layers.values())):  # reverse topological order
            cached[layer.name] = any(c.is_weighted or cached.get(c.name, False) for c in graph.consumers(layer))
        graph.__dict__["_weighted_after"] = cached
    return cached
