"""A Keras 3 model (PyTorch backend) as something the probe can run.

On the torch backend a Keras model is a torch.nn.Module, but its layers are not submodules:
hooks cannot reach them. On the probe's private copy, each weighted layer's ``call`` is routed
through a small torch module of its own (``KerasCall``), so the probe's forward and gradient
hooks see the layer's output -- before its fused activation, which runs after the module, as
the graph splits ``Dense(activation="relu")`` into the layer and its activation. Parameters are
named by their Keras variable (``dense_3/kernel``), as the loader names them.
"""

from __future__ import annotations

import copy

from ..graph import ModelGraph
from .inputs import ProbeUnavailable, torch_inputs
from .model import Runnable


def from_keras(graph: ModelGraph, input_shapes, input_dtype) -> Runnable:
    import torch

    try:
        model = copy.deepcopy(graph.metadata["module"])  # never touch the user's model
    except Exception as exc:
        raise ProbeUnavailable(f"the Keras model could not be copied for the probe ({type(exc).__name__}: {exc})") from None
    root = _Probed(model)
    by_name = {_graph_name(layer): layer for layer in model._flatten_layers(include_self=False)}
    layer_modules = {}
    for layer in graph.weighted_layers():
        keras_layer = by_name.get(layer.name.split("#", 1)[0])
        if keras_layer is None or layer.name in layer_modules:
            continue
        module_name = f"layer{len(layer_modules)}"
        root.calls.add_module(module_name, _route(torch, keras_layer))
        layer_modules[layer.name] = f"calls.{module_name}"
    param_names = {}
    tensors = set(graph.tensors)
    for name, _ in root.named_parameters():
        path = name.split("_torch_params.", 1)[-1]
        relative = path.split("/", 1)[-1]  # the variable path below the model's own name
        if relative in tensors:
            param_names[name] = relative
        elif path in tensors:
            param_names[name] = path
    make_inputs, shapes = torch_inputs(torch, graph, root, None, input_shapes, input_dtype)
    return Runnable(root, make_inputs, layer_modules, param_names, shapes)


def _graph_name(layer) -> str:
    """The loader's layer name: the path below the outermost model (``inner_model/dense``)."""
    path = str(getattr(layer, "path", None) or layer.name)
    return path.split("/", 1)[-1] if "/" in path else path


def _Probed(model):
    import torch

    class Probed(torch.nn.Module):
        """The Keras model with a module per watched layer (``calls``) for the hooks."""

        def __init__(self):
            super().__init__()
            self.model = model
            self.calls = torch.nn.Module()

        def forward(self, *args, **kwargs):
            return self.model(*args, **kwargs)

    return Probed()


def _route(torch, layer):
    """Route ``layer.call`` through a module; a fused activation runs after it."""
    activation = getattr(layer, "activation", None)
    call = layer.call

    class KerasCall(torch.nn.Module):
        def forward(self, *args, **kwargs):
            return call(*args, **kwargs)

    module = KerasCall()
    bias = getattr(getattr(layer, "bias", None), "value", None)
    if isinstance(bias, torch.Tensor):
        module.__dict__["bias"] = bias  # read by the probe's bias-free moment; not a second parameter
    if activation is not None:
        from keras import activations

        layer.activation = activations.linear

    def routed(*args, **kwargs):
        out = module(*args, **kwargs)
        return activation(out) if activation is not None else out

    layer.call = routed
    return module
