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
    mean·Σ_j x_j, the same for every unit, plus std·Σ_j e_ij·x_j, its own. For an input of
    common mean m and second moment q (from the signal model, docs/science.md §1) the
    shared part's second moment is at least R = coherent²·m²/q times the unit's own, so the
    share of the output (less its bias) common to all units (`common_component`) is
    (R + 1/units) / (R + 1). A finding claims that share above what the coherent bound it
    crossed (`coherent_warning` for a warning, `coherent_error` for an error) gives in place
    of the coherent ratio. Where the input carries no offset to share (centered data, or
    after a LayerNorm, whose Σ_j x_j = 0 cancels the shared part) the finding makes no claim.

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
            yield self.finding(
                weight.name,
                f"the units after this layer start out nearly alike, all pushed the same way by a shared offset: "
                f"the offset is {coherent:.1f}x the input-dependent part of each pre-activation "
                f"(mean {stats.mean:.4g} with std {std:.4g} over {stats.finite_count:,} values, {z:.0f} standard errors from 0, fan_in {fan_in})",
                severity,
                evidence={"mean": stats.mean, "std": std, "z": z, "coherent_ratio": coherent, "fan_in": fan_in},
                prediction=_prediction(layer, ctx.signal.get(layer.name), fan_in, coherent, bound),
                fix=f"{random_init_for(graph, layer)}: a zero-mean draw scaled by the layer's fan",
            )

    must_flag = ()
    must_not_flag = ()


# Layers whose watched output is the weights' own product with the input; an RNN's or an
# attention module's output has passed a nonlinearity or a second projection first.
_MEASURED_KINDS = frozenset({g.LINEAR, g.CONV, g.CONV_TRANSPOSE})


def _prediction(layer, signal, fan_in: int, coherent: float, bound: float) -> Prediction | None:
    """The share of the output common to all units: above what the crossed ``bound`` gives."""
    if layer.kind not in _MEASURED_KINDS or signal is None or not signal.q_in > 0 or not math.isfinite(signal.q_in):
        return None
    # The shared part's second moment over a unit's own, per unit of coherent², is m²/q: the
    # offset m the input carries into every unit. Where that offset is smaller than the spread
    # the fan-in averages (m² <= (q - m²)/fan_in: centered data, an input a LayerNorm centered
    # across its units, which cancels μ·Σ_j x_j exactly), the shared part is not the offset and
    # there is nothing this claim could check.
    offset = min(signal.m_in**2 / signal.q_in, 1.0)
    if offset * fan_in <= 1.0 - offset:
        return None
    units = layer.units or 0
    if units < 2:  # one unit shares everything with itself
        return None

    def share(ratio: float) -> float:
        shared = ratio * ratio * offset
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


NonzeroMeanWeights.must_flag = (Example(uniform_zero_one_init, flagged=("2.weight",), severity="error"),)
def large_constant_layers():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(512, 1000), nn.ReLU(), nn.Linear(1000, 512), nn.ReLU(), nn.Linear(512, 4))
    for layer in model[::2]:
        nn.init.constant_(layer.weight, 0.05)
    return model


NonzeroMeanWeights.must_not_flag = (Example(default_init_mlp), Example(identity_init), Example(large_constant_layers, input_shape=(2, 512)))
