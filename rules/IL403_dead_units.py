"""IL403 dead-units."""

from __future__ import annotations

from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.fixes import init_call, random_init_for


class DeadUnits(Rule):
    """Most units of a ReLU-family layer are inactive for every sample of the probe batch.

    ## What it does
    Runs the dynamic probe and counts, for each weighted layer followed by a ReLU-family
    activation (ReLU, ReLU6, LeakyReLU, PReLU; through normalization, pooling and reshapes),
    the units (neurons, or channels of a conv) whose activation input is <= 0 for every
    sample and position of the batch. Flags a layer where more than 70% are (median of three
    seeded batches).

    ## Why is this bad?
    A ReLU unit that is never active gets no gradient, so it never becomes active again: it
    is dead from the first step and the layer has only its remaining units to learn with. A
    bias initialized too negative (or a badly shifted input) kills most of a layer at once.

    ## Example
    ```python
    layer = nn.Linear(64, 64)
    nn.init.constant_(layer.bias, -5.0)  # every pre-activation is about -5 +- 1.4
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), layer, nn.ReLU(), nn.Linear(64, 4))
    ```

    ## How to fix
    Initialize biases to zero (or a small positive value before ReLU), keep the weights
    fan-scaled so pre-activations have unit scale, or use LeakyReLU/GELU where dead units
    keep recurring.

    ## Options
    - `dead_fraction_above` (0.7): AUTOTRAINER's γ and DeepDiagnosis' threshold.
    - `min_units` (32): smaller layers are not judged. Their share is too coarse (6 of 8
      units is 75%), and where the probe's random inputs barely differ between samples (after
      a global pooling, as in squeeze-excitation blocks) each unit is on or off by the sign of
      its weights alone: 6 or more of 8 then happens by chance 14% of the time, 23 or more of
      32 only 1%.

    ## Known false positives
    Healthy He-initialized plain ReLU nets already show 25-44% dead units at depth 30-50
    (docs/science.md §8), hence 0.7 and not 0.5; a real bias pathology reaches 0.96-1.0. A very
    small probe batch makes units look dead by chance: the probe uses a few hundred samples
    where the model is small.

    ## References
    - docs/science.md §5 (dead ReLU from bias), §8 (dead-unit criterion, measured healthy levels)
    - Zhang et al. 2021, "AUTOTRAINER" (γ = 0.7); Wardat et al. 2022, "DeepDiagnosis" (ICSE 2022)
    - Lu et al. 2019, "Dying ReLU and Initialization: Theory and Numerical Examples"
    """

    code = "IL403"
    name = "dead-units"
    severity = Severity.ERROR
    stage = "probe"
    needs_structure = True
    options = {"dead_fraction_above": 0.7, "min_units": 32}

    def check(self, ctx):
        graph = ctx.graph
        probe = ctx.probe
        if probe is None:
            return
        limit = self.settings["dead_fraction_above"]
        # An all-zero layer outputs its bias, not a dead unit's pre-activation: that is IL101's.
        zero = {layer.name for layer in graph.weighted_layers() if layer.weight.stats.all_zero}
        for row in probe.layers:
            dead = row.dead_fraction
            units = row.units or 0
            if dead is not None and dead > limit and row.layer not in zero and units >= self.settings["min_units"]:
                yield self.finding(
                    row.weight or row.layer,
                    f"most units after layer {graph.label(row.layer)} start dead: they output 0 on every input, pass no gradient and do not learn: "
                    f"{dead:.0%} of them are inactive (<= 0) for every sample of the probe batch (above {limit:.0%})",
                    evidence={"dead_fraction": dead, "layer": graph.label(row.layer)},
                    fix=_fix(graph, row.layer),
                )

    must_flag = ()
    must_not_flag = ()


# --- examples: the models this rule must and must not flag -----------------------------------


_FIX = "initialize the bias to zero (or slightly positive) and keep the weights fan-scaled; consider LeakyReLU"


def _fix(graph: g.ModelGraph, layer_name: str) -> str:
    """Zero the negative shift that pushes the pre-activations below 0 (the layer's bias, or the
    shift of a normalization right after it); with no such shift, the fan-scaled init of the weights."""
    layer = graph.layers.get(layer_name)
    if layer is None or not layer.is_weighted or layer.kind == g.EMBEDDING:
        return _FIX
    # A normalization right after the layer removes the layer's own bias: its shift is the one that counts.
    norms = [n for n in graph.downstream(layer) if n.kind == g.NORM]
    candidates = [n.bias for n in norms] if norms else [layer.bias]
    shifts = [t.name for t in candidates if t is not None and t.stats.count and t.stats.mean < 0]
    if shifts:
        return f"{' and '.join(init_call('zeros_', name) for name in shifts)}: with no negative shift about half the units start active; or use LeakyReLU"
    return f"{random_init_for(graph, layer)}: fan-scaled weights leave about half the units active; or use LeakyReLU"


def negative_bias_before_relu():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    for layer in (model[0], model[2]):
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.constant_(model[2].bias, -5.0)
    return model


def dead_channels_after_batchnorm():
    import torch.nn as nn

    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 8 * 8, 4))
    nn.init.constant_(model[1].bias, -6.0)  # BatchNorm shift: every normalized value below 0
    return model


def deep_relu_he():
    import torch.nn as nn

    layers = []
    for i in range(20):
        layer = nn.Linear(16 if i == 0 else 64, 64)
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)
        layers += [layer, nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(64, 4))


def default_conv_relu():
    import torch.nn as nn

    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 8 * 8, 4))


DeadUnits.must_flag = (
    Example(negative_bias_before_relu, flagged=("2.weight",), severity="error", input_shape=(64, 16)),
    Example(dead_channels_after_batchnorm, flagged=("0.weight",), severity="error", input_shape=(16, 3, 8, 8)),
)
DeadUnits.must_not_flag = (
    Example(deep_relu_he, input_shape=(128, 16)),
    Example(default_conv_relu, input_shape=(16, 3, 8, 8)),
)
