"""Check what static findings predict against what the probe measured.

The prediction vocabulary (``Finding.prediction``, a dict; every key optional). Ratios are those
of the probe's measurement (docs/science.md §8): the *forward ratio* is the second moment of a layer's
output less its bias over that of the first weighted layer (a variance); the *gradient ratio* is
the norm of the loss gradient with respect to the first weighted layer's input over that at
the last one
(an amplitude).

- ``forward_ratio_below: t`` / ``forward_ratio_above: t`` — the forward ratio at ``layer`` (or
  at the last weighted layer) is below / above ``t``.
- ``backward_ratio_below: t`` / ``backward_ratio_above: t`` — the same for the gradient ratio
  (at ``layer``: that layer's gradient RMS over the last layer's).
- ``forward_ratio: x`` / ``backward_ratio: x`` — a predicted value, as the static signal model
  computes it; both are variance ratios, so the backward one is compared with the square of the
  measured gradient ratio. Confirmed when the measurement shows the same pathology: for x < 1 the
  measurement is at most 10·x or below the vanishing bound (1e-6 in variance), for x > 1 at least
  x/10 or above the exploding bound (70² in variance); refuted otherwise.
- ``dead_fraction_above: t`` with ``layer`` — the share of never-active units after ``layer``.
- ``saturation_above: t`` with ``layer`` — the share of pre-activations of the tanh (|z| > 2)
  or sigmoid (|z| > 4) after ``layer`` that are saturated.
- ``frozen_parameters: [names]`` — each named parameter keeps an exactly zero gradient after
  SGD steps on a copy.
- ``layer`` — the graph layer (or its weight's name) the prediction is about.
- ``forward_var_below`` / ``forward_var_above`` (the example in Finding's comment) mean the
  same as ``forward_ratio_below`` / ``_above``; ``backward_var_below`` / ``_above`` bound the
  gradient variance ratio (the square of the gradient ratio).

A finding without a prediction, or whose prediction names nothing the probe measured, is
``inconclusive``. A refuted finding drops to info and says why.
"""

from __future__ import annotations

import math

from ..engine import Finding, Severity

# Bounds in variance terms: docs/science.md §8's gradient-ratio thresholds (1e-3, 70) are amplitudes.
VANISHING_VARIANCE = 1e-3**2
EXPLODING_VARIANCE = 70.0**2
VALUE_TOLERANCE = 10.0

KNOWN_KEYS = {
    "forward_ratio_below", "forward_ratio_above", "backward_ratio_below", "backward_ratio_above",
    "forward_ratio", "backward_ratio", "dead_fraction_above", "saturation_above", "frozen_parameters", "layer",
}


ALIASES = {"forward_var_below", "forward_var_above", "backward_var_below", "backward_var_above"}


def _row(probe: dict, layer: str | None) -> dict | None:
    if not layer:
        return None
    for row in probe.get("layers", []):
        if layer in (row["layer"], row.get("weight")):
            return row
    return None


def _forward(probe: dict, layer: str | None) -> float | None:
    row = _row(probe, layer)
    return row.get("forward_ratio") if row else probe.get("forward_ratio")


def _backward(probe: dict, layer: str | None) -> float | None:
    row = _row(probe, layer)
    return row.get("backward_ratio") if row else probe.get("gradient_ratio")


def _value_holds(predicted: float, measured: float) -> bool:
    if predicted < 1:
        return measured <= max(predicted * VALUE_TOLERANCE, VANISHING_VARIANCE)
    return measured >= min(predicted / VALUE_TOLERANCE, EXPLODING_VARIANCE)


def check_prediction(prediction: dict, probe: dict) -> tuple[str, dict, str]:
    """(verdict, measured numbers, reason) for one prediction."""
    prediction = dict(prediction)
    for alias, key in (("forward_var_below", "forward_ratio_below"), ("forward_var_above", "forward_ratio_above")):
        if alias in prediction:
            prediction.setdefault(key, prediction[alias])
    for alias, key in (("backward_var_below", "backward_ratio_below"), ("backward_var_above", "backward_ratio_above")):
        if alias in prediction and _finite(prediction[alias]) and float(prediction[alias]) >= 0:
            prediction.setdefault(key, float(prediction[alias]) ** 0.5)  # variance bound -> amplitude bound
    layer = prediction.get("layer")
    measured: dict = {}
    holds: list[tuple[bool, str]] = []

    def compare(key: str, value, ok: bool, text: str):
        measured[key] = value
        holds.append((ok, text))

    forward, backward = _forward(probe, layer), _backward(probe, layer)
    backward_var = backward**2 if backward is not None else None
    for key, direction in (("forward_ratio_below", "<"), ("forward_ratio_above", ">")):
        if key in prediction and forward is not None:
            t = float(prediction[key])
            ok = forward < t if direction == "<" else forward > t
            compare("forward_ratio", forward, ok, f"measured forward ratio {forward:.3g} {'is' if ok else 'is not'} {direction} {t:g}")
    for key, direction in (("backward_ratio_below", "<"), ("backward_ratio_above", ">")):
        if key in prediction and backward is not None:
            t = float(prediction[key])
            ok = backward < t if direction == "<" else backward > t
            compare("gradient_ratio", backward, ok, f"measured gradient ratio {backward:.3g} {'is' if ok else 'is not'} {direction} {t:g}")
    if "forward_ratio" in prediction and forward is not None and _finite(prediction["forward_ratio"]):
        ok = _value_holds(float(prediction["forward_ratio"]), forward)
        compare("forward_ratio", forward, ok, f"predicted forward variance ratio {float(prediction['forward_ratio']):.3g}, measured {forward:.3g}")
    if "backward_ratio" in prediction and backward_var is not None and _finite(prediction["backward_ratio"]):
        ok = _value_holds(float(prediction["backward_ratio"]), backward_var)
        compare("gradient_variance_ratio", backward_var, ok, f"predicted gradient variance ratio {float(prediction['backward_ratio']):.3g}, measured {backward_var:.3g}")
    if "dead_fraction_above" in prediction:
        row = _row(probe, layer)
        dead = row.get("dead_fraction") if row else None
        if dead is not None:
            t = float(prediction["dead_fraction_above"])
            compare("dead_fraction", dead, dead > t, f"measured dead fraction {dead:.2f} {'>' if dead > t else '<='} {t:g}")
    if "saturation_above" in prediction:
        row = _row(probe, layer)
        saturated = row.get("saturated_fraction") if row else None
        if saturated is not None:
            t = float(prediction["saturation_above"])
            compare("saturated_fraction", saturated, saturated > t, f"measured saturated fraction {saturated:.2f} {'>' if saturated > t else '<='} {t:g}")
    if prediction.get("frozen_parameters"):
        names = list(prediction["frozen_parameters"])
        frozen = set(probe.get("frozen_parameters", []))
        seen = set(probe.get("measured_parameters", []))
        known = [n for n in names if n in seen]
        if known:
            still = [n for n in known if n in frozen]
            compare("frozen_parameters", still, len(still) == len(known),
                    f"{len(still)} of {len(known)} predicted frozen parameters kept an exactly zero gradient after SGD steps")
    if not holds:
        unknown = sorted(set(prediction) - KNOWN_KEYS - ALIASES)
        extra = f" (unknown prediction keys: {', '.join(unknown)})" if unknown else ""
        return "inconclusive", measured, f"the probe measured nothing this finding predicts{extra}"
    if all(ok for ok, _ in holds):
        return "confirmed", measured, "; ".join(text for _, text in holds)
    return "refuted", measured, "; ".join(text for ok, text in holds if not ok)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def confirm_findings(findings: list[Finding], probe: dict | None, why_not: str | None = None) -> None:
    """Set ``finding.probe`` on every finding; a refuted one drops to info and says why."""
    for finding in findings:
        if probe is None:
            finding.probe = {"verdict": "inconclusive", "reason": why_not or "the probe did not run"}
            continue
        if not finding.prediction:
            finding.probe = {"verdict": "inconclusive", "reason": "the finding makes no prediction the probe can check"}
            continue
        verdict, measured, reason = check_prediction(finding.prediction, probe)
        finding.probe = {"verdict": verdict, "measured": measured, "reason": reason}
        if verdict == "refuted" and finding.severity > Severity.INFO:
            finding.probe["original_severity"] = str(finding.severity)
            finding.severity = Severity.INFO
            finding.message += f" (refuted by the probe: {reason})"
