"""IL106 uninitialized-weights."""

from __future__ import annotations

from initlint.engine import Example, Rule, Severity
from initlint.fixes import reinit_call
from initlint.prediction import Claim, Prediction, Quantity

FLOAT32_MAX = 3.4028234663852886e38


class UninitializedWeights(Rule):
    """Parameter values of a magnitude no init scheme produces: memory that was never initialized.

    ## What it does
    Reports every floating-point parameter whose largest finite magnitude exceeds `max_abs`.
    Every init scheme draws |w| within a few times gain/sqrt(fan_in) (N(0, 1), the widest
    common one, essentially never beyond 6), and trained weights stay within a few units;
    values of 1e6 and up (up to 1e38) are what `torch.empty(n)`, `torch.Tensor(n)` or
    `np.empty` leave behind: whatever the allocator held before.

    ## Why is this bad?
    Uninitialized memory holds arbitrary bit patterns: huge values, denormals and exact zeros
    side by side. The first forward pass overflows or saturates and the loss is NaN after the
    first steps; since the values depend on what the process did before, the bug comes and
    goes between runs and machines. Unlike the other init-time rules this holds for trained
    weights too: training never produces such magnitudes, so it is corruption either way.

    ## Example
    ```python
    class Scale(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(n))  # never initialized
    ```

    ## How to fix
    Initialize every parameter made with `torch.empty` / `torch.Tensor`: `nn.init.ones_`,
    `nn.init.zeros_` or the layer's init scheme in `reset_parameters()`, and call it from
    `__init__`.

    ## Options
    - `max_abs` (1e6): the magnitude above which a value cannot come from an init.

    ## Known false positives
    Constants that are not parameters (masks of -1e9, large position tables) and normalization
    running statistics (a trained BatchNorm's variance can be large) are not judged.

    ## References
    - docs/science.md §2 (the variance of each scheme), §11 (uninitialized memory)
    """

    code = "IL106"
    name = "uninitialized-weights"
    severity = Severity.ERROR
    options = {"max_abs": 1e6}

    def check(self, ctx):
        graph = ctx.graph
        # Running statistics are buffers, not weights: a trained BatchNorm's variance may be huge.
        parameters = {t.name for layer in graph.layers.values() for role, t in layer.params.items() if not role.startswith("running_")}
        owner = {layer.weight.name: layer for layer in graph.layers.values() if layer.is_weighted}
        limit = float(self.settings["max_abs"])
        for name, tensor in graph.tensors.items():
            if not tensor.dtype.startswith(("float", "bfloat")) or (graph.has_structure and name not in parameters):
                continue
            stats = tensor.stats
            if not stats.finite_count:
                continue
            largest = max(abs(stats.min), abs(stats.max))
            if largest <= limit:
                continue
            layer = owner.get(name)
            # Where one weight times fan_in unit inputs passes float32's largest value, the
            # layer's own output overflows: a claim the probe settles.
            overflows = layer is not None and layer.fan_in and largest * layer.fan_in >= FLOAT32_MAX
            yield self.finding(
                name,
                f"training starts from garbage: values this large swamp or overflow the outputs they feed: "
                f"values reach |w| = {largest:.3g} (mean of w² {stats.mean_sq:.3g}), which no init scheme produces; "
                "the tensor looks like uninitialized memory (torch.empty / torch.Tensor(n) never initialized)",
                evidence={"max_abs": largest, "mean_sq": stats.mean_sq, "count": stats.count},
                prediction=Prediction(Quantity.NON_FINITE_FRACTION, Claim.ABOVE, 0.0, to_layer=layer.name) if overflows else None,
                fix=_fix(graph, name),
            )

    must_flag = ()
    must_not_flag = ()


def _fix(graph, name: str) -> str:
    call = reinit_call(graph, name)
    where = "in the module's reset_parameters(), which torch.empty-allocated parameters need"
    return f"{call} {where}" if call else f"initialize the parameter {where} (nn.init.ones_ for a gain, nn.init.zeros_ for a shift)"


def mlp_with_uninitialized_scale():
    import torch
    import torch.nn as nn

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(16, 32)
            self.scale = nn.Linear(32, 32)
            self.fc2 = nn.Linear(32, 4)
            with torch.no_grad():  # what torch.empty can hand back: denormals, zeros and 1e38s
                garbage = torch.tensor([3.4e38, -1.2e37, 0.0, 1e-40, 7.7e21, -2.0e-39, 0.0, 5.5e30])
                self.scale.weight.copy_(garbage.repeat(32 * 32 // 8).reshape(32, 32))

        def forward(self, x):
            return self.fc2(torch.relu(self.scale(torch.relu(self.fc1(x)))))

    return Scaled()


def mlp_standard_normal():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    for layer in (model[0], model[2]):
        nn.init.normal_(layer.weight)
    return model


UninitializedWeights.must_flag = (Example(mlp_with_uninitialized_scale, flagged=("scale.weight",), severity="error"),)
UninitializedWeights.must_not_flag = (Example(mlp_standard_normal),)
