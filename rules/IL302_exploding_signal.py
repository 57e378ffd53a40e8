"""IL302 exploding-signal."""

from __future__ import annotations

from initlint.engine import Example, Rule, Severity
from initlint.fixes import random_init_for
from initlint.prediction import Claim, Prediction, Quantity
from initlint.crossings import first_crossings
from initlint.example_models import plain_mlp

# The static ratios are defined as the probe measures them (initlint.prediction).
QUANTITY = {"forward": Quantity.FORWARD_VARIANCE_RATIO, "backward": Quantity.GRADIENT_ENERGY_RATIO}


class ExplodingSignal(Rule):
    """The predicted forward signal or backward gradient grows above `high` along the depth.

    ## What it does
    Runs the same static signal propagation as IL301 (docs/science.md §1-§4, §11) and reports
    where the forward variance ratio (relative to the first weighted layer of a chain between
    normalizations) or the backward gradient norm ratio (relative to the last) first rises
    above `high`, naming that layer and the factor per layer. Softmax outputs sum to one:
    attention averages its values and never amplifies them, whatever the logits' scale.

    ## Why is this bad?
    A per-layer factor above one compounds just as geometrically as one below: with N(0, 1)
    weights a ReLU layer of width 512 multiplies the variance by 256, so activations overflow
    float16 after a few layers and the loss is NaN or saturated from the first step; with
    tanh the gradient grows ×2.9 per layer at N(0, 1) while the units saturate.

    ## Example
    ```python
    layers = []
    for _ in range(4):
        linear = nn.Linear(512, 512)
        nn.init.normal_(linear.weight)  # std 1 instead of sqrt(2/512)
        layers += [linear, nn.ReLU()]
    ```

    ## How to fix
    `nn.init.kaiming_normal_(w, nonlinearity="relu")` before ReLU; for custom normal init use
    `std = gain / sqrt(fan_in)`. Normalization layers cut the growth.

    ## Options
    - `high` (1e3): the ratio above which the signal counts as exploding (of variances
      forward, of gradient norms backward). Deep BatchNorm
      networks reach gradient ratios of about 50 at init and train fine (docs/science.md §10).

    ## Known false positives
    Pre-LN transformers grow their residual stream linearly with depth (ratios of a few
    units at 30 blocks, healthy). Ops initlint does not model pass the variance through
    unchanged and are listed in the notes.
    On trained weights (layers matching no init scheme, or a trained model as a whole) a
    finding of this rule is reported as info unless the probe confirms it (README, "Trained weights").

    ## References
    - docs/science.md §1-§4, §6, §10
    - Pascanu et al. 2013, "On the difficulty of training recurrent neural networks"
    """

    code = "IL302"
    name = "exploding-signal"
    severity = Severity.ERROR
    needs_structure = True
    options = {"high": 1e3}

    def check(self, ctx):
        graph = ctx.graph
        for crossing in first_crossings(graph, high=self.settings["high"]):
            yield self.finding(
                crossing.layer.weight.name,
                f"{_effect(crossing)}: "
                f"predicted {_what(crossing)} at layer {graph.label(crossing.layer.name)} is {crossing.judged_ratio:.2g}x that at layer {graph.label(crossing.anchor)} "
                f"({crossing.layers_between} weighted layers, x{crossing.per_layer:.3g} per layer), above {self.settings['high']:g}",
                evidence={"direction": crossing.direction, "ratio": crossing.ratio, "per_layer": crossing.per_layer, "reference": graph.label(crossing.anchor), "layers": crossing.layers_between},
                prediction=Prediction(
                    QUANTITY[crossing.direction], Claim.ABOVE, crossing.measured_threshold(self.settings["high"]), from_layer=crossing.anchor, to_layer=crossing.layer.name, predicted=crossing.ratio
                ),
                fix=f"{random_init_for(graph, crossing.layer)} for each layer like it, or add normalization",
            )

    must_flag = ()
    must_not_flag = ()


def _effect(crossing) -> str:
    """What the crossing does to training, in words."""
    return "training starts unstable: the activations blow up on their way through the network" if crossing.direction == "forward" else "training starts unstable: the gradient blows up on its way back to the early layers"


def _what(crossing) -> str:
    return "input-dependent signal variance" if crossing.direction == "forward" else "gradient norm"


def _mlp(depth: int, width: int, init=None):
    return plain_mlp(depth, "ReLU", init, width)


def relu_mlp_standard_normal_width_512():
    import torch.nn as nn

    return _mlp(4, 512, nn.init.normal_)


def relu_mlp_he_width_512():
    import torch.nn as nn

    return _mlp(4, 512, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))


def pre_ln_residual_mlp_24_blocks():
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(64)
            self.fc1 = nn.Linear(64, 128)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(128, 64)
            for fc in (self.fc1, self.fc2):
                nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")

        def forward(self, x):
            return x + self.fc2(self.act(self.fc1(self.norm(x))))

    return nn.Sequential(nn.Linear(16, 64), *[Block() for _ in range(24)], nn.LayerNorm(64), nn.Linear(64, 4))


ExplodingSignal.must_flag = (Example(relu_mlp_standard_normal_width_512, flagged=("4.weight",), severity="error"),)
ExplodingSignal.must_not_flag = (Example(relu_mlp_he_width_512), Example(pre_ln_residual_mlp_24_blocks))
