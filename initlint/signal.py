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

import math
import numbers
from dataclasses import dataclass, field


from . import graph as g
from . import moments as mo
from .chains import reliable
from .fingerprint import fingerprint

_PRELU_DEFAULT = 0.25
activation_gains = mo.activation_gains  # where the rules import it from
# Arithmetic ops by their name in either loader (ONNX Add, torch add / truediv / rsub, aten div).
_ARITHMETIC = {"add": "add", "iadd": "add", "sub": "sub", "isub": "sub", "rsub": "rsub", "mul": "mul", "imul": "mul",
               "div": "div", "truediv": "div", "itruediv": "div", "neg": "neg"}


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
    m_in: float = 0.0  # common mean of the (first) input and of the output (docs/science.md §11)
    m_out: float = 0.0
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
    probabilities: bool = False  # a softmax output (or a reshape of one): weights summing to one
    v_in: float = 1.0
    # Per input: the factor on the gradient variance on the way back, where the forward pass
    # settled it (scalar arithmetic, attention averaging).
    input_factors: list[float] | None = None

    @property
    def moments(self) -> mo.Moments:
        return mo.Moments(self.q_out, self.m_out, self.v_out)

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
    # Layers whose output reaches the graph outputs only as the minor term of residual sums:
    # a small branch beside the skip that carries the signal (docs/science.md §4, §5).
    minor_branch: set[str] = field(default_factory=set)
    folded_norm: set[str] = field(default_factory=set)  # convolutions with BatchNorm folded in
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> LayerSignal:
        return self.layers[name]

    def get(self, name: str) -> LayerSignal | None:
        return self.layers.get(name)

    def to_json(self) -> list[dict]:
        return [s.to_json() for s in self.layers.values() if s.kind not in (g.OUTPUT,)]


def _round(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None  # an overflowed moment is unknown, not a number JSON can hold
    if x == 0:
        return x
    return float(f"{x:.4g}")


def _mean_sq(tensor: g.Tensor | None, default: float = 0.0) -> float:
    if tensor is None or tensor.size == 0:
        return default
    stats = tensor.stats
    return stats.mean_sq if stats.finite_count else default


def scalar(value) -> float | None:
    """A real number attribute as a float; None for anything else (a hostile file may give a
    list or a string where a number belongs: the default applies then, rather than a crash)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # numpy scalars included
        return float(value)
    return None


def _mean(tensor: g.Tensor | None, default: float = 0.0) -> float:
    if tensor is None or tensor.size == 0:
        return default
    stats = tensor.stats
    return stats.mean if stats.finite_count else default


def _alpha(layer: g.Layer) -> float | None:
    if scalar(layer.attrs.get("alpha")) is not None:
        return scalar(layer.attrs["alpha"])
    if layer.activation == "prelu":
        slope = layer.params.get("weight")
        return float(slope.stats.mean) if slope is not None and slope.stats.finite_count else _PRELU_DEFAULT
    return None


def weight_variance(layer: g.Layer) -> float:
    """Var(W) as the signal sees it, with Gemm's alpha folded in."""
    alpha = scalar(layer.attrs.get("alpha")) if layer.op == "Gemm" else None
    scale = 1.0 if alpha is None else alpha
    return layer.weight.stats.var * scale * scale


def weight_second_moment(layer: g.Layer) -> float:
    """E[W²] as the signal sees it (the mean included), with Gemm's alpha folded in."""
    scale = float(layer.attrs.get("alpha", 1.0)) if layer.op == "Gemm" else 1.0
    return _mean_sq(layer.weight) * scale * scale


def _through_weighted(layer: g.Layer, x: mo.Moments) -> mo.Moments:
    """A linear, convolution or packed-attention layer: second moments with the weight's and
    the bias's means (a constant layer is a rank-1 projection of the input's mean)."""
    alpha = float(layer.attrs.get("alpha", 1.0)) if layer.op == "Gemm" else 1.0
    stats = layer.weight.stats
    unit_stats = layer.unit_stats() or stats
    w_mean = stats.mean * alpha if stats.finite_count else 0.0
    bias = layer.bias
    b_mean, b_mean_sq = _mean(bias), _mean_sq(bias)
    if bias is not None and bias.size == 1 and layer.units and layer.units > 1:
        b_mean_sq = _mean_sq(bias)  # one shared bias: its square, in every unit
    out = mo.through_weights(
        x, layer.fan_in, w_mean, weight_second_moment(layer), mo.row_mean_sq(layer.weight, layer.fan_in, alpha, unit_stats), b_mean, b_mean_sq,
    )
    if layer.kind == g.ATTENTION:
        out_proj = next((t for role, t in layer.params.items() if "out_proj" in role and role.endswith("weight")), None)
        if out_proj is not None and out_proj.ndim == 2:
            gain = out_proj.shape[1] * out_proj.stats.mean_sq
            out = mo.Moments(out.q * gain, 0.0, out.signal * gain)
    return out


def _normalized_share(layer: g.Layer, x: mo.Moments) -> float:
    """The share of what a normalization divides by that depends on the input.

    BatchNorm divides each channel by its spread over the batch, which is input-dependent
    only; LayerNorm, GroupNorm and RMSNorm divide by the spread across units, which also holds
    the biases and the fixed per-unit offsets that random weights give.
    """
    if x.signal <= 0:
        return 0.0
    if g.is_batch_norm(layer):
        return 1.0
    return min(x.signal / x.q, 1.0) if x.q > 0 else 1.0


def _norm_divisor(layer: g.Layer, x: mo.Moments) -> float:
    if g.is_batch_norm(layer) and x.signal > 0:
        return x.signal
    spread = x.q if "rms" in layer.op.lower() else x.var
    return spread if spread > 0 else x.q


def _constants(layer: g.Layer, graph: g.ModelGraph, producers) -> list[tuple[int, g.Tensor]]:
    """The layer's constant operands, less a bias the loader already gave the layer before it."""
    owned = [graph.layers[p.name].bias for p in producers if p.name in graph.layers]
    return [(position, t) for position, t in sorted(layer.const_inputs.items()) if not any(t is b for b in owned if b is not None)]


def _constant_terms(layer: g.Layer, graph: g.ModelGraph, producers) -> tuple[float, float]:
    consts = _constants(layer, graph, producers)
    return sum(_mean(t) for _, t in consts), sum(_mean_sq(t) for _, t in consts)


def _attention_share(layer: g.Layer) -> float:
    """Σp² of attention weights over n keys at init: 1/n where the loader knows n, else the bound 1."""
    keys = layer.attrs.get("attention_keys")
    return 1.0 / keys if isinstance(keys, int) and keys > 0 else 1.0


def _through_arithmetic(layer: g.Layer, op: str, x: mo.Moments, producer, graph: g.ModelGraph) -> mo.Moments:
    """An elementwise op with one computed operand: a scale (Mul, Div) or a shift (Add, Sub)."""
    consts = _constants(layer, graph, [producer])
    if op == "neg":
        return mo.scale(x, -1.0)
    if not consts:
        return x
    position, t = consts[0]
    if not t.stats.finite_count:
        return x
    mean, mean_sq = _mean(t), _mean_sq(t)
    dynamic_first = position != 0
    if op == "mul":
        return mo.Moments(x.q * mean_sq, x.m * mean, x.signal * mean_sq)
    if op == "div":
        if not dynamic_first or mean_sq <= 0:
            return x  # c / x: not a scale
        inverse_sq = 1.0 / t.stats.min**2 if t.size == 1 and t.stats.min != 0 else 1.0 / mean_sq
        inverse = 1.0 / mean if t.size == 1 and mean != 0 else math.copysign(math.sqrt(inverse_sq), mean or 1.0)
        return mo.Moments(x.q * inverse_sq, x.m * inverse, x.signal * inverse_sq)
    sign = -1.0 if op == "sub" and dynamic_first else 1.0
    shifted = mo.add([x if not (op == "rsub" or (op == "sub" and not dynamic_first)) else mo.scale(x, -1.0)], sign * mean, mean_sq)
    return shifted


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
        inputs = [p.moments for p in producers] or [mo.Moments(1.0)]
        x = inputs[0]
        width_in = next((p.width for p in producers if p.width), None)
        s = LayerSignal(layer.name, layer.kind, layer.op, q_in=x.q, q_out=x.q, v_out=x.signal, m_in=x.m, m_out=x.m, v_in=x.signal, width=width_in)
        s.pooled = _is_global_pool(layer) or bool(producers and all(p.pooled for p in producers))
        ref = _dominant_anchor(layer, producers, anchor)
        out = x
        kind = layer.kind
        arithmetic = _ARITHMETIC.get(layer.op.split(".")[0].lower()) if not layer.is_weighted else None
        if layer.is_weighted and layer.weight.ndim >= 1:
            s.width = layer.units
            if kind == g.EMBEDDING:
                w = layer.weight.stats
                out = mo.Moments(_mean_sq(layer.weight), w.mean if w.finite_count else 0.0, _mean_sq(layer.weight))  # a row lookup: the input is indices
            elif kind == g.RNN or not layer.fan_in:
                s.assumed = f"{layer.op}: variance passed through"
                sig.unknown_ops.setdefault(layer.op, []).append(layer.name)
            else:
                out = _through_weighted(layer, x)
                fp = fingerprint(layer)
                s.init = fp.describe() if fp is not None else None
            if ref is None and out.signal > 0:
                ref = (out.signal, layer.name)
            s.forward_ratio = out.signal / ref[0] if ref else None
            s.forward_anchor = ref[1] if ref else None
            if layer.name in sig.folded_norm and out.q > 0:
                s.normalized_from = out.q
                out = mo.Moments(1.0, 0.0, min(out.signal / out.var, 1.0) if out.var > 0 else 0.0)
                ref = None
        elif kind == g.ACTIVATION:
            passed = mo.through_activation(layer.activation or "", x, _alpha(layer))
            if passed is None:
                s.assumed = f"activation {layer.activation or layer.op}: variance passed through"
                sig.unknown_ops.setdefault(layer.activation or layer.op, []).append(layer.name)
            else:
                out = passed[0]
        elif kind == g.NORM:
            gamma, beta = layer.params.get("weight"), layer.params.get("bias")
            kept = _normalized_share(layer, x)
            out = mo.Moments(_mean_sq(gamma, 1.0) + _mean_sq(beta, 0.0), _mean(beta), _mean_sq(gamma, 1.0) * kept)
            ref = None  # the chain is cut: the next weighted layer starts a new reference
        elif kind == g.ADD or (arithmetic in ("add", "sub") and len(producers) >= 2):
            const_mean, const_mean_sq = _constant_terms(layer, graph, producers)
            out = mo.add(inputs, const_mean, const_mean_sq)
        elif kind == g.MATMUL and any(p.probabilities for p in producers) and len(producers) == 2:
            # Attention: each output is a weighted average of the values, weights summing to one.
            # For n independent values it keeps their mean and 1/n of their variance; n is not
            # in the graph, so the bound Σp² <= 1 is used: attention never amplifies.
            values = next(p for p in producers if not p.probabilities) if not all(p.probabilities for p in producers) else producers[1]
            kept = _attention_share(layer)
            out = mo.Moments(values.moments.var * kept + values.m_out**2, values.m_out, values.v_out * kept)
            s.input_factors = [kept if p is values else values.q_out for p in producers]
            ref = anchor.get(values.name)
            ref = (ref[0] * kept, ref[1]) if ref is not None else None  # one step, not depth
        elif kind in (g.MUL, g.MATMUL) and len(producers) != 1:
            out = mo.product(inputs) if producers else mo.Moments(1.0)
            for t in layer.const_inputs.values():
                out = mo.Moments(out.q * _mean_sq(t, 1.0), out.m * _mean(t, 1.0), out.signal * _mean_sq(t, 1.0))
            if ref is not None and len(producers) > 1:
                # A product of two computed values (a GLU, attention) is one step, not depth:
                # carry the reference along so that the other factor's scale is not counted.
                carrier = max(producers, key=lambda p: p.q_out)
                ref = (ref[0] * math.prod(p.q_out for p in producers if p is not carrier), ref[1])
        elif arithmetic is not None and len(producers) == 1:
            out = _through_arithmetic(layer, arithmetic, x, producers[0], graph)
            if arithmetic in ("mul", "div"):
                s.input_factors = [out.q / x.q if x.q > 0 and out.q > 0 else 1.0]
        elif kind == g.MUL:
            out = x
            for t in layer.const_inputs.values():
                out = mo.Moments(out.q * _mean_sq(t, 1.0), out.m * _mean(t, 1.0), out.signal * _mean_sq(t, 1.0))
        elif kind == g.CONCAT:
            widths = [p.width or 1 for p in producers]
            total = sum(widths)
            if total:
                out = mo.Moments(
                    sum(w * p.q_out for w, p in zip(widths, producers)) / total,
                    sum(w * p.m_out for w, p in zip(widths, producers)) / total,
                    sum(w * p.v_out for w, p in zip(widths, producers)) / total,
                )
            s.width = sum(p.width for p in producers) if producers and all(p.width for p in producers) else width_in
        elif kind == g.SOFTMAX:
            # Weights that sum to one (docs/science.md §11): what they average keeps at most its
            # variance, whatever the scale of the logits. Not a signal: no reference passes on.
            out = mo.Moments(1.0, 0.0, 1.0)
            s.probabilities = True
            ref = None
        elif kind == g.OTHER:
            s.assumed = f"{layer.op}: variance passed through"
            sig.unknown_ops.setdefault(layer.op, []).append(layer.name)
        # PASSTHROUGH, POOL, OUTPUT: the moments pass through.
        if kind in (g.PASSTHROUGH, g.OTHER, g.POOL) and arithmetic is None and producers and any(p.probabilities for p in producers):
            s.probabilities = True  # a reshaped, masked or dropped-out softmax
            ref = None
        s.q_out, s.m_out, s.v_out = out.q, out.m, out.signal
        s.gain_fwd = s.q_out / x.q if x.q > 0 else None
        anchor[layer.name] = ref
        sig.layers[layer.name] = s

    for layer in layers:
        if layer.kind == g.MUL and len(layer.inputs) == 1 and layer.const_inputs:
            if any(nxt.kind == g.ADD for nxt in graph.downstream(layer, g.TRANSPARENT_KINDS | {g.OTHER})):
                sig.branch_gates.add(layer.name)
    sig.minor_branch = _minor_branches(graph, sig, layers)
    _backward(graph, sig, layers)
    if sig.unknown_ops:
        listed = ", ".join(f"{op} ({len(names)}x)" for op, names in sorted(sig.unknown_ops.items()))
        sig.notes.append(f"signal propagation passed the variance unchanged through ops it does not model: {listed}")
    fps = [(layer.name, fingerprint(layer)) for layer in layers if layer.is_weighted]
    unknown = [name for name, fp in fps if fp is not None and fp.status == "unrecognized"]
    if unknown:
        sig.notes.append(
            f"{len(unknown)} of {len(fps)} weighted layers match no init scheme (trained or custom weights?), e.g. layer {graph.label(unknown[0])}: "
            "init-scheme rules (IL201, IL203) do not apply to them; signal rules use their measured variance"
        )
    return sig


# A residual input whose input-dependent signal is below this share of the sum's is a minor branch.
MINOR_BRANCH_SHARE = 0.01


def _minor_branches(graph: g.ModelGraph, sig: Signal, layers: list[g.Layer]) -> set[str]:
    """Layers every one of whose output paths enters a residual sum beside a far larger input.

    Such a branch starts small (a zero or down-scaled last layer, attention over many keys, a
    narrow init in a wide stream): the skip carries the forward signal past it, so its own
    smallness is not a vanishing signal; its gradient arrives from the sum undiminished.
    """
    minor: set[str] = set()
    for layer in reversed(layers):
        consumers = graph.consumers(layer)
        if not consumers:
            continue
        s = sig.layers[layer.name]
        through_minor = []
        for consumer in consumers:
            if consumer.kind == g.ADD and len(consumer.inputs) >= 2:
                total = sig.layers[consumer.name].v_out
                through_minor.append(total > 0 and s.v_out < MINOR_BRANCH_SHARE * total)
            else:
                through_minor.append(consumer.name in minor)
        if all(through_minor):
            minor.add(layer.name)
    return minor


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
            return [layer.fan_out * weight_second_moment(layer) / s.normalized_from]
        return [layer.fan_out * weight_second_moment(layer)]
    if kind == g.MUL and _is_branch_gate(layer, sig):
        return [1.0]
    if s.input_factors is not None:
        return s.input_factors
    if kind == g.ACTIVATION:
        found = mo.activation_moments(layer.activation or "", s.q_in, s.m_in, _alpha(layer))
        return [found[2] if found is not None else 1.0]
    if kind == g.NORM:
        gamma = layer.params.get("weight")
        divisor = _norm_divisor(layer, mo.Moments(s.q_in, s.m_in, s.v_in))
        return [_mean_sq(gamma, 1.0) / divisor if divisor > 0 else 1.0]
    if kind in (g.MUL, g.MATMUL):
        qs = [sig.layers[p].q_out if p in sig.layers else 1.0 for p in layer.inputs]
        const = math.prod(_mean_sq(t, 1.0) for t in layer.const_inputs.values()) if kind == g.MUL else 1.0
        if len(qs) <= 1:
            return [const]
        return [const * math.prod(q for j, q in enumerate(qs) if j != i) for i in range(len(qs))]
    return [1.0]
