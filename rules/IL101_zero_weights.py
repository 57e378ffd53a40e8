"""IL101 zero-weights."""

from __future__ import annotations

import numpy as np

from initlint import activations
from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.prediction import Claim, Prediction, Quantity
from initlint.signal import scalar
from initlint.example_models import (  # shared with IL404's examples
    lora_b_zero_a_random,
    lora_with_a_and_b_zero,
    rezero_gate,
    two_consecutive_zero_layers,
    zero_classifier_head,
    zero_last_conv_of_residual_branch,
    zero_linear_before_relu,
)

# Outcomes of following a zero layer's output downstream, from harmless to fatal.
ALLOWED, RECOVERABLE, FATAL = 0, 1, 2
_HEAD = "it is a final projection (zero head)"
_RESIDUAL = "its output is added to a non-zero path (residual branch end / LoRA B)"
_LONE = "a lone zero layer between random ones: its output is constant at init; training recovers through its neighbours"
_STRUCTURAL_KINDS = (g.LINEAR, g.CONV, g.CONV_TRANSPOSE, g.EMBEDDING)


class ZeroWeights(Rule):
    """A weight matrix or kernel that is entirely zero, where that stops training.

    ## What it does
    Finds weight matrices and convolution kernels whose every value is 0.0, and normalization
    layers whose every gain is 0.0 (they output their shift whatever the input), and follows the
    layer's constant output through the graph to decide whether the zeros are fatal (no
    gradient can ever reach the layer), recoverable or a well-known, intended pattern
    (docs/science.md §5, §11): every BatchNorm gain of a ResNet at zero is an error, the last
    one of each residual branch (`zero_init_residual`) is clean.

    ## Why is this bad?
    A zero layer outputs a constant. When that constant reaches a ReLU at a pre-activation
    <= 0 (ReLU'(0) = 0 in PyTorch), another zero layer, or BatchNorm followed by ReLU, the
    gradient of this layer and of everything before it is exactly zero, and stays zero
    forever: the network cannot train. A lone zero layer between random layers recovers, but
    starts with no information flowing through it (warning).

    ## Example
    ```python
    layer = nn.Linear(256, 256)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), layer, nn.ReLU(), nn.Linear(256, 10))
    ```

    ## How to fix
    Initialize the weight randomly, e.g. `nn.init.kaiming_normal_(layer.weight,
    nonlinearity="relu")` before a ReLU, or `nn.init.xavier_uniform_` before tanh. Keep zero
    init only where the layer's output is added to a non-zero path.

    ## Known false positives
    None of these is flagged: the last layer of a residual branch (torchvision
    `zero_init_residual`, Fixup), a LoRA `B` matrix with a random `A` (and PEFT's A = 0 with a
    random B for embeddings), a zero classifier head or muP readout, ReZero/SkipInit gates,
    biases and normalization shifts, zero-initialized gates or modulations whose product
    reaches a residual add (DiT's adaLN-Zero). When only a state dict is given the structure is unknown
    and a zero matrix is reported as info, unless PEFT's names pair it with an all-zero partner
    (`lora_A` and `lora_B` of one adapter both zero: error).

    ## References
    - docs/science.md §5 (when a zero tensor is fatal; measured on 300-step Adam/SGD runs)
    - Bachlechner et al. 2020, "ReZero is All You Need"; Zhang et al. 2019, "Fixup Initialization"
    - Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"
    """

    code = "IL101"
    name = "zero-weights"
    severity = Severity.ERROR

    def check(self, ctx):
        graph = ctx.graph
        claimed = set()
        for layer in graph.layers.values():
            weight = layer.weight
            # A trainable gain only: a frozen norm's buffers (DETR's FrozenBatchNorm2d) get no gradient anyway.
            if layer.kind == g.NORM and graph.has_structure and weight is not None and weight.name in graph.tensors and weight.stats.all_zero:
                yield from self._zero_norm_gain(graph, layer)
                continue
            if weight is None or weight.ndim < 2 or not graph.has_structure:
                continue  # without structure (a state dict) every zero matrix is judged below
            claimed.add(weight.name)
            if not weight.stats.all_zero:
                continue
            evidence = {"count": weight.size, "std": 0.0}
            if layer.kind not in _STRUCTURAL_KINDS:
                yield self.finding(weight.name, f"all {weight.size:,} values are 0.0", Severity.WARNING, evidence=evidence, fix=_FIX)
                continue
            outcome, why = zero_outcome(graph, layer)
            if outcome == ALLOWED:
                continue
            severity = Severity.ERROR if outcome == FATAL else Severity.WARNING
            # A fatal zero pattern predicts a permanently zero gradient, which the probe checks.
            prediction = Prediction(Quantity.FROZEN_PARAMETERS, Claim.ABOVE, 0.5, parameters=(weight.name,), predicted=1.0) if outcome == FATAL else None
            yield self.finding(weight.name, f"all {weight.size:,} values are 0.0: {why}", severity, evidence={**evidence, "case": why}, fix=_FIX, prediction=prediction)
        for name, tensor in graph.tensors.items():
            if name in claimed or tensor.ndim < 2 or tensor.stats.count == 0 or not tensor.stats.all_zero:
                continue
            if graph.has_structure:
                continue  # a constant no weighted layer uses (a mask, a buffer): not a weight
            if sum(d > 1 for d in tensor.shape) < 2:
                continue  # a vector stored with broadcast dims (timm's (1, 1, C) shift, NFNet's (C, 1, 1, 1) gain)
            partner = _lora_partner(graph, name)
            if partner is not None and partner.stats.count and partner.stats.all_zero:
                # PEFT's names pair the two factors of one adapter: both zero is fatal whatever the model is
                yield self.finding(
                    name,
                    f"all {tensor.size:,} values are 0.0 and so is its LoRA partner {partner.name}: the update B·A is zero and neither factor can get a gradient",
                    evidence={"count": tensor.size, "std": 0.0, "partner": partner.name},
                    fix="initialize lora_A randomly (PEFT: init_lora_weights=True) and only lora_B at zero",
                )
                continue
            yield self.finding(
                name,
                f"all {tensor.size:,} values are 0.0; without the model structure initlint cannot tell an intended zero (LoRA B, residual branch end) from a fatal one",
                Severity.INFO,
                evidence={"count": tensor.size, "std": 0.0},
            )

    def _zero_norm_gain(self, graph, layer):
        # A normalization with gain 0 outputs its shift beta whatever the input: the same
        # constant output as a zero layer with that bias, followed the same way downstream.
        weight = layer.weight
        outcome, why = zero_outcome(graph, layer)
        if outcome == ALLOWED:
            return  # the last norm of a residual branch (zero_init_residual), a zero head
        severity = Severity.ERROR if outcome == FATAL else Severity.WARNING
        prediction = Prediction(Quantity.FROZEN_PARAMETERS, Claim.ABOVE, 0.5, parameters=(weight.name,), predicted=1.0) if outcome == FATAL else None
        evidence = {"count": weight.size, "std": 0.0, "case": why}
        yield self.finding(weight.name, f"all {weight.size:,} normalization gains are 0.0, so it outputs its shift whatever the input: {why}", severity, evidence=evidence, fix=_NORM_FIX, prediction=prediction)

    must_flag = ()  # filled below, after the builders
    must_not_flag = ()


_NORM_FIX = "leave normalization gains at 1 (nn.init.ones_); zero only the last one of each residual branch (torchvision's zero_init_residual=True)"
_FIX = "initialize it randomly (nn.init.kaiming_normal_(w, nonlinearity='relu') before ReLU, nn.init.xavier_uniform_(w) before tanh/sigmoid)"


def zero_outcome(graph: g.ModelGraph, layer: g.Layer) -> tuple[int, str]:
    """Follow a zero layer's constant output downstream; the most benign path decides."""
    bias = layer.bias
    value = np.asarray(bias.values(), dtype=np.float64).reshape(-1) if bias is not None else np.zeros(1)
    outcomes = [_follow(graph, nxt, value, layer, activation=None, depth=0) for nxt in graph.downstream(layer)]
    if not outcomes:
        return ALLOWED, "its output is a model output (a zero head or readout)"
    return min(outcomes, key=lambda o: o[0])


def _follow(graph, node: g.Layer, value: np.ndarray, origin: g.Layer, activation: str | None, depth: int) -> tuple[int, str]:
    """``value`` is the constant (per unit) that reaches ``node``; it does not depend on the input."""
    is_zero = bool(np.all(value == 0))
    if depth > 64:
        return RECOVERABLE, "its output is constant"
    if node.kind == g.OUTPUT:
        return ALLOWED, _HEAD
    if node.kind in (g.ADD, g.CONCAT):
        # An input computed only from this layer's constant output is constant too (the
        # x + 0.044715x^3 inside a hand-written tanh-GELU): only an independent path rescues.
        others = [p for p in graph.producers(node) if not _is_zero_layer(p) and not _computed_only_from(graph, p, origin)]
        if len(others) >= 1 and len(graph.producers(node)) >= 2:
            return ALLOWED, _RESIDUAL
        return _continue(graph, node, value, origin, activation, depth)
    if node.kind == g.NORM:
        # Normalizing a constant gives the shift beta (training-mode statistics).
        beta = node.bias
        shifted = np.asarray(beta.values(), dtype=np.float64).reshape(-1) if beta is not None else np.zeros(1)
        return _continue(graph, node, shifted, origin, activation, depth)
    if node.kind == g.MUL:
        scale = [t for t in node.const_inputs.values() if t.size == 1]
        if scale and len(node.inputs) == 1:
            return _continue(graph, node, value * float(np.asarray(scale[0].values()).reshape(-1)[0]), origin, activation, depth)
        if is_zero and len(node.inputs) >= 2:
            # A zero gate times a computed value is still zero (adaLN-Zero, gated branches):
            # where the product goes decides, e.g. a residual add is the intended pattern.
            return _continue(graph, node, value, origin, activation, depth)
        return RECOVERABLE, "its output is constant at init (multiplied by a gate)"
    if node.kind == g.ACTIVATION:
        name = node.activation
        if activations.blocks_gradient(name, value):
            where = "0" if is_zero else "<= 0"
            return FATAL, f"it feeds {name} at a constant pre-activation {where}, whose gradient is exactly 0: this layer and every layer before it get zero gradient forever"
        applied = activations.apply(name, value, scalar(node.attrs.get("alpha")))
        if applied is None:
            return RECOVERABLE, f"its output is constant at init (then {name})"
        return _continue(graph, node, applied, origin, name, depth)
    if node.is_weighted:
        if _is_zero_layer(node) or (node.weight is not None and node.weight.stats.all_zero):
            if is_zero:
                return FATAL, f"it feeds another all-zero layer ({node.weight.name}) with a zero input: neither can get a gradient"
            return RECOVERABLE, f"it feeds another all-zero layer ({node.weight.name}), which gets a constant input"
        if is_zero and node.kind != g.EMBEDDING:
            # A linear layer keeps the zero (plus its own bias): where it ends decides.
            bias = node.bias
            passed = np.asarray(bias.values(), dtype=np.float64).reshape(-1) if bias is not None else np.zeros(1)
            outcome = _continue(graph, node, passed, origin, activation, depth)
            # Through a random linear layer the zero branch is still harmless if it ends in a
            # residual add (PEFT's A = 0, B random); a head after it makes it a lone zero layer.
            return outcome if outcome[0] == FATAL or outcome[1] == _RESIDUAL else (RECOVERABLE, _LONE)
        return RECOVERABLE, _LONE
    return RECOVERABLE, f"its output is constant at init (then {node.op})"


def _continue(graph, node, value, origin, activation, depth):
    nxt = graph.downstream(node)
    if not nxt:
        return ALLOWED, _HEAD
    outcomes = [_follow(graph, n, value, origin, activation, depth + 1) for n in nxt]
    return min(outcomes, key=lambda o: o[0])


_LORA_FACTORS = (("lora_A", "lora_B"), ("lora_embedding_A", "lora_embedding_B"))


def _lora_partner(graph, name: str):
    """The other factor of a PEFT LoRA adapter (``...q_proj.lora_A.default.weight`` <->
    ``...q_proj.lora_B.default.weight``), when the file holds it."""
    parts = name.split(".")
    for a, b in _LORA_FACTORS:
        for mine, theirs in ((a, b), (b, a)):
            if mine in parts:
                index = parts.index(mine)
                return graph.tensors.get(".".join(parts[:index] + [theirs] + parts[index + 1 :]))
    return None


def _computed_only_from(graph, layer: g.Layer, origin: g.Layer) -> bool:
    """True when every path into ``layer`` starts at ``origin`` (so its value is a function of
    origin's constant output); a layer that reads a model input is not."""
    known: dict[str, bool] = {origin.name: True}
    stack = [layer]
    while stack:
        node = stack[-1]
        if node.name in known:
            stack.pop()
            continue
        producers = graph.producers(node)
        if not producers or any(known.get(p.name) is False for p in producers):
            known[node.name] = False
            stack.pop()
            continue
        pending = [p for p in producers if p.name not in known]
        if pending:
            stack.extend(pending)
            continue
        known[node.name] = True
        stack.pop()
    return known[layer.name]


def _is_zero_layer(layer: g.Layer) -> bool:
    weight, bias = layer.weight, layer.bias
    return bool(
        layer.is_weighted
        and weight.ndim >= 2
        and weight.stats.all_zero
        and (bias is None or bias.stats.all_zero)
    )


# --- examples: the models this rule must and must not flag -----------------------------------






def zero_conv_batchnorm_relu():
    import torch.nn as nn

    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 4),
    )
    nn.init.zeros_(model[2].weight)
    return model














def lone_zero_layer_before_tanh():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))
    nn.init.zeros_(model[2].weight)
    return model


def adaln_zero_gate():
    import torch
    import torch.nn as nn

    class DiTBlock(nn.Module):
        """DiT's adaLN-Zero: the modulation is zero-initialized, so each block starts as the identity."""

        def __init__(self, features: int):
            super().__init__()
            self.norm = nn.LayerNorm(features, elementwise_affine=False)
            self.mlp = nn.Sequential(nn.Linear(features, features), nn.GELU(), nn.Linear(features, features))
            self.gate = nn.Linear(features, features)
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)

        def forward(self, x):
            return x + self.gate(torch.relu(x)) * self.mlp(self.norm(x))

    return nn.Sequential(nn.Linear(16, 32), DiTBlock(32), DiTBlock(32), nn.Linear(32, 4))


def zero_layers_around_handwritten_tanh_gelu():
    import math

    import torch
    import torch.nn as nn

    class TanhGELU(nn.Module):
        """GPT-2's gelu_new written out: its inner x + 0.044715x^3 is an Add of two computed values."""

        def forward(self, x):
            return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))

    model = nn.Sequential(nn.Linear(16, 32), TanhGELU(), nn.Linear(32, 32), TanhGELU(), nn.Linear(32, 32), TanhGELU(), nn.Linear(32, 4))
    for layer in (model[2], model[4]):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return model


def _small_resnet(zero_gains: str):
    """A stem and two residual blocks with BatchNorm; ``zero_gains``: "every" BatchNorm gain set
    to 0 (the copy-paste bug), or the "last" one of each residual branch (zero_init_residual)."""
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))

    stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    model = nn.Sequential(stem, Block(8), Block(8), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
    for module in model.modules():
        if isinstance(module, Block) and zero_gains == "last":
            nn.init.zeros_(module.bn2.weight)
        elif isinstance(module, nn.BatchNorm2d) and zero_gains == "every":
            nn.init.constant_(module.weight, 0)
    return model


def every_batchnorm_gain_zero():
    return _small_resnet("every")


def last_batchnorm_gain_of_each_branch_zero():
    return _small_resnet("last")


_CONV_INPUT = (2, 3, 8, 8)
ZeroWeights.must_flag = (
    Example(zero_linear_before_relu, flagged=("2.weight",), severity="error"),
    Example(two_consecutive_zero_layers, flagged=("2.weight",), severity="error"),
    Example(zero_conv_batchnorm_relu, flagged=("2.weight",), severity="error", input_shape=_CONV_INPUT),
    Example(lora_with_a_and_b_zero, flagged=("2.lora_A.weight",), severity="error", input_shape=(4, 16)),
    Example(lone_zero_layer_before_tanh, flagged=("2.weight",), severity="warning"),
    Example(every_batchnorm_gain_zero, flagged=("0.1.weight", "1.bn1.weight"), severity="error", input_shape=_CONV_INPUT),
    Example(zero_layers_around_handwritten_tanh_gelu, flagged=("2.weight",), severity="warning"),
)
ZeroWeights.must_not_flag = (
    Example(lora_b_zero_a_random),
    Example(zero_last_conv_of_residual_branch, input_shape=_CONV_INPUT),
    Example(zero_classifier_head),
    Example(rezero_gate),
    Example(adaln_zero_gate),
    Example(last_batchnorm_gain_of_each_branch_zero, input_shape=_CONV_INPUT),
)
