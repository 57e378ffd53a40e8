"""A Keras model's own layer graph -> ModelGraph.

A functional model (and a built Sequential, which holds one) records every call of every layer
as a node with its input tensors; walking the nodes deepest-first visits them in topological
order. Nested models are walked in place, their layers named ``inner_model/dense``. A subclassed
model records no graph: its layers are chained in the order they were created, and the graph
says it is a guess (``metadata["structure_guessed"]``).
"""

from __future__ import annotations

from collections import Counter

from ... import graph as g
from ...errors import InitlintError
from ...graph import Layer, ModelGraph, Tensor
from .layers import class_names, classify, variable_tensor


def graph_from_keras(model, target: str, fmt: str = "torch", options=None) -> ModelGraph:
    """The ModelGraph of Keras ``model``; ``fmt`` is "keras" for a .keras file, "torch" for a spec."""
    graph = ModelGraph(target=target, format=fmt)
    graph.metadata["framework"] = "keras"
    graph.metadata["module"] = model  # on the torch backend an nn.Module: the probe runs a copy
    functional = _functional(model)
    if functional is None and "Sequential" in class_names(model):
        functional = _build_sequential(model, target, options)
    builder = _Builder(graph)
    if functional is not None:
        produced = builder.walk(functional, prefix="", bound={})
        for tensor in _flat(functional.outputs):
            source = produced.get(id(tensor))
            if source is not None and f"output:{source}" not in graph.layers:
                graph.add(Layer(name=f"output:{source}", kind=g.OUTPUT, op="output", inputs=[source]))
    else:
        if not getattr(model, "built", False) or not model.weights:
            raise InitlintError(target, "the Keras model is not built, so it has no weights yet", "call it once on an input, or give it a keras.Input")
        builder.in_order(model)
        why = "a subclassed Keras model records no layer graph"
        graph.metadata["structure_guessed"] = why
        graph.notes.append(f"{why}: its layers are chained in the order they were created, so residual connections and functional activations are not seen")
    return graph


def _functional(model):
    """The functional graph of a model: itself, or the one a built Sequential keeps."""
    if hasattr(model, "_nodes_by_depth") and getattr(model, "inputs", None) is not None:
        return model
    inner = getattr(model, "_functional", None)
    return inner if inner is not None and hasattr(inner, "_nodes_by_depth") else None


def _build_sequential(model, target: str, options):
    """A Sequential without an Input has no graph until built: build it from --input-shape."""
    shapes = dict(getattr(options, "input_shapes", None) or {})
    if not shapes or len(shapes) != 1:
        if getattr(model, "built", False):
            return None  # built on data without an Input: the layers, in order, are the graph
        raise InitlintError(target, "the Keras Sequential model has no Input, so it has no weights yet", "start it with keras.Input(shape) or pass --input-shape")
    (shape,) = shapes.values()
    try:
        model.build((None, *shape[1:]))
    except Exception as exc:
        raise InitlintError(target, f"the Keras model could not be built for --input-shape {'x'.join(map(str, shape))} ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
    return _functional(model)


def _flat(value) -> list:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flat(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat(v)]
    return [value]


class _Builder:
    def __init__(self, graph: ModelGraph):
        self.graph = graph
        self.tensors: dict[int, Tensor] = {}  # id(variable) -> Tensor: a shared variable is one tensor
        self.calls: Counter = Counter()

    def weights_of(self, op, prefix: str) -> dict[str, Tensor]:
        """The layer's trainable-kind variables by their path below the layer (``kernel``,
        ``query/kernel``). Moving statistics and RNG states are not weights; a frozen layer's
        weights still are."""
        trainable = {id(v) for sub in _sublayers(op) for v in getattr(sub, "_trainable_variables", ())}
        base = str(getattr(op, "path", None) or op.name)
        weights = {}
        for variable in op.weights:
            if trainable and id(variable) not in trainable:
                continue
            if not trainable and not variable.trainable:
                continue
            path = str(variable.path)
            relative = path[len(base) + 1 :] if path.startswith(base + "/") else str(variable.name)
            if id(variable) not in self.tensors:
                self.tensors[id(variable)] = variable_tensor(f"{prefix}{op.name}/{relative}", variable)
            weights[relative] = self.tensors[id(variable)]
        return weights

    def walk(self, functional, prefix: str, bound: dict[int, str | None]) -> dict[int, str | None]:
        """Add the layers of ``functional``; returns id(Keras tensor) -> the layer producing it
        (None for a model input). ``bound``: a nested model's inputs, as its caller feeds them."""
        produced: dict[int, str | None] = dict(bound)
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                op = node.operation
                outputs = _flat(node.outputs)
                if "InputLayer" in class_names(op):
                    for tensor in outputs:
                        if id(tensor) not in produced:
                            produced[id(tensor)] = None
                            shape = tuple(d if isinstance(d, int) else None for d in tensor.shape)
                            self.graph.inputs[f"{prefix}{op.name}"] = (shape, str(tensor.dtype))
                    continue
                inputs = list(node.input_tensors)
                sources = [produced.get(id(t)) for t in inputs]
                inner = _functional(op) if "Layer" in class_names(op) else None
                if inner is not None:
                    inner_bound = {id(t): source for t, source in zip(_flat(inner.inputs), sources)}
                    inner_produced = self.walk(inner, f"{prefix}{op.name}/", inner_bound)
                    for outer, inner_tensor in zip(outputs, _flat(inner.outputs)):
                        produced[id(outer)] = inner_produced.get(id(inner_tensor))
                    continue
                call = self.calls[f"{prefix}{op.name}"]
                self.calls[f"{prefix}{op.name}"] += 1
                name = f"{prefix}{op.name}" + (f"#{call}" if call else "")  # a shared layer's later calls
                scalars = [float(a) for a in getattr(node.arguments, "args", ()) if isinstance(a, (int, float)) and not isinstance(a, bool)]
                last = self._add(op, prefix, name, [s for s in sources if s is not None], len(inputs), scalars)
                for tensor in outputs:
                    produced[id(tensor)] = last
        return produced

    def _add(self, op, prefix: str, name: str, sources: list[str], dynamic_inputs: int, scalars: list[float]) -> str:
        parts = classify(op, name, self.weights_of(op, prefix))
        for part in parts:
            layer = part.layer
            layer.inputs = list(dict.fromkeys(sources if part.inputs == ["@in"] else part.inputs))
            if layer.kind == g.ADD and dynamic_inputs < 2:
                layer.kind = g.PASSTHROUGH  # x + constant: a bias, not a residual connection
            if layer.kind == g.MUL:
                for value in scalars:
                    layer.const_inputs[100 + len(layer.const_inputs)] = _scalar(f"{layer.name}.scalar", value)
            self.graph.add(layer)
        return parts[-1].layer.name

    def in_order(self, model, prefix: str = "") -> None:
        """Chain the layers of a model without a recorded graph in creation order."""
        previous: list[str] = []
        for op in _ordered_layers(model):
            name = f"{prefix}{op.name}"
            if name in self.graph.layers:
                continue
            previous = [self._add(op, prefix, name, previous, 1, [])]


def _ordered_layers(model):
    """Leaf layers in creation order: a composite layer without weights of its own is opened."""
    for layer in getattr(model, "layers", None) or list(model._flatten_layers(include_self=False, recursive=False)):
        sublayers = list(layer._flatten_layers(include_self=False, recursive=False)) if hasattr(layer, "_flatten_layers") else []
        own = getattr(layer, "_trainable_variables", None)
        if sublayers and not own and not any(n in ("Bidirectional", "MultiHeadAttention") for n in class_names(layer)) and not any(n in ("LSTM", "GRU", "SimpleRNN") for n in class_names(layer)):
            yield from _ordered_layers(layer)
        else:
            yield layer


def _sublayers(op) -> list:
    if hasattr(op, "_flatten_layers"):
        return list(op._flatten_layers(include_self=True, recursive=True))
    return [op]


def _scalar(name: str, value: float) -> Tensor:
    import numpy as np

    array = np.asarray(value, dtype=np.float32)
    return Tensor(name, (), "float32", lambda array=array: array)
