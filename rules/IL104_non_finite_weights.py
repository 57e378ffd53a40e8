"""IL104 non-finite-weights."""

from __future__ import annotations

import numpy as np

from initlint.engine import Example, Rule, Severity
from initlint.fixes import reinit_call
from initlint.prediction import Claim, Prediction, Quantity


class NonFiniteWeights(Rule):
    """NaN or infinite values in any parameter.

    ## What it does
    Counts NaN and +/-Inf values in every parameter tensor (weights, biases, normalization
    parameters, embeddings) and reports the count and the first index.

    ## Why is this bad?
    One NaN poisons every activation it touches, then the loss, then every gradient: training
    produces NaN from the first step. They come from an init divided by a zero fan
    (`std = gain / sqrt(0)`), a log of zero, or a corrupted or badly converted checkpoint.

    ## Example
    ```python
    layer = nn.Linear(16, 16)
    nn.init.normal_(layer.weight, std=1.0 / math.sqrt(fan))  # fan == 0 -> inf std -> nan
    ```

    ## How to fix
    Find the computation that produced the value (check fans and divisions in custom init
    code), or re-export the checkpoint; `torch.isfinite(p).all()` on each parameter confirms
    the fix.

    ## Known false positives
    Attention masks are often constants holding -inf; in constants that no layer uses as a
    parameter only NaN is reported.

    ## References
    - docs/science.md §9 (DeepDiagnosis and AUTOTRAINER treat NaN weights as fatal)
    """

    code = "IL104"
    name = "non-finite-weights"
    severity = Severity.ERROR

    def check(self, ctx):
        graph = ctx.graph
        parameters = {t.name for layer in graph.layers.values() for t in layer.params.values()}
        # A non-finite weight or bias of a weighted layer makes that layer's outputs non-finite.
        owner = {t.name: layer.name for layer in graph.weighted_layers() for t in (layer.weight, layer.bias) if t is not None} if graph.has_structure else {}
        for name, tensor in graph.tensors.items():
            if not tensor.dtype.startswith(("float", "bfloat")):
                continue
            stats = tensor.stats
            # -inf is how attention masks are written; in a constant no layer uses as a
            # parameter only NaN is a defect.
            is_parameter = name in parameters or not graph.has_structure
            if not (stats.nonfinite_count if is_parameter else stats.nan_count):
                continue
            first = np.unravel_index(stats.first_nonfinite, tensor.shape) if tensor.shape else ()
            index = tuple(int(i) for i in first)
            yield self.finding(
                name,
                f"training cannot start: the outputs that depend on this tensor turn NaN or infinite, and so does the loss from the first step: "
                f"{stats.nonfinite_count:,} of {stats.count:,} values are NaN or infinite (first at index {index})",
                evidence={"nonfinite": stats.nonfinite_count, "count": stats.count, "first_index": list(index)},
                prediction=Prediction(Quantity.NON_FINITE_FRACTION, Claim.ABOVE, 0.0, to_layer=owner[name]) if name in owner else None,
                fix=_fix(graph, name),
            )

    must_flag = ()
    must_not_flag = ()


def _fix(graph, name: str) -> str:
    trace = "find the division or log that produced the values in the init code, or re-export the checkpoint"
    call = reinit_call(graph, name)
    return f"{call}, then {trace}" if call else trace

def nan_in_hidden_layer():
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():
        model[2].weight[3, 5] = float("nan")
        model[2].weight[7, 0] = float("inf")
    return model


def finite_mlp():
    import torch.nn as nn

    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def causal_mask_with_minus_inf():
    import torch
    import torch.nn as nn

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 16)
            self.register_buffer("mask", torch.triu(torch.full((4, 4), float("-inf")), diagonal=1))

        def forward(self, x):
            scores = self.fc(x).reshape(-1, 4, 4) + self.mask
            return torch.softmax(scores, dim=-1).reshape(-1, 16)

    return Masked()


NonFiniteWeights.must_flag = (Example(nan_in_hidden_layer, flagged=("2.weight",), severity="error"),)
NonFiniteWeights.must_not_flag = (Example(finite_mlp), Example(causal_mask_with_minus_inf))
