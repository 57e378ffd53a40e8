"""IL203 selu-without-lecun."""

from __future__ import annotations

import math

from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.fixes import init_call
from initlint.fingerprint import NORMAL, scale_tolerance
from initlint.prediction import Claim, Prediction, Quantity
from initlint.chains import feeding_layer, plain_chains
from initlint.signal import weight_variance
from initlint.example_models import plain_mlp


class SeluWithoutLecun(Rule):
    """A SELU activation fed by weights that are not LeCun-scaled (fan_in·Var(W) ≠ 1).

    ## What it does
    For every SELU fed by a weighted layer, compares fan_in·Var(W) with 1, the LeCun-normal
    scale, within the sampling tolerance of the fingerprint (docs/science.md §7), and names the
    scheme the weights do match.

    ## Why is this bad?
    SELU's self-normalization (mean 0, variance 1 as a stable fixed point) is derived for
    weights with fan_in·Var(W) = 1 and mean 0 (Klambauer et al. 2017). With He init (2) the
    variance grows layer by layer, with PyTorch's default (1/3) it shrinks: the network
    loses the property it used SELU for, and without normalization layers deep SELU stacks
    drift like any other. AlphaDropout, not Dropout, keeps the fixed point in training.

    ## Example
    ```python
    linear = nn.Linear(256, 256)
    nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")  # Var 2/fan_in
    block = nn.Sequential(linear, nn.SELU())
    ```

    ## How to fix
    `nn.init.kaiming_normal_(linear.weight, nonlinearity="linear")` (LeCun normal; Keras:
    `lecun_normal`), zero biases, and `nn.AlphaDropout` instead of `nn.Dropout`.

    ## Options
    - `error_factor` (0): when > 0, an error where fan_in·Var(W) is off by more than this
      factor either way; by default every mismatch is a warning.

    ## Known false positives
    SELU layers followed by a normalization layer do not need the fixed point; they are still
    reported as a warning because the author evidently chose SELU for self-normalization.

    ## References
    - Klambauer et al. 2017, "Self-Normalizing Neural Networks"
    - docs/science.md §3 (SELU gains), §6, §7
    """

    code = "IL203"
    name = "selu-without-lecun"
    severity = Severity.WARNING
    needs_structure = True
    options = {"error_factor": 0.0}

    def check(self, ctx):
        graph = ctx.graph
        # Where SELU layers follow each other, the drift shows in the variance across the stack.
        stack = {layer.name: chain for chain in plain_chains(graph, lambda layer, act: act.activation == "selu") for layer, _ in chain}
        for act in graph.layers.values():
            if act.kind != g.ACTIVATION or act.activation != "selu":
                continue
            layer = feeding_layer(graph, act)
            if layer is None or not layer.fan_in or layer.weight.stats.all_zero:
                continue
            sigma_w2 = layer.fan_in * weight_variance(layer)
            n = layer.weight.stats.finite_count
            if sigma_w2 <= 0 or abs(math.log(sigma_w2)) <= scale_tolerance(n, NORMAL):
                continue
            fp = ctx.fingerprint(layer)
            factor = self.settings["error_factor"]
            severity = Severity.ERROR if factor and abs(math.log(sigma_w2)) > math.log(factor) else Severity.WARNING
            drift = "grows" if sigma_w2 > 1 else "shrinks"
            yield self.finding(
                layer.weight.name,
                f"SELU cannot keep the signal normalized here, so its variance {drift} layer by layer instead of settling: "
                f"fan_in·Var(W) = {sigma_w2:.3g} where SELU needs 1 (LeCun normal) ({fp.describe() if fp else 'no fingerprint'})",
                severity,
                evidence={"sigma_w2": sigma_w2, "init": fp.names if fp else []},
                prediction=_drift(ctx, stack.get(layer.name), layer, sigma_w2),
                fix=_fix(layer),
            )

    must_flag = ()
    must_not_flag = ()



def _fix(layer: g.Layer) -> str:
    calls = [init_call("kaiming_normal_", layer.weight.name, nonlinearity="linear") + " (LeCun normal)"]
    if layer.bias is not None and not layer.bias.stats.all_zero:
        calls.append(init_call("zeros_", layer.bias.name))
    return ", ".join(calls) + "; use nn.AlphaDropout, not nn.Dropout, between SELU layers"


def _drift(ctx, chain, layer, sigma_w2: float) -> Prediction:
    """The claim: from the first layer of the SELU stack to this one (which includes this layer's
    own fan_in·Var(W)), the input-dependent variance grows (or shrinks) instead of staying at
    SELU's fixed point 1. The first layer of a stack, or a lone SELU layer, has no measured layer
    before it: there the claim is on the layer's own gain, its output over its input variance."""
    if chain and chain[0][0].name != layer.name:
        first = chain[0][0].name
        predicted = ctx.predicted_ratio(Quantity.FORWARD_VARIANCE_RATIO, first, layer.name)
        if predicted and predicted != 1.0:
            claim = Claim.ABOVE if predicted > 1 else Claim.BELOW
            return Prediction(Quantity.FORWARD_VARIANCE_RATIO, claim, 1.0, from_layer=first, to_layer=layer.name, predicted=predicted)
    claim = Claim.ABOVE if sigma_w2 > 1 else Claim.BELOW
    return Prediction(Quantity.LAYER_GAIN, claim, 1.0, to_layer=layer.name, predicted=sigma_w2)


def _selu_mlp(init, depth: int = 6, width: int = 64):
    return plain_mlp(depth, "SELU", init, width)


def selu_mlp_he_init():
    import torch.nn as nn

    return _selu_mlp(lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))


def selu_mlp_pytorch_default():
    return _selu_mlp(lambda w: None)


def selu_mlp_lecun_normal():
    import torch.nn as nn

    return _selu_mlp(lambda w: nn.init.kaiming_normal_(w, nonlinearity="linear"))


SeluWithoutLecun.must_flag = (
    Example(selu_mlp_he_init, flagged=("0.weight", "2.weight"), severity="warning"),
    Example(selu_mlp_pytorch_default, flagged=("2.weight",), severity="warning"),
)
SeluWithoutLecun.must_not_flag = (Example(selu_mlp_lecun_normal),)
