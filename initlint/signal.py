"""Static signal propagation: predicted forward and backward variance, layer by layer (docs/science.md §1, §3, §4).

The model is the mean-field one: every pre-activation is a centred Gaussian whose second moment
``q`` is carried along the graph in topological order, starting at 1 on every graph input.
- a weighted layer multiplies q by σ_w² = fan_in·Var(W) (times Gemm's alpha²) and adds E[b²];
- an activation maps q to E[φ(z)²], z ~ N(0, q) (integrated numerically, so the gain follows
  q for the activations that are not homogeneous);
- a normalization resets q to E[γ²] + E[β²] (training-mode statistics);
- a residual addition adds the variances; a concatenation averages them weighted by width; a
  product multiplies them; pooling, reshapes and ops initlint does not know pass q through
  (unknown ops are listed in ``notes``);
- softmax outputs count as averaging weights (q = 1), so attention passes V's variance on.

The backward pass runs in reverse from every graph output with gradient variance 1: a weighted
layer multiplies it by fan_out·Var(W), an activation by E[φ'(z)²], a normalization by γ²/q_in,
a product by the other factor's q; sums and reshapes pass it on, and a value used twice gets
the sum of both contributions.

Ratios: the forward ratio of a weighted layer is the input-dependent part of its output q over
that of the first weighted layer after the last normalization (or graph input) on its path; the
backward ratio is the gradient energy (variance × width) at its output over the energy entering
the last weighted layer before the next normalization (or graph output). Neither counts the
one-off scale of the input or of the readout, only what compounds with depth between norms.

Not counted as depth, because they are deliberate or not depth at all: a residual branch scaled
by a constant or parameter (LayerScale, ReZero), an all-zero layer (IL101's business), the
gradient reaching queries and keys through attention logits, a product of two computed values
(GLU, attention), and layers after a global pooling (gates, heads), whose gradient is a sum over
positions the graph does not count. Convolutions into which an eval-mode export folded
BatchNorm count as normalized.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from . import activations
from . import graph as g
from .fingerprint import fingerprint

# Quadrature grid for E over z ~ N(0, q): z = sqrt(q)·t, t on [-10, 10].
_T = np.linspace(-10.0, 10.0, 4001)
_W = np.exp(-0.5 * _T * _T)
_W /= _W.sum()
_PRELU_DEFAULT = 0.25


@functools.lru_cache(maxsize=4096)
def _gains(name: str, alpha: float | None, q_key: float) -> tuple[float, float] | None:
    q = q_key
    z = math.sqrt(q) * _T
    phi = activations.apply(name, z, alpha)
    if phi is None:
        return None
    h = 1e-5 * math.sqrt(q) * np.maximum(1.0, np.abs(_T))  # relative to the scale: kinks stay sharp
    dphi = (activations.apply(name, z + h, alpha) - activations.apply(name, z - h, alpha)) / (2 * h)
    return float(np.dot(_W, phi * phi)) / q, float(np.dot(_W, dphi * dphi))


def activation_gains(name: str, q: float, alpha: float | None = None) -> tuple[float, float] | None:
    """(E[φ(z)²]/q, E[φ'(z)²]) for z ~ N(0, q), or None for an unknown activation (docs/science.md §3)."""
    if not (q > 0 and math.isfinite(q)):
        q = 1.0
    # Gains vary smoothly with q: 3 significant digits keep the cache small and exact enough.
    q_key = float(f"{min(max(q, 1e-12), 1e12):.3g}")
    return _gains(name, alpha, q_key)


@dataclass
class LayerSignal:
    name: str
    kind: str
    op: str
    q_in: float  # second moment of the (first) input, relative to the graph input
    q_out: float
    # The input-dependent part of q_out: biases and activation means add to q but carry no
    # information, and a perturbation of the input passes an activation with gain E[φ'²].
    v_out: float = 1.0
    grad_in: float = 0.0  # gradient variance at the input, relative to the graph output's
    grad_out: float = 0.0
    gain_fwd: float | None = None  # per-layer factors: q_out/q_in, grad_in/grad_out
    gain_bwd: float | None = None
    forward_ratio: float | None = None  # weighted layers only (see the module docstring)
    backward_ratio: float | None = None
    width: int | None = None
    # Downstream of a global pooling (a squeeze-excitation gate, a classifier head): the
    # gradient there is a sum over spatial positions whose number the graph does not know.
    pooled: bool = False
    normalized_from: float | None = None  # q before a folded BatchNorm (eval-mode exports)
    forward_anchor: str | None = None  # the weighted layers the ratios are relative to
    backward_anchor: str | None = None
    assumed: str | None = None  # what was assumed where the op is not understood
    init: str | None = None  # the fingerprint of a weighted layer

    def to_json(self) -> dict:
        out = {"layer": self.name, "kind": self.kind, "op": self.op, "q": _round(self.q_out), "grad": _round(self.grad_in)}
        for key in ("gain_fwd", "gain_bwd", "forward_ratio", "backward_ratio"):
            value = getattr(self, key)
            if value is not None:
                out[key] = _round(value)
        if self.init:
            out["init"] = self.init
        if self.assumed:
            out["assumed"] = self.assumed
        return out


@dataclass
class Signal:
    layers: dict[str, LayerSignal] = field(default_factory=dict)
    unknown_ops: dict[str, list[str]] = field(default_factory=dict)  # op -> layer names passed through
    branch_gates: set[str] = field(default_factory=set)  # constant-scaled residual branches
    folded_norm: set[str] = field(default_factory=set)  # convolutions with BatchNorm folded in
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> LayerSignal:
        return self.layers[name]

    def get(self, name: str) -> LayerSignal | None:
        return self.layers.get(name)

    def to_json(self) -> list[dict]:
        return [s.to_json() for s in self.layers.values() if s.kind not in (g.OUTPUT,)]


def _round(x: float | None) -> float | None:
    if x is None or not math.isfinite(x) or x == 0:
        return x
    return float(f"{x:.4g}")


def _mean_sq(tensor: g.Tensor | None, default: float = 0.0) -> float:
    if tensor is None or tensor.size == 0:
        return default
    stats = tensor.stats
    return stats.mean_sq if stats.finite_count else default


def _alpha(layer: g.Layer) -> float | None:
    if "alpha" in layer.attrs:
        return float(layer.attrs["alpha"])
    if layer.activation == "prelu":
        slope = layer.params.get("weight")
        return float(slope.stats.mean) if slope is not None and slope.stats.finite_count else _PRELU_DEFAULT
    return None


def weight_variance(layer: g.Layer) -> float:
    """Var(W) as the signal sees it, with Gemm's alpha folded in."""
    scale = float(layer.attrs.get("alpha", 1.0)) if layer.op == "Gemm" else 1.0
    return layer.weight.stats.var * scale * scale


def reliable(graph: g.ModelGraph) -> bool:
    """False where the loader had to guess the edges (module registration order): no ratios then."""
    return graph.has_structure and graph.metadata.get("structure") != "module-order"


def signal_of(graph: g.ModelGraph) -> Signal:
    """The propagation result for ``graph``, computed once per graph and shared by the rules."""
    cached = graph.__dict__.get("_signal")
    if cached is not None and cached[0] == len(graph.layers):
        return cached[1]
    result = _propagate(graph)
    graph.__dict__["_signal"] = (len(graph.layers), result)
    return result


def _propagate(graph: g.ModelGraph) -> Signal:
    sig = Signal()
    layers = list(graph.layers.values())
    # Forward reference on each layer's output path: (v of the chain's first weighted layer, its name).
    anchor: dict[str, tuple[float, str] | None] = {}
    if not reliable(graph):
        sig.notes.append("the graph's edges were guessed from module order: the signal below is indicative only and no signal rule ran")
    sig.folded_norm = _folded_batchnorm(graph)
    if sig.folded_norm:
        sig.notes.append(
            f"no BatchNormalization layers, but {len(sig.folded_norm)} convolutions look like conv+BatchNorm pairs of an eval-mode "
            "export (BatchNorm folded into constant-folded weights, or dropped as the identity it is at init, leaving "
            "bias-free convolutions); signal propagation treats them as normalized (docs/science.md §10)"
        )

    for layer in layers:
        producers = [sig.layers[p] for p in layer.inputs if p in sig.layers]
        q_inputs = [p.q_out for p in producers] or [1.0]
        v_inputs = [p.v_out for p in producers] or [1.0]
        q_in, v_in = q_inputs[0], v_inputs[0]
        width_in = next((p.width for p in producers if p.width), None)
        s = LayerSignal(layer.name, layer.kind, layer.op, q_in=q_in, q_out=q_in, v_out=v_in, width=width_in)
        s.pooled = _is_global_pool(layer) or bool(producers and all(p.pooled for p in producers))
        ref = _dominant_anchor(layer, producers, anchor)
        kind = layer.kind
        if layer.is_weighted and layer.weight.ndim >= 1:
            s.width = layer.units
            if kind == g.EMBEDDING:
                s.q_out = s.v_out = _mean_sq(layer.weight)  # a row lookup: the input is indices
            elif kind == g.RNN or not layer.fan_in:
                s.assumed = f"{layer.op}: variance passed through"
                sig.unknown_ops.setdefault(layer.op, []).append(layer.name)
            else:
                sigma_w2 = layer.fan_in * weight_variance(layer)
                if kind == g.ATTENTION:
                    out_proj = next((t for role, t in layer.params.items() if "out_proj" in role and role.endswith("weight")), None)
                    if out_proj is not None and out_proj.ndim == 2:
                        sigma_w2 *= out_proj.shape[1] * out_proj.stats.var
                s.q_out = sigma_w2 * q_in + _mean_sq(layer.bias)
                s.v_out = sigma_w2 * v_in
                fp = fingerprint(layer)
                s.init = fp.describe() if fp is not None else None
            if ref is None and s.v_out > 0:
                ref = (s.v_out, layer.name)
            s.forward_ratio = s.v_out / ref[0] if ref else None
            s.forward_anchor = ref[1] if ref else None
            if layer.name in sig.folded_norm and s.q_out > 0:
                s.normalized_from = s.q_out
                s.v_out, s.q_out = min(s.v_out / s.q_out, 1.0), 1.0
                ref = None
        elif kind == g.ACTIVATION:
            gains = activation_gains(layer.activation or "", q_in, _alpha(layer))
            if gains is None:
                s.assumed = f"activation {layer.activation or layer.op}: variance passed through"
                sig.unknown_ops.setdefault(layer.activation or layer.op, []).append(layer.name)
            else:
                s.q_out = gains[0] * q_in
                s.v_out = min(gains[1] * v_in, s.q_out)
        elif kind == g.NORM:
            gamma, beta = layer.params.get("weight"), layer.params.get("bias")
            s.q_out = _mean_sq(gamma, 1.0) + _mean_sq(beta, 0.0)
            s.v_out = _mean_sq(gamma, 1.0) * min(v_in / q_in, 1.0) if q_in > 0 else 0.0
            ref = None  # the chain is cut: the next weighted layer starts a new reference
        elif kind == g.ADD:
            s.q_out = sum(q_inputs) + sum(_mean_sq(t) for t in layer.const_inputs.values())
            s.v_out = sum(v_inputs)
        elif kind in (g.MUL, g.MATMUL):
            s.q_out = math.prod(q_inputs) if producers else 1.0
            if kind == g.MUL:
                for t in layer.const_inputs.values():
                    s.q_out *= _mean_sq(t, 1.0)
            s.v_out = s.q_out * min(1.0, sum(p.v_out / p.q_out for p in producers if p.q_out > 0))
            if ref is not None and len(producers) > 1:
                # A product of two computed values (a GLU, attention) is one step, not depth:
                # carry the reference along so that the other factor's scale is not counted.
                carrier = max(producers, key=lambda p: p.q_out)
                ref = (ref[0] * math.prod(p.q_out for p in producers if p is not carrier), ref[1])
        elif kind == g.CONCAT:
            widths = [p.width or 1 for p in producers]
            total = sum(widths)
            s.q_out = sum(w * q for w, q in zip(widths, q_inputs)) / total if total else q_in
            s.v_out = sum(w * v for w, v in zip(widths, v_inputs)) / total if total else v_in
            s.width = sum(p.width for p in producers) if producers and all(p.width for p in producers) else width_in
        elif kind == g.SOFTMAX:
            s.q_out = 1.0  # averaging weights: what they multiply keeps its variance
            s.v_out = min(v_in / q_in, 1.0) if q_in > 0 else 1.0
        elif kind == g.OTHER:
            s.assumed = f"{layer.op}: variance passed through"
            sig.unknown_ops.setdefault(layer.op, []).append(layer.name)
        # PASSTHROUGH, POOL, OUTPUT: q passes through.
        s.gain_fwd = s.q_out / q_in if q_in > 0 else None
        anchor[layer.name] = ref
        sig.layers[layer.name] = s

    for layer in layers:
        if layer.kind == g.MUL and len(layer.inputs) == 1 and layer.const_inputs:
            if any(nxt.kind == g.ADD for nxt in graph.downstream(layer, g.TRANSPARENT_KINDS | {g.OTHER})):
                sig.branch_gates.add(layer.name)
    _backward(graph, sig, layers)
    if sig.unknown_ops:
        listed = ", ".join(f"{op} ({len(names)}x)" for op, names in sorted(sig.unknown_ops.items()))
        sig.notes.append(f"signal propagation passed the variance unchanged through ops it does not model: {listed}")
    fps = [(layer.name, fingerprint(layer)) for layer in layers if layer.is_weighted]
    unknown = [name for name, fp in fps if fp is not None and fp.status == "unrecognized"]
    if unknown:
        sig.notes.append(
            f"{len(unknown)} of {len(fps)} weighted layers match no init scheme (trained or custom weights?), e.g. {unknown[0]}: "
            "init-scheme rules (IL201, IL203) do not apply to them; signal rules use their measured variance"
        )
    return sig


def _folded_batchnorm(graph: g.ModelGraph) -> set[str]:
    """Convolutions that absorbed a BatchNorm at export (eval mode, constant folding).

    The TorchScript exporter names a weight it computed by folding ``onnx::Conv_<n>`` and gives
    the convolution the folded bias. The dynamo exporter drops a freshly initialized BatchNorm
    outright (running mean 0, variance 1: the identity), leaving the convolution without a
    bias; convolutions are written ``bias=False`` precisely when a normalization follows them,
    so in a graph without any BatchNormalization a bias-free convolution marks a removed one.
    Other normalizations (the LayerNorms of a hybrid CNN/transformer) do not change either sign.
    """
    if graph.format != "onnx":
        return set()
    has_batchnorm = any(layer.op == "BatchNormalization" for layer in graph.layers.values())
    folded = set()
    for layer in graph.layers.values():
        if layer.kind != g.CONV or layer.weight is None:
            continue
        exporter_name = layer.attrs.get("exporter_weight_name", layer.weight.name)
        constant_folded = exporter_name.startswith("onnx::") and layer.bias is not None
        if constant_folded or (layer.bias is None and not has_batchnorm):
            folded.add(layer.name)
    return folded


def _is_branch_gate(layer: g.Layer, sig: Signal) -> bool:
    """A residual branch scaled by a constant or parameter (LayerScale, ReZero, SkipInit): small by design.

    Its gradient is scaled once, on purpose; counting the scale as vanishing would flag every
    LayerScale ConvNeXt and ReZero transformer (docs/science.md §5 allowlist).
    """
    return len(layer.inputs) == 1 and bool(layer.const_inputs) and layer.name in sig.branch_gates


_GLOBAL_POOL_OPS = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceMax", "ReduceSum", "mean", "amax", "sum", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d"}


def _is_global_pool(layer: g.Layer) -> bool:
    return layer.kind == g.POOL and (layer.op in _GLOBAL_POOL_OPS or layer.op.startswith("Adaptive"))


def _dominant_anchor(layer: g.Layer, producers: list[LayerSignal], anchor: dict) -> tuple[float, str] | None:
    """The forward reference of the input that carries the most signal (the skip path of a residual add)."""
    if not producers:
        return None
    best = max(producers, key=lambda p: p.q_out)
    return anchor.get(best.name)


def _backward(graph: g.ModelGraph, sig: Signal, layers: list[g.Layer]) -> None:
    # Every graph output receives gradient variance 1 (without output markers: every sink);
    # what a layer receives is the sum over its consumers.
    has_outputs = any(layer.kind == g.OUTPUT for layer in layers)
    received: dict[str, float] = {name: 0.0 for name in graph.layers}
    for layer in layers:
        if layer.kind == g.OUTPUT or (not has_outputs and not graph.consumers(layer)):
            received[layer.name] = 1.0
    # Backward ratios compare gradient energy, variance × width: when widths change the
    # per-unit variance follows fan_out/fan_in while the energy, what the probe's gradient
    # norms see, is kept. As in the forward pass a normalization cuts the chain (below a norm
    # the gradient scales with 1/std of the layer's own output, i.e. with the scale of W,
    # which the norm makes irrelevant); the reference is the gradient energy entering the
    # last weighted layer of each chain (the readout for a plain network).
    # layer -> (largest gradient contribution it receives, that consumer's (energy, layer) reference)
    anchor_out: dict[str, tuple[float, tuple[float, str] | None]] = {}
    # Layers whose gradient arrives only through attention logits (queries, keys): near-uniform
    # attention at init passes them little gradient, which is normal (docs/science.md §4).
    logits_only: dict[str, bool] = {}
    for layer in reversed(layers):
        s = sig.layers[layer.name]
        consumers = graph.consumers(layer)
        logits_only[layer.name] = bool(consumers) and all(c.kind == g.SOFTMAX or logits_only.get(c.name, False) for c in consumers)
        s.grad_out = received[layer.name]
        factors = _backward_factors(layer, s, sig)
        s.grad_in = s.grad_out * (factors[0] if factors else 1.0)
        s.gain_bwd = factors[0] if factors else 1.0
        anchor = anchor_out.get(layer.name, (0.0, None))[1]
        if layer.kind == g.NORM:
            anchor = None
        elif layer.is_weighted and layer.kind != g.EMBEDDING and s.grad_out > 0 and not s.pooled and not logits_only[layer.name]:
            if anchor is None and s.grad_in > 0:
                width_in = next((sig.layers[p].width for p in layer.inputs if p in sig.layers and sig.layers[p].width), None)
                anchor = (s.grad_in * (width_in or layer.fan_in or 1), layer.name)
                s.backward_ratio = 1.0
            elif anchor is not None:
                s.backward_ratio = s.grad_out * (s.width or 1) / anchor[0]
            s.backward_anchor = anchor[1] if anchor is not None else None
        passed = None if layer.name in sig.folded_norm else anchor
        if anchor is not None and layer.kind == g.LINEAR and layer.fan_in:
            # A linear layer after a flatten reads `positions` spatial positions per channel;
            # below it, widths count channels only, so compare energy per position.
            width_in = next((sig.layers[p].width for p in layer.inputs if p in sig.layers and sig.layers[p].width), None)
            if width_in and layer.fan_in > width_in and layer.fan_in % width_in == 0:
                passed = (anchor[0] * width_in / layer.fan_in, anchor[1])
        for position, producer in enumerate(layer.inputs):
            if producer in received:
                factor = factors[position] if position < len(factors) else (factors[0] if factors else 1.0)
                contribution = s.grad_out * factor
                received[producer] += contribution
                if producer not in anchor_out or contribution > anchor_out[producer][0]:
                    anchor_out[producer] = (contribution, passed)


def _backward_factors(layer: g.Layer, s: LayerSignal, sig: Signal) -> list[float]:
    """Per dynamic input: the factor by which the gradient variance changes on the way to it."""
    kind = layer.kind
    if layer.is_weighted:
        if kind == g.EMBEDDING or kind == g.RNN or not layer.fan_out:
            return [1.0]
        if layer.weight.stats.all_zero:
            # A zero head or branch end passes no gradient at step 0 only; after one update it
            # does. Whether the zeros are fatal is IL101's call, not a depth effect.
            s.assumed = "all-zero weight: gradient passed through as after the first update"
            return [1.0]
        if s.normalized_from:
            return [layer.fan_out * weight_variance(layer) / s.normalized_from]
        return [layer.fan_out * weight_variance(layer)]
    if kind == g.ACTIVATION:
        gains = activation_gains(layer.activation or "", s.q_in, _alpha(layer))
        return [gains[1] if gains is not None else 1.0]
    if kind == g.NORM:
        gamma = layer.params.get("weight")
        return [_mean_sq(gamma, 1.0) / s.q_in if s.q_in > 0 else 1.0]
    if kind == g.MUL and _is_branch_gate(layer, sig):
        return [1.0]
    if kind in (g.MUL, g.MATMUL):
        qs = [sig.layers[p].q_out if p in sig.layers else 1.0 for p in layer.inputs]
        const = math.prod(_mean_sq(t, 1.0) for t in layer.const_inputs.values()) if kind == g.MUL else 1.0
        if len(qs) <= 1:
            return [const]
        return [const * math.prod(q for j, q in enumerate(qs) if j != i) for i in range(len(qs))]
    return [1.0]


# --- structure helpers shared by the IL2xx/IL3xx rules ------------------------------------------

FEEDING_KINDS = (g.LINEAR, g.CONV, g.CONV_TRANSPOSE)


def feeding_layer(graph: g.ModelGraph, activation: g.Layer) -> g.Layer | None:
    """The weighted layer whose output is ``activation``'s input (through reshapes, pooling, bias adds)."""
    before = graph.upstream(activation)
    if len(before) == 1 and reliable(graph) and before[0].is_weighted and before[0].kind in FEEDING_KINDS:
        return before[0]
    return None


def feeds_only_weighted(graph: g.ModelGraph, layer: g.Layer) -> g.Layer | None:
    """The single weighted layer that consumes ``layer``'s output, or None (a gate, a skip, a head)."""
    after = graph.downstream(layer)
    if len(after) == 1 and after[0].is_weighted and after[0].kind in FEEDING_KINDS:
        return after[0]
    return None


def plain_chains(graph: g.ModelGraph, member) -> list[list[tuple[g.Layer, g.Layer]]]:
    """Maximal chains of (weighted layer, activation) pairs joined without normalization or skips.

    ``member(layer, activation)`` says whether a pair belongs; consecutive pairs are linked when
    the activation's only consumer is the next weighted layer and nothing else feeds it.
    """
    pair_of: dict[str, tuple[g.Layer, g.Layer]] = {}
    if not reliable(graph):
        return []
    for layer in graph.layers.values():
        if layer.kind != g.ACTIVATION:
            continue
        weighted = feeding_layer(graph, layer)
        if weighted is not None and member(weighted, layer):
            pair_of[weighted.name] = (weighted, layer)
    chains: list[list[tuple[g.Layer, g.Layer]]] = []
    linked: set[str] = set()
    for name, pair in pair_of.items():
        if name in linked:
            continue
        chain = [pair]
        linked.add(name)
        while True:
            nxt = feeds_only_weighted(graph, chain[-1][1])
            if nxt is None or nxt.name not in pair_of or nxt.name in linked or graph.upstream(nxt) != [chain[-1][1]]:
                break
            chain.append(pair_of[nxt.name])
            linked.add(nxt.name)
        chains.append(chain)
    # Pairs are visited in topological order, so every chain is entered at its head.
    return chains


def pre_activation_std(sig: Signal, activation: g.Layer) -> float:
    s = sig.get(activation.name)
    return math.sqrt(max(s.q_in, 0.0)) if s is not None else 1.0


@dataclass
class Crossing:
    direction: str  # "forward" | "backward"
    layer: g.Layer
    anchor: str
    ratio: float
    layers_between: int  # weighted layers from the anchor to the crossing, both counted once

    @property
    def per_layer(self) -> float:
        return self.ratio ** (1.0 / max(self.layers_between, 1))

    def describe(self) -> str:
        what = "input-dependent signal variance" if self.direction == "forward" else "gradient energy"
        return (
            f"predicted {what} at {self.layer.name} is {self.ratio:.2g}x that at {self.anchor} "
            f"({self.layers_between} weighted layers, x{self.per_layer:.3g} per layer)"
        )


def first_crossings(graph: g.ModelGraph, low: float | None = None, high: float | None = None) -> list[Crossing]:
    """Where the forward and the backward ratio first leave [low, high], walking each in its own direction.

    Layers with all-zero weights, or whose signal is exactly zero because of one, are left to
    IL101: a structural zero is not a depth effect.
    """
    if not reliable(graph):
        return []
    sig = signal_of(graph)
    found = []
    judged = [
        layer for layer in graph.layers.values()
        if layer.is_weighted and layer.kind != g.EMBEDDING and not layer.weight.stats.all_zero
    ]
    for direction, ordered in (("forward", judged), ("backward", list(reversed(judged)))):
        for layer in ordered:
            s = sig[layer.name]
            ratio = s.forward_ratio if direction == "forward" else s.backward_ratio
            anchor = s.forward_anchor if direction == "forward" else s.backward_anchor
            if ratio is None or ratio <= 0 or anchor is None:
                continue
            if (low is not None and ratio < low) or (high is not None and ratio > high):
                between = abs(graph.depth.get(layer.name, 0) - graph.depth.get(anchor, 0))
                found.append(Crossing(direction, layer, anchor, ratio, between))
                break
    return found
