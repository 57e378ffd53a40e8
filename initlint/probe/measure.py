"""Measure a model's signal at initialization: a few seeded forward + backward passes with hooks
on every weighted layer (docs/science.md §8).

Per weighted layer and pass: the output's mean, std and second moment, with and without the
bias (forward signal), the input-dependent variance of its output and of its input (the layer's
own gain), the norm and RMS of the loss gradient with respect to the layer's input
(backward signal, the activation gradient),
the weight-gradient norm and its ratio to the weight norm, and the share of units of the
ReLU-family activation after the layer that are inactive for every sample, and the share of
pre-activations beyond the saturation point of a tanh (|z| > 2) or sigmoid (|z| > 4) after it. Each number is the
median over the seeds, so one unlucky batch does not decide. The numbers themselves are computed
from each tensor by initlint.probe.statistics; this module runs the passes and puts them together.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

from .. import graph as g
from ..graph import ModelGraph
from ..measurement import UNFREEZE_STEPS, LayerMeasurement, ProbeMeasurement, median
from ..prediction import Prediction, Quantity
from ..verdict import wants_more_seeds
from .model import Runnable, private_copy
from .statistics import activation_input, channel_variance, duplicate_fraction, first_output, inactive_fraction, output_stats

# One seed first; more (up to this many) only where a measurement is near a threshold.
MAX_SEEDS = 3
# The whole-model gradient ratio's bounds (IL401, IL402; docs/science.md §8), in amplitude: a
# one-seed ratio within a quarter decade (1.8x) of one gets the other seeds too. Seeds move a
# deep network's whole-model ratio by a few percent (ResNet-50: 35.7 to 36.6).
GRADIENT_BOUNDS = (1e-3, 70.0)
GRADIENT_NEAR_DECADES = 0.25
# Optimizer for the frozen-parameter check and --train-steps: plain SGD, because Adam's
# per-parameter normalization trains many badly initialized nets that SGD cannot (docs/science.md §10).
SGD_LR = 0.01
TRAIN_LR = 0.1  # --train-steps: the usual plain-SGD rate, so a trainable net visibly moves in a few steps
LOSS_MOVED = 0.01  # relative change of the loss that counts as "the loss moved"
# Pre-activation magnitude at which these activations saturate (docs/science.md §8).
SATURATION_AT = {"tanh": 2.0, "sigmoid": 4.0}


class ProbeTimeout(Exception):
    pass



@dataclass
class Budget:
    seconds: float
    start: float

    def check(self, what: str) -> None:
        if time.perf_counter() - self.start > self.seconds:
            raise ProbeTimeout(f"the probe ran out of its {self.seconds:g} s budget during {what}")

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class Progress:
    """One self-overwriting line on stderr, only on a TTY and only once the probe runs > 1 s."""

    def __init__(self, target: str, start: float):
        self.target, self.start, self.shown = target, start, False

    def __call__(self, what: str) -> None:
        if sys.stderr.isatty() and time.perf_counter() - self.start > 1.0:
            sys.stderr.write(f"\rinitlint: probing {self.target}: {what}\033[K")
            sys.stderr.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def first_tensor(output):
    """The tensor a loss is computed on: logits of a model-output object, else the first tensor."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    values = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    for value in values:  # the first floating-point one: scikit-learn exports return the label first
        found = first_tensor(value)
        if found is not None and found.is_floating_point():
            return found
    return None


def standard_loss(output, seed: int):
    """Cross-entropy to random labels for classifier-shaped outputs [N, C], else MSE to random targets."""
    import torch
    import torch.nn.functional as F

    out = first_tensor(output)
    if out is None or not out.is_floating_point():
        raise RuntimeError("the model's output has no floating-point tensor to compute a loss on")
    gen = torch.Generator().manual_seed(10_000 + seed)
    out32 = out.float()
    if out.ndim == 2 and out.shape[1] >= 2:
        labels = torch.randint(0, out.shape[1], (out.shape[0],), generator=gen).to(out.device)
        return F.cross_entropy(out32, labels), "cross_entropy"
    target = torch.randn(out.shape, generator=gen).to(out.device)
    return F.mse_loss(out32, target), "mse"


@dataclass
class _Watched:
    layer: g.Layer
    module_name: str
    unit_axis: int
    dead_module: str | None  # the ReLU-family activation module after it, when it is a module
    dead_from_output: bool  # no module, but the activation directly follows: judge z <= 0
    saturation_at: float | None = None  # |z| beyond which the tanh/sigmoid after it saturates


def _watch_list(graph: ModelGraph, runnable: Runnable) -> list[_Watched]:
    watched, seen_modules = [], set()
    for layer in graph.weighted_layers():
        module_name = runnable.layer_modules.get(layer.name)
        if module_name is None or module_name in seen_modules:
            continue
        seen_modules.add(module_name)
        unit_axis = 1 if layer.kind in (g.CONV, g.CONV_TRANSPOSE) else -1
        dead_module, dead_from_output = None, False
        after = graph.downstream(layer, through=g.TRANSPARENT_KINDS | {g.NORM})
        if len(after) == 1 and after[0].kind == g.ACTIVATION and after[0].activation in g.RELU_FAMILY:
            # Straight into the activation, a unit is inactive where z <= 0: judged in the layer's
            # own hook. Through a normalization, the activation's output has to be watched.
            dead_from_output = graph.activation_after(layer) is after[0]
            if not dead_from_output:
                dead_module = runnable.layer_modules.get(after[0].name)
        following = graph.activation_after(layer)
        saturation_at = SATURATION_AT.get(following.activation) if following is not None else None
        watched.append(_Watched(layer, module_name, unit_axis, dead_module, dead_from_output, saturation_at))
    return watched


def _unit_checks(predictions) -> dict[str, set[str]]:
    """Per layer, the costlier per-unit checks a finding asks for (duplicate units, non-finite outputs)."""
    wanted: dict[str, set[str]] = {}
    for prediction in predictions:
        if prediction.quantity in (Quantity.DUPLICATE_UNIT_FRACTION, Quantity.NON_FINITE_FRACTION):
            wanted.setdefault(prediction.to_layer, set()).add(prediction.quantity.value)
    return wanted


def _one_pass(torch, runnable: Runnable, watched: list[_Watched], seed: int, checks: dict | None = None) -> tuple:
    """Forward + backward on the batch of ``seed``; per-layer numbers and per-parameter gradients."""
    module = runnable.module
    modules = dict(module.named_modules())
    rows: dict[str, dict] = {w.layer.name: {} for w in watched}
    handles = []

    def forward_hook(w: _Watched):
        def hook(_mod, _inp, output):
            out = first_output(output)
            row = rows[w.layer.name]
            if out is None or "second_moment" in row or not out.is_floating_point():
                return  # a module called twice (shared weights): its first call is measured
            inp = activation_input(torch, _inp)
            with torch.no_grad():
                row.update(output_stats(torch, out.detach().float(), _mod, w.unit_axis, w.dead_from_output))
                if inp is not None:
                    row["layer_input_variance"] = channel_variance(inp.detach().float(), w.unit_axis)
                if w.saturation_at is not None:
                    row["saturated_fraction"] = float((out.detach().abs() > w.saturation_at).float().mean())
                wanted = (checks or {}).get(w.layer.name, ())
                if "non_finite_fraction" in wanted:
                    row["non_finite_fraction"] = float((~torch.isfinite(out.detach())).float().mean())
                if "duplicate_unit_fraction" in wanted:
                    row["duplicate_fraction"] = duplicate_fraction(torch, out.detach(), w.unit_axis)
            # Backward signal: the loss gradient with respect to the layer's input. Unlike the
            # gradient at its output, it does not depend on the scale of a weight that feeds a
            # normalization (BatchNorm divides that scale out forward and multiplies it in backward).
            if out.requires_grad:

                def out_hook(grad, row=row):
                    row["grad_out_norm"] = float(grad.detach().float().norm())

                out.register_hook(out_hook)
            if inp is not None and inp.requires_grad:
                numel = inp.numel()

                def grad_hook(grad, row=row, numel=numel):
                    row["grad_norm"] = float(grad.detach().float().norm())
                    row["grad_rms"] = row["grad_norm"] / math.sqrt(max(numel, 1))

                inp.register_hook(grad_hook)

        return hook

    def dead_hook(w: _Watched):
        def hook(_mod, _inp, output):
            out = first_output(output)
            if out is not None and "dead_fraction" not in rows[w.layer.name]:
                rows[w.layer.name].update(inactive_fraction(torch, out.detach(), w.unit_axis))

        return hook

    try:
        for w in watched:
            handles.append(modules[w.module_name].register_forward_hook(forward_hook(w)))
            if w.dead_module is not None and w.dead_module in modules:
                handles.append(modules[w.dead_module].register_forward_hook(dead_hook(w)))
        torch.manual_seed(seed)
        args, kwargs = runnable.make_inputs(seed)
        # Float inputs carry a gradient, so the first layer's input gradient exists (a clone, so
        # that a model which edits its input in place still runs).
        differentiable = lambda v: v.requires_grad_(True).clone() if isinstance(v, torch.Tensor) and v.is_floating_point() else v  # noqa: E731
        args, kwargs = tuple(differentiable(v) for v in args), {k: differentiable(v) for k, v in kwargs.items()}
        module.zero_grad(set_to_none=True)
        output = module(*args, **kwargs)
        loss, loss_name = standard_loss(output, seed)
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    grads = {name: p.grad for name, p in module.named_parameters() if p.requires_grad and p.grad is not None}
    logits = first_tensor(output)
    shape = {"classes": int(logits.shape[1]) if logits is not None and logits.ndim == 2 else None,
             "output_std": float(logits.detach().float().std()) if logits is not None and logits.numel() > 1 else None}
    return rows, grads, float(loss.detach()), loss_name, shape


def _ratio(num, den) -> float | None:
    if num is None or den is None:
        return None
    if den == 0:
        return math.inf if num > 0 else None
    return num / den


_MEASURED = ("units", "mean", "std", "second_moment", "weight_second_moment", "output_variance", "layer_input_variance", "grad_norm", "grad_rms", "grad_out_norm",
             "weight_grad_norm", "grad_to_weight", "dead_fraction", "rarely_active_fraction", "saturated_fraction", "duplicate_fraction", "non_finite_fraction", "common_component")
# What verdicts are judged on, kept per seed.
_PER_SEED = ("output_variance", "layer_input_variance", "grad_norm", "grad_out_norm", "dead_fraction", "rarely_active_fraction", "saturated_fraction", "duplicate_fraction", "non_finite_fraction",
             "common_component")


def measure(graph: ModelGraph, runnable: Runnable, seed: int, budget: Budget, train_steps: int = 0, progress=None,
            predictions: tuple[Prediction, ...] = ()) -> ProbeMeasurement:
    """One seeded pass, then more (up to MAX_SEEDS) only where a prediction or the whole-model
    gradient ratio is near its threshold. When the budget runs out after a finished pass, what
    was measured is kept (a one-seed result is a result); before it, ProbeTimeout."""
    import torch

    watched = _watch_list(graph, runnable)
    if not watched:
        raise RuntimeError("no weighted layer of the model could be watched")
    budget.check("preparing the model")
    # named_parameters, not get_parameter: a TorchScript module has no get_parameter.
    params = dict(runnable.module.named_parameters())
    by_user_name = {user: params[inner] for inner, user in runnable.param_names.items()}
    per_seed, zero_grads, losses, loss_name, seeds, shapes = [], None, [], "", [], []
    measured_params: set[str] = set()
    seed_note = batch_note = None
    with torch.no_grad():
        weight_norms = {name: float(p.detach().float().norm()) for name, p in by_user_name.items()}
    for i in range(MAX_SEEDS):
        s = seed + i
        if i > 0:
            partial = _assemble(graph, watched, per_seed, seeds, losses, loss_name, shapes, runnable)
            if not _wants_more(partial, predictions):
                break
            per_pass = budget.elapsed / i
            if budget.elapsed + per_pass > budget.seconds:
                seed_note = f"{i} seed(s): another pass ({per_pass:.1f} s) would not fit the {budget.seconds:g} s budget"
                break
        if progress:
            progress(f"seed {i + 1}")
        try:
            rows, grads, loss, loss_name, shape = _one_pass(torch, runnable, watched, s, _unit_checks(predictions))
        except Exception as exc:
            if i > 0 or runnable.exact_inputs is None:
                raise
            # The model refuses the widened batch (a size fixed in its code): the example as given.
            runnable.make_inputs, runnable.input_shapes = runnable.exact_inputs
            runnable.exact_inputs = None
            batch_note = f"the model refused a batch wider than its example's ({type(exc).__name__}): the probe used the example's shape"
            rows, grads, loss, loss_name, shape = _one_pass(torch, runnable, watched, s, _unit_checks(predictions))
        losses.append(loss)
        shapes.append(shape)
        seeds.append(s)
        # One fused norm per gradient; a zero norm is then checked exactly (a norm can underflow).
        user_grads = {user: grads[inner] for inner, user in runnable.param_names.items() if inner in grads}
        with torch.no_grad():
            norms = dict(zip(user_grads, (float(n) for n in torch._foreach_norm(list(user_grads.values()))))) if user_grads else {}
        for w in watched:
            weight = w.layer.weight
            if weight is not None and weight.name in norms:
                rows[w.layer.name]["weight_grad_norm"] = norms[weight.name]
                rows[w.layer.name]["grad_to_weight"] = _ratio(norms[weight.name], weight_norms.get(weight.name))
        per_seed.append(rows)
        measured_params |= set(user_grads)
        exact_zero = {user for user, norm in norms.items() if norm == 0 and not bool(torch.count_nonzero(user_grads[user]))}
        zero_grads = exact_zero if zero_grads is None else zero_grads & exact_zero
        if budget.elapsed > budget.seconds:
            seed_note = f"{len(seeds)} seed(s): the {budget.seconds:g} s budget ran out"
            break

    result = _assemble(graph, watched, per_seed, seeds, losses, loss_name, shapes, runnable)
    result.measured_parameters = sorted(measured_params)
    result.zero_gradient_parameters = sorted(zero_grads or ())
    result.seed_note = seed_note
    if batch_note:
        result.notes.append(batch_note)
    try:
        frozen = _still_frozen(torch, runnable, sorted(zero_grads or ()), seeds[0], budget) if zero_grads else []
        by_design = set(_frozen_whatever_the_init(torch, runnable, frozen, seeds[0], budget)) if frozen else set()
        result.frozen_parameters = [name for name in frozen if name not in by_design]
        if by_design:
            names = sorted(by_design)
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            result.notes.append(
                f"{len(names)} parameter(s) get no gradient whatever their initial values ({shown}): the model's "
                "structure feeds them a constant (e.g. an input that is zero by construction), not their init"
            )
        if train_steps > 0:
            if progress:
                progress(f"{train_steps} SGD steps")
            result.train = _train(torch, runnable, seeds[0], train_steps, budget)
    except ProbeTimeout as exc:
        # The passes stand; a frozen-parameter check cut short confirms nothing.
        result.frozen_parameters = []
        result.frozen_checked = False
        result.notes.append(f"{exc}; the measured passes are kept")
    return result


def _wants_more(partial: ProbeMeasurement, predictions) -> bool:
    gradient = partial.gradient_ratio
    if gradient is not None and gradient > 0 and any(abs(math.log10(gradient / bound)) < GRADIENT_NEAR_DECADES for bound in GRADIENT_BOUNDS):
        return True
    return wants_more_seeds(list(predictions), partial)


def _assemble(graph, watched, per_seed, seeds, losses, loss_name, shapes, runnable) -> ProbeMeasurement:
    layers, by_seed = [], {}
    for w in watched:
        name = w.layer.name
        values = {key: median([rows[name].get(key) for rows in per_seed]) for key in _MEASURED}
        if values["units"] is not None:
            values["units"] = int(values["units"])
        layers.append(LayerMeasurement(name, w.layer.weight.name if w.layer.weight is not None else None, w.layer.kind, **values))
        by_seed[name] = {key: [rows[name].get(key) for rows in per_seed] for key in _PER_SEED}
    summary = _summarize(graph, layers, per_seed, watched)
    return ProbeMeasurement(
        status="ok",
        seeds=list(seeds),
        loss=loss_name,
        loss_value=median(losses),
        classes=shapes[0]["classes"] if shapes else None,
        output_std=median([sh["output_std"] for sh in shapes]),
        output_non_finite=bool(shapes) and all(sh["output_std"] is not None and not math.isfinite(sh["output_std"]) for sh in shapes),
        input_shapes=runnable.input_shapes,
        layers=layers,
        per_seed=by_seed,
        **summary,
    )


def _summarize(graph, layers: list[dict], per_seed: list[dict], watched: list[_Watched]) -> dict:
    """Forward ratio: the second moment of the weights' part of the output (bias removed) at
    the last over the first weighted layer; gradient ratio: the norm of the loss gradient with
    respect to the first weighted layer's input over that of the last (docs/science.md §8, whose
    thresholds and measurements — 3.6e-5 at ReLU + Xavier depth 30, ≈48 for ResNet-50 — are
    of norms, not of per-element RMS). An exactly zero signal at either end is left out. Layers whose weights
    are all zero carry no signal by construction (a zero head, a LoRA B) and are left out; an
    exactly-zero gradient or signal is the frozen-parameter check's business, not a ratio."""
    signal = [w.layer.name for w in watched if w.layer.weight is not None and not w.layer.weight.stats.all_zero]
    forward, backward, gradient_ends = [], [], (None, None)
    for rows in per_seed:
        q = [(n, rows[n].get("weight_second_moment")) for n in signal if rows[n].get("weight_second_moment") is not None]
        d = [(n, rows[n].get("grad_norm")) for n in signal if rows[n].get("grad_norm") is not None]
        if len(q) >= 2 and q[0][1] > 0 and q[-1][1] > 0:
            forward.append(_ratio(q[-1][1], q[0][1]))
        if len(d) >= 2 and d[0][1] > 0 and d[-1][1] > 0:
            backward.append(_ratio(d[0][1], d[-1][1]))
            gradient_ends = (d[0][0], d[-1][0])
    first_q = next((r.weight_second_moment for r in layers if r.layer in signal and r.weight_second_moment), None)
    last_g = next((r.grad_norm for r in reversed(layers) if r.layer in signal and r.grad_norm), None)
    for row in layers:  # per layer, relative to the ends, for the table and the plot
        row.forward_ratio = _ratio(row.weight_second_moment, first_q)
        row.backward_ratio = _ratio(row.grad_norm, last_g)
    return {
        "first_layer": signal[0] if signal else None,
        "last_layer": signal[-1] if signal else None,
        "forward_ratio": median(forward),
        "gradient_ratio": median(backward),
        # The first layer whose input gradient exists (an embedding reads token ids, not a value).
        "gradient_first_layer": gradient_ends[0],
        "gradient_last_layer": gradient_ends[1],
    }


def _still_frozen(torch, runnable: Runnable, candidates: list[str], seed: int, budget: Budget) -> list[str]:
    """Which exactly-zero gradients stay exactly zero after SGD steps on a copy (docs/science.md §8)."""
    module = private_copy(runnable.module)
    inner_of = {user: inner for inner, user in runnable.param_names.items()}
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=SGD_LR)
    args, kwargs = runnable.make_inputs(seed)
    frozen = list(candidates)
    for _ in range(UNFREEZE_STEPS):
        if not frozen:
            break
        budget.check("the frozen-parameter check")
        optimizer.zero_grad(set_to_none=True)
        standard_loss(module(*args, **kwargs), seed)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        standard_loss(module(*args, **kwargs), seed)[0].backward()
        still = []
        for user in frozen:
            grad = dict(module.named_parameters())[inner_of[user]].grad
            if grad is not None and not bool(torch.count_nonzero(grad)):
                still.append(user)
        frozen = still
    return frozen


def _frozen_whatever_the_init(torch, runnable: Runnable, frozen: list[str], seed: int, budget: Budget) -> list[str]:
    """Which of the ``frozen`` parameters still get an exactly zero gradient when every parameter
    is redrawn at random (no zero, no constant tensor left): their freeze comes from the model's
    structure (DETR's first decoder layer reads values that are zero by construction), and no
    init would change it -- not an init finding."""
    budget.check("the frozen-parameter check")
    module = private_copy(runnable.module)
    gen = torch.Generator().manual_seed(seed + 7919)
    with torch.no_grad():
        for param in module.parameters():
            if not param.is_floating_point():
                continue
            fan_in = max(param[0].numel(), 1) if param.ndim >= 2 else 1
            scale = fan_in**-0.5 if param.ndim >= 2 else 0.1
            param.copy_(torch.randn(param.shape, generator=gen, dtype=param.dtype).to(param.device) * scale)
    args, kwargs = runnable.make_inputs(seed)
    standard_loss(module(*args, **kwargs), seed)[0].backward()
    inner_of = {user: inner for inner, user in runnable.param_names.items()}
    params = dict(module.named_parameters())
    return [
        user for user in frozen
        if params[inner_of[user]].grad is None or not bool(torch.count_nonzero(params[inner_of[user]].grad))
    ]


def _train(torch, runnable: Runnable, seed: int, steps: int, budget: Budget) -> dict:
    module = runnable.module
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=TRAIN_LR)
    args, kwargs = runnable.make_inputs(seed)
    losses = []
    for _ in range(steps + 1):
        budget.check("the training steps")
        optimizer.zero_grad(set_to_none=True)
        loss = standard_loss(module(*args, **kwargs), seed)[0]
        losses.append(float(loss.detach()))
        if len(losses) > steps:
            break
        loss.backward()
        optimizer.step()
    start, end = losses[0], losses[-1]
    change = (start - end) / abs(start) if start else 0.0
    return {
        "optimizer": f"SGD(lr={TRAIN_LR}, momentum=0)",
        "steps": steps,
        "loss_start": start,
        "loss_end": end,
        "relative_decrease": change if math.isfinite(change) else None,
        "moved": bool(math.isfinite(change) and change > LOSS_MOVED),
    }
