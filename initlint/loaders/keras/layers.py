"""One Keras layer -> the graph layers it stands for, with fans in Keras' kernel layout.

Keras stores a Dense kernel [in, out] and a convolution kernel [k..., in/groups, out]: the
output units are on the last axis (``unit_axis=-1``), fan-in is the contracted part
(docs/science.md §2: "in general fan_in is the contracted dimension"). A layer with an
``activation=`` argument becomes two graph layers, the weighted one and its activation
(``dense_3`` then ``dense_3/relu``), so the rules see the activation that follows a layer
whether it was written as an argument or as a layer of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ... import graph as g
from ...graph import Layer, Tensor
from ..torch.tensors import as_numpy

# Keras activation function names -> the canonical names the rules know.
ACTIVATIONS = {
    "relu": "relu",
    "relu6": "relu6",
    "leaky_relu": "leaky_relu",
    "elu": "elu",
    "celu": "elu",
    "selu": "selu",
    "gelu": "gelu",
    "silu": "silu",
    "swish": "silu",
    "mish": "mish",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "softplus": "softplus",
    "hard_swish": "hardswish",
    "hard_silu": "hardswish",
    "hard_sigmoid": "hardsigmoid",
    "hard_tanh": "hardtanh",
    "softsign": "softsign",
}
LINEAR_ACTIVATIONS = {"linear", "identity", None}
SOFTMAX_ACTIVATIONS = {"softmax", "log_softmax"}

# Layers by class name (Keras' own classes; subclasses are matched through their MRO).
NORMS = {"BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization", "RMSNormalization", "SpectralNormalization"}
POOLS = {
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D", "AdaptiveAveragePooling2D", "AdaptiveMaxPooling2D",
}
PASSTHROUGH = {
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "AlphaDropout",
    "GaussianNoise", "Flatten", "Reshape", "Permute", "RepeatVector", "Identity", "ZeroPadding1D", "ZeroPadding2D",
    "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "ActivityRegularization", "Masking", "Rescaling", "Normalization", "Resizing", "CenterCrop", "Cast",
    "Reshape", "Squeeze", "ExpandDims", "Transpose", "Subtract",
}
MERGES = {"Add": g.ADD, "Average": g.ADD, "Concatenate": g.CONCAT, "Multiply": g.MUL, "Maximum": g.OTHER, "Minimum": g.OTHER, "Dot": g.MATMUL}
# keras.ops calls recorded in a functional graph (``x + y`` on Keras tensors), by class name.
OPS = {"Add": g.ADD, "Multiply": g.MUL, "Concatenate": g.CONCAT, "Matmul": g.MATMUL, "Einsum": g.MATMUL, "Softmax": g.SOFTMAX}
RNNS = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1, "LSTMCell": 4, "GRUCell": 3, "SimpleRNNCell": 1}


@dataclass
class Part:
    """A graph layer a Keras layer stands for; ``inputs`` "@in" means the Keras layer's own inputs."""

    layer: Layer
    inputs: list[str] = field(default_factory=lambda: ["@in"])


def class_names(obj) -> list[str]:
    return [cls.__name__ for cls in type(obj).__mro__]


def variable_tensor(name: str, variable) -> Tensor:
    """A lazy view of a Keras variable (fp16/bf16 read as float32)."""

    def read(variable=variable):
        value = variable.value
        if hasattr(value, "detach"):  # torch backend: a Parameter; a view, no copy
            return as_numpy(value)
        return np.asarray(value)

    return Tensor(name, tuple(int(d) for d in variable.shape), str(variable.dtype), read)


def reshaped(tensor: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The same values viewed in another shape (an attention kernel [E, heads, dim] as [E, heads·dim])."""
    return Tensor(tensor.name, shape, tensor.dtype, lambda: tensor.values().reshape(shape))


def activation_name(fn) -> str | None:
    """The canonical name of a Keras activation callable or string; "" for linear, None when unknown."""
    if fn is None:
        return ""
    name = fn if isinstance(fn, str) else getattr(fn, "__name__", None) or type(fn).__name__
    name = str(name).lower()
    if name in LINEAR_ACTIVATIONS:
        return ""
    if name in SOFTMAX_ACTIVATIONS:
        return "softmax"
    return ACTIVATIONS.get(name)


def classify(op, name: str, weights: dict[str, Tensor]) -> list[Part]:
    """The graph layers for Keras layer (or keras.ops operation) ``op`` named ``name``.

    ``weights``: the layer's own variables by their Keras name (``kernel``, ``bias``, ...).
    The last part is the one whose output the layer's consumers read.
    """
    names = class_names(op)
    cls = names[0]
    parts: list[Part]
    if "Bidirectional" in names:
        return _bidirectional(op, name, weights)
    if "SeparableConv" in "".join(names[:3]) and "depthwise_kernel" in weights and "pointwise_kernel" in weights:
        parts = _separable(op, name, weights)
    elif any(n in ("DepthwiseConv1D", "DepthwiseConv2D", "DepthwiseConv") for n in names) and "kernel" in weights:
        parts = [Part(_depthwise(name, op, weights["kernel"], weights.get("bias")))]
    elif any(n.startswith("Conv") and "Transpose" in n for n in names) and "kernel" in weights:
        parts = [Part(_conv_transpose(name, op, weights))]
    elif any(n in ("Conv1D", "Conv2D", "Conv3D", "BaseConv") for n in names) and "kernel" in weights:
        parts = [Part(_conv(name, op, weights))]
    elif "EinsumDense" in names and "kernel" in weights:
        parts = [Part(_einsum_dense(name, op, weights))]
    elif "Dense" in names and "kernel" in weights:
        kernel = weights["kernel"]
        layer = Layer(name=name, kind=g.LINEAR, op=cls, unit_axis=-1)
        layer.params["weight"] = kernel if kernel.ndim == 2 else reshaped(kernel, (kernel.shape[0], math.prod(kernel.shape[1:])))
        layer.fan_in, layer.fan_out = layer.params["weight"].shape
        _bias(layer, weights)
        parts = [Part(layer)]
    elif "Embedding" in names and "embeddings" in weights:
        table = weights["embeddings"]
        layer = Layer(name=name, kind=g.EMBEDDING, op=cls, params={"weight": table}, fan_in=1, fan_out=table.shape[-1])
        parts = [Part(layer)]
    elif any(n in RNNS for n in names):
        own = {key.rsplit("/", 1)[-1]: t for key, t in weights.items()}  # lstm_cell/kernel -> kernel
        return [Part(_rnn(name, op, own, RNNS[next(n for n in names if n in RNNS)]))]
    elif "MultiHeadAttention" in names:
        return [Part(_attention(name, op, weights))]
    elif any(n in NORMS for n in names):
        layer = Layer(name=name, kind=g.NORM, op=cls)
        for role, key in (("weight", "gamma"), ("bias", "beta"), ("weight", "scale")):
            if key in weights and role not in layer.params:
                layer.params[role] = weights[key]
        return [Part(layer)]
    elif "PReLU" in names:
        alpha = weights.get("alpha")
        mean = float(np.mean(alpha.values())) if alpha is not None and alpha.size else 0.25
        return [Part(Layer(name=name, kind=g.ACTIVATION, op=cls, params={"alpha": alpha} if alpha is not None else {}, attrs={"activation": "prelu", "alpha": mean}))]
    elif "LeakyReLU" in names:
        slope = float(getattr(op, "negative_slope", getattr(op, "alpha", 0.3)))
        return [Part(Layer(name=name, kind=g.ACTIVATION, op=cls, attrs={"activation": "leaky_relu", "alpha": slope}))]
    elif "ReLU" in names:
        return [Part(_relu_layer(name, cls, op))]
    elif "ELU" in names:
        return [Part(Layer(name=name, kind=g.ACTIVATION, op=cls, attrs={"activation": "elu", "alpha": float(getattr(op, "alpha", 1.0))}))]
    elif "Softmax" in names and "Layer" in names:
        return [Part(Layer(name=name, kind=g.SOFTMAX, op=cls))]
    elif "Activation" in names:
        return [Part(_activation_layer(name, cls, getattr(op, "activation", None)))]
    elif any(n in POOLS for n in names) or "BasePooling" in names or "BaseGlobalPooling" in names:
        return [Part(Layer(name=name, kind=g.POOL, op=cls))]
    elif any(n in MERGES for n in names) and "Layer" in names:
        return [Part(Layer(name=name, kind=MERGES[next(n for n in names if n in MERGES)], op=cls))]
    elif any(n in PASSTHROUGH for n in names) or "InputLayer" in names:
        return [Part(Layer(name=name, kind=g.PASSTHROUGH, op=cls))]
    elif "Layer" not in names:  # a keras.ops operation in a functional graph
        fn = activation_name(cls.lower())
        if fn:
            return [Part(Layer(name=name, kind=g.ACTIVATION, op=cls, attrs={"activation": fn}))]
        return [Part(Layer(name=name, kind=OPS.get(cls, g.PASSTHROUGH if cls in PASSTHROUGH else g.OTHER), op=cls))]
    else:
        parts = [Part(_custom(name, cls, weights))]
    return _with_activation(parts, op)


def _bias(layer: Layer, weights: dict[str, Tensor]) -> None:
    if "bias" in weights:
        layer.params["bias"] = weights["bias"]


def _with_activation(parts: list[Part], op) -> list[Part]:
    """A fused ``activation=`` argument becomes its own layer after the weighted one."""
    fn = getattr(op, "activation", None)
    fn_name = activation_name(fn)
    if fn is None or fn_name == "":
        return parts
    last = parts[-1].layer
    shown = fn if isinstance(fn, str) else getattr(fn, "__name__", type(fn).__name__)
    act = _activation_layer(f"{last.name}/{shown}", "activation", fn)
    act.attrs["fused_into"] = last.name
    return [*parts, Part(act, [last.name])]


def _activation_layer(name: str, op_name: str, fn) -> Layer:
    canonical = activation_name(fn)
    if canonical == "softmax":
        return Layer(name=name, kind=g.SOFTMAX, op=op_name)
    if canonical == "":
        return Layer(name=name, kind=g.PASSTHROUGH, op=op_name)
    if canonical is None:
        return Layer(name=name, kind=g.OTHER, op=op_name)  # an activation initlint does not know
    layer = Layer(name=name, kind=g.ACTIVATION, op=op_name, attrs={"activation": canonical})
    if canonical == "leaky_relu":
        layer.attrs["alpha"] = 0.2  # keras.activations.leaky_relu's default negative_slope
    return layer


def _relu_layer(name: str, cls: str, op) -> Layer:
    slope = float(getattr(op, "negative_slope", 0.0) or 0.0)
    top = getattr(op, "max_value", None)
    if slope:
        return Layer(name=name, kind=g.ACTIVATION, op=cls, attrs={"activation": "leaky_relu", "alpha": slope})
    activation = "relu6" if top is not None and float(top) == 6.0 else "relu"
    return Layer(name=name, kind=g.ACTIVATION, op=cls, attrs={"activation": activation})


def _torch_order(kernel: Tensor) -> tuple[int, ...]:
    """Keras' [k..., a, b] kernel shape as torch's [b, a, k...], for graph.conv_fans."""
    return (kernel.shape[-1], kernel.shape[-2], *kernel.shape[:-2])


def _conv(name: str, op, weights: dict[str, Tensor]) -> Layer:
    """Conv1D/2D/3D: kernel [k..., in/groups, out]; per-group fans, as for torch (science §2)."""
    kernel = weights["kernel"]
    groups = int(getattr(op, "groups", 1) or 1)
    layer = Layer(name=name, kind=g.CONV, op=type(op).__name__, params={"weight": kernel}, unit_axis=-1, attrs={"groups": groups})
    layer.fan_in, layer.fan_out = g.conv_fans(_torch_order(kernel), groups)
    _bias(layer, weights)
    return layer


def _conv_transpose(name: str, op, weights: dict[str, Tensor]) -> Layer:
    """Conv*Transpose: kernel [k..., out, in]: the roles of the last two axes swap."""
    kernel = weights["kernel"]
    layer = Layer(name=name, kind=g.CONV_TRANSPOSE, op=type(op).__name__, params={"weight": kernel}, unit_axis=-2, attrs={"groups": 1})
    layer.fan_in, layer.fan_out = g.conv_fans(_torch_order(kernel), 1, transposed=True)  # [k..., out, in] -> [in, out, k...]
    _bias(layer, weights)
    return layer


def _depthwise(name: str, op, kernel: Tensor, bias: Tensor | None) -> Layer:
    """Depthwise kernel [k..., channels, multiplier]: each output sees one channel's window."""
    channels, multiplier = kernel.shape[-2], kernel.shape[-1]
    layer = Layer(name=name, kind=g.CONV, op=type(op).__name__, params={"weight": kernel}, unit_axis=-2, attrs={"groups": channels})
    # as torch's grouped conv [channels·multiplier, 1, k...] with one group per channel
    layer.fan_in, layer.fan_out = g.conv_fans((channels * multiplier, 1, *kernel.shape[:-2]), channels)
    if bias is not None:
        layer.params["bias"] = bias
    return layer


def _separable(op, name: str, weights: dict[str, Tensor]) -> list[Part]:
    depthwise = _depthwise(f"{name}/depthwise", op, weights["depthwise_kernel"], None)
    pointwise_kernel = weights["pointwise_kernel"]
    pointwise = Layer(name=name, kind=g.CONV, op=type(op).__name__, params={"weight": pointwise_kernel}, unit_axis=-1, attrs={"groups": 1})
    pointwise.fan_in, pointwise.fan_out = pointwise_kernel.shape[-2], pointwise_kernel.shape[-1]
    _bias(pointwise, weights)
    return [Part(depthwise), Part(pointwise, [depthwise.name])]


def _einsum_dense(name: str, op, weights: dict[str, Tensor]) -> Layer:
    """EinsumDense ("abc,cde->abde"): fan-in is the kernel's contracted axes, fan-out the rest."""
    kernel = weights["kernel"]
    equation = str(getattr(op, "equation", ""))
    layer = Layer(name=name, kind=g.LINEAR, op="EinsumDense", unit_axis=-1)
    try:
        inputs, output = equation.replace(" ", "").split("->")
        source, kernel_axes = inputs.split(",")
    except ValueError:
        source, kernel_axes, output = "", "", ""
    if len(kernel_axes) == kernel.ndim and kernel.ndim >= 2:
        contracted = [i for i, axis in enumerate(kernel_axes) if axis in source and axis not in output]
        fan_in = math.prod(kernel.shape[i] for i in contracted) if contracted else kernel.shape[0]
        fan_out = kernel.size // max(fan_in, 1)
        if contracted == list(range(len(contracted))):  # [in..., out...]: a plain [in, out] view
            kernel = reshaped(kernel, (fan_in, fan_out))
    else:
        fan_in, fan_out = kernel.shape[0], kernel.size // max(kernel.shape[0], 1)
    layer.params["weight"], layer.fan_in, layer.fan_out = kernel, fan_in, fan_out
    _bias(layer, weights)
    return layer


def _rnn(name: str, op, weights: dict[str, Tensor], gates: int) -> Layer:
    """LSTM/GRU/SimpleRNN: kernel [in, gates·units], recurrent kernel [units, gates·units]."""
    kernel = weights.get("kernel")
    layer = Layer(name=name, kind=g.RNN, op=type(op).__name__, unit_axis=-1, attrs={"gates": gates})
    if kernel is not None:
        layer.params["weight"] = kernel
        layer.fan_in, layer.fan_out = kernel.shape[0], kernel.shape[-1] // gates
    if "recurrent_kernel" in weights:
        layer.params["recurrent_weight"] = weights["recurrent_kernel"]
    _bias(layer, weights)
    return layer


def _bidirectional(op, name: str, weights: dict[str, Tensor]) -> list[Part]:
    parts = []
    for direction in ("forward", "backward"):
        sub = getattr(op, f"{direction}_layer", None)
        prefix = f"{getattr(sub, 'name', direction)}/"
        own = {key.rsplit("/", 1)[-1]: t for key, t in weights.items() if key.startswith(prefix)}
        gates = next((RNNS[n] for n in class_names(sub) if n in RNNS), 1)
        parts.append(Part(_rnn(f"{name}/{direction}", sub, own, gates)))
    merge = Layer(name=name, kind=g.CONCAT, op="Bidirectional")
    return [*parts, Part(merge, [p.layer.name for p in parts])]


def _attention(name: str, op, weights: dict[str, Tensor]) -> Layer:
    """MultiHeadAttention: its query projection [E, heads, dim] stands for the block's weight."""
    layer = Layer(name=name, kind=g.ATTENTION, op="MultiHeadAttention", unit_axis=-1)
    query = weights.get("query/kernel")
    if query is not None and query.ndim >= 2:
        fan_out = query.size // query.shape[0]
        layer.params["weight"] = reshaped(query, (query.shape[0], fan_out))
        layer.fan_in, layer.fan_out = query.shape[0], fan_out
    if "query/bias" in weights:
        layer.params["bias"] = reshaped(weights["query/bias"], (weights["query/bias"].size,))
    for key, tensor in weights.items():
        if key not in ("query/kernel", "query/bias"):
            layer.params[key] = tensor
    return layer


def _custom(name: str, cls: str, weights: dict[str, Tensor]) -> Layer:
    """A layer initlint does not know: a 2-D ``kernel`` is read as a Dense one, else its
    weights are kept (the value rules still see them) and the signal passes unchanged."""
    kernel = weights.get("kernel")
    if kernel is not None and kernel.ndim == 2:
        layer = Layer(name=name, kind=g.LINEAR, op=cls, params={"weight": kernel}, unit_axis=-1)
        layer.fan_in, layer.fan_out = kernel.shape
        _bias(layer, weights)
        return layer
    return Layer(name=name, kind=g.OTHER, op=cls, params=dict(weights))
