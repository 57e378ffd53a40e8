"""What a static finding claims the probe will measure: one typed contract from rule to measurement.

A rule that predicts something measurable attaches a ``Prediction`` to its finding: the
quantity, the span of weighted layers it is about, and the claim -- the measured value is
below (or above) the threshold the rule itself judged with. The probe measures the same
quantity over the same span with the same definition as the static signal model
(docs/science.md §8), and the runner compares the two (``initlint.verdict``).

Quantities and how each is measured (every layer named here is a weighted layer, a row the
probe measures):

- ``FORWARD_VARIANCE_RATIO``: the input-dependent variance of ``to_layer``'s output over that
  of ``from_layer``'s output. Input-dependent: the variance of each unit across the batch
  (and positions), averaged over units -- a bias, or a constant carried from earlier layers,
  adds no information and is left out, as in the static model's ``v``.
- ``LAYER_GAIN``: one weighted layer's own gain, the input-dependent variance of ``to_layer``'s
  output over that of its input. The input's is taken per channel the same way (across the
  batch and positions, averaged over channels; the channel axis is the layer's unit axis: 1 for
  a convolution, the last for a linear layer). Nothing before or after the layer (an
  activation, a scale) is in it. For zero-mean i.i.d. weights its expectation is
  fan_in·E[W²] whatever the correlations between the inputs: a unit's output variance is
  wᵀΣw for the input covariance Σ, and E_W[wᵀΣw] = E[W²]·tr Σ.
- ``GRADIENT_ENERGY_RATIO``: the energy (squared norm) of the loss gradient at ``to_layer``'s
  output over that at ``from_layer``'s input; ``from_layer`` is the later layer, where the
  gradient enters the span.
- ``SATURATED_FRACTION``: the share of ``to_layer``'s outputs (the pre-activations of the
  tanh/sigmoid it feeds) beyond the activation's saturation point.
- ``RARELY_ACTIVE_FRACTION``: the share of the units after ``to_layer`` that are active (> 0)
  on fewer than 1% of the batch's values (samples and positions): a unit that fires with a
  probability far below that (a bias under -3σ) counts whatever the batch size, where "inactive
  on every sample" would depend on it.
- ``DEAD_FRACTION``: the share of the units after ``to_layer`` that are inactive (<= 0) for
  every sample of the batch.
- ``FROZEN_PARAMETERS``: the share of ``parameters`` whose gradient is exactly zero on every
  batch and stays exactly zero after a few plain-SGD steps on a copy.
- ``DUPLICATE_UNIT_FRACTION``: the share of ``to_layer``'s output units whose output, less its
  mean, repeats another unit's on every sample (identical units stay identical under training).
- ``NON_FINITE_FRACTION``: the share of ``to_layer``'s outputs that are NaN or infinite.
- ``INITIAL_LOSS_OVER_CHANCE``: the cross-entropy at init over log(classes), the loss of a
  uniform guess.
- ``LOGIT_STD``: the standard deviation of the model's output at init.
- ``COMMON_COMPONENT``: the share of ``to_layer``'s output, less its bias, that all its units
  have in common: the second moment of the mean over units over the mean of the units' second
  moments (``E[(mean_u z)²] / mean_u E[z²]``, over the batch and positions). About 1/units for
  independent zero-mean units; near 1 when every unit carries the same offset or moves together.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class PredictionError(ValueError):
    """A rule built a prediction the probe cannot check: a programming error, caught by the tests."""


class Quantity(enum.Enum):
    FORWARD_VARIANCE_RATIO = "forward_variance_ratio"
    GRADIENT_ENERGY_RATIO = "gradient_energy_ratio"
    SATURATED_FRACTION = "saturated_fraction"
    DEAD_FRACTION = "dead_fraction"
    RARELY_ACTIVE_FRACTION = "rarely_active_fraction"
    FROZEN_PARAMETERS = "frozen_parameters"
    DUPLICATE_UNIT_FRACTION = "duplicate_unit_fraction"
    NON_FINITE_FRACTION = "non_finite_fraction"
    INITIAL_LOSS_OVER_CHANCE = "initial_loss_over_chance"
    LOGIT_STD = "logit_std"
    COMMON_COMPONENT = "common_component"
    LAYER_GAIN = "layer_gain"

    @property
    def log_scale(self) -> bool:
        """A positive ratio whose values spread over orders of magnitude: judged in decades."""
        return self in (Quantity.FORWARD_VARIANCE_RATIO, Quantity.GRADIENT_ENERGY_RATIO, Quantity.LAYER_GAIN)

    @property
    def spans_two_layers(self) -> bool:
        return self in (Quantity.FORWARD_VARIANCE_RATIO, Quantity.GRADIENT_ENERGY_RATIO)

    @property
    def is_fraction(self) -> bool:
        return self in (Quantity.SATURATED_FRACTION, Quantity.DEAD_FRACTION, Quantity.RARELY_ACTIVE_FRACTION, Quantity.FROZEN_PARAMETERS, Quantity.DUPLICATE_UNIT_FRACTION, Quantity.NON_FINITE_FRACTION, Quantity.COMMON_COMPONENT)

    @property
    def needs_layer(self) -> bool:
        return self.spans_two_layers or self in (Quantity.LAYER_GAIN, Quantity.SATURATED_FRACTION, Quantity.DEAD_FRACTION, Quantity.RARELY_ACTIVE_FRACTION, Quantity.DUPLICATE_UNIT_FRACTION, Quantity.NON_FINITE_FRACTION, Quantity.COMMON_COMPONENT)

    @property
    def depends_on_the_data(self) -> bool:
        """What the probe measures depends on what the model is fed: on a trained model, whose
        weights fit its own data, a measurement on the probe's synthetic inputs says little. Frozen
        parameters, copies of a unit and non-finite outputs do not depend on the inputs."""
        return self not in (Quantity.FROZEN_PARAMETERS, Quantity.DUPLICATE_UNIT_FRACTION, Quantity.NON_FINITE_FRACTION)

    @property
    def text(self) -> str:
        return self.value.replace("_", " ")


class Claim(enum.Enum):
    BELOW = "below"
    ABOVE = "above"


@dataclass(frozen=True)
class Prediction:
    """The measured ``quantity`` over ``from_layer`` -> ``to_layer`` is ``claim`` ``threshold``.

    ``predicted`` is the static model's own value (for the message; the verdict is judged on
    the threshold). ``parameters`` names the tensors of a FROZEN_PARAMETERS claim.
    """

    quantity: Quantity
    claim: Claim
    threshold: float
    from_layer: str | None = None
    to_layer: str | None = None
    predicted: float | None = None
    parameters: tuple[str, ...] = ()

    def __post_init__(self):
        try:
            object.__setattr__(self, "quantity", Quantity(self.quantity))
        except ValueError:
            raise PredictionError(f"unknown quantity {self.quantity!r} (one of {', '.join(q.value for q in Quantity)})") from None
        try:
            object.__setattr__(self, "claim", Claim(self.claim))
        except ValueError:
            raise PredictionError(f"unknown claim {self.claim!r} (below or above)") from None
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise PredictionError(f"{self.quantity.value}: the threshold must be a finite number, not {self.threshold!r}")
        object.__setattr__(self, "threshold", float(self.threshold))
        q = self.quantity
        if q.log_scale and self.threshold <= 0:
            raise PredictionError(f"{q.value}: a ratio's threshold must be positive, not {self.threshold:g}")
        if q.spans_two_layers:
            if not (self.from_layer and self.to_layer) or self.from_layer == self.to_layer:
                raise PredictionError(f"{q.value} spans two different weighted layers (from_layer, to_layer), got {self.from_layer!r} -> {self.to_layer!r}")
        elif q.needs_layer:
            if not self.to_layer or self.from_layer not in (None, self.to_layer):
                raise PredictionError(f"{q.value} is about one weighted layer (to_layer), got {self.from_layer!r} -> {self.to_layer!r}")
            object.__setattr__(self, "from_layer", self.to_layer)
        elif self.from_layer or self.to_layer:
            raise PredictionError(f"{q.value} is about the whole model: no from_layer/to_layer")
        if q is Quantity.FROZEN_PARAMETERS:
            if not self.parameters or not all(isinstance(p, str) and p for p in self.parameters):
                raise PredictionError("frozen_parameters names the parameters it is about")
            object.__setattr__(self, "parameters", tuple(self.parameters))
        elif self.parameters:
            raise PredictionError(f"{q.value} takes no parameter names")
        if q.is_fraction and not 0 <= self.threshold < 1:
            raise PredictionError(f"{q.value}: a fraction's threshold is in [0, 1), not {self.threshold:g}")

    @property
    def claims_fault(self) -> bool:
        """Whether the claim is the fault side of the threshold (the usual case) rather than the
        harmless side. A fraction counts broken things (dead, saturated, frozen, duplicate or
        non-finite units, a common component): above its threshold is the fault, so a claim that
        it stays below says the pattern is harmless (a lone zero layer that recovers). A ratio or
        a scale is a fault on either side: its claim is the fault the rule found."""
        return not (self.quantity.is_fraction and self.claim is Claim.BELOW)

    def crosses(self, value: float) -> bool:
        """Whether a measured ``value`` is on the claimed side of the threshold."""
        return value < self.threshold if self.claim is Claim.BELOW else value > self.threshold

    def margin(self, value: float) -> float:
        """How far ``value`` is from the threshold, in the quantity's natural unit: decades for a
        ratio, absolute share for a fraction, relative for the rest; positive on the claimed side."""
        if self.quantity.log_scale:
            if value <= 0:
                return math.inf if self.claim is Claim.BELOW else -math.inf
            gap = math.log10(self.threshold) - math.log10(value)
        elif self.quantity.is_fraction:
            gap = self.threshold - value
        else:
            gap = (self.threshold - value) / max(abs(self.threshold), 1e-12)
        return gap if self.claim is Claim.BELOW else -gap

    def describe(self) -> str:
        span = ""
        if self.quantity.spans_two_layers:
            span = f" from {self.from_layer} to {self.to_layer}"
        elif self.to_layer:
            span = f" at {self.to_layer}"
        return f"{self.quantity.text}{span} {self.claim.value} {self.threshold:g}"

    def validate(self, graph) -> None:
        """Raise PredictionError where the probe could not measure the span on ``graph``."""
        from . import graph as g

        for name in {self.from_layer, self.to_layer} - {None}:
            layer = graph.layers.get(name)
            if layer is None:
                raise PredictionError(f"{self.quantity.value}: {name!r} is not a layer of the graph")
            if not layer.is_weighted:
                raise PredictionError(f"{self.quantity.value}: {name!r} is a {layer.kind} layer; the probe measures weighted layers only")
        # A layer whose input is a signal with channels on its unit axis: not an embedding (indices).
        if self.quantity is Quantity.LAYER_GAIN and graph.layers[self.to_layer].kind not in (g.LINEAR, g.CONV, g.CONV_TRANSPOSE):
            raise PredictionError(f"layer_gain: {self.to_layer!r} is a {graph.layers[self.to_layer].kind} layer; the probe measures the gain of a linear or convolution layer only")
        if self.quantity is Quantity.SATURATED_FRACTION:
            after = graph.activation_after(graph.layers[self.to_layer])
            if after is None or after.activation not in g.SATURATING:
                raise PredictionError(f"saturated_fraction: {self.to_layer!r} does not feed a saturating activation")
        if self.quantity in (Quantity.DEAD_FRACTION, Quantity.RARELY_ACTIVE_FRACTION):
            layer = graph.layers[self.to_layer]
            after = graph.downstream(layer, through=g.TRANSPARENT_KINDS | {g.NORM})
            if not (len(after) == 1 and after[0].kind == g.ACTIVATION and after[0].activation in g.RELU_FAMILY):
                raise PredictionError(f"{self.quantity.value}: {self.to_layer!r} does not feed a ReLU-family activation")
        for name in self.parameters:
            if name not in graph.tensors:
                raise PredictionError(f"frozen_parameters: {name!r} is not a tensor of the graph")

    def to_json(self) -> dict:
        out = {"quantity": self.quantity.value, "claim": self.claim.value, "threshold": self.threshold}
        if self.from_layer:
            out["from_layer"] = self.from_layer
        if self.to_layer:
            out["to_layer"] = self.to_layer
        if self.predicted is not None and math.isfinite(self.predicted):
            out["predicted"] = float(f"{self.predicted:.6g}")
        if self.parameters:
            out["parameters"] = list(self.parameters)
        return out
