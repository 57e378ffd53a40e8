"""IL303 deep-saturating-stack."""

from __future__ import annotations

import math

from initlint.engine import Example, Rule, Severity
from initlint.prediction import Claim, Prediction, Quantity
from initlint.chains import plain_chains
from initlint.signal import activation_gains, weight_variance
from initlint.example_models import plain_mlp

STACKING = frozenset({"sigmoid", "tanh", "hardsigmoid", "hardtanh"})


class DeepSaturatingStack(Rule):
    """A chain of sigmoid/tanh layers without normalization or skip connections, deep enough to vanish the gradient.

    ## What it does
    Finds maximal chains of (weighted layer → sigmoid/tanh) pairs in which each activation
    feeds only the next weighted layer: no normalization, no residual connection, no gating
    product in between. A chain with `min_sigmoid_layers` or more sigmoid layers is an error
    (docs/science.md §6); any such chain whose predicted gradient factor ∏√χ falls below
    `error_below` is an error too, and below `warning_below` (with three or more layers) a
    warning.

    ## Why is this bad?
    sigmoid' ≤ 1/4, so E[σ'(z)²] ≤ 1/16: at Glorot init the gradient shrinks by √χ ≈ 0.24 per
    sigmoid layer and falls below 1e-3 of its value after about five layers. This is the
    classic vanishing-gradient setting that motivated ReLU, normalization and residual
    connections (Glorot & Bengio 2010; Hochreiter 1991).

    ## Example
    ```python
    layers = []
    for _ in range(15):
        linear = nn.Linear(128, 128)
        nn.init.xavier_uniform_(linear.weight)
        layers += [linear, nn.Sigmoid()]
    ```

    ## How to fix
    Use ReLU-family or GELU/SiLU activations with He init in deep stacks; keep sigmoid for
    gates and outputs. If the sigmoids must stay, add normalization layers or residual
    connections between them.

    ## Options
    - `min_sigmoid_layers` (5): sigmoid layers in one chain that make it an error.
    - `error_below` (1e-3) and `warning_below` (0.1): the chain's predicted gradient factor.

    ## Known false positives
    Gating sigmoids (LSTM/GRU gates, attention and squeeze-excitation gates, SiLU = x·σ(x))
    and single output sigmoids are not stacks and are never counted: a gate's output goes to
    a product, not to the next weighted layer.

    ## References
    - docs/science.md §1, §6
    - Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural networks"
    """

    code = "IL303"
    name = "deep-saturating-stack"
    severity = Severity.ERROR
    needs_structure = True
    options = {"min_sigmoid_layers": 5, "error_below": 1e-3, "warning_below": 0.1}

    def check(self, ctx):
        graph = ctx.graph
        sig = ctx.signal
        for chain in plain_chains(graph, lambda layer, act: act.activation in STACKING):
            sigmoids = sum(1 for _, act in chain if act.activation in ("sigmoid", "hardsigmoid"))
            factor = 1.0
            for layer, act in chain:
                gains = activation_gains(act.activation, sig[act.name].q_in)
                factor *= math.sqrt(max(layer.fan_out * weight_variance(layer), 0.0) * gains[1])
            if sigmoids >= self.settings["min_sigmoid_layers"] or (len(chain) >= 2 and factor <= self.settings["error_below"]):
                severity = Severity.ERROR
                # Five sigmoids are an error whatever the factor: the claim is the bound it crossed, if any.
                bound = next((b for b in (self.settings["error_below"], self.settings["warning_below"]) if factor <= b), None)
            elif len(chain) >= 3 and factor <= self.settings["warning_below"]:
                severity, bound = Severity.WARNING, self.settings["warning_below"]
            else:
                continue
            first = chain[0][0]
            kinds = sorted({act.activation for _, act in chain})
            per_layer = factor ** (1.0 / len(chain))
            yield self.finding(
                first.weight.name,
                f"the first layers of this stack barely learn: the gradient shrinks through {len(chain)} consecutive {'/'.join(kinds)} layers "
                f"without normalization or skip connections ({sigmoids} sigmoid) to {factor:.2g} of its size (x{per_layer:.3f} per layer)",
                severity,
                evidence={"layers": [graph.label(layer.name) for layer, _ in chain], "sigmoid_layers": sigmoids, "gradient_factor": factor, "sqrt_chi": per_layer},
                prediction=_prediction(ctx, chain, factor, bound),
                fix="use ReLU/GELU with He init for hidden layers (sigmoid only for gates and outputs), or add normalization/residual connections",
            )

    must_flag = ()
    must_not_flag = ()


def _prediction(ctx, chain, factor: float, bound: float | None) -> Prediction | None:
    """``factor`` is the gradient amplitude across every layer and activation of the stack; the
    probe measures the gradient energy from the last layer's input to the first layer's output,
    which leaves out some of those factors. They are known statically, so the bound (squared:
    energy) moves by the same factor as the prediction (docs/science.md §8)."""
    if bound is None or len(chain) < 2 or factor <= 0:
        return None
    first, last = chain[0][0].name, chain[-1][0].name
    span = ctx.predicted_ratio(Quantity.GRADIENT_ENERGY_RATIO, last, first)
    if not span:
        return None
    return Prediction(Quantity.GRADIENT_ENERGY_RATIO, Claim.BELOW, bound * bound * span / (factor * factor), from_layer=last, to_layer=first, predicted=span)


def _stack(depth: int, activation, init=None, width: int = 64):
    return plain_mlp(depth, activation, init, width)


def sigmoid_mlp_15_layers():
    import torch.nn as nn

    return _stack(15, nn.Sigmoid, nn.init.xavier_uniform_)


def sigmoid_mlp_6_layers_default_init():
    import torch.nn as nn

    return _stack(6, nn.Sigmoid)


def silu_mlp_15_layers():
    import torch.nn as nn

    return _stack(15, nn.SiLU, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))


def sigmoid_with_layernorm():
    import torch.nn as nn

    layers = [nn.Linear(16, 64), nn.LayerNorm(64), nn.Sigmoid()]
    for _ in range(13):
        layers += [nn.Linear(64, 64), nn.LayerNorm(64), nn.Sigmoid()]
    layers.append(nn.Linear(64, 4))
    return nn.Sequential(*layers)


def gated_residual_mlp():
    import torch
    import torch.nn as nn

    class GatedBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.value = nn.Linear(64, 64)
            self.gate = nn.Linear(64, 64)

        def forward(self, x):
            return x + torch.tanh(self.value(x)) * torch.sigmoid(self.gate(x))

    return nn.Sequential(nn.Linear(16, 64), *[GatedBlock() for _ in range(8)], nn.Linear(64, 1), nn.Sigmoid())


DeepSaturatingStack.must_flag = (
    Example(sigmoid_mlp_15_layers, flagged=("0.weight",), severity="error"),
    Example(sigmoid_mlp_6_layers_default_init, flagged=("0.weight",), severity="error"),
)
DeepSaturatingStack.must_not_flag = (
    Example(silu_mlp_15_layers),
    Example(sigmoid_with_layernorm),
    Example(gated_residual_mlp),
)
