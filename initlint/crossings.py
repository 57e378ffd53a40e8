"""Where the propagated signal crosses a rule's bounds: the queries the IL3xx rules ask of
initlint.signal (docs/science.md §1, §8)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import graph as g
from .chains import reliable
from .signal import Signal, signal_of


def pre_activation_std(sig: Signal, activation: g.Layer) -> float:
    s = sig.get(activation.name)
    return math.sqrt(max(s.q_in, 0.0)) if s is not None else 1.0


@dataclass
class Crossing:
    direction: str  # "forward" | "backward"
    layer: g.Layer
    anchor: str
    ratio: float  # forward: a variance ratio; backward: a gradient energy (squared norm) ratio
    layers_between: int  # weighted layers from the anchor to the crossing, both counted once

    @property
    def judged_ratio(self) -> float:
        """What the thresholds apply to: the forward variance ratio, or the gradient norm ratio
        (AUTOTRAINER's β1 and β3 bound gradient norms, docs/science.md §8)."""
        return self.ratio if self.direction == "forward" else math.sqrt(self.ratio)

    def measured_threshold(self, threshold: float) -> float:
        """The rule's threshold in the unit of ``ratio`` (an energy backward: the norm's square)."""
        return threshold if self.direction == "forward" else threshold * threshold

    @property
    def per_layer(self) -> float:
        return self.judged_ratio ** (1.0 / max(self.layers_between, 1))

    def describe(self) -> str:
        what = "input-dependent signal variance" if self.direction == "forward" else "gradient norm"
        return (
            f"predicted {what} at {self.layer.name} is {self.judged_ratio:.2g}x that at {self.anchor} "
            f"({self.layers_between} weighted layers, x{self.per_layer:.3g} per layer)"
        )


def first_crossings(graph: g.ModelGraph, low: float | None = None, high: float | None = None) -> list[Crossing]:
    """Where the forward variance ratio and the backward gradient norm ratio first leave [low, high],
    walking each in its own direction.

    Layers with all-zero weights, or whose signal is exactly zero because of one, are left to
    IL101: a structural zero is not a depth effect.
    """
    if not reliable(graph):
        return []
    sig = signal_of(graph)
    found = []
    judged = [
        layer for layer in graph.layers.values()
        if layer.is_weighted and layer.kind != g.EMBEDDING and not layer.weight.stats.all_zero
    ]
    for direction, ordered in (("forward", judged), ("backward", list(reversed(judged)))):
        for layer in ordered:
            if direction == "forward" and layer.name in sig.minor_branch:
                continue
            s = sig[layer.name]
            ratio = s.forward_ratio if direction == "forward" else s.backward_ratio
            anchor = s.forward_anchor if direction == "forward" else s.backward_anchor
            if ratio is None or ratio <= 0 or anchor is None:
                continue
            judged_ratio = ratio if direction == "forward" else math.sqrt(ratio)
            if (low is not None and judged_ratio < low) or (high is not None and judged_ratio > high):
                between = abs(graph.depth.get(layer.name, 0) - graph.depth.get(anchor, 0))
                found.append(Crossing(direction, layer, anchor, ratio, between))
                break
    return found
