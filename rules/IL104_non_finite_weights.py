"""IL104 non-finite-weights."""

from __future__ import annotations

import numpy as np

from initlint.engine import Example, Rule, Severity


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

    ## References
    - DESIGN.md §9 (DeepDiagnosis and AUTOTRAINER treat NaN weights as fatal)
    """

    code = "IL104"
    name = "non-finite-weights"
    severity = Severity.ERROR

    def check(self, graph):
        for name, tensor in graph.tensors.items():
            if not tensor.dtype.startswith(("float", "bfloat")):
                continue
            stats = tensor.stats
            if not stats.nonfinite_count:
                continue
            first = np.unravel_index(stats.first_nonfinite, tensor.shape) if tensor.shape else ()
            index = tuple(int(i) for i in first)
            yield self.finding(
                name,
                f"{stats.nonfinite_count:,} of {stats.count:,} values are NaN or infinite (first at index {index})",
                evidence={"nonfinite": stats.nonfinite_count, "count": stats.count, "first_index": list(index)},
                fix="find the division or log that produced it in the init code, or re-export the checkpoint",
            )

    must_flag = ()
    must_not_flag = ()


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


NonFiniteWeights.must_flag = (Example(nan_in_hidden_layer, flagged=("2.weight",), severity="error"),)
NonFiniteWeights.must_not_flag = (Example(finite_mlp),)
