"""Judge what a finding predicted against what the probe measured.

``confirmed``: the measurement is on the claimed side of the rule's own threshold on every seed
the probe ran. ``refuted``: it is clearly on the other side (on every seed, and the median
farther from the threshold than the seeds' spread, ``NEAR``). ``inconclusive`` only with a
stated reason: the probe did not run to the end, the span could not be measured on this model,
the seeds fell on both sides of the threshold, or the measurement missed it by less than the
spread. The runner applies the verdicts to findings.
"""

from __future__ import annotations

import math

from .measurement import ProbeMeasurement, median
from .prediction import Prediction, Quantity

# How close to the threshold a one-seed measurement has to be for the probe to run more seeds
# (initlint.probe): the spread between seeds, in the quantity's natural unit.
NEAR = {"ratio": 0.5, "fraction": 0.1, "other": 0.25}
# What a forward-only measurement (initlint.probe.onnxruntime_forward) cannot measure.
BACKWARD = (Quantity.GRADIENT_ENERGY_RATIO, Quantity.FROZEN_PARAMETERS)
NOT_FINITE = "the probe's measurement is not finite (NaN or inf)"


# The per-layer field each one-layer share is read from (initlint.measurement.LayerMeasurement).
LAYER_FIELD = {
    Quantity.SATURATED_FRACTION: "saturated_fraction",
    Quantity.DUPLICATE_UNIT_FRACTION: "duplicate_fraction",
    Quantity.NON_FINITE_FRACTION: "non_finite_fraction",
    Quantity.COMMON_COMPONENT: "common_component",
    Quantity.RARELY_ACTIVE_FRACTION: "rarely_active_fraction",
    Quantity.DEAD_FRACTION: "dead_fraction",
}


def near_threshold(prediction: Prediction, value: float) -> bool:
    kind = "ratio" if prediction.quantity.log_scale else "fraction" if prediction.quantity.is_fraction else "other"
    return abs(prediction.margin(value)) < NEAR[kind]


def measured_values(prediction: Prediction, probe: ProbeMeasurement) -> tuple[list[float], str | None]:
    """One measured value per seed (or one for the whole run), or a reason why there is none."""
    q = prediction.quantity
    if probe.forward_only and q in BACKWARD:
        return [], probe.forward_only
    if q is Quantity.FROZEN_PARAMETERS:
        if not probe.frozen_checked:
            return [], "the frozen-parameter check did not finish within the probe's time budget (--probe-timeout)"
        seen = [p for p in prediction.parameters if p in probe.measured_parameters]
        if not seen:
            return [], "the probe's passes did not reach these parameters (no gradient at all)"
        frozen = set(probe.frozen_parameters)
        return [sum(p in frozen for p in seen) / len(seen)], None
    if q is Quantity.INITIAL_LOSS_OVER_CHANCE:
        if probe.chance_loss is not None and probe.loss_value is None:
            return [], f"{NOT_FINITE}: the loss at init is NaN on every seed"
        if probe.chance_loss is None or probe.loss_value is None:
            return [], "the output is not a classifier's (no cross-entropy to compare with chance)"
        return [probe.loss_value / probe.chance_loss], None
    if q is Quantity.LOGIT_STD:
        if probe.output_std is not None:
            return [probe.output_std], None
        if probe.output_non_finite:
            return [], f"{NOT_FINITE}: the model's output overflows, so its standard deviation is undefined"
        return [], "the probe found no output tensor"
    rows = probe.per_seed
    for name in {prediction.from_layer, prediction.to_layer}:
        if name not in rows:
            return [], f"the probe could not watch {name} on this model (no module of its own)"
    if q is Quantity.FORWARD_VARIANCE_RATIO:
        pairs = zip(rows[prediction.to_layer].get("output_variance", []), rows[prediction.from_layer].get("output_variance", []))
        values = [_ratio(b, a) for b, a in pairs]
    elif q is Quantity.LAYER_GAIN:
        row = rows[prediction.to_layer]
        if not any(v is not None for v in row.get("layer_input_variance", [])):
            return [], f"the probe could not read the input of {prediction.to_layer} on this model (no floating-point input reached it)"
        values = [_ratio(b, a) for b, a in zip(row.get("output_variance", []), row.get("layer_input_variance", []))]
    elif q is Quantity.GRADIENT_ENERGY_RATIO:
        pairs = zip(rows[prediction.to_layer].get("grad_out_norm", []), rows[prediction.from_layer].get("grad_norm", []))
        values = [None if r is None else r * r for r in (_ratio(b, a) for b, a in pairs)]
    else:  # a share measured at one layer's output
        values = rows[prediction.to_layer].get(LAYER_FIELD[q], [])
    measured = [v for v in values if v is not None]
    values = [v for v in measured if not math.isnan(v)]
    if not values and measured:
        return [], f"{NOT_FINITE}: the {q.text} over this span is undefined where the outputs or gradients overflow"
    if not values:
        return [], f"the probe measured no {q.text} over this span (an exactly zero signal at its start, or no value reached it)"
    return values, None


def _ratio(num, den) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def judge(prediction: Prediction, probe: ProbeMeasurement) -> dict:
    """{"verdict", "reason", "measured", "seeds"} for one prediction."""
    values, why = measured_values(prediction, probe)
    if not values:
        return {"verdict": "inconclusive", "reason": why}
    value = median(values)
    crossing = sum(prediction.crosses(v) for v in values)
    side = "is" if prediction.crosses(value) else "is not"
    text = f"measured {prediction.quantity.text} {value:.3g} {side} {prediction.claim.value} {prediction.threshold:.3g}"
    if prediction.predicted is not None:
        text += f" (predicted {prediction.predicted:.3g})"
    if len(values) > 1:
        text += f", median of {len(values)} seeds"
    # JSON has no infinity: an overflowing ratio is reported in the reason only.
    out = {"measured": value if math.isfinite(value) else None, "seeds": len(values), "reason": text}
    if crossing == len(values):
        return {"verdict": "confirmed", **out}
    if crossing == 0 and not near_threshold(prediction, value):
        return {"verdict": "refuted", **out}
    if crossing == 0:
        # On the wrong side, but by less than the spread between seeds (half a decade for a
        # ratio): not a clear refutation, and the static claim keeps its severity.
        out["reason"] = f"{text}, but within the seeds' spread of it: neither confirmed nor clearly refuted"
        return {"verdict": "inconclusive", **out}
    out["reason"] = f"{text}; the seeds fall on both sides of the threshold ({crossing} of {len(values)} cross it)"
    return {"verdict": "inconclusive", **out}


def wants_more_seeds(predictions: list[Prediction], probe: ProbeMeasurement) -> bool:
    """Whether any prediction's one-seed measurement is too close to its threshold to settle."""
    for prediction in predictions:
        values, _ = measured_values(prediction, probe)
        if values and near_threshold(prediction, median(values)):
            return True
    return False
