"""Fold the elementwise subgraphs that exporters write for one activation or norm into one layer.

Exporters decompose what the user wrote as one module, and users write activations by hand: SiLU becomes ``Mul(x, Sigmoid(x))``,
GELU ``Div → Erf → Add → Mul → Mul`` (or, tanh form, ``Pow → Mul → Add → Mul → Tanh → ...``),
Mish ``Mul(x, Tanh(Softplus(x)))``, RMSNorm ``Mul(x, Reciprocal(Sqrt(ReduceMean(Pow(x, 2)) + eps)))``.
Left alone, a SiLU network looks like a stack of sigmoids and a LLaMA export has no
normalization at all.

The pass does not list patterns. For each product (or quotient) it looks for the nearest value
``x`` that all of the product's inputs derive from through elementwise ops with scalar
constants only, whose intermediate values are used nowhere else. Such a region is a function
of ``x`` alone: the pass evaluates it on a grid and compares it with every activation it knows
(``initlint.activations``); a region that holds a mean over an axis and a square root is a
normalization. The region's last node takes the activation's (or norm's) place and the nodes
inside it are removed, so every consumer keeps its producer.
"""

from __future__ import annotations

import math

import numpy as np

from .. import activations
from .. import graph as g
from ..graph import Layer, ModelGraph

_UNARY = {
    "Erf": lambda x: np.vectorize(math.erf, otypes=[float])(x),
    "Tanh": np.tanh,
    "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "Softplus": lambda x: np.logaddexp(0.0, x),
    "Exp": np.exp,
    "Neg": np.negative,
    "Sqrt": lambda x: np.sqrt(np.abs(x)),
    "Reciprocal": lambda x: 1.0 / x,
    "Abs": np.abs,
    "Relu": lambda x: np.maximum(x, 0.0),
    "Cast": lambda x: x,
    "Identity": lambda x: x,
}
_BINARY = {
    "Mul": np.multiply,
    "Add": np.add,
    "Sub": np.subtract,
    "Div": np.divide,
    "Pow": lambda a, b: np.sign(a) * np.abs(a) ** b if float(np.max(np.abs(b - np.round(b)))) > 0 else a**b,
}
_REDUCTIONS = {"ReduceMean"}
# The torch loader's spelling of the same elementwise ops (torch.fx and ATen names).
_TORCH_SPELLING = {
    "mul": "Mul", "imul": "Mul", "add": "Add", "iadd": "Add", "sub": "Sub", "isub": "Sub", "truediv": "Div",
    "itruediv": "Div", "div": "Div", "pow": "Pow", "erf": "Erf", "exp": "Exp", "neg": "Neg", "sqrt": "Sqrt",
    "reciprocal": "Reciprocal", "abs": "Abs", "mean": "ReduceMean", "softplus": "Softplus",
}
_TRANSCENDENTAL = {"Erf", "Tanh", "Sigmoid", "Softplus", "Exp"}
_JOINS = {"Mul", "Div"}
MAX_REGION = 16
# Activations a decomposed region may turn out to be (identity-like ones are not worth folding).
_CANDIDATES = ("silu", "gelu", "mish", "hardswish", "hardsigmoid", "softplus", "elu", "selu", "sigmoid", "tanh")
_GRID = np.linspace(-5.0, 5.0, 41)


def fold_decomposed_ops(graph: ModelGraph) -> int:
    """Rewrite decomposed activations and RMS/layer norms in place; returns how many were folded."""
    folded = 0
    for join in reversed(list(graph.layers.values())):
        if join.name not in graph.layers or _op(join) not in _JOINS or not join.inputs or not _elementwise(join):
            continue
        match = _match(graph, join)
        if match is None:
            continue
        x, region, kind, name = match
        for member in region:
            if member is not join:
                del graph.layers[member.name]
        ops = sorted({_op(member) for member in region})
        join.kind = kind
        join.op = f"{name} ({'+'.join(ops)})"
        join.inputs = [x.name]
        join.const_inputs = {}
        join.attrs = {"activation": name, "folded_ops": ops} if kind == g.ACTIVATION else {"folded_ops": ops}
        folded += 1
    if folded:
        for cached in ("_consumers", "depth"):
            graph.__dict__.pop(cached, None)
    return folded


def _op(layer: Layer) -> str:
    return _TORCH_SPELLING.get(layer.op, layer.op)


def _known_activation(layer: Layer) -> bool:
    """An activation layer (Relu, Clip as ReLU6, torch's relu6/hardtanh/tanh): evaluated by its name."""
    return layer.kind == g.ACTIVATION and not layer.params and layer.activation in activations.FUNCTIONS


def _elementwise(layer: Layer) -> bool:
    op = _op(layer)
    if _known_activation(layer):
        return True
    if op not in _UNARY and op not in _BINARY and op not in _REDUCTIONS:
        return False
    if layer.params:
        return False
    return all(t.size == 1 for t in layer.const_inputs.values()) or op in _REDUCTIONS


def _match(graph: ModelGraph, join: Layer):
    # Elementwise ancestors of the join, nearest first.
    area: dict[str, Layer] = {join.name: join}
    order: list[Layer] = [join]
    frontier = [join]
    while frontier and len(area) <= MAX_REGION:
        nxt = []
        for node in frontier:
            for producer in graph.producers(node):
                if producer.name not in area and _elementwise(producer):
                    area[producer.name] = producer
                    order.append(producer)
                    nxt.append(producer)
        frontier = nxt
    if len(area) < 2:
        return None
    tried: set[str] = set()
    for node in order:
        for candidate in graph.producers(node):
            if candidate.name in tried or candidate is join:
                continue
            tried.add(candidate.name)
            region = _region(graph, join, candidate, area)
            if region is None:
                continue
            result = _identify(graph, join, candidate, region)
            if result is not None:
                return (candidate, region, *result)
    return None


def _region(graph: ModelGraph, join: Layer, x: Layer, area: dict[str, Layer]) -> list[Layer] | None:
    """The nodes on every path from ``x`` to ``join``, if all of them are in ``area`` and private to it."""
    region: dict[str, Layer] = {}
    stack = [join]
    while stack:
        node = stack.pop()
        if node.name in region:
            continue
        if node.name not in area:
            return None
        region[node.name] = node
        producers = graph.producers(node)
        if len(producers) != len(node.inputs):
            return None  # an input that is not a layer (a graph input) other than x
        for producer in producers:
            if producer is not x:
                stack.append(producer)
        if len(region) > MAX_REGION:
            return None
    if len(region) < 2:
        return None
    for node in region.values():
        if node is not join and any(c.name not in region for c in graph.consumers(node)):
            return None  # an intermediate value used elsewhere: not a private subexpression
    order = {name: i for i, name in enumerate(graph.layers)}
    return sorted(region.values(), key=lambda n: order[n.name])


def _identify(graph: ModelGraph, join: Layer, x: Layer, region: list[Layer]):
    ops = {_op(node) for node in region}
    if ops & _REDUCTIONS:
        # mean over an axis of a power of x, a root or a reciprocal: x / rms(x) (RMSNorm, or
        # LayerNorm where x is already centred).
        if "Pow" in ops or "Mul" in ops:
            if ops & {"Sqrt", "Reciprocal"} or ("Pow" in ops and "Div" in ops):
                return g.NORM, "norm"
        return None
    if not ops & _TRANSCENDENTAL and not any(_known_activation(node) for node in region):
        return None
    values = _evaluate(x, region)
    if values is None:
        return None
    for name in _CANDIDATES:
        expected = activations.apply(name, _GRID)
        if expected is not None and np.all(np.abs(values - expected) <= 2e-3 * (1.0 + np.abs(expected))):
            return g.ACTIVATION, name
    return None


def _evaluate(x: Layer, region: list[Layer]) -> np.ndarray | None:
    values: dict[str, np.ndarray] = {x.name: _GRID}
    with np.errstate(all="ignore"):
        for node in region:
            if _known_activation(node) and len(node.inputs) == 1:
                values[node.name] = np.broadcast_to(activations.apply(node.activation, values[node.inputs[0]], node.attrs.get("alpha")), _GRID.shape)
                continue
            dynamic = iter(values[p] for p in node.inputs)
            arity = len(node.inputs) + len(node.const_inputs)
            if any(position >= arity for position in node.const_inputs):
                return None  # a constant whose place among the operands is not known
            args = []
            for position in range(arity):
                if position in node.const_inputs:
                    args.append(np.asarray(node.const_inputs[position].values(), dtype=np.float64).reshape(-1)[0])
                else:
                    args.append(next(dynamic))
            op = _op(node)
            if op in _UNARY and len(args) >= 1:
                result = _UNARY[op](args[0])
            elif op in _BINARY and len(args) == 2:
                result = _BINARY[op](np.asarray(args[0], dtype=np.float64), np.asarray(args[1], dtype=np.float64))
            else:
                return None
            values[node.name] = np.broadcast_to(np.asarray(result, dtype=np.float64), _GRID.shape)
    out = values[region[-1].name]
    return out if np.all(np.isfinite(out)) else None
