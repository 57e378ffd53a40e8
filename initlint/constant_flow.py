"""What happens downstream to the constant output of an all-zero layer (docs/science.md §5).

A layer whose weight is all zero outputs a constant (its bias) whatever the input. Following
that constant through the graph decides whether the zeros are harmless (the output is added to
an independent path, or is the model's output), recoverable (training can move the layer
through its neighbours), or fatal (an activation whose derivative at the constant is exactly
zero, or another zero layer, blocks every gradient). A zero layer fed exactly zero by such a
fatal one never trains either, whatever follows it: its weight's gradient is its input times
the gradient at its output. :class:`ConstantFlow` returns a typed :class:`ConstantOutcome` per
zero layer; rules turn it into words.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from . import activations
from . import graph as g
from .signal import scalar


class Harm(enum.IntEnum):
    """How bad an outcome is for training, ordered from harmless to fatal."""

    ALLOWED = 0
    RECOVERABLE = 1
    FATAL = 2


class Fate(enum.Enum):
    """Where the constant ends up."""

    MODEL_OUTPUT = "model_output"  # the zero layer's own output is a model output (zero head, readout)
    ZERO_HEAD = "zero_head"  # the constant reaches a model output through constant-preserving ops
    RESIDUAL = "residual"  # added to an independent, non-zero path (residual branch end, LoRA B)
    BLOCKED_BY_ACTIVATION = "blocked_by_activation"  # an activation whose derivative at the constant is exactly 0
    FEEDS_ZERO_LAYER = "feeds_zero_layer"  # reaches another all-zero layer
    FED_BY_ZERO_LAYER = "fed_by_zero_layer"  # its input is exactly 0 forever: the output of a zero layer that never trains
    LONE_ZERO_LAYER = "lone_zero_layer"  # between random layers: recovers through its neighbours
    GATED = "gated"  # multiplied by a computed gate
    UNKNOWN_ACTIVATION = "unknown_activation"  # an activation initlint cannot evaluate
    CONSTANT = "constant"  # an op initlint does not follow (or the path is too long)


@dataclass(frozen=True)
class ConstantOutcome:
    harm: Harm
    fate: Fate
    # The constant that reaches the deciding op is exactly zero (not just input-independent).
    zero_constant: bool = False
    # BLOCKED_BY_ACTIVATION / UNKNOWN_ACTIVATION: the activation's canonical name.
    activation: str | None = None
    # FEEDS_ZERO_LAYER / FED_BY_ZERO_LAYER: the other zero layer's weight name.
    other_weight: str | None = None
    # CONSTANT: the op the analysis stopped at (None when the path was too long to follow).
    op: str | None = None


_MAX_DEPTH = 64


def zero_outcome(graph: g.ModelGraph, layer: g.Layer) -> ConstantOutcome:
    """The outcome of one zero layer (a rule judging several builds one :class:`ConstantFlow`)."""
    return ConstantFlow(graph).outcome(layer)


class ConstantFlow:
    """The constant-flow analysis of one graph; each layer's downstream outcome is computed once."""

    def __init__(self, graph: g.ModelGraph):
        self.graph = graph
        self._downstream: dict[str, ConstantOutcome] = {}
        self._frozen: dict[str, tuple[np.ndarray, g.Layer]] | None = None

    def outcome(self, layer: g.Layer) -> ConstantOutcome:
        """Where the zero layer's constant output goes decides (the most benign path), unless its
        input is exactly zero forever: then its weight gets no gradient whatever follows it (the
        second of two zero layers in a row, whose first never trains either)."""
        own = self._downstream_outcome(layer, _values(layer.bias))
        if own.harm == Harm.FATAL or layer.kind == g.EMBEDDING:
            return own
        source = self._frozen_zero_input(layer)
        if source is None:
            return own
        return ConstantOutcome(Harm.FATAL, Fate.FED_BY_ZERO_LAYER, zero_constant=True, other_weight=source.weight.name)

    def _downstream_outcome(self, layer: g.Layer, value: np.ndarray) -> ConstantOutcome:
        """``value``, the constant ``layer`` outputs, followed downstream (the most benign path)."""
        if layer.name not in self._downstream:
            outcomes = [_follow(self.graph, nxt, value, layer, depth=0) for nxt in self.graph.downstream(layer)]
            self._downstream[layer.name] = _most_benign(outcomes) if outcomes else ConstantOutcome(Harm.ALLOWED, Fate.MODEL_OUTPUT)
        return self._downstream[layer.name]

    def _frozen_zero_input(self, layer: g.Layer) -> g.Layer | None:
        """The zero layer that never trains whose output reaches ``layer`` as exactly 0, or None."""
        if self._frozen is None:
            self._frozen = self._frozen_outputs()
        inputs = self._inputs(layer, self._frozen)
        if inputs is None or not all(_is_zero(value) for value, _ in inputs):
            return None
        return inputs[0][1]

    def _inputs(self, node: g.Layer, frozen: dict) -> list[tuple[np.ndarray, g.Layer]] | None:
        """The frozen outputs that feed ``node``, or None unless every input is one. A model
        input is not a layer of the graph: an op that reads one has fewer producers than inputs."""
        producers = self.graph.producers(node)
        if not producers or len(producers) != len(node.inputs):
            return None
        inputs = [frozen.get(p.name) for p in producers]
        return None if any(i is None for i in inputs) else inputs

    def _frozen_outputs(self) -> dict[str, tuple[np.ndarray, g.Layer]]:
        """Per layer whose output is a constant no training step can change: (that constant, the
        zero layer it comes from). One pass in topological order, so only the layers upstream of
        each are looked at, and each layer's downstream outcome once."""
        frozen: dict[str, tuple[np.ndarray, g.Layer]] = {}
        for node in self.graph.layers.values():
            found = self._frozen_output(node, frozen)
            if found is not None:
                frozen[node.name] = found
        return frozen

    def _frozen_output(self, node: g.Layer, frozen: dict) -> tuple[np.ndarray, g.Layer] | None:
        inputs = self._inputs(node, frozen)
        zero_input = inputs is not None and all(_is_zero(value) for value, _ in inputs)
        if _outputs_constant(node):
            # No gradient ever reaches it (its outcome is fatal): its weight and shift stay as they are.
            if self._downstream_outcome(node, _values(node.bias)).harm == Harm.FATAL:
                return _values(node.bias), node
            if zero_input and node.bias is None:
                return np.zeros(1), inputs[0][1]  # 0 x 0 with no bias, and a zero gradient for its weight
            return None
        if node.kind in (g.LINEAR, g.CONV, g.CONV_TRANSPOSE, g.NORM):
            # A zero input gives its weight (or gain) no gradient and leaves its bias (or shift)
            # as the output, which stays put only where no gradient reaches it either.
            if not zero_input:
                return None
            value = _values(node.bias)
            if node.bias is None or self._downstream_outcome(node, value).harm == Harm.FATAL:
                return value, inputs[0][1]
            return None
        if node.kind == g.MUL:
            # A factor that is 0 forever keeps the product 0, whatever the other factor is (a
            # computed gate, a scale that is itself a parameter: its gradient is then 0 too).
            factors = [frozen.get(p.name) for p in self.graph.producers(node)]
            return next(((np.zeros(1), f[1]) for f in factors if f is not None and _is_zero(f[0])), None)
        if inputs is None:
            return None
        if node.kind == g.ACTIVATION:
            applied = activations.apply(node.activation, inputs[0][0], scalar(node.attrs.get("alpha")))
            return None if applied is None else (applied, inputs[0][1])
        if node.const_inputs:
            return None  # a constant added, or a bias: not followed
        if node.kind in g.TRANSPARENT_KINDS and len(inputs) == 1:
            return inputs[0]
        if node.kind in (g.ADD, g.CONCAT) and len(inputs) >= 2:
            if zero_input:
                return np.zeros(1), inputs[0][1]
            if node.kind == g.ADD:
                try:
                    return sum((value for value, _ in inputs), np.zeros(1)), inputs[0][1]
                except ValueError:  # per-unit values of different widths
                    return None
        return None


def _outputs_constant(layer: g.Layer) -> bool:
    """A layer whose output does not depend on its input: a structural weight or a
    normalization gain that is all zero (it outputs its bias or shift)."""
    weight = layer.weight
    if weight is None or weight.stats.count == 0 or not weight.stats.all_zero:
        return False
    return (layer.kind in (g.LINEAR, g.CONV, g.CONV_TRANSPOSE, g.EMBEDDING) and weight.ndim >= 2) or layer.kind == g.NORM


def _is_zero(value: np.ndarray) -> bool:
    return bool(np.all(value == 0))


def is_zero_layer(layer: g.Layer) -> bool:
    """A weighted layer whose weight matrix and bias (if any) are all zero."""
    weight, bias = layer.weight, layer.bias
    return bool(
        layer.is_weighted
        and weight.ndim >= 2
        and weight.stats.all_zero
        and (bias is None or bias.stats.all_zero)
    )


def _values(tensor: g.Tensor | None) -> np.ndarray:
    return np.asarray(tensor.values(), dtype=np.float64).reshape(-1) if tensor is not None else np.zeros(1)


def _most_benign(outcomes: list[ConstantOutcome]) -> ConstantOutcome:
    return min(outcomes, key=lambda o: o.harm)  # the first of the least harmful


def _follow(graph: g.ModelGraph, node: g.Layer, value: np.ndarray, origin: g.Layer, depth: int) -> ConstantOutcome:
    """``value`` is the constant (per unit) that reaches ``node``; it does not depend on the input."""
    is_zero = bool(np.all(value == 0))
    if depth > _MAX_DEPTH:
        return ConstantOutcome(Harm.RECOVERABLE, Fate.CONSTANT)
    if node.kind == g.OUTPUT:
        return ConstantOutcome(Harm.ALLOWED, Fate.ZERO_HEAD)
    if node.kind in (g.ADD, g.CONCAT):
        # An input computed only from this layer's constant output is constant too (the
        # x + 0.044715x^3 inside a hand-written tanh-GELU): only an independent path rescues.
        # A model input is no layer of the graph: an Add with a single producer and no constant adds one.
        reads_model_input = len(node.inputs) < 2 and not node.const_inputs
        others = [p for p in graph.producers(node) if not is_zero_layer(p) and not _computed_only_from(graph, p, origin)]
        if reads_model_input or (len(others) >= 1 and len(graph.producers(node)) >= 2):
            return ConstantOutcome(Harm.ALLOWED, Fate.RESIDUAL)
        return _continue(graph, node, value, origin, depth)
    if node.kind == g.NORM:
        # Normalizing a constant gives the shift beta (training-mode statistics).
        return _continue(graph, node, _values(node.bias), origin, depth)
    if node.kind == g.MUL:
        scale = [t for t in node.const_inputs.values() if t.size == 1]
        if scale and len(node.inputs) == 1:
            return _continue(graph, node, value * float(np.asarray(scale[0].values()).reshape(-1)[0]), origin, depth)
        if is_zero and len(node.inputs) >= 2:
            # A zero gate times a computed value is still zero (adaLN-Zero, gated branches):
            # where the product goes decides, e.g. a residual add is the intended pattern.
            return _continue(graph, node, value, origin, depth)
        return ConstantOutcome(Harm.RECOVERABLE, Fate.GATED, zero_constant=is_zero)
    if node.kind == g.ACTIVATION:
        name = node.activation
        if activations.blocks_gradient(name, value):
            return ConstantOutcome(Harm.FATAL, Fate.BLOCKED_BY_ACTIVATION, zero_constant=is_zero, activation=name)
        applied = activations.apply(name, value, scalar(node.attrs.get("alpha")))
        if applied is None:
            return ConstantOutcome(Harm.RECOVERABLE, Fate.UNKNOWN_ACTIVATION, zero_constant=is_zero, activation=name)
        return _continue(graph, node, applied, origin, depth)
    if node.is_weighted:
        if is_zero_layer(node) or (node.weight is not None and node.weight.stats.all_zero):
            harm = Harm.FATAL if is_zero else Harm.RECOVERABLE
            return ConstantOutcome(harm, Fate.FEEDS_ZERO_LAYER, zero_constant=is_zero, other_weight=node.weight.name)
        if is_zero and node.kind != g.EMBEDDING:
            # A linear layer keeps the zero (plus its own bias): where it ends decides.
            outcome = _continue(graph, node, _values(node.bias), origin, depth)
            # Through a random linear layer the zero branch is still harmless if it ends in a
            # residual add (PEFT's A = 0, B random); a head after it makes it a lone zero layer.
            if outcome.harm == Harm.FATAL or outcome.fate == Fate.RESIDUAL:
                return outcome
        return ConstantOutcome(Harm.RECOVERABLE, Fate.LONE_ZERO_LAYER)
    return ConstantOutcome(Harm.RECOVERABLE, Fate.CONSTANT, zero_constant=is_zero, op=node.op)


def _continue(graph: g.ModelGraph, node: g.Layer, value: np.ndarray, origin: g.Layer, depth: int) -> ConstantOutcome:
    nxt = graph.downstream(node)
    if not nxt:
        return ConstantOutcome(Harm.ALLOWED, Fate.ZERO_HEAD)
    return _most_benign([_follow(graph, n, value, origin, depth + 1) for n in nxt])


def _computed_only_from(graph: g.ModelGraph, layer: g.Layer, origin: g.Layer) -> bool:
    """True when every path into ``layer`` starts at ``origin`` (so its value is a function of
    origin's constant output); a layer that reads a model input is not."""
    known: dict[str, bool] = {origin.name: True}
    stack = [layer]
    while stack:
        node = stack[-1]
        if node.name in known:
            stack.pop()
            continue
        producers = graph.producers(node)
        if not producers or any(known.get(p.name) is False for p in producers):
            known[node.name] = False
            stack.pop()
            continue
        pending = [p for p in producers if p.name not in known]
        if pending:
            stack.extend(pending)
            continue
        known[node.name] = True
        stack.pop()
    return known[layer.name]
