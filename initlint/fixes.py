"""Fix hints as the exact call a user runs: ``nn.init.kaiming_normal_(model.get_parameter("fc1.weight"),
nonlinearity="relu")``. For a Keras model the runner rewrites these calls to ``kernel_initializer=...``
(initlint/loaders/keras/vocabulary.py)."""

from __future__ import annotations

from . import graph as g


class Code(str):
    """An argument written as code, not quoted (``nn.init.calculate_gain("tanh")``)."""


TANH_GAIN = Code('nn.init.calculate_gain("tanh")')


def init_call(function: str, parameter: str, *positional: object, **keywords: object) -> str:
    """``nn.init.<function>(model.get_parameter("<parameter>"), ...)`` with the arguments given."""
    arguments = [f'model.get_parameter("{parameter}")', *(_literal(a) for a in positional)]
    arguments += [f"{key}={_literal(value)}" for key, value in keywords.items()]
    return f"nn.init.{function}({', '.join(arguments)})"


def _literal(value: object) -> str:
    if isinstance(value, str) and not isinstance(value, Code):
        return f'"{value}"'
    return f"{value:g}" if isinstance(value, float) else str(value)


def random_init_for(graph: g.ModelGraph, layer: g.Layer, activation: g.Layer | None = None) -> str:
    """The variance-preserving init call for ``layer``'s weight, chosen by the activation after it
    (docs/science.md §2-3): He before the ReLU family and its smooth relatives, Glorot with tanh's
    gain before tanh, LeCun before SELU, Glorot before sigmoid or no activation. A rule that has
    already paired the layer with its activation passes it as ``activation``."""
    weight = layer.weight.name
    after = activation if activation is not None else graph.activation_after(layer)
    name = after.activation if after is not None else None
    if name in ("leaky_relu", "prelu"):
        alpha = after.attrs.get("alpha")
        slope = float(alpha) if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) else (0.01 if name == "leaky_relu" else 0.25)
        return init_call("kaiming_normal_", weight, a=slope, nonlinearity="leaky_relu")
    if name in ("relu", "relu6", "gelu", "silu", "mish", "elu", "hardswish", "softplus"):
        return init_call("kaiming_normal_", weight, nonlinearity="relu")
    if name == "tanh":
        return init_call("xavier_uniform_", weight, gain=TANH_GAIN)
    if name == "selu":
        return init_call("kaiming_normal_", weight, nonlinearity="linear")
    return init_call("xavier_uniform_", weight)


def reinit_call(graph: g.ModelGraph, parameter: str) -> str | None:
    """The init call that gives ``parameter`` a sound starting value, from its role in its layer:
    the variance-preserving draw for a weighted layer's weight, 1 for a normalization gain, 0 for
    a bias or shift; None for a tensor no layer holds as one of those (a buffer, a mask)."""
    for layer in graph.layers.values():
        for role, tensor in layer.params.items():
            if tensor.name != parameter:
                continue
            if role == "weight" and layer.kind == g.EMBEDDING:
                return init_call("normal_", parameter)  # N(0, 1), torch's default for an embedding table
            if role == "weight" and layer.is_weighted and tensor.ndim >= 2:
                return random_init_for(graph, layer)
            if role == "weight" and layer.kind == g.NORM:
                return init_call("ones_", parameter)
            if role == "bias":
                return init_call("zeros_", parameter)
    return None
