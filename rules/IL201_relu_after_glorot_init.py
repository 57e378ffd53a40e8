"""IL201 relu-after-glorot-init."""

from __future__ import annotations


from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.fixes import random_init_for
from initlint.prediction import Claim, Prediction, Quantity
from initlint.chains import plain_chains
from initlint.signal import activation_gains, scalar, weight_variance
from initlint.example_models import plain_mlp


class ReluAfterGlorotInit(Rule):
    """A ReLU-family activation fed by a layer whose weights are Glorot/Xavier-scaled.

    ## What it does
    Fingerprints each layer that feeds a ReLU, ReLU6, LeakyReLU or PReLU (docs/science.md §7) and
    reports the layers whose weights match Glorot/Xavier (normal or uniform) and not He. Runs
    of such layers joined without normalization or skip connections are reported once, at
    their first layer, with the variance they keep after the whole run.

    ## Why is this bad?
    Glorot init keeps fan_in·Var(W) ≈ 1, which preserves the variance of a linear or tanh
    layer. A ReLU zeroes half of its input, so each Glorot + ReLU layer halves the signal's
    variance, forward and backward (docs/science.md §1, §3): 2^-10 ≈ 1e-3 after ten layers, and a
    20-layer plain stack starts with gradients about a million times smaller at its first
    layer than at its last. Severity follows that product: info while the run keeps more than
    `warning_below` of the variance, warning below it, error below `error_below` (a 3-layer
    network is at most a warning; a 20-layer plain stack is an error).

    ## Example
    ```python
    layers = []
    for _ in range(20):
        linear = nn.Linear(256, 256)
        nn.init.xavier_uniform_(linear.weight)
        layers += [linear, nn.ReLU()]
    model = nn.Sequential(*layers)
    ```

    ## How to fix
    Use He/Kaiming init for layers followed by a ReLU:
    `nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")` (Keras: `he_normal`), and
    for LeakyReLU(a) `nn.init.kaiming_normal_(w, a=a, nonlinearity="leaky_relu")`. Or add
    normalization layers or residual connections, which stop the compounding.

    ## Options
    - `warning_below` (0.1): variance kept by a run below which it is a warning.
    - `error_below` (1e-3): below which it is an error (the IL301 threshold).

    ## Known false positives
    When fan_out is much smaller than fan_in, Glorot and He fan_in nearly coincide; such
    layers match both and are not reported. Where Glorot and another scheme fit equally
    well (He fan_out on a 64×3×3×3 stem conv differs by under 5%), the finding is info only. Layers whose weights match no init family
    (trained weights) are never reported: the other IL3xx rules judge their measured scale.

    ## References
    - docs/science.md §1-§3, §7
    - He et al. 2015, "Delving Deep into Rectifiers" (the ½ factor of ReLU)
    - Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural networks"
    """

    code = "IL201"
    name = "relu-after-glorot-init"
    severity = Severity.ERROR
    needs_structure = True
    options = {"warning_below": 0.1, "error_below": 1e-3}

    def check(self, ctx):
        graph = ctx.graph
        def glorot_relu(layer: g.Layer, activation: g.Layer) -> bool:
            if activation.activation not in g.RELU_FAMILY:
                return False
            fp = ctx.fingerprint(layer)
            return fp is not None and fp.has("glorot_") and not any("_fan_in" in name for name in fp.names)

        for chain in plain_chains(graph, glorot_relu):
            kept = 1.0
            for layer, activation in chain:
                gains = activation_gains(activation.activation, 1.0, _slope(activation))
                kept *= layer.fan_in * weight_variance(layer) * gains[0]
            per_layer = kept ** (1.0 / len(chain))
            if kept <= self.settings["error_below"]:
                severity, bound = Severity.ERROR, self.settings["error_below"]
            elif kept <= self.settings["warning_below"]:
                severity, bound = Severity.WARNING, self.settings["warning_below"]
            else:
                severity, bound = Severity.INFO, None
            if all(_undecided(ctx.fingerprint(layer)) for layer, _ in chain):
                # Glorot and another family fit equally well (a stem conv 64×3×3×3 where He
                # fan_out is within 5%): report both, never guess (docs/science.md §7).
                severity = Severity.INFO
            first, first_act = chain[0]
            fp = ctx.fingerprint(first)
            count = f"{len(chain)} consecutive layers" if len(chain) > 1 else "1 layer"
            yield self.finding(
                first.weight.name,
                f"the signal shrinks through {'these layers' if len(chain) > 1 else 'this layer'}, so the output barely responds to the input and the first layers learn slowly: "
                f"{count} with Glorot-scaled weights ({fp.describe()}) feed {first_act.activation}, "
                f"each keeps {per_layer:.2f} of the signal variance, {kept:.2g} after the run",
                severity,
                evidence={
                    "layers": [layer.name for layer, _ in chain],
                    "init": fp.names,
                    "kept_per_layer": per_layer,
                    "kept": kept,
                },
                prediction=_prediction(ctx, chain, kept, bound) if severity > Severity.INFO else None,
                fix=_fix(graph, chain),
            )

    must_flag = ()
    must_not_flag = ()


def _prediction(ctx, chain, kept: float, bound: float) -> Prediction | None:
    """The claim, restated over what the probe measures: ``kept`` spans every layer of the run
    with its activation (input of the first to output of the last ReLU); the probe measures the
    variance from the first layer's output to the last layer's output, which leaves out the
    first layer's and the last activation's factors. Those are known statically, so the bound
    the severity was judged on moves by the same factor (docs/science.md §8)."""
    if len(chain) < 2:
        return None  # one layer: no span between two measured layers
    first, last = chain[0][0].name, chain[-1][0].name
    span = ctx.predicted_ratio(Quantity.FORWARD_VARIANCE_RATIO, first, last)
    if not span or kept <= 0:
        return None
    return Prediction(Quantity.FORWARD_VARIANCE_RATIO, Claim.BELOW, bound * span / kept, from_layer=first, to_layer=last, predicted=span)


def _undecided(fp) -> bool:
    return fp.status == "ambiguous" and any(not name.startswith("glorot_") for name in fp.names)


def _slope(activation: g.Layer) -> float | None:
    return scalar(activation.attrs.get("alpha"))


def _fix(graph: g.ModelGraph, chain) -> str:
    (first, activation), rest = chain[0], [layer.weight.name for layer, _ in chain[1:]]
    call = random_init_for(graph, first, activation)
    if not rest:
        return call
    return f"{call}, and the same for {', '.join(rest[:3])}{f' and {len(rest) - 3} more' if len(rest) > 3 else ''}"


# --- examples ---------------------------------------------------------------------------------


def _relu_mlp(depth: int, init, width: int = 64, activation=None):
    return plain_mlp(depth, activation or "ReLU", init, width)


def deep_relu_mlp_glorot():
    import torch.nn as nn

    return _relu_mlp(20, nn.init.xavier_uniform_)


def deep_leaky_relu_mlp_glorot_normal():
    import torch.nn as nn

    return _relu_mlp(20, nn.init.xavier_normal_, activation=lambda: nn.LeakyReLU(0.1))


def shallow_relu_mlp_glorot():
    import torch.nn as nn

    return _relu_mlp(3, nn.init.xavier_uniform_)


def deep_relu_mlp_he():
    import torch.nn as nn

    return _relu_mlp(30, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))


def glorot_relu_with_batchnorm():
    import torch.nn as nn

    layers = [nn.Linear(16, 64), nn.BatchNorm1d(64), nn.ReLU()]
    for _ in range(18):
        layers += [nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU()]
    layers.append(nn.Linear(64, 4))
    model = nn.Sequential(*layers)
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
    return model


def glorot_tanh_mlp():
    import torch.nn as nn

    return _relu_mlp(20, nn.init.xavier_uniform_, activation=nn.Tanh)


ReluAfterGlorotInit.must_flag = (
    Example(deep_relu_mlp_glorot, flagged=("0.weight",), severity="error"),
    Example(deep_leaky_relu_mlp_glorot_normal, flagged=("0.weight",), severity="error"),
)
# shallow_relu_mlp_glorot is at most a warning: tests/test_signal.py pins that.
ReluAfterGlorotInit.must_not_flag = (
    Example(deep_relu_mlp_he),
    Example(glorot_relu_with_batchnorm),
    Example(glorot_tanh_mlp),
)
