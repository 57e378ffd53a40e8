"""IL401 vanishing-gradient."""

from __future__ import annotations

from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.fixes import random_init_for


class VanishingGradient(Rule):
    """The probe measured a gradient (or forward signal) that dies before it reaches the first layers.

    ## What it does
    Runs the model (the dynamic probe: three seeded forward + backward passes on a small batch
    with a standard loss, normalization in training mode) and compares the norm of the loss
    gradient with respect to the first weighted layer's input to that at the last weighted
    layer, and the forward signal (second moment of each layer's output less its bias) at the
    last weighted layer to that at the first. Flags a gradient ratio below 1e-3 or a forward
    ratio below 1e-6 (1e-3 in amplitude). A layer whose gradient is below 1e-6 of its weight
    (relative gradient) is a warning.

    ## Why is this bad?
    The first layers then learn a thousand times slower than the last ones, or not at all;
    the deep part of the network stays at its random init. Weight-gradient ratios alone miss
    this: on a 30-layer ReLU MLP with Xavier init the weight-gradient ratio was 0.62 while the
    activation-gradient ratio was 3.6e-5 and the forward variance 1.4e-9 (docs/science.md §8).

    ## Example
    ```python
    layers = []
    for _ in range(30):
        layer = nn.Linear(256, 256)
        nn.init.xavier_uniform_(layer.weight)  # gain 1, made for tanh: ReLU halves the variance per layer
        layers += [layer, nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(256, 10))
    ```

    ## How to fix
    Use the init made for the activation: `nn.init.kaiming_normal_(w, nonlinearity="relu")`
    before ReLU, LeCun normal before SELU; add normalization (BatchNorm, LayerNorm) or residual
    connections to deep stacks; avoid long chains of sigmoids.

    ## Options
    - `gradient_ratio_below` (1e-3): AUTOTRAINER's β1.
    - `forward_ratio_below` (1e-6): the same bound on the forward signal, in variance.
    - `relative_gradient_below` (1e-6): per-layer ‖g_W‖/‖W‖ warning (embeddings excepted: their
      gradient touches only the rows of the tokens in the batch).

    ## Known false positives
    Exactly-zero gradients (a zero classifier head, a zero last layer of a residual branch)
    are not a ratio: they are left to IL404, which checks whether they unfreeze. The gradient
    ratio is a ratio of norms, so it depends on the input size: give the probe the input size
    you train at (`--input-shape`). An ONNX export that folded BatchNorm into the convolutions
    (torch's default eval-mode export) has no normalization left, and the probe measures the
    network as exported: a healthy MobileNetV3 then shows a gradient ratio near 1e-9. Export
    with `do_constant_folding=False` (or in training mode) to keep BatchNorm, which the probe
    runs with batch statistics (docs/science.md §10).

    ## References
    - docs/science.md §8 (dynamic probe criteria, measured numbers)
    - Zhang et al. 2021, "AUTOTRAINER: An Automatic DNN Training Problem Detection and Repair System" (β1 = 1e-3)
    - Glorot & Bengio 2010; He et al. 2015
    """

    code = "IL401"
    name = "vanishing-gradient"
    severity = Severity.ERROR
    stage = "probe"
    needs_structure = True
    options = {"gradient_ratio_below": 1e-3, "forward_ratio_below": 1e-6, "relative_gradient_below": 1e-6}

    def check(self, ctx):
        graph = ctx.graph
        probe = ctx.probe
        if probe is None:
            return
        flow = probe.gradient_flow()
        gradient, forward, first, last = flow.gradient, flow.forward, flow.first, flow.last
        location, evidence = flow.location, flow.evidence
        if gradient is not None and gradient < self.settings["gradient_ratio_below"]:
            yield self.finding(
                location,
                f"the first layers barely learn, since almost no gradient reaches them: "
                f"the loss gradient at the input of {graph.label(flow.gradient_first)} is {gradient:.2g} of that at {graph.label(flow.gradient_last)} (below {self.settings['gradient_ratio_below']:g}); "
                f"forward signal ratio {_fmt(forward)} (median of {flow.seeds} seeded probe batches)",
                evidence=evidence,
                fix=_fix(graph, first),
            )
            return
        if forward is not None and forward < self.settings["forward_ratio_below"]:
            yield self.finding(
                location,
                f"the signal fades on its way through the model, so the output barely responds to the input: "
                f"the forward signal at {graph.label(last)} is {forward:.2g} of that at {graph.label(first)} (below {self.settings['forward_ratio_below']:g} in variance); "
                f"gradient ratio {_fmt(gradient)}",
                evidence=evidence,
                fix=_fix(graph, first),
            )
            return
        kinds = {layer.name: layer.kind for layer in graph.layers.values()}
        for row in probe.layers:
            relative = row.grad_to_weight
            if relative and 0 < relative < self.settings["relative_gradient_below"] and kinds.get(row.layer) != g.EMBEDDING:
                yield self.finding(
                    row.weight or row.layer,
                    f"this layer barely learns, since its updates are tiny next to its weights: "
                    f"its weight gradient is {relative:.2g} of the weight's norm (below {self.settings['relative_gradient_below']:g})",
                    Severity.WARNING,
                    evidence={"grad_to_weight": relative},
                    fix=_fix(graph, row.layer),
                )

    must_flag = ()
    must_not_flag = ()


_FIX = "use the init made for the activation (nn.init.kaiming_normal_(w, nonlinearity='relu') before ReLU), or add normalization / residual connections"


def _fix(graph: g.ModelGraph, layer_name: str | None) -> str:
    layer = graph.layers.get(layer_name) if layer_name else None
    if layer is None or not layer.is_weighted or layer.kind == g.EMBEDDING:
        return _FIX
    return f"{random_init_for(graph, layer)}, and the init made for the activation in each layer like it; where the layers already start that way, the depth is the cause: add normalization / residual connections"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2g}"


# --- examples: the models this rule must and must not flag -----------------------------------


def _mlp(depth: int, init, activation: str = "ReLU", width: int = 64, features: int = 32):
    import torch.nn as nn

    layers = []
    for i in range(depth):
        layer = nn.Linear(features if i == 0 else width, width)
        init(layer.weight)
        nn.init.zeros_(layer.bias)
        layers += [layer, getattr(nn, activation)()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def deep_relu_xavier():
    import torch.nn as nn

    return _mlp(30, nn.init.xavier_uniform_)


def deep_sigmoid_xavier():
    import torch.nn as nn

    return _mlp(10, nn.init.xavier_uniform_, "Sigmoid")


def deep_relu_he():
    import torch.nn as nn

    return _mlp(30, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))


def shallow_relu_xavier():
    import torch.nn as nn

    return _mlp(3, nn.init.xavier_uniform_)


def zero_head_mlp():
    import torch.nn as nn

    model = _mlp(4, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))
    nn.init.zeros_(model[-1].weight)
    return model


_BATCH = (64, 32)
VanishingGradient.must_flag = (
    Example(deep_relu_xavier, flagged=("0.weight",), severity="error", input_shape=_BATCH),
    Example(deep_sigmoid_xavier, flagged=("0.weight",), severity="error", input_shape=_BATCH),
)
VanishingGradient.must_not_flag = (
    Example(deep_relu_he, input_shape=_BATCH),
    Example(shallow_relu_xavier, input_shape=_BATCH),
    Example(zero_head_mlp, input_shape=_BATCH),
)
