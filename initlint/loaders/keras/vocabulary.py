"""Fix hints in Keras' words: the rules write ``nn.init.kaiming_normal_(w, nonlinearity='relu')``;
a Keras user sets ``kernel_initializer="he_normal"``.

Each ``nn.init`` call in a hint is rewritten to the Keras initializer with the same variance
and family (Keras' ``he_normal``/``glorot_normal``/``lecun_normal`` are truncated normals
scaled so that their variance is the scheme's: the same variance as torch's normal ones).
"""

from __future__ import annotations

import re

# Arguments may hold one level of calls: nn.init.zeros_(model.get_parameter("fc1.bias")).
_CALL = re.compile(r"nn\.init\.(?P<fn>\w+)\((?P<args>(?:[^()]|\([^()]*\))*)\)")
_GAIN = re.compile(r"nn\.init\.calculate_gain\(['\"](\w+)['\"]\)")
_GAINS = {"tanh": 5.0 / 3.0, "relu": 2.0**0.5, "sigmoid": 1.0, "linear": 1.0, "selu": 0.75}  # torch's calculate_gain
_KERAS_ASIDE = re.compile(r"\s*\(Keras: [^()]*\)")
_KWARG = re.compile(r"(\w+)\s*=\s*(['\"]?)([\w.\-]+)\2")

# torch init function -> (Keras family for a normal or uniform draw)
_DISTRIBUTION = {"kaiming_normal_": "normal", "kaiming_uniform_": "uniform", "xavier_normal_": "normal", "xavier_uniform_": "uniform"}
_NAMED = {
    ("he", "fan_in", "normal"): "he_normal",
    ("he", "fan_in", "uniform"): "he_uniform",
    ("lecun", "fan_in", "normal"): "lecun_normal",
    ("lecun", "fan_in", "uniform"): "lecun_uniform",
    ("glorot", "fan_avg", "normal"): "glorot_normal",
    ("glorot", "fan_avg", "uniform"): "glorot_uniform",
}


_BARE = {"kaiming_normal_": "he_normal", "kaiming_uniform_": "he_uniform", "xavier_uniform_": "glorot_uniform", "xavier_normal_": "glorot_normal"}


def keras_initializer(fn: str, args: str) -> str | None:
    """``kernel_initializer=...`` for torch's ``nn.init.<fn>(<args>)``; None when there is no match."""
    kwargs = {key: value for key, _, value in _KWARG.findall(args)}
    positional = [a.strip() for a in args.split(",")[1:] if a.strip() and "=" not in a]
    if fn in ("kaiming_normal_", "kaiming_uniform_"):
        distribution = _DISTRIBUTION[fn]
        nonlinearity = kwargs.get("nonlinearity", "leaky_relu")
        mode = kwargs.get("mode", "fan_in")
        slope = float(kwargs.get("a", 0) or 0)
        if nonlinearity in ("linear", "selu", "sigmoid", "conv1d", "conv2d", "conv3d"):
            scale = 1.0
        else:  # relu, or leaky_relu with slope a (torch's default nonlinearity, a = 0: relu's gain)
            scale = 2.0 / (1.0 + slope * slope) if nonlinearity == "leaky_relu" else 2.0
        family = "he" if scale == 2.0 else "lecun" if scale == 1.0 else None
        name = _NAMED.get((family, mode, distribution)) if family else None
        if name:
            return f'kernel_initializer="{name}"'
        keras_distribution = "truncated_normal" if distribution == "normal" else "uniform"
        return f'kernel_initializer=keras.initializers.VarianceScaling(scale={scale:.4g}, mode="{mode}", distribution="{keras_distribution}")'
    if fn in ("xavier_normal_", "xavier_uniform_"):
        gain = float(kwargs.get("gain", 1.0) or 1.0)
        if gain == 1.0:
            return f'kernel_initializer="{_NAMED[("glorot", "fan_avg", _DISTRIBUTION[fn])]}"'
        keras_distribution = "truncated_normal" if fn == "xavier_normal_" else "uniform"
        return f'kernel_initializer=keras.initializers.VarianceScaling(scale={gain * gain:.4g}, mode="fan_avg", distribution="{keras_distribution}")'
    if fn == "orthogonal_":
        gain = kwargs.get("gain")
        return f"kernel_initializer=keras.initializers.Orthogonal(gain={gain})" if gain else 'kernel_initializer="orthogonal"'
    if fn in ("normal_", "trunc_normal_") and "std" in kwargs:
        cls = "RandomNormal" if fn == "normal_" else "TruncatedNormal"
        return f"kernel_initializer=keras.initializers.{cls}(stddev={kwargs['std']})"
    if fn == "uniform_" and len(positional) == 2:
        return f"kernel_initializer=keras.initializers.RandomUniform(minval={positional[0]}, maxval={positional[1]})"
    if fn in ("zeros_", "ones_"):
        return f'{"bias" if "bias" in args else "kernel"}_initializer="{fn.rstrip("_")}"'
    return None


def keras_fix(text: str | None) -> str | None:
    """A rule's fix hint with its torch init calls in Keras' vocabulary."""
    if not text:
        return text

    def replace(match: re.Match) -> str:
        return keras_initializer(match.group("fn"), match.group("args")) or match.group(0)

    text = _GAIN.sub(lambda m: f"{_GAINS.get(m.group(1), 1.0):.4g}", text)
    text = _KERAS_ASIDE.sub("", text)  # "(Keras: he_normal)": the hint itself is now in Keras' words
    text = _CALL.sub(replace, text)
    for torch_name, keras_name in _BARE.items():  # "nn.init.kaiming_normal_ before ReLU"
        text = text.replace(f"nn.init.{torch_name}", f'kernel_initializer="{keras_name}"')
    return text.replace("nn.AlphaDropout", "keras.layers.AlphaDropout")
