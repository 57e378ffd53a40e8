"""IL304 dead-relu-bias."""

from __future__ import annotations

import math

import numpy as np

from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.prediction import Claim, Prediction, Quantity
from initlint.chains import feeding_layer, reliable
from initlint.signal import weight_variance
from initlint.example_models import plain_mlp


class DeadReluBias(Rule):
    """Biases so negative that most ReLU units of a layer never activate at init.

    ## What it does
    For each ReLU/ReLU6 fed by a weighted layer with a bias, predicts the standard deviation
    σ_z of the pre-activation without the bias (fan_in·Var(W) times the second moment reaching
    the layer, from signal propagation, which carries the means: a negative bias before a ReLU
    shrinks what reaches the next layer) and counts the units with b_i < -`sigmas`·σ_z: such a
    unit is active with probability below 0.13% (docs/science.md §5). A bias that is harmless
    at the first layer can so be fatal a few layers on, where the signal has shrunk. Where a normalization sits between the layer and
    the ReLU, its shift β_i and scale γ_i decide instead (β_i < -`sigmas`·|γ_i|). An error
    when more than `error_fraction` of the layer's units are dead, a warning above
    `warning_fraction`.

    ## Why is this bad?
    ReLU'(z) = 0 for z < 0: a unit that is inactive for every input gets no gradient through
    its incoming weights and stays dead. A layer whose units are mostly dead passes almost
    nothing forward and almost no gradient backward.

    ## Example
    ```python
    linear = nn.Linear(256, 256)
    nn.init.constant_(linear.bias, -5.0)  # pre-activation std ~0.6: every unit dead
    block = nn.Sequential(linear, nn.ReLU())
    ```

    ## How to fix
    Initialize biases to zero (`nn.init.zeros_(linear.bias)`) or to a small positive value
    (0.01-0.1) for ReLU layers.

    ## Options
    - `sigmas` (3.0): how many σ_z below zero a bias must be for its unit to count as dead.
    - `error_fraction` (0.5) and `warning_fraction` (0.25): share of dead units of a layer.

    ## Known false positives
    The prediction assumes inputs of variance one at the first layer; inputs with a large
    positive mean can keep units alive that look dead here. The probe measures on its batch
    the share of units active on fewer than 1% of the values, which a unit firing with
    probability below 0.13% stays under whatever the batch size (docs/science.md §8).
    On trained weights (layers matching no init scheme, or a trained model as a whole) a
    finding of this rule is reported as info unless the probe confirms it (README, "Trained weights").

    ## References
    - docs/science.md §5 (dead ReLU from bias), §8 (dead units, AUTOTRAINER γ = 0.7), §11 (means)
    - Lu et al. 2019, "Dying ReLU and Initialization: Theory and Numerical Examples"
    """

    code = "IL304"
    name = "dead-relu-bias"
    severity = Severity.ERROR
    needs_structure = True
    options = {"sigmas": 3.0, "error_fraction": 0.5, "warning_fraction": 0.25}

    def check(self, ctx):
        graph = ctx.graph
        if not reliable(graph):
            return
        sig = ctx.signal
        k = self.settings["sigmas"]
        for act in graph.layers.values():
            if act.kind != g.ACTIVATION or act.activation not in ("relu", "relu6"):
                continue
            found = self._dead_units(graph, sig, act, k)
            if found is None:
                continue
            where, layer, dead, total, threshold, source = found
            fraction = dead / total
            if fraction <= self.settings["warning_fraction"]:
                continue
            severity = Severity.ERROR if fraction > self.settings["error_fraction"] else Severity.WARNING
            bound = self.settings["error_fraction"] if severity is Severity.ERROR else self.settings["warning_fraction"]
            yield self.finding(
                where.name,
                f"{dead} of {total} units ({fraction:.0%}) start dead and will not train: they output 0 for almost every input, "
                f"so their weights get no gradient; their {source} is below -{k:g}σ = {-threshold:.3g} "
                f"(predicted pre-activation std {threshold / k:.3g})",
                severity,
                evidence={"dead_units": dead, "units": total, "fraction": fraction, "threshold": threshold},
                # Measured after the weighted layer that feeds the ReLU (through the normalization).
                prediction=Prediction(Quantity.RARELY_ACTIVE_FRACTION, Claim.ABOVE, bound, to_layer=layer.name, predicted=fraction) if layer is not None else None,
                fix=f'nn.init.zeros_(model.get_parameter("{where.name}")) (or nn.init.constant_(..., 0.01)): a layer followed by ReLU starts with its bias at or just above 0',
            )

    def _dead_units(self, graph, sig, act, k):
        before = graph.upstream(act)
        if len(before) != 1:
            return None
        node = before[0]
        if node.kind == g.NORM:
            beta, gamma = node.params.get("bias"), node.params.get("weight")
            if beta is None or beta.ndim != 1:
                return None
            b = np.asarray(beta.values(), dtype=np.float64)
            scale = np.abs(np.asarray(gamma.values(), dtype=np.float64)) if gamma is not None and gamma.shape == beta.shape else np.ones_like(b)
            dead = int(np.sum(b < -k * scale))
            feeding = graph.upstream(node)
            weighted = feeding[0] if len(feeding) == 1 and feeding[0].is_weighted else None
            return beta, weighted, dead, b.size, float(k * np.median(scale)), "normalization shift β"
        layer = feeding_layer(graph, act)
        if layer is None or layer.bias is None or layer.bias.ndim != 1 or not layer.fan_in:
            return None
        # The spread of the weighted sum W·h across units and inputs, without this layer's
        # bias (which shifts each unit, it does not spread it). Judging it on the
        # input-dependent part alone would call every unit of a vanishing stack dead: IL301's
        # finding, not a bias pathology.
        sigma_z = math.sqrt(max(layer.fan_in * weight_variance(layer) * sig[layer.name].q_in, 0.0))
        b = np.asarray(layer.bias.values(), dtype=np.float64)
        threshold = k * sigma_z
        return layer.bias, layer, int(np.sum(b < -threshold)), b.size, threshold, "bias"


def _relu_mlp(bias: float | None, depth: int = 4, width: int = 64):
    import torch.nn as nn

    return plain_mlp(depth, "ReLU", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), width, bias=bias)


def relu_mlp_bias_minus_5():
    return _relu_mlp(-5.0)


def conv_batchnorm_relu_negative_shift():
    import torch.nn as nn

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
    nn.init.constant_(model[1].bias, -4.0)
    return model


def relu_mlp_10_bias_minus_1():
    return _relu_mlp(-1.0, depth=10)


def relu_mlp_zero_bias():
    return _relu_mlp(0.0)


def relu_mlp_default_bias():
    return _relu_mlp(None)


def relu_mlp_small_negative_bias():
    return _relu_mlp(-0.1)


DeadReluBias.must_flag = (
    Example(relu_mlp_bias_minus_5, flagged=("0.bias",), severity="error"),
    # -1 is within 3σ at the first two layers; the negative means shrink the signal until the
    # third layer's units are all dead.
    Example(relu_mlp_10_bias_minus_1, flagged=("4.bias",), severity="error"),
    Example(conv_batchnorm_relu_negative_shift, flagged=("1.bias",), severity="error", input_shape=(2, 3, 8, 8)),
)
DeadReluBias.must_not_flag = (
    Example(relu_mlp_zero_bias),
    Example(relu_mlp_default_bias),
    Example(relu_mlp_small_negative_bias),
)
