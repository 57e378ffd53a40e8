"""IL204 overscaled-layer-gain."""

from __future__ import annotations

import numpy as np

from initlint import activations
from initlint import graph as g
from initlint.engine import Example, Rule, Severity
from initlint.fixes import random_init_for
from initlint.prediction import Claim, Prediction, Quantity
from initlint.chains import reliable, scales_around
from initlint.signal import scalar, weight_second_moment

GAIN_KINDS = (g.LINEAR, g.CONV, g.CONV_TRANSPOSE)


class OverscaledLayerGain(Rule):
    """One layer multiplies the signal's variance by far more than one: its weights ignore the fan.

    ## What it does
    For every linear and convolution layer whose output is not normalized, computes its gain
    fan_in·E[W²]·c²·g(φ), where g(φ) = E[φ(z)²]/E[z²] is the forward gain of the activation after
    it at the pre-activation scale the signal propagation predicts (1 without one) and c² the
    factor of a fixed scalar scale right before its input or right after its output
    (`x * d**-0.5`, `x / 4`; 1 without one): T5 ties its head to the N(0, 1) embedding and
    multiplies the decoder output by d_model**-0.5 before it, a gain of 1. An error when the
    gain exceeds `max_gain`, a warning above `warn_gain`. No depth is needed: one such layer is
    enough. The probe checks the layer's own gain, the variance of its output over that of its
    input, against `warn_gain`/(c²·g(φ)).

    ## Why is this bad?
    A variance-preserving layer has gain 1 (He init before ReLU: fan_in·2/fan_in·½). Weights
    drawn without regard to the fan, `torch.randn(shape)` or `nn.init.normal_(w)` (std 1),
    give a gain of about fan_in·g(φ): 500 for a 1000-input ReLU layer. Its outputs, and the
    gradients of the layers before it, are then ~sqrt(gain) times too large, which saturates
    the next activation or the softmax and makes the first updates huge. IL302 catches the
    compound growth along depth; this rule catches the single layer.

    ## Example
    ```python
    hidden = nn.Linear(1000, 100)
    hidden.weight = nn.Parameter(torch.randn(100, 1000))  # std 1: gain ≈ 1000 · ½ = 500
    ```

    ## How to fix
    `nn.init.kaiming_normal_(w, nonlinearity="relu")` before ReLU, `xavier_uniform_` with the
    activation's gain before tanh, or std = gain/sqrt(fan_in) for a custom normal init.

    ## Options
    - `max_gain` (100.0): the gain above which it is an error (the output std 10x too large).
    - `warn_gain` (10.0): above which it is a warning.

    ## Known false positives
    Layers followed by a normalization are scale-invariant and not judged; layers whose
    weights match no init scheme (trained models) are not judged either. A scale is counted
    only where it is a scalar next to the layer (through reshapes and dropout), a constant or
    a one-element parameter at its non-zero initial value: a layer compensated by one computed
    at run time, a per-channel one, or one further away (after the activation) is still
    reported.

    ## References
    - docs/science.md §1 (σ_w² = fan_in·Var(W)), §2 (the variance of each scheme), §3 (gains), §8 (a layer's own gain, measured), §11 (fixed scales)
    - He et al. 2015, "Delving Deep into Rectifiers"
    """

    code = "IL204"
    name = "overscaled-layer-gain"
    severity = Severity.ERROR
    needs_structure = True
    options = {"max_gain": 100.0, "warn_gain": 10.0}

    def check(self, ctx):
        graph = ctx.graph
        if not reliable(graph):
            return
        sig = ctx.signal
        for layer in graph.layers.values():
            if not layer.is_weighted or layer.kind not in GAIN_KINDS or not layer.fan_in or layer.weight.stats.all_zero:
                continue
            scale, following = scales_around(graph, sig, layer)
            if any(nxt.kind == g.NORM for nxt in following) or layer.name in sig.folded_norm:
                continue
            fp = ctx.fingerprint(layer)
            if fp is not None and (fp.status == "unrecognized" or _scaled_by_its_fan(fp)):
                continue
            act = following[0] if len(following) == 1 and following[0].kind == g.ACTIVATION else None
            act_gain = 1.0
            if act is not None and act.name in sig.layers and sig[act.name].q_in > 0:
                act_gain = _activation_gain(act, sig[act.name])
            own_gain = layer.fan_in * weight_second_moment(layer)
            gain = own_gain * scale * act_gain
            if gain <= self.settings["warn_gain"]:
                continue
            severity = Severity.ERROR if gain > self.settings["max_gain"] else Severity.WARNING
            # The probe measures the layer alone (output over input variance): the rule's own
            # criterion, gain > warn_gain, moved onto it.
            prediction = Prediction(Quantity.LAYER_GAIN, Claim.ABOVE, self.settings["warn_gain"] / (act_gain * scale), to_layer=layer.name, predicted=own_gain)
            scaled = f", times {scale:.3g} from a fixed scalar scale of its input or output" if scale != 1.0 else ""
            after = f", times {act.activation}'s gain {act_gain:.2g}" if act is not None and act.activation else ""
            yield self.finding(
                layer.weight.name,
                f"this layer blows the signal up, so activations and gradients grow wherever layers like it follow each other: "
                f"it multiplies the signal variance by {gain:.3g} where a variance-preserving init gives 1 "
                f"(fan_in·E[W²] = {layer.fan_in}·{weight_second_moment(layer):.3g}{scaled}{after})",
                severity,
                evidence={"gain": gain, "fan_in": layer.fan_in, "weight_second_moment": weight_second_moment(layer), "fixed_scale": scale, "activation_gain": act_gain},
                prediction=prediction,
                fix=f"{random_init_for(graph, layer, act)}: a draw scaled by the layer's fan for the activation after it",
            )

    must_flag = ()
    must_not_flag = ()


def _activation_gain(act: g.Layer, row) -> float:
    """E[(φ(z) − φ(0))²]/E[z²]: the activation's value at 0 (sigmoid's ½) is an offset whatever
    the layer's scale, like a bias, not a gain: counted in, a sigmoid head of a layer with small
    outputs would read as a gain of ¼/E[z²]. Equal to E[φ(z)²]/E[z²] where φ(0) = 0 (ReLU, tanh, GELU)."""
    at_zero = activations.apply(act.activation or "", np.zeros(1), scalar(act.attrs.get("alpha")))
    offset = float(at_zero[0]) if at_zero is not None and np.isfinite(at_zero[0]) else 0.0
    centred = row.q_out - 2.0 * offset * row.m_out + offset * offset
    return max(centred, 0.0) / row.q_in


# Schemes whose variance follows the layer's fans. A large gain from one of them is the fan ratio
# of a deliberate choice (He fan_out on a 96 -> 4 squeeze layer gives fan_in·Var = 48): along a
# chain those ratios telescope to input width over output width (He et al. 2015), and the next
# layer's own fan undoes it (torchvision's squeeze-excitation blocks). IL204 is about weights
# that ignore the fan (N(0, 1), a fixed std); IL201/IL3xx judge fan-scaled chains.
FAN_SCALED = ("he_", "glorot_", "lecun_", "pytorch_default", "orthogonal")


def _scaled_by_its_fan(fp) -> bool:
    return fp.status in ("identified", "ambiguous") and bool(fp.names) and all(name.startswith(FAN_SCALED) for name in fp.names)


def two_layer_randn():
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4))
    nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
    model[2].weight = nn.Parameter(torch.randn(256, 256))
    return model


def two_layer_he():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4))
    for i in (0, 2):
        nn.init.kaiming_normal_(model[i].weight, nonlinearity="relu")
    return model


def randn_before_batchnorm():
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 4))
    model[0].weight = nn.Parameter(torch.randn(256, 16))
    return model


def squeeze_excitation_fan_out():
    """torchvision's EfficientNet/MobileNet squeeze-excitation: 96 -> 4 -> 96 convolutions with
    kaiming_normal_(mode="fan_out"): the squeeze layer's fan_in·Var is 48, the expand layer's 1/12."""
    import torch.nn as nn

    class SqueezeExcitation(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Linear(16, 96)
            self.fc1, self.fc2 = nn.Linear(96, 4), nn.Linear(4, 96)
            self.head = nn.Linear(96, 4)
            for layer in (self.stem, self.fc1, self.fc2):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out")
                nn.init.zeros_(layer.bias)

        def forward(self, x):
            h = nn.functional.silu(self.stem(x))
            gate = self.fc2(nn.functional.silu(self.fc1(h))).sigmoid()
            return self.head(h * gate)

    return SqueezeExcitation()


def _tied_head(scaled: bool):
    import torch
    import torch.nn as nn

    class TiedHead(nn.Module):
        """T5's output: a LayerNorm, then a head whose weight is an N(0, 1) embedding."""

        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(64)
            self.head = nn.Linear(64, 100, bias=False)
            self.head.weight = nn.Parameter(torch.randn(100, 64))

        def forward(self, x):
            h = self.norm(x)
            return self.head(h * 64**-0.5 if scaled else h)

    return TiedHead()


def tied_head_scaled_by_its_width():
    """T5: the decoder output times d_model**-0.5 before the N(0, 1) head, fan_in·E[W²]·c² = 1."""
    return _tied_head(scaled=True)


def tied_head_unscaled():
    return _tied_head(scaled=False)


OverscaledLayerGain.must_flag = (
    Example(two_layer_randn, flagged=("2.weight",), severity="error"),
    Example(tied_head_unscaled, flagged=("head.weight",), severity="warning", input_shape=(4, 64)),
)
OverscaledLayerGain.must_not_flag = (
    Example(two_layer_he), Example(randn_before_batchnorm), Example(squeeze_excitation_fan_out),
    Example(tied_head_scaled_by_its_width, input_shape=(4, 64)),
)
