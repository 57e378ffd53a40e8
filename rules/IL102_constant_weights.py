"""IL102 constant-weights."""

from __future__ import annotations

from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.fixes import random_init_for
from initlint.prediction import Claim, Prediction, Quantity
from initlint.symmetry import Harm, symmetry_of


class ConstantWeights(Rule):
    """A weight tensor whose elements are all equal and non-zero: symmetry is never broken.

    ## What it does
    Finds weight matrices and kernels where every element has the same non-zero value (for
    example `nn.init.constant_(w, 0.1)` or `w.data.fill_(0.5)`).

    ## Why is this bad?
    Every output unit of a constant layer computes the same function of its input. When the
    next layer also treats those units alike (identical columns, e.g. it is constant too) and
    the bias is constant, every unit gets the same gradient and the units stay identical for
    the whole of training: the layer has the capacity of a single unit (rank 1). Activations,
    pooling and normalizations with a constant scale and shift (BatchNorm's default) keep the
    units alike. When every weighted layer is constant this holds whatever the edges, so it is
    an error in a state dict too. A constant layer between random layers is broken out of
    symmetry by its neighbours: info only.

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
    between random layers is a warning, not an error.

    ## References
    - docs/science.md §5 (symmetry needs identical rows in W_l, identical columns in W_l+1 and a constant bias)
    - docs/science.md §11 (one constant layer among random ones: slow recovery, measured)
    - Goodfellow, Bengio & Courville, "Deep Learning", §8.4 (breaking symmetry)
    """

    code = "IL102"
    name = "constant-weights"
    severity = Severity.ERROR

    def check(self, ctx):
        graph = ctx.graph
        candidates = [
            layer
            for layer in graph.layers.values()
            if layer.weight is not None and layer.weight.ndim >= 2 and layer.kind in g.WEIGHTED_KINDS - {g.EMBEDDING}
        ]
        # Every weighted layer constant: whatever the edges, each layer's neighbours are
        # constant too, so no unit can ever differ from its siblings (docs/science.md §5). This
        # needs no structure, so a state dict is judged as well.
        everything_constant = len(candidates) >= 2 and all(_is_constant(layer) for layer in candidates)
        symmetry = symmetry_of(graph)
        for layer in candidates:
            weight = layer.weight
            stats = weight.stats
            if not _is_constant(layer):
                continue
            values = f"all {weight.size:,} values equal {stats.min:.6g}"
            fix = f"{random_init_for(graph, layer)}: a random draw, so that each unit starts different"
            evidence = {"value": stats.min, "count": weight.size}
            symmetric_next = _next_layers_keep_symmetry(graph, layer) if graph.has_structure else []
            bias_constant = layer.bias is None or layer.bias.stats.all_equal
            # A constant layer's units compute the same value: all but one repeat another.
            same = Prediction(Quantity.DUPLICATE_UNIT_FRACTION, Claim.ABOVE, 0.5, to_layer=layer.name, predicted=1 - 1 / layer.units) if (layer.units or 0) >= 3 and graph.has_structure else None
            if everything_constant and bias_constant:
                yield self.finding(
                    weight.name,
                    f"{_STAYS_ONE_UNIT}: {values}, and every weighted layer of the model is constant (rank 1)",
                    evidence={**evidence, "constant_layers": len(candidates)},
                    prediction=same,
                    fix=fix,
                )
            elif symmetric_next and bias_constant:
                names = ", ".join(n.weight.name for n in symmetric_next)
                yield self.finding(
                    weight.name,
                    f"{_STAYS_ONE_UNIT}: {values}, and the next layer ({names}) treats its {layer.units} units alike (rank 1)",
                    evidence=evidence,
                    prediction=same,
                    fix=fix,
                )
            elif symmetry.harm(layer.name) == Harm.FATAL:
                yield self.finding(
                    weight.name,
                    f"the whole network learns like a chain of single features, one per layer: {values}, and every hidden layer of the model is one unit wide (constant or one row tiled)",
                    evidence={**evidence, "one_unit_layers": len(symmetry.collapsed)},
                    prediction=same,
                    fix=fix,
                )
            else:
                # Recoverable, but slowly (docs/science.md §11): a warning without structure too.
                yield self.finding(
                    weight.name,
                    f"this layer starts with identical units, and training tells them apart only slowly, through its random neighbours: {values}",
                    Severity.WARNING,
                    evidence=evidence,
                    prediction=same,
                    fix=fix,
                )

    must_flag = ()
    must_not_flag = ()


_STAYS_ONE_UNIT = "every unit of this layer stays a copy of the others for the whole of training, so the layer learns like a single unit"


def _is_constant(layer) -> bool:
    stats = layer.weight.stats
    return stats.all_equal and not stats.all_zero


def _next_layers_keep_symmetry(graph, layer) -> list:
    """The next weighted layers, if every one of them has identical columns (constant rows).

    Activations, reshapes and pooling act on each unit alike; so does a normalization whose
    per-unit scale and shift are constant (BatchNorm's default 1 and 0)."""
    through = g.TRANSPARENT_KINDS | {g.ACTIVATION, g.NORM}
    following = graph.downstream(layer, through=through)
    if any(n.kind == g.NORM and not all(t.stats.all_equal for t in n.params.values()) for n in _between(graph, layer, through)):
        return []
    weighted = [n for n in following if n.is_weighted]
    if not weighted or len(weighted) != len(following):
        return []
    for nxt in weighted:
        unit_stats = nxt.unit_stats()
        if unit_stats is None or unit_stats.constant_rows != unit_stats.rows:
            return []
    return weighted


def _between(graph, layer, through) -> list:
    """The layers of a kind in ``through`` on the paths from ``layer`` to its downstream layers."""
    found, stack, seen = [], list(graph.consumers(layer)), set()
    while stack:
        nxt = stack.pop()
        if nxt.name in seen or nxt.kind not in through:
            continue
        seen.add(nxt.name)
        found.append(nxt)
        stack.extend(graph.consumers(nxt))
    return found


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


def constant_convs_through_batchnorm():
    import torch.nn as nn

    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 4),
    )
    nn.init.constant_(model[0].weight, 0.05)
    nn.init.constant_(model[3].weight, 0.05)
    return model


def constant_conv_before_random_batchnorm_scale():
    import torch

    model = constant_convs_through_batchnorm()
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)  # per-channel scales differ: the units are told apart
    return model


def constant_and_tiled_hidden_layers():
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    nn.init.constant_(model[2].weight, 0.05)
    with torch.no_grad():
        model[4].weight.copy_(model[4].weight[0:1].expand_as(model[4].weight))
    return model


ConstantWeights.must_flag = (
    Example(all_layers_constant, flagged=("0.weight", "2.weight", "4.weight"), severity="error"),
    Example(constant_convs_through_batchnorm, flagged=("0.weight",), severity="error", input_shape=(2, 3, 8, 8)),
    Example(constant_and_tiled_hidden_layers, flagged=("2.weight",), severity="error"),
    Example(one_constant_layer_between_random_ones, flagged=("2.weight",), severity="warning"),
    # Random per-channel scales tell the channels apart (no error), but they start as copies.
    Example(constant_conv_before_random_batchnorm_scale, flagged=("0.weight",), severity="warning", input_shape=(2, 3, 8, 8)),
)
ConstantWeights.must_not_flag = (
    Example(layerscale_constants),
)
