"""IL102 constant-weights."""

from __future__ import annotations

from initlint import graph as g
from initlint.engine import Example, Rule, Severity


class ConstantWeights(Rule):
    """A weight tensor whose elements are all equal and non-zero: symmetry is never broken.

    ## What it does
    Finds weight matrices and kernels where every element has the same non-zero value (for
    example `nn.init.constant_(w, 0.1)` or `w.data.fill_(0.5)`).

    ## Why is this bad?
    Every output unit of a constant layer computes the same function of its input. When the
    next layer also treats those units alike (identical columns, e.g. it is constant too) and
    the bias is constant, every unit gets the same gradient and the units stay identical for
    the whole of training: the layer has the capacity of a single unit (rank 1). A constant
    layer between random layers is broken out of symmetry by its neighbours: info only.

    ## Example
    ```python
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    for layer in model[::2]:
        nn.init.constant_(layer.weight, 0.1)
    ```

    ## How to fix
    Use a random init: `nn.init.kaiming_normal_(w, nonlinearity="relu")` for ReLU layers,
    `nn.init.xavier_uniform_(w)` for tanh/sigmoid layers.

    ## Known false positives
    LayerScale and similar per-channel scales are 1-D and never flagged; a constant layer
    between random layers is reported as info only.

    ## References
    - DESIGN.md §5 (symmetry needs identical rows in W_l, identical columns in W_l+1 and a constant bias)
    - Goodfellow, Bengio & Courville, "Deep Learning", §8.4 (breaking symmetry)
    """

    code = "IL102"
    name = "constant-weights"
    severity = Severity.ERROR

    def check(self, graph):
        for layer in graph.layers.values():
            weight = layer.weight
            if weight is None or weight.ndim < 2 or layer.kind not in g.WEIGHTED_KINDS - {g.EMBEDDING}:
                continue
            stats = weight.stats
            if not stats.all_equal or stats.all_zero:
                continue
            message = f"all {weight.size:,} values equal {stats.min:.6g}"
            evidence = {"value": stats.min, "count": weight.size}
            symmetric_next = _next_layers_keep_symmetry(graph, layer)
            bias_constant = layer.bias is None or layer.bias.stats.all_equal
            if graph.has_structure and symmetric_next and bias_constant:
                names = ", ".join(n.weight.name for n in symmetric_next)
                yield self.finding(
                    weight.name,
                    f"{message}, and the next layer ({names}) treats its {layer.units} units alike: they stay identical forever (rank 1)",
                    evidence=evidence,
                    fix=_FIX,
                )
            else:
                yield self.finding(
                    weight.name,
                    f"{message}; its random neighbours break the symmetry, but the layer starts with identical units",
                    Severity.INFO,
                    evidence=evidence,
                    fix=_FIX,
                )

    must_flag = ()
    must_not_flag = ()


_FIX = "use a random init: nn.init.kaiming_normal_(w, nonlinearity='relu') or nn.init.xavier_uniform_(w)"


def _next_layers_keep_symmetry(graph, layer) -> list:
    """The next weighted layers, if every one of them has identical columns (constant rows)."""
    following = graph.downstream(layer, through=g.TRANSPARENT_KINDS | {g.ACTIVATION})
    weighted = [n for n in following if n.is_weighted]
    if not weighted or len(weighted) != len(following):
        return []
    for nxt in weighted:
        unit_stats = nxt.unit_stats()
        if unit_stats is None or unit_stats.constant_rows != unit_stats.rows:
            return []
    return weighted


def all_layers_constant():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    for layer in model[::2]:
        nn.init.constant_(layer.weight, 0.1)
        nn.init.constant_(layer.bias, 0.0)
    return model


def one_constant_layer_between_random_ones():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    nn.init.constant_(model[2].weight, 0.05)
    return model


def layerscale_constants():
    import torch
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, features):
            super().__init__()
            self.fc = nn.Linear(features, features)
            self.gamma = nn.Parameter(torch.full((features,), 1e-4))

        def forward(self, x):
            return x + self.gamma * torch.relu(self.fc(x))

    return nn.Sequential(nn.Linear(16, 32), Block(32), Block(32), nn.Linear(32, 4))


ConstantWeights.must_flag = (Example(all_layers_constant, flagged=("0.weight", "2.weight"), severity="error"),)
ConstantWeights.must_not_flag = (Example(one_constant_layer_between_random_ones), Example(layerscale_constants))
