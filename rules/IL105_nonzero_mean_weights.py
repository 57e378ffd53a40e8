"""IL105 nonzero-mean-weights."""

from __future__ import annotations

import math

from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.fixes import random_init_for
from initlint.prediction import Claim, Prediction, Quantity


class NonzeroMeanWeights(Rule):
    """Weights whose mean is far from zero relative to their spread (e.g. U(0, 1) init).

    ## What it does
    Tests each weight matrix or kernel for a non-zero mean: the mean must differ from zero
    significantly (|mean| / (std / sqrt(n)) > `z_threshold`, docs/science.md §5) and matter for the
    signal: the coherent part of a pre-activation, sqrt(fan_in) * |mean| / std, must reach
    `coherent_warning` (error from `coherent_error`).

    ## Why is this bad?
    Every init scheme draws weights with mean zero. With a non-zero mean every unit adds up
    the same shared component fan_in * mean * E[h] on top of its random part, so the units of
    a layer compute nearly the same thing and the variance grows with fan_in layer after
    layer. The classic cause is `nn.init.uniform_(w)`, which is U(0, 1), not U(-a, a).

    What the probe measures: with W = mean + std·e, a unit's pre-activation is
    mean·Σ_j x_j, the same for every unit, plus std·Σ_j e_ij·x_j, its own. For inputs of
    common mean m, second moment q and variance v = q − m² (from the signal model,
    docs/science.md §1) E[(Σ_j x_j)²] = fan_in·v + fan_in²·m², so the shared part's second
    moment is R = coherent²·(v/fan_in + m²)/q times the unit's own (at least: inputs that are
    positively correlated, as neighbouring pixels are, only add to it), and the share of the
    output (less its bias) common to all units (`common_component`) is (R + 1/units)/(R + 1).
    A finding claims that share above what the coherent bound it crossed (`coherent_warning`
    for a warning, `coherent_error` for an error) gives in place of the coherent ratio.

    Right after a LayerNorm whose gain is one constant and whose shift is zero (as at init)
    Σ_j x_j = 0 for every sample, and the shared part cancels exactly: the offset is dormant.
    It wakes as soon as the norm's shift trains (mean·Σ_j β_j reaches every unit), and the
    gradient cannot remove it meanwhile (a row's update along the all-ones direction is
    δ_i·Σ_j x_j = 0). Such a finding is a warning and makes no claim: nothing measurable at
    init shows it.

    ## Example
    ```python
    layer = nn.Linear(256, 256)
    nn.init.uniform_(layer.weight)        # U(0, 1): mean 0.5
    nn.init.normal_(layer.weight, 0.02)   # mean 0.02, std 1: arguments swapped
    ```

    ## How to fix
    Draw symmetric around zero: `nn.init.uniform_(w, -a, a)` with `a = sqrt(6 / (fan_in +
    fan_out))`, or `nn.init.normal_(w, mean=0.0, std=0.02)` with keyword arguments.

    ## Options
    - `z_threshold` (6.0): significance of the mean, in standard errors.
    - `coherent_warning` (2.0) and `coherent_error` (4.0): sqrt(fan_in) * |mean| / std. An
      identity (`eye_`, `dirac_`) init sits at about 1 and is not flagged.

    ## Known false positives
    Trained weights can have small non-zero means; the coherent-part test keeps them below
    the thresholds in the cases measured. Normalization weights (1-D) are never tested.
    On trained weights (layers matching no init scheme, or a trained model as a whole) a
    finding of this rule is reported as info unless the probe confirms it (README, "Trained weights").

    ## References
    - docs/science.md §5 (non-zero mean: flag when |mean|/(std/sqrt(n)) > 6)
    - PyTorch docs, `torch.nn.init.uniform_` (default bounds a=0, b=1)
    """

    code = "IL105"
    name = "nonzero-mean-weights"
    severity = Severity.ERROR
    options = {"z_threshold": 6.0, "coherent_warning": 2.0, "coherent_error": 4.0}

    def check(self, ctx):
        graph = ctx.graph
        for layer in graph.layers.values():
            weight = layer.weight
            if weight is None or weight.ndim < 2 or layer.kind == g.EMBEDDING or not layer.is_weighted:
                continue
            stats = weight.stats
            # A constant tensor is IL102's; its variance is rounding noise (4e-19 for 512,000
            # equal float32 values), which would make any mean look infinitely significant.
            if stats.all_equal or stats.var <= 0 or stats.finite_count < 2:
                continue
            std = stats.std
            z = abs(stats.mean) / (std / math.sqrt(stats.finite_count))
            fan_in = layer.fan_in or max(weight.size // weight.shape[0], 1)
            coherent = math.sqrt(fan_in) * abs(stats.mean) / std
            if z <= self.settings["z_threshold"] or coherent < self.settings["coherent_warning"]:
                continue
            severity = Severity.ERROR if coherent >= self.settings["coherent_error"] else Severity.WARNING
            bound = self.settings["coherent_error"] if severity is Severity.ERROR else self.settings["coherent_warning"]
            detail = f"mean {stats.mean:.4g} with std {std:.4g} over {stats.finite_count:,} values, {z:.0f} standard errors from 0, fan_in {fan_in}"
            evidence = {"mean": stats.mean, "std": std, "z": z, "coherent_ratio": coherent, "fan_in": fan_in}
            fix = f"{random_init_for(graph, layer)}: a zero-mean draw scaled by the layer's fan"
            norm = _centering_norm(graph, layer)
            if norm is not None:
                yield self.finding(
                    weight.name,
                    f"these weights share an offset {coherent:.1f}x the input-dependent part of each pre-activation, dormant at init only "
                    f"because the LayerNorm {norm.name} before it centers its input: once the norm's shift trains, every unit gets the same "
                    f"push, and the gradient cannot remove the offset in the meantime ({detail})",
                    Severity.WARNING,
                    evidence={**evidence, "centered_by": norm.name},
                    fix=fix,
                )
                continue
            yield self.finding(
                weight.name,
                f"the units after this layer start out nearly alike, all pushed the same way by a shared offset: "
                f"the offset is {coherent:.1f}x the input-dependent part of each pre-activation ({detail})",
                severity,
                evidence=evidence,
                prediction=_prediction(layer, ctx.signal.get(layer.name), fan_in, coherent, bound),
                fix=fix,
            )

    must_flag = ()
    must_not_flag = ()


# Layers whose watched output is the weights' own product with the input; an RNN's or an
# attention module's output has passed a nonlinearity or a second projection first.
_MEASURED_KINDS = frozenset({g.LINEAR, g.CONV, g.CONV_TRANSPOSE})


def _centering_norm(graph: g.ModelGraph, layer: g.Layer) -> g.Layer | None:
    """The LayerNorm right before ``layer`` when it makes the layer's inputs sum to zero for
    every sample: a centering norm (a shift parameter, no RMS) with one constant gain and a
    zero shift. The name says LayerNorm (torch, timm's LayerNorm2d, ONNX LayerNormalization);
    GroupNorm and InstanceNorm center over positions too, not each input patch."""
    before = graph.upstream(layer, g.TRANSPARENT_KINDS)
    if len(before) != 1 or before[0].kind != g.NORM:
        return None
    norm = before[0]
    op = norm.op.lower()
    if "layernorm" not in op or "rms" in op:
        return None
    gain, shift = norm.params.get("weight"), norm.bias
    if shift is None or not shift.stats.all_zero or (gain is not None and not gain.stats.all_equal):
        return None
    return norm


def _prediction(layer, signal, fan_in: int, coherent: float, bound: float) -> Prediction | None:
    """The share of the output common to all units: above what the crossed ``bound`` gives."""
    if layer.kind not in _MEASURED_KINDS or signal is None or not signal.q_in > 0 or not math.isfinite(signal.q_in):
        return None
    units = layer.units or 0
    if units < 2:  # one unit shares everything with itself
        return None
    # The shared part's second moment over a unit's own, per unit of coherent²: the input's
    # spread the fan-in sums (v/fan_in) plus the offset m it carries into every unit.
    mean_sq = min(signal.m_in**2, signal.q_in)
    per_coherent_sq = ((signal.q_in - mean_sq) / fan_in + mean_sq) / signal.q_in

    def share(ratio: float) -> float:
        shared = ratio * ratio * per_coherent_sq
        return (shared + 1 / units) / (shared + 1)

    return Prediction(Quantity.COMMON_COMPONENT, Claim.ABOVE, share(bound), to_layer=layer.name, predicted=share(coherent))


def uniform_zero_one_init():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    nn.init.uniform_(model[2].weight)  # U(0, 1)
    return model


def default_init_mlp():
    import torch.nn as nn

    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))


def identity_init():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    nn.init.eye_(model[2].weight)
    return model


def uniform_first_layer():
    """U(0, 1) on a layer that reads the zero-mean input: no offset to pass on, yet the fan-in
    sums its spread into one shared part, mean·Σ_j x_j, the same in every unit."""
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    nn.init.uniform_(model[0].weight)
    return model


def uniform_after_layernorm():
    """A transformer MLP's up-projection drawn from U(0, 1) behind a LayerNorm: dormant at init."""
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 64), nn.LayerNorm(64), nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 4))
    nn.init.uniform_(model[2].weight)
    return model


NonzeroMeanWeights.must_flag = (
    Example(uniform_zero_one_init, flagged=("2.weight",), severity="error"),
    Example(uniform_first_layer, flagged=("0.weight",), severity="error", input_shape=(4, 64)),
    Example(uniform_after_layernorm, flagged=("2.weight",), severity="warning"),
)
def large_constant_layers():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(512, 1000), nn.ReLU(), nn.Linear(1000, 512), nn.ReLU(), nn.Linear(512, 4))
    for layer in model[::2]:
        nn.init.constant_(layer.weight, 0.05)
    return model


NonzeroMeanWeights.must_not_flag = (Example(default_init_mlp), Example(identity_init), Example(large_constant_layers, input_shape=(2, 512)))
