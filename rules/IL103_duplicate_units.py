"""IL103 duplicate-units."""

from __future__ import annotations

from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.fixes import random_init_for
from initlint.prediction import Claim, Prediction, Quantity
from initlint.symmetry import Harm, symmetry_of


class DuplicateUnits(Rule):
    """Output units (rows of a weight matrix, conv filters) that are exact copies of each other.

    ## What it does
    Compares the output units of every linear and convolution layer and reports the groups of
    units whose weights are bit-for-bit identical (all-zero units and constant layers are
    left to IL101 and IL102).

    ## Why is this bad?
    Identical units compute the same feature. Unless their neighbours tell them apart, they
    receive identical gradients and never diverge, so the layer is narrower than it looks.
    When every hidden layer is one row tiled (or constant, IL102) the network is a chain of
    single features: each layer's ReLUs switch on and off together and the gradients are
    exactly zero as soon as one link is negative (an error, docs/science.md §11).
    Exact copies almost always come from a bug: `weight.data[:] = weight.data[0]`, a
    `repeat`/`expand` of one initialized row, or copying one filter into all slots.

    ## Example
    ```python
    layer = nn.Linear(64, 128)
    with torch.no_grad():
        layer.weight[:] = layer.weight[0]   # every row a copy of the first
    ```

    ## How to fix
    Initialize every unit independently: `nn.init.kaiming_normal_(layer.weight)` on the whole
    tensor, not on one row that is then copied.

    ## Known false positives
    Embedding rows (tokens) are not units and are never compared; zero rows (dead units,
    padding of `eye_`/`dirac_` inits) are left out.

    ## References
    - docs/science.md §5 (symmetry breaking)
    - Goodfellow, Bengio & Courville, "Deep Learning", §8.4
    """

    code = "IL103"
    name = "duplicate-units"
    severity = Severity.WARNING

    def check(self, ctx):
        graph = ctx.graph
        symmetry = symmetry_of(graph)
        for layer in graph.layers.values():
            if layer.kind not in (g.LINEAR, g.CONV, g.CONV_TRANSPOSE) or layer.weight is None or layer.weight.ndim < 2:
                continue
            stats = layer.unit_stats()
            if stats.all_equal or stats.duplicate_rows == 0:
                continue
            groups = stats.duplicate_row_groups
            shown = "; ".join(_describe(group) for group in groups[:3])
            fatal = symmetry.harm(layer.name) == Harm.FATAL
            everywhere = ": every hidden layer of the model is one unit wide, the network a chain of single features" if fatal else ""
            yield self.finding(
                layer.weight.name,
                f"this layer starts with fewer distinct features than units, since copied units compute the same thing: "
                f"{stats.duplicate_rows} of {stats.rows} output units repeat another unit exactly (units {shown}){everywhere}",
                Severity.ERROR if fatal else self.severity,
                evidence={"duplicate_units": stats.duplicate_rows, "units": stats.rows, "groups": groups},
                # Identical weights give identical outputs (less each unit's own bias) on every input.
                prediction=Prediction(Quantity.DUPLICATE_UNIT_FRACTION, Claim.ABOVE, 0.0, to_layer=layer.name, predicted=stats.duplicate_rows / stats.rows),
                fix=f"{random_init_for(graph, layer)} on the whole tensor at once, instead of copying one unit",
            )

    must_flag = ()
    must_not_flag = ()


def _describe(group: list[int]) -> str:
    head = ", ".join(str(i) for i in group[:4])
    return f"{head}{', ...' if len(group) > 4 else ''} identical"


def copied_rows():
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():
        model[2].weight[8:16] = model[2].weight[0]
    return model


def copied_conv_filters():
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
    with torch.no_grad():
        model[0].weight[1] = model[0].weight[0]
    return model


def default_mlp():
    import torch.nn as nn

    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def identity_init_wider_than_input():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 48), nn.ReLU(), nn.Linear(48, 4))
    nn.init.eye_(model[2].weight)  # rows 32..47 are zero: padding, not duplicates
    return model


def tiled_hidden_layers():
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():
        for layer in (model[2], model[4]):
            layer.weight.copy_(layer.weight[0:1].expand_as(layer.weight))
    return model


DuplicateUnits.must_flag = (
    Example(copied_rows, flagged=("2.weight",), severity="warning"),
    Example(tiled_hidden_layers, flagged=("2.weight", "4.weight"), severity="error"),
    Example(copied_conv_filters, flagged=("0.weight",), severity="warning", input_shape=(2, 3, 8, 8)),
)
DuplicateUnits.must_not_flag = (Example(default_mlp), Example(identity_init_wider_than_input))
