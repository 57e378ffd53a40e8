"""What a rule reads: the graph, its signal analysis and init fingerprints (each computed once),
and the probe's measurement when one ran. Read-only: a rule returns findings, it changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .fingerprint import Fingerprint, fingerprint
from .graph import Layer, ModelGraph
from .measurement import ProbeMeasurement
from .prediction import Quantity
from .signal import Signal, signal_of


@dataclass(frozen=True)
class RuleContext:
    graph: ModelGraph
    # The probe's measurement (status ok) for probe-stage rules; None for static rules and
    # wherever the probe did not run to the end.
    probe: ProbeMeasurement | None = None
    _fingerprints: dict = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def signal(self) -> Signal:
        """The static signal propagation (docs/science.md §1-§4), computed on first use."""
        return signal_of(self.graph)

    def fingerprint(self, layer: Layer) -> Fingerprint | None:
        if layer.name not in self._fingerprints:
            self._fingerprints[layer.name] = fingerprint(layer)
        return self._fingerprints[layer.name]

    def predicted_ratio(self, quantity: Quantity, from_layer: str, to_layer: str) -> float | None:
        """What the static model predicts for a ratio over a span, by the probe's definition:
        forward, the input-dependent variance at ``to_layer``'s output over ``from_layer``'s;
        backward, the gradient energy at ``to_layer``'s output over that at ``from_layer``'s input."""
        sig = self.signal
        a, b = sig.get(from_layer), sig.get(to_layer)
        if a is None or b is None:
            return None
        if quantity is Quantity.FORWARD_VARIANCE_RATIO:
            return b.v_out / a.v_out if a.v_out > 0 else None
        if quantity is Quantity.GRADIENT_ENERGY_RATIO:
            layer = self.graph.layers[from_layer]
            width_in = next((sig[p].width for p in layer.inputs if p in sig.layers and sig[p].width), None) or layer.fan_in or 1
            entering = a.grad_in * width_in
            return b.grad_out * (b.width or 1) / entering if entering > 0 else None
        raise ValueError(f"{quantity.value} is not a ratio")
