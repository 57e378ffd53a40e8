"""IL301 vanishing-signal."""

from __future__ import annotations

from initlint.engine import Example, Rule, Severity
from initlint.fixes import random_init_for
from initlint.prediction import Claim, Prediction, Quantity
from initlint.crossings import first_crossings
from initlint.example_models import plain_mlp

# The static ratios are defined as the probe measures them (initlint.prediction).
QUANTITY = {"forward": Quantity.FORWARD_VARIANCE_RATIO, "backward": Quantity.GRADIENT_ENERGY_RATIO}


class VanishingSignal(Rule):
    """The predicted forward signal or backward gradient shrinks below `low` along the depth.

    ## What it does
    Runs static signal propagation (docs/science.md §1-§4, §11): the second moment of every
    layer's output, means included, forward, and the gradient energy at every layer, backward,
    from each layer's measured weight moments, its fans, the gain of the activation after it
    and the constant scales and shifts in between (`x / 4`). Normalization layers cut the
    chain; residual additions add variances; softmax weights average what they multiply.
    Reports where the forward variance ratio (relative to the first weighted layer of the
    chain) or the backward gradient norm ratio (relative to the last) first falls below `low`,
    naming that layer and the factor per layer.

    ## Why is this bad?
    Each layer multiplies the signal's variance by about σ_w²·E[φ²]/q (forward) and the
    gradient's by χ = σ_w²·E[φ'²] (backward). Below one this compounds geometrically: with
    PyTorch's default Linear init (fan_in·Var = 1/3) and ReLU the factor is 1/6 per layer,
    so a 30-layer MLP without normalization starts with its first layers receiving gradients
    ~1e-23 times those of its last (docs/science.md §2). Such networks do not train with SGD, and
    train slowly at best with Adam.

    ## Example
    ```python
    layers = []
    for _ in range(30):
        layers += [nn.Linear(256, 256), nn.ReLU()]  # PyTorch default init, no normalization
    model = nn.Sequential(*layers)
    ```

    ## How to fix
    Scale the weights for the activation: `nn.init.kaiming_normal_(w, nonlinearity="relu")`
    for ReLU, `nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain("tanh"))` for tanh; or
    add normalization layers (BatchNorm/LayerNorm) or residual connections.

    ## Options
    - `low` (1e-3): the ratio below which the signal counts as vanished (AUTOTRAINER's β1):
      of variances forward, of gradient norms backward (a gradient energy ratio of 1e-6).

    ## Known false positives
    Deliberately small residual branches (LayerScale, ReZero, SkipInit, zero-init branch
    ends), and branches whose output is under 1% of the residual sum they join, are not
    counted as vanishing forward: the skip carries the signal past them; all-zero layers are left to IL101. Ops initlint does
    not model pass the variance through unchanged and are listed in the notes.
    On trained weights (layers matching no init scheme, or a trained model as a whole) a
    finding of this rule is reported as info unless the probe confirms it (README, "Trained weights").

    ## References
    - docs/science.md §1-§4, §8
    - Schoenholz et al. 2017, "Deep Information Propagation"
    - Zhang et al. 2021, "AUTOTRAINER" (β1 = 1e-3)
    """

    code = "IL301"
    name = "vanishing-signal"
    severity = Severity.ERROR
    needs_structure = True
    options = {"low": 1e-3}

    def check(self, ctx):
        graph = ctx.graph
        for crossing in first_crossings(graph, low=self.settings["low"]):
            yield self.finding(
                crossing.layer.weight.name,
                f"{_effect(crossing)}: "
                f"predicted {_what(crossing)} at layer {graph.label(crossing.layer.name)} is {crossing.judged_ratio:.2g}x that at layer {graph.label(crossing.anchor)} "
                f"({crossing.layers_between} weighted layers, x{crossing.per_layer:.3g} per layer), below {self.settings['low']:g}",
                evidence={"direction": crossing.direction, "ratio": crossing.ratio, "per_layer": crossing.per_layer, "reference": graph.label(crossing.anchor), "layers": crossing.layers_between},
                prediction=Prediction(
                    QUANTITY[crossing.direction], Claim.BELOW, crossing.measured_threshold(self.settings["low"]), from_layer=crossing.anchor, to_layer=crossing.layer.name, predicted=crossing.ratio
                ),
                fix=f"{random_init_for(graph, crossing.layer)} for each layer like it, or add normalization/residual connections",
            )

    must_flag = ()
    must_not_flag = ()


def _effect(crossing) -> str:
    """What the crossing does to training, in words."""
    return "the deep layers see almost none of the input, so the model starts blind and learns slowly" if crossing.direction == "forward" else "the early layers barely learn: almost no gradient reaches them"


def _what(crossing) -> str:
    return "input-dependent signal variance" if crossing.direction == "forward" else "gradient norm"


def _mlp(depth: int, init=None, width: int = 64):
    return plain_mlp(depth, "ReLU", init, width)


def relu_mlp_30_pytorch_default():
    return _mlp(30)


def relu_mlp_20_glorot():
    import torch.nn as nn

    return _mlp(20, nn.init.xavier_uniform_)


def relu_mlp_30_he():
    import torch.nn as nn

    return _mlp(30, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))


def relu_mlp_30_default_with_layernorm():
    import torch.nn as nn

    layers = [nn.Linear(16, 64), nn.LayerNorm(64), nn.ReLU()]
    for _ in range(28):
        layers += [nn.Linear(64, 64), nn.LayerNorm(64), nn.ReLU()]
    layers.append(nn.Linear(64, 4))
    return nn.Sequential(*layers)


def residual_mlp_default_init():
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(64)
            self.fc1 = nn.Linear(64, 128)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(128, 64)

        def forward(self, x):
            return x + self.fc2(self.act(self.fc1(self.norm(x))))

    return nn.Sequential(nn.Linear(16, 64), *[Block() for _ in range(12)], nn.LayerNorm(64), nn.Linear(64, 4))


VanishingSignal.must_flag = (
    Example(relu_mlp_30_pytorch_default, flagged=("8.weight",), severity="error"),
    Example(relu_mlp_20_glorot, flagged=("22.weight",), severity="error"),
)
VanishingSignal.must_not_flag = (
    Example(relu_mlp_30_he),
    Example(relu_mlp_30_default_with_layernorm),
    Example(residual_mlp_default_init),
)
