"""IL101 zero-weights."""

from __future__ import annotations

from initlint import graph as g
from initlint.constant_flow import ConstantFlow, ConstantOutcome, Fate, Harm
from initlint.fixes import Code as _Code, init_call, random_init_for
from initlint.engine import Example, Rule, Severity
from initlint.prediction import Claim, Prediction, Quantity
from initlint.example_models import (  # shared with other rules' examples
    batchnorm_residual_block,
    lora_b_zero_a_random,
    lora_with_a_and_b_zero,
    rezero_gate,
    two_consecutive_zero_layers,
    zero_classifier_head,
    zero_last_conv_of_residual_branch,
    zero_linear_before_relu,
)

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
    forever: the network cannot train. A zero layer fed that frozen zero output never trains
    either, whatever follows it: its weight's gradient is its input times the gradient at its
    output (the second of two zero layers in a row). A lone zero layer between random layers recovers, but
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
        flow = ConstantFlow(graph)  # each layer's outcome computed once, however many layers are zero
        claimed = set()
        for layer in graph.layers.values():
            weight = layer.weight
            # A trainable gain only: a frozen norm's buffers (DETR's FrozenBatchNorm2d) get no gradient anyway.
            if layer.kind == g.NORM and graph.has_structure and weight is not None and weight.name in graph.tensors and weight.stats.all_zero:
                yield from self._zero_norm_gain(graph, flow, layer)
                continue
            if weight is None or weight.ndim < 2 or not graph.has_structure:
                continue  # without structure (a state dict) every zero matrix is judged below
            claimed.add(weight.name)
            if not weight.stats.all_zero:
                continue
            evidence = {"count": weight.size, "std": 0.0}
            if layer.kind not in _STRUCTURAL_KINDS:
                yield self.finding(weight.name, f"this weight starts with no information in it: all {weight.size:,} values are 0.0", Severity.WARNING, evidence=evidence, fix=_fix(graph, layer))
                continue
            outcome = flow.outcome(layer)
            if outcome.harm == Harm.ALLOWED:
                continue
            fatal = outcome.harm == Harm.FATAL
            severity = Severity.ERROR if fatal else Severity.WARNING
            # A fatal zero pattern predicts a permanently zero gradient, which the probe checks.
            # A lone zero layer is predicted to recover: its gradient is not stuck at zero.
            prediction = (
                Prediction(Quantity.FROZEN_PARAMETERS, Claim.ABOVE, 0.5, parameters=(weight.name,), predicted=1.0) if fatal
                else Prediction(Quantity.FROZEN_PARAMETERS, Claim.BELOW, 0.5, parameters=(weight.name,), predicted=0.0) if outcome.fate == Fate.LONE_ZERO_LAYER
                else None
            )
            message = _consequence(outcome, f"all {weight.size:,} values are 0.0")
            yield self.finding(weight.name, message, severity, evidence={**evidence, "case": outcome.fate.value}, fix=_fix(graph, layer), prediction=prediction)
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
                    f"this LoRA adapter can never train: all {tensor.size:,} values are 0.0 and so are its partner {partner.name}'s, so the update B·A is zero and neither factor gets a gradient",
                    evidence={"count": tensor.size, "std": 0.0, "partner": partner.name},
                    fix=f"{init_call('kaiming_uniform_', _factor_a(name, partner.name), a=_Code('math.sqrt(5)'))} (PEFT: init_lora_weights=True): only lora_B starts at zero",
                )
                continue
            yield self.finding(
                name,
                f"this weight may never train, or may be an intended zero: all {tensor.size:,} values are 0.0, and without the model structure initlint cannot tell an intended zero (LoRA B, residual branch end) from a fatal one",
                Severity.INFO,
                evidence={"count": tensor.size, "std": 0.0},
            )

    def _zero_norm_gain(self, graph, flow, layer):
        # A normalization with gain 0 outputs its shift beta whatever the input: the same
        # constant output as a zero layer with that bias, followed the same way downstream.
        weight = layer.weight
        outcome = flow.outcome(layer)
        if outcome.harm == Harm.ALLOWED:
            return  # the last norm of a residual branch (zero_init_residual), a zero head
        fatal = outcome.harm == Harm.FATAL
        severity = Severity.ERROR if fatal else Severity.WARNING
        prediction = Prediction(Quantity.FROZEN_PARAMETERS, Claim.ABOVE, 0.5, parameters=(weight.name,), predicted=1.0) if fatal else None
        evidence = {"count": weight.size, "std": 0.0, "case": outcome.fate.value}
        zeros = f"all {weight.size:,} normalization gains are 0.0, so it outputs its shift whatever the input"
        yield self.finding(weight.name, _consequence(outcome, zeros), severity, evidence=evidence, fix=f"{init_call('ones_', weight.name)}: leave normalization gains at 1 and zero only the last one of each residual branch (torchvision's zero_init_residual=True)", prediction=prediction)

    must_flag = ()  # filled below, after the builders
    must_not_flag = ()


_STARTS_EMPTY = "this layer starts with no information flowing through it"


def _fix(graph: g.ModelGraph, layer: g.Layer) -> str:
    return f"{random_init_for(graph, layer)}; keep zero init only where the layer's output is added to a non-zero path (a residual branch end, LoRA B)"


def _consequence(outcome: ConstantOutcome, zeros: str) -> str:
    """What the zero layer's constant output does to training, in words, then ``zeros`` (what is
    zero, with the count)."""
    fate = outcome.fate
    if fate == Fate.BLOCKED_BY_ACTIVATION:
        where = "0" if outcome.zero_constant else "<= 0"
        return (
            f"this layer and every layer before it will never train: {zeros}, so it feeds {outcome.activation} "
            f"a constant pre-activation {where}, where its gradient is exactly 0"
        )
    if fate == Fate.FEEDS_ZERO_LAYER:
        if outcome.harm == Harm.FATAL:
            return f"neither this layer nor {outcome.other_weight} can ever train: {zeros} and it feeds that all-zero layer a zero input, so each blocks the other's gradient"
        return f"{_STARTS_EMPTY}: {zeros}, and it feeds another all-zero layer ({outcome.other_weight}) a constant input"
    if fate == Fate.FED_BY_ZERO_LAYER:
        return (
            f"this tensor will never train: {zeros}, and its input is exactly 0 for good, coming from {outcome.other_weight} "
            f"(all zero, and it never trains either), so its gradient, the input times the gradient at its output, is exactly 0"
        )
    if fate == Fate.LONE_ZERO_LAYER:
        return f"{_STARTS_EMPTY}, though training recovers through its random neighbours: {zeros}, so its output is a constant at init"
    if fate == Fate.GATED:
        return f"{_STARTS_EMPTY}: {zeros}, so its output is a constant at init (multiplied by a gate)"
    if fate == Fate.UNKNOWN_ACTIVATION:
        return f"{_STARTS_EMPTY}: {zeros}, so its output is a constant at init (then {outcome.activation})"
    if fate == Fate.CONSTANT and outcome.op is not None:
        return f"{_STARTS_EMPTY}: {zeros}, so its output is a constant at init (then {outcome.op})"
    return f"{_STARTS_EMPTY}: {zeros}, so its output is a constant at init"


_LORA_FACTORS = (("lora_A", "lora_B"), ("lora_embedding_A", "lora_embedding_B"))


def _factor_a(name: str, partner: str) -> str:
    """Of a LoRA pair, the A factor (the one to draw randomly)."""
    return name if "lora_A" in name.split(".") or "lora_embedding_A" in name.split(".") else partner


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

    stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    blocks = [batchnorm_residual_block(8) for _ in range(2)]
    model = nn.Sequential(stem, *blocks, nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
    if zero_gains == "last":
        for block in blocks:
            nn.init.zeros_(block.bn2.weight)
    elif zero_gains == "every":
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 0)
    return model


def every_batchnorm_gain_zero():
    return _small_resnet("every")


def last_batchnorm_gain_of_each_branch_zero():
    return _small_resnet("last")


_CONV_INPUT = (2, 3, 8, 8)
ZeroWeights.must_flag = (
    Example(zero_linear_before_relu, flagged=("2.weight",), severity="error"),
    Example(two_consecutive_zero_layers, flagged=("2.weight", "4.weight"), severity="error"),
    Example(zero_conv_batchnorm_relu, flagged=("2.weight",), severity="error", input_shape=_CONV_INPUT),
    Example(lora_with_a_and_b_zero, flagged=("2.lora_A.weight", "2.lora_B.weight"), severity="error", input_shape=(4, 16)),
    Example(lone_zero_layer_before_tanh, flagged=("2.weight",), severity="warning"),
    Example(every_batchnorm_gain_zero, flagged=("0.1.weight", "1.bn1.weight", "1.bn2.weight"), severity="error", input_shape=_CONV_INPUT),
    Example(zero_layers_around_handwritten_tanh_gelu, flagged=("2.weight", "4.weight"), severity="error"),
)
ZeroWeights.must_not_flag = (
    Example(lora_b_zero_a_random),
    Example(zero_last_conv_of_residual_branch, input_shape=_CONV_INPUT),
    Example(zero_classifier_head),
    Example(rezero_gate),
    Example(adaln_zero_gate),
    Example(last_batchnorm_gain_of_each_branch_zero, input_shape=_CONV_INPUT),
)
