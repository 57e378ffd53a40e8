"""IL202 saturating-activation-overscaled."""

from __future__ import annotations

import math

from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.fixes import random_init_for
from initlint.prediction import Claim, Prediction, Quantity
from initlint.chains import feeding_layer
from initlint.signal import activation_gains, weight_variance
from initlint.example_models import plain_mlp

# |z| beyond which each activation is saturated (docs/science.md §6, §8): its derivative is below
# about 0.07 (tanh at 2, sigmoid at 4) or exactly 0 (the hard variants).
SATURATION_POINT = {"tanh": 2.0, "sigmoid": 4.0, "hardtanh": 1.0, "hardsigmoid": 3.0}


def saturated_fraction(activation: str, std: float) -> float:
    """P(|z| > saturation point) for z ~ N(0, std²)."""
    if std <= 0:
        return 0.0
    return math.erfc(SATURATION_POINT[activation] / (std * math.sqrt(2.0)))


class SaturatingActivationOverscaled(Rule):
    """A tanh or sigmoid whose pre-activations are predicted to sit mostly in saturation.

    ## What it does
    For every tanh, sigmoid, hardtanh and hardsigmoid fed by a weighted layer, takes the
    predicted standard deviation of the pre-activation from static signal propagation
    (measured weight variance × fan-in × incoming second moment, docs/science.md §1) and the
    fraction of a Gaussian with that std beyond the saturation point (|z| > 2 for tanh, > 4
    for sigmoid, > 1 for hardtanh, > 3 for hardsigmoid). Reports it as an error above
    `error_fraction`, a warning above `warning_fraction`. The message also gives the per-layer
    gradient factor √χ, which says whether the gradient then explodes or vanishes.

    ## Why is this bad?
    A saturated unit passes almost no gradient and its output carries one bit (the sign).
    With N(0, 1) or He-scaled weights on wide layers the pre-activation std is several units:
    at std 3 half of all tanh units are saturated (docs/science.md §6), and the gradient, far from
    vanishing, explodes by about ×2.9 per layer at N(0, 1) (chaotic phase).

    ## Example
    ```python
    layers = []
    for _ in range(10):
        linear = nn.Linear(64, 64)
        nn.init.normal_(linear.weight)  # std 1: pre-activation std ≈ 8
        layers += [linear, nn.Tanh()]
    ```

    ## How to fix
    Scale the weights for the activation: `nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain("tanh"))`
    for tanh, `nn.init.xavier_uniform_(w)` for sigmoid; never `nn.init.normal_(w)` (std 1)
    on a wide layer. Normalizing the pre-activations (LayerNorm/BatchNorm) also works.

    ## Options
    - `error_fraction` (0.5): share of saturated pre-activations for an error (docs/science.md §6).
    - `warning_fraction` (0.3): for a warning (tanh: std about 1.9).

    ## Known false positives
    Gating sigmoids (LSTM/GRU gates, squeeze-excitation) are judged the same way: a saturated
    gate is stuck open or shut, which is worth knowing. Inputs far from zero mean or variance
    one shift the prediction: the first layer assumes inputs of variance one.

    ## References
    - docs/science.md §1, §6 (P(|z| > 2) = 0.05 / 0.32 / 0.51 / 0.69 at std 1 / 2 / 3 / 5)
    - Poole et al. 2016, "Exponential expressivity in deep neural networks through transient chaos"
    - Glorot & Bengio 2010
    """

    code = "IL202"
    name = "saturating-activation-overscaled"
    severity = Severity.ERROR
    needs_structure = True
    options = {"error_fraction": 0.5, "warning_fraction": 0.3}

    def check(self, ctx):
        graph = ctx.graph
        sig = ctx.signal
        for act in graph.layers.values():
            if act.kind != g.ACTIVATION or act.activation not in SATURATION_POINT:
                continue
            layer = feeding_layer(graph, act)
            if layer is None or layer.weight.stats.all_zero:
                continue
            q = sig[act.name].q_in
            std = math.sqrt(max(q, 0.0))
            fraction = saturated_fraction(act.activation, std)
            if fraction <= self.settings["warning_fraction"]:
                continue
            severity = Severity.ERROR if fraction > self.settings["error_fraction"] else Severity.WARNING
            bound = self.settings["error_fraction"] if severity is Severity.ERROR else self.settings["warning_fraction"]
            sigma_w2 = layer.fan_in * weight_variance(layer)
            chi = sigma_w2 * activation_gains(act.activation, q)[1]
            direction = "explodes" if chi > 1.05 else "vanishes" if chi < 0.95 else "is preserved"
            yield self.finding(
                layer.weight.name,
                f"{fraction:.0%} of the units after this layer start saturated, where {act.activation} is flat and passes almost no gradient, "
                f"and the gradient {direction} layer by layer (x{math.sqrt(chi):.2f} per layer): "
                f"predicted pre-activation std {std:.2g} before {act.activation}, units beyond |z| > {SATURATION_POINT[act.activation]:g}; fan_in·Var(W) = {sigma_w2:.3g}",
                severity,
                evidence={"pre_activation_std": std, "saturated_fraction": fraction, "sigma_w2": sigma_w2, "sqrt_chi": math.sqrt(chi), "activation": act.activation},
                # Measured on the weighted layer's output: the pre-activations the activation reads.
                prediction=Prediction(Quantity.SATURATED_FRACTION, Claim.ABOVE, bound, to_layer=layer.name, predicted=fraction),
                fix=random_init_for(graph, layer),
            )

    must_flag = ()
    must_not_flag = ()


def _mlp(depth: int, activation, init, width: int = 64):
    return plain_mlp(depth, activation, init, width)


def tanh_mlp_standard_normal():
    import torch.nn as nn

    return _mlp(10, nn.Tanh, nn.init.normal_)


def sigmoid_mlp_standard_normal():
    import torch.nn as nn

    return _mlp(4, nn.Sigmoid, nn.init.normal_, width=256)


def tanh_mlp_xavier_tanh_gain():
    import torch.nn as nn

    return _mlp(10, nn.Tanh, lambda w: nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain("tanh")))


def tanh_mlp_pytorch_default():
    import torch.nn as nn

    return _mlp(10, nn.Tanh, lambda w: None)


def lstm_style_sigmoid_gate():
    import torch
    import torch.nn as nn

    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.value = nn.Linear(16, 32)
            self.gate = nn.Linear(16, 32)
            self.out = nn.Linear(32, 4)

        def forward(self, x):
            return self.out(torch.tanh(self.value(x)) * torch.sigmoid(self.gate(x)))

    return Gated()


SaturatingActivationOverscaled.must_flag = (
    Example(tanh_mlp_standard_normal, flagged=("0.weight", "2.weight", "16.weight"), severity="error"),
    Example(sigmoid_mlp_standard_normal, flagged=("2.weight",), severity="error"),
)
SaturatingActivationOverscaled.must_not_flag = (
    Example(tanh_mlp_xavier_tanh_gain),
    Example(tanh_mlp_pytorch_default),
    Example(lstm_style_sigmoid_gate),
)
