"""IL404 frozen-parameters."""

from __future__ import annotations

from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.fixes import init_call, random_init_for
from initlint.measurement import UNFREEZE_STEPS
from initlint.example_models import (
    lora_b_zero_a_random,
    lora_with_a_and_b_zero,
    rezero_gate,
    two_consecutive_zero_layers,
    zero_classifier_head,
    zero_last_conv_of_residual_branch,
    zero_linear_before_relu,
)


class FrozenParameters(Rule):
    """A trainable parameter whose gradient is exactly zero and stays zero after SGD steps.

    ## What it does
    Runs the dynamic probe and collects every parameter that requires a gradient but gets an
    exactly zero one on all three seeded probe batches. Those are run through plain-SGD steps
    on a private copy of the model (up to three, so that a chain of intended zeros unfreezes
    link by link); a parameter whose gradient is still exactly zero is flagged.

    ## Why is this bad?
    An exactly zero gradient that does not change after an update never will: the parameter,
    and usually every layer before it, keeps its init for the whole of training. This is the
    signature of the fatal zero patterns — a zero layer into ReLU at a pre-activation <= 0
    (ReLU'(0) = 0 in PyTorch), two consecutive zero layers, LoRA with both A and B zero — and of
    layers cut off by dead units.

    ## Example
    ```python
    hidden = nn.Linear(32, 32)
    nn.init.zeros_(hidden.weight)
    nn.init.zeros_(hidden.bias)  # output 0 -> ReLU'(0) = 0: no gradient reaches this layer or the first
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), hidden, nn.ReLU(), nn.Linear(32, 4))
    ```

    ## How to fix
    Initialize the layer randomly (`nn.init.kaiming_normal_` before ReLU, `xavier_uniform_`
    before tanh). Keep zero init only where the output is added to a non-zero path (the last
    layer of a residual branch, LoRA B with a random A) or is the model's head.

    ## Known false positives
    None of the allowlisted zero patterns is flagged: their zero gradients unfreeze after the
    first step (a zero classifier head, a LoRA B = 0 with a random A, ReZero/SkipInit gates)
    or the second (Fixup: a zero head and zero branch ends). A parameter the forward pass
    does not use (no gradient at all) is not reported.

    ## References
    - docs/science.md §5 (when a zero tensor is fatal), §8 (permanently frozen: zero after one step on a copy)
    - Hu et al. 2021, "LoRA"; Zhang et al. 2019, "Fixup Initialization"; Bachlechner et al. 2020, "ReZero"
    """

    code = "IL404"
    name = "frozen-parameters"
    severity = Severity.ERROR
    stage = "probe"
    needs_structure = True

    def check(self, ctx):
        graph = ctx.graph
        probe = ctx.probe
        if probe is None:
            return
        for name in probe.frozen_parameters:
            yield self.finding(
                name,
                f"this parameter never gets a gradient, so it will never train: its gradient is exactly 0 on all {len(probe.seeds)} probe batches "
                f"and still exactly 0 after up to {UNFREEZE_STEPS} plain-SGD steps on a copy",
                evidence={"seeds": probe.seeds, "sgd_steps": UNFREEZE_STEPS},
                fix=_fix(graph, name),
            )

    must_flag = ()
    must_not_flag = ()



_KEEP_ZEROS = "keep zero init only where the layer's output is added to a non-zero path (a residual branch end, LoRA B)"
_THROUGH = g.TRANSPARENT_KINDS | {g.ACTIVATION}


def _fix(graph: g.ModelGraph, parameter: str) -> str:
    """The likely cause of the freeze as the call that removes it: a zero layer or zero
    normalization gain that feeds this parameter's layer a constant, the layer's own zeros, or one
    after it that passes no gradient back (tried in that order: a constant input freezes a weight
    whatever comes after, docs/science.md §5)."""
    layer = next((layer for layer in graph.layers.values() if any(t.name == parameter for t in layer.params.values())), None)
    if layer is None:
        return f"initialize the zero layer randomly (nn.init.kaiming_normal_ before ReLU); {_KEEP_ZEROS}"
    before = _zeros_before(graph, layer)
    own = [layer] if _zero_layer(layer) or _zero_gain(layer) else []
    after = [n for n in graph.downstream(layer, _THROUGH) if _zero_layer(n) or _zero_gain(n)]
    cause = next(iter(before + own + after), None)
    if cause is None:
        return f"initialize the zero layer randomly (nn.init.kaiming_normal_ before ReLU); {_KEEP_ZEROS}"
    kind = "normalization" if cause.kind == g.NORM else "layer"
    where = f"this {kind}" if cause is layer else f"{kind} {graph.label(cause.name)} {'before' if cause in before else 'after'} it"
    if _zero_gain(cause):
        return f"{init_call('ones_', cause.weight.name)}: {where} starts with gain 0 and blocks the gradient; {_KEEP_ZEROS}"
    return f"{random_init_for(graph, cause)}: {where} starts all zero and blocks the gradient; {_KEEP_ZEROS}"


def _zeros_before(graph: g.ModelGraph, layer: g.Layer) -> list[g.Layer]:
    """The zero layers and zero-gain normalizations on the nearest weighted path into ``layer``
    (through normalizations with a gain, which pass a constant input on as a constant)."""
    found, frontier, seen = [], graph.upstream(layer, _THROUGH), set()
    while frontier:
        node = frontier.pop(0)
        if node.name in seen:
            continue
        seen.add(node.name)
        if _zero_layer(node) or _zero_gain(node):
            found.append(node)
        elif node.kind == g.NORM:
            frontier.extend(graph.upstream(node, _THROUGH))
    return found


def _zero_layer(layer: g.Layer) -> bool:
    return layer.is_weighted and layer.weight.ndim >= 2 and layer.weight.stats.count > 0 and layer.weight.stats.all_zero


def _zero_gain(layer: g.Layer) -> bool:
    return layer.kind == g.NORM and layer.weight is not None and layer.weight.stats.count > 0 and layer.weight.stats.all_zero


def fixup_zero_head_and_branch_ends():
    import torch.nn as nn

    model = zero_last_conv_of_residual_branch()
    nn.init.zeros_(model[-1].weight)  # Fixup also zeroes the classifier: two zero links in a row
    nn.init.zeros_(model[-1].bias)
    return model


FrozenParameters.must_flag = (
    Example(zero_linear_before_relu, flagged=("2.weight", "0.weight"), severity="error", input_shape=(32, 16)),
    Example(two_consecutive_zero_layers, flagged=("2.weight", "4.weight"), severity="error", input_shape=(32, 16)),
    Example(lora_with_a_and_b_zero, flagged=("2.lora_A.weight", "2.lora_B.weight"), severity="error", input_shape=(32, 16)),
)
FrozenParameters.must_not_flag = (
    Example(lora_b_zero_a_random, input_shape=(32, 16)),
    Example(zero_classifier_head, input_shape=(32, 16)),
    Example(rezero_gate, input_shape=(32, 16)),
    Example(fixup_zero_head_and_branch_ends, input_shape=(8, 3, 8, 8)),
)
