"""IL402 exploding-gradient."""

from __future__ import annotations

from initlint import graph as g
from initlint.example_models import batchnorm_residual_block
from initlint.engine import Example, Rule, Severity
from initlint.fixes import random_init_for


class ExplodingGradient(Rule):
    """The probe measured a gradient (or forward signal) that grows by orders of magnitude toward the first layers.

    ## What it does
    Runs the dynamic probe (three seeded forward + backward passes, normalization in training
    mode) and compares the norm of the loss gradient with respect to the first weighted
    layer's input with that at the last weighted layer. Flags a ratio above 70, or a forward
    signal (second moment of a layer's output less its bias) at the last weighted layer more
    than 1e6 times that at the first (70 and 1e3 in amplitude).

    ## Why is this bad?
    The first layers get updates orders of magnitude larger than the last ones: at any
    learning rate small enough for them the rest of the network does not learn, and at a
    larger one the loss diverges to NaN. Over-scaled weights (N(0,1) instead of a fan-scaled
    init) do this; with tanh the gradient explodes while the units saturate (docs/science.md §6).

    ## Example
    ```python
    layers = []
    for _ in range(10):
        layer = nn.Linear(256, 256)
        nn.init.normal_(layer.weight)  # std 1: sixteen times too large for fan-in 256
        layers += [layer, nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(256, 10))
    ```

    ## How to fix
    Scale the init by the fan: `nn.init.xavier_uniform_` before tanh/sigmoid,
    `nn.init.kaiming_normal_(w, nonlinearity="relu")` before ReLU; for deep residual nets
    without normalization use a depth-scaled init (Fixup, GPT-2's 1/√(2·n_layer)).

    ## Options
    - `gradient_ratio_above` (70): AUTOTRAINER's β3.
    - `forward_ratio_above` (1e6): forward growth, in variance.

    ## Known false positives
    Deep BatchNorm networks show large ratios at init in training mode and train fine
    (≈48 for ResNet-50 at 224×224 in docs/science.md §10; the probe measures 36): the threshold leaves
    room for that. Global average pooling shares the gradient among the positions it
    averages, so the ratio grows as the input shrinks (ResNet-50, measured: 36 at 224, 57 at
    112, 109 at 64, 295 at 32). Without an example input the probe uses 224×224 for image
    models that accept it; an ImageNet architecture probed at CIFAR size reads high.

    ## References
    - docs/science.md §8 (thresholds), §10 (ResNet-50 ≈ 48 in training mode)
    - Zhang et al. 2021, "AUTOTRAINER: An Automatic DNN Training Problem Detection and Repair System" (β3 = 70)
    - Pascanu et al. 2013, "On the difficulty of training recurrent neural networks"
    """

    code = "IL402"
    name = "exploding-gradient"
    severity = Severity.ERROR
    stage = "probe"
    needs_structure = True
    options = {"gradient_ratio_above": 70.0, "forward_ratio_above": 1e6}

    def check(self, ctx):
        graph = ctx.graph
        probe = ctx.probe
        if probe is None:
            return
        flow = probe.gradient_flow()
        gradient, forward, first, last = flow.gradient, flow.forward, flow.first, flow.last
        location, evidence = flow.location, flow.evidence
        if gradient is not None and gradient > self.settings["gradient_ratio_above"]:
            yield self.finding(
                location,
                f"the first layers get huge updates, so training diverges unless the learning rate is tiny: "
                f"the loss gradient at the input of {graph.label(flow.gradient_first)} is {gradient:.3g}× that at {graph.label(flow.gradient_last)} (above {self.settings['gradient_ratio_above']:g}); "
                f"forward signal ratio {'n/a' if forward is None else f'{forward:.3g}'} (median of {flow.seeds} seeded probe batches)",
                evidence=evidence,
                fix=_fix(graph, first),
            )
        elif forward is not None and forward > self.settings["forward_ratio_above"]:
            yield self.finding(
                location,
                f"the signal blows up on its way through the model, so outputs and loss start huge and training is unstable: "
                f"the forward signal at {graph.label(last)} is {forward:.3g}× that at {graph.label(first)} (above {self.settings['forward_ratio_above']:g} in variance)",
                evidence=evidence,
                fix=_fix(graph, first),
            )

    must_flag = ()
    must_not_flag = ()


_FIX = "scale the init by the fan (nn.init.xavier_uniform_ before tanh, nn.init.kaiming_normal_(w, nonlinearity='relu') before ReLU)"


def _fix(graph: g.ModelGraph, layer_name: str | None) -> str:
    layer = graph.layers.get(layer_name) if layer_name else None
    if layer is None or not layer.is_weighted or layer.kind == g.EMBEDDING:
        return _FIX
    return f"{random_init_for(graph, layer)} and the fan-scaled init for the activation in each layer like it"


# --- examples: the models this rule must and must not flag -----------------------------------


def _mlp(depth: int, init, activation: str, width: int = 64, features: int = 32):
    import torch.nn as nn

    layers = []
    for i in range(depth):
        layer = nn.Linear(features if i == 0 else width, width)
        init(layer.weight)
        layers += [layer, getattr(nn, activation)()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def deep_tanh_standard_normal():
    import torch.nn as nn

    return _mlp(10, nn.init.normal_, "Tanh")


def relu_standard_normal():
    import torch.nn as nn

    return _mlp(6, nn.init.normal_, "ReLU")


def deep_relu_he():
    import torch.nn as nn

    return _mlp(30, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), "ReLU")


def small_batchnorm_resnet():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        *[batchnorm_residual_block(16) for _ in range(6)],
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


_BATCH = (64, 32)
ExplodingGradient.must_flag = (
    Example(deep_tanh_standard_normal, flagged=("0.weight",), severity="error", input_shape=_BATCH),
    Example(relu_standard_normal, flagged=("0.weight",), severity="error", input_shape=_BATCH),
)
ExplodingGradient.must_not_flag = (
    Example(deep_relu_he, input_shape=_BATCH),
    Example(small_batchnorm_resnet, input_shape=(16, 3, 16, 16)),
)
