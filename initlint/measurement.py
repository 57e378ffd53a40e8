"""What the dynamic probe measured, as a typed, picklable record (no torch needed to read it).

The probe (``initlint.probe``) produces a ``ProbeMeasurement``; the probe-stage rules read it
through their RuleContext, the runner judges predictions against it (``initlint.verdict``), and
the report writes its ``to_json()``. Every per-layer number is the median over the seeds; the
per-seed values of the numbers predictions are judged on are kept in ``per_seed`` so that a
verdict can tell a clear result from one within the seeds' spread.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field

# Plain-SGD steps the frozen-parameter check runs on a copy (a chain of intended zeros, as in
# Fixup, unfreezes one link per step; a fatal zero pattern stays frozen however many it gets).
UNFREEZE_STEPS = 3
# Whole-model bounds of the gradient-flow rules, in variance terms (docs/science.md §8: the
# gradient-ratio thresholds 1e-3 and 70 are amplitudes): drawn on the plot.
VANISHING_VARIANCE = 1e-3**2
EXPLODING_VARIANCE = 70.0**2

LAYER_FIELDS = (
    "units", "mean", "std", "second_moment", "weight_second_moment", "output_variance", "layer_input_variance",
    "grad_norm", "grad_rms", "grad_out_norm", "weight_grad_norm", "grad_to_weight",
    "dead_fraction", "rarely_active_fraction", "saturated_fraction", "duplicate_fraction", "non_finite_fraction", "common_component", "forward_ratio", "backward_ratio",
)


@dataclass
class LayerMeasurement:
    """One weighted layer: its output's statistics (``output_variance``: the per-unit variance
    across the batch, averaged over units; ``layer_input_variance``: the same of its input, per
    channel), the loss gradient's norm at its input
    (``grad_norm``) and output (``grad_out_norm``), and what follows it (dead, saturated)."""

    layer: str
    weight: str | None = None
    kind: str | None = None
    units: int | None = None
    mean: float | None = None
    std: float | None = None
    second_moment: float | None = None
    weight_second_moment: float | None = None
    output_variance: float | None = None
    layer_input_variance: float | None = None  # the same of the layer's input, per channel (Quantity.LAYER_GAIN)
    grad_norm: float | None = None
    grad_rms: float | None = None
    grad_out_norm: float | None = None
    weight_grad_norm: float | None = None
    grad_to_weight: float | None = None
    dead_fraction: float | None = None
    rarely_active_fraction: float | None = None  # active on fewer than 1% of the batch's values
    saturated_fraction: float | None = None
    duplicate_fraction: float | None = None  # measured only where a finding predicts it
    non_finite_fraction: float | None = None  # likewise
    # The share of the output, less its bias, common to all units (Quantity.COMMON_COMPONENT).
    common_component: float | None = None
    forward_ratio: float | None = None  # weight_second_moment over the first layer's (table, plot)
    backward_ratio: float | None = None  # grad_norm over the last layer's (table, plot)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ProbeMeasurement:
    status: str  # "ok", "timeout" (no pass finished in time), "unavailable" (cannot run), "skipped"
    reason: str | None = None
    device: str = "cpu"
    seeds: list[int] = field(default_factory=list)
    loss: str | None = None  # cross_entropy | mse
    loss_value: float | None = None
    classes: int | None = None  # the output's class count, for cross-entropy
    output_std: float | None = None
    # The model's output was NaN or inf on every seed: why output_std is None when there is an output.
    output_non_finite: bool = False
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    layers: list[LayerMeasurement] = field(default_factory=list)
    # layer name -> quantity -> one value per seed (the numbers verdicts are judged on)
    per_seed: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    first_layer: str | None = None
    last_layer: str | None = None
    forward_ratio: float | None = None
    gradient_ratio: float | None = None
    gradient_first_layer: str | None = None
    gradient_last_layer: str | None = None
    measured_parameters: list[str] = field(default_factory=list)
    zero_gradient_parameters: list[str] = field(default_factory=list)
    frozen_parameters: list[str] = field(default_factory=list)
    frozen_checked: bool = True  # False when the frozen-parameter check ran out of time
    train: dict | None = None
    # Set when only the forward pass ran (onnxruntime): why, the reason the backward quantities
    # (gradients, frozen parameters) are unmeasured.
    forward_only: str | None = None
    # Why fewer seeds ran than the probe would have liked (budget), or more (near a threshold).
    seed_note: str | None = None
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self, name: str | None) -> LayerMeasurement | None:
        if not name:
            return None
        return next((r for r in self.layers if name in (r.layer, r.weight)), None)

    @property
    def chance_loss(self) -> float | None:
        return math.log(self.classes) if self.loss == "cross_entropy" and self.classes and self.classes >= 2 else None

    def gradient_flow(self) -> "GradientFlow":
        first, last = self.first_layer, self.last_layer
        row = self.row(first)
        return GradientFlow(
            gradient=self.gradient_ratio,
            forward=self.forward_ratio,
            first=first,
            last=last,
            gradient_first=self.gradient_first_layer or first,
            gradient_last=self.gradient_last_layer or last,
            location=(row.weight if row else None) or first or "model",
            seeds=len(self.seeds),
        )

    def to_json(self) -> dict:
        out = asdict(self)
        out["layers"] = [r.to_json() for r in self.layers]
        out.pop("per_seed")
        out.pop("notes")
        return _rounded(out)

    @classmethod
    def from_json(cls, data: dict) -> "ProbeMeasurement":
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["layers"] = [LayerMeasurement(**{k: v for k, v in r.items() if k in LayerMeasurement.__dataclass_fields__}) for r in data.get("layers", [])]
        return cls(**values)


@dataclass
class GradientFlow:
    """The whole-model numbers the gradient-flow rules (IL401, IL402) judge."""

    gradient: float | None  # input-gradient norm at the first weighted layer over that at the last
    forward: float | None  # forward second moment at the last weighted layer over that at the first
    first: str | None
    last: str | None
    gradient_first: str | None  # the layers the gradient ratio was taken between
    gradient_last: str | None
    location: str  # the first layer's weight: where a finding is reported
    seeds: int

    @property
    def evidence(self) -> dict:
        return {"gradient_ratio": self.gradient, "forward_ratio": self.forward, "first_layer": self.first, "last_layer": self.last}


def median(values) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(statistics.median(values)) if values else None


def _rounded(value):
    """Six significant digits: the same command prints the same numbers; inf/nan become None."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value
