"""IL305 overscaled-logits."""

from __future__ import annotations

import math

from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.fixes import init_call
from initlint.prediction import Claim, Prediction, Quantity
from initlint.chains import reliable

HEAD_KINDS = (g.LINEAR, g.CONV, g.CONV_TRANSPOSE)


class OverscaledLogits(Rule):
    """The model's output (a classifier's or language model's logits) is predicted far too large at init.

    ## What it does
    Follows each graph output back through reshapes and pooling to the weighted layer that
    computes it (the head) and reads the predicted standard deviation of that output from
    static signal propagation, means included. An error above `max_logit_std`, a warning
    above `warn_logit_std`. The probe measures the output's standard deviation on a seeded
    batch, and for a classifier its initial cross-entropy against ln(classes).

    ## Why is this bad?
    A k-class softmax classifier whose logits are small starts at a cross-entropy of ln k
    (2.30 for 10 classes): "verify the loss at init" is a standard first check. With logits of
    standard deviation σ the initial loss grows roughly like σ·sqrt(2 ln k): the softmax is
    saturated, most of the first updates go into shrinking the logits, and with large σ the
    loss can overflow. Depth is not needed: `weight = torch.randn(shape)` on a 1000-100-10 ReLU
    MLP gives logits of std ≈ 230 and an initial loss ≈ 360, two layers whose gain
    fan_in·Var(W)·gain(φ) is in the hundreds each. A language-model head behaves the same with
    ln(vocabulary).

    ## Example
    ```python
    model = nn.Sequential(nn.Linear(1000, 100), nn.ReLU(), nn.Linear(100, 10))
    for layer in (model[0], model[2]):
        layer.weight = nn.Parameter(torch.randn(layer.weight.shape))  # std 1 instead of ~1/sqrt(fan_in)
    ```

    ## How to fix
    Scale the weights by their fan (`nn.init.kaiming_normal_` in hidden layers,
    `nn.init.xavier_uniform_` or a small normal for the head); many practitioners initialize
    the classifier head small or at zero so that the initial loss is ln k.

    ## Options
    - `max_logit_std` (10.0): predicted output standard deviation above which it is an error.
    - `warn_logit_std` (3.0): above which it is a warning (initial loss already ~2x ln k).

    ## Known false positives
    The prediction assumes unit-variance inputs; a model fed unnormalized data (pixels in
    0-255) gets larger outputs than predicted, a real problem of its own. Heads whose weights
    match no init scheme (trained models) are not judged: the mean-field prediction does not
    hold for them, and a trained classifier's confident logits are no init problem.

    ## References
    - docs/science.md §1 (forward second moment), §11 (loss at init)
    - A. Karpathy 2019, "A Recipe for Training Neural Networks" (verify loss @ init)
    """

    code = "IL305"
    name = "overscaled-logits"
    severity = Severity.ERROR
    needs_structure = True
    options = {"max_logit_std": 10.0, "warn_logit_std": 3.0}

    def check(self, ctx):
        graph = ctx.graph
        if not reliable(graph):
            return
        sig = ctx.signal
        heads = {}
        for layer in graph.layers.values():
            if layer.kind == g.OUTPUT:
                for head in graph.upstream(layer):
                    if head.is_weighted and head.kind in HEAD_KINDS:
                        heads[head.name] = head
        for head in heads.values():
            fp = ctx.fingerprint(head)
            if head.weight.stats.all_zero or (fp is not None and fp.status == "unrecognized"):
                continue
            s = sig[head.name]
            std = math.sqrt(max(s.q_out - s.m_out * s.m_out, 0.0))
            if std <= self.settings["warn_logit_std"]:
                continue
            severity = Severity.ERROR if std > self.settings["max_logit_std"] else Severity.WARNING
            threshold = self.settings["max_logit_std" if severity == Severity.ERROR else "warn_logit_std"]
            classes = head.units or 0
            chance = f"; a {classes}-class cross-entropy would start near {std * math.sqrt(2 * math.log(classes)):.3g} instead of ln {classes} = {math.log(classes):.2f}" if classes >= 2 else ""
            yield self.finding(
                head.weight.name,
                f"{'the model starts out confidently wrong' if classes >= 2 else 'the model starts with outputs far too large'}, so the first steps go to shrinking its outputs instead of learning: "
                f"predicted output std at init is {std:.3g} (above {threshold:g}){chance}",
                severity,
                evidence={"logit_std": std, "classes": classes},
                prediction=Prediction(Quantity.LOGIT_STD, Claim.ABOVE, threshold, predicted=std),
                fix=f"{init_call('normal_', head.weight.name, std=0.01)} (or {init_call('zeros_', head.weight.name)}) to start the head small, and fan-scaled init (nn.init.kaiming_normal_) in the hidden layers",
            )

    must_flag = ()
    must_not_flag = ()


def mlp_1000_100_10_randn():
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(1000, 100), nn.ReLU(), nn.Linear(100, 10))
    for layer in (model[0], model[2]):
        layer.weight = nn.Parameter(torch.randn(layer.weight.shape))
    return model


def mlp_1000_100_10_default():
    import torch.nn as nn

    return nn.Sequential(nn.Linear(1000, 100), nn.ReLU(), nn.Linear(100, 10))


def mlp_1000_100_10_he():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(1000, 100), nn.ReLU(), nn.Linear(100, 10))
    nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
    nn.init.xavier_uniform_(model[2].weight)
    return model


OverscaledLogits.must_flag = (Example(mlp_1000_100_10_randn, flagged=("2.weight",), severity="error", input_shape=(8, 1000)),)
OverscaledLogits.must_not_flag = (Example(mlp_1000_100_10_default, input_shape=(8, 1000)), Example(mlp_1000_100_10_he, input_shape=(8, 1000)))
