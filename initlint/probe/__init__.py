"""The dynamic probe: run the model for a few seeded forward + backward passes, measure its signal
per layer, and confirm or refute what the static rules predicted (docs/science.md §8, §10).

Static rules predict; the probe measures. It runs on a private copy of the model (the user's
object is never touched), on CPU unless asked otherwise, with every seed fixed. torch is
imported only when a probe actually runs, so the ONNX-only static path never needs it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from ..engine import Severity, run_rules
from ..graph import ModelGraph

MODES = ("auto", "always", "never")
# --probe auto leaves larger models alone: the probe holds a copy of the weights plus their
# gradients (about 3x the model in memory) and a forward + backward per seed.
AUTO_MAX_PARAMETERS = 300_000_000


@dataclass
class ProbeOptions:
    seed: int = 0
    timeout_s: float = 60.0
    train_steps: int = 0
    plot: str | None = None  # a .png or .svg path for the per-layer signal plot
    device: str = "cpu"


def should_run(mode: str, graph: ModelGraph, findings) -> bool:
    """auto: only when a static finding at warning or above exists; always: every model."""
    if mode == "never" or not graph.has_structure:
        return False
    return mode == "always" or any(f.severity >= Severity.WARNING for f in findings)


def run_probe(graph: ModelGraph, input_shapes=None, input_dtype=None, options: ProbeOptions | None = None) -> dict:
    """Run and measure; always returns a dict whose ``status`` is ok, timeout or unavailable.

    With status ok (the JSON ``probe`` field of a target): ``seeds``, ``device``, ``loss``
    (cross_entropy or mse) and ``loss_value``, ``input_shapes``; ``layers``, one row per
    weighted layer in execution order (``layer``, ``weight``, ``kind``, ``units``, output
    ``mean``/``std``/``second_moment``/``weight_second_moment`` (bias removed), input-gradient
    ``grad_norm``/``grad_rms``, ``weight_grad_norm``, ``grad_to_weight``, ``dead_fraction``,
    and ``forward_ratio``/``backward_ratio`` relative to the first / last layer), each the
    median over the seeds; the model-level ``forward_ratio`` and ``gradient_ratio`` with the
    layers they span; ``measured_parameters``, ``zero_gradient_parameters`` and
    ``frozen_parameters``; ``train`` (with --train-steps: optimizer, loss before and after,
    whether it moved); ``elapsed_s``.
    """
    options = options or ProbeOptions()
    start = time.perf_counter()
    try:
        import torch
    except ImportError:
        return {"status": "unavailable", "reason": "the probe needs PyTorch, which is not installed (pip install 'initlint[torch]')"}
    from .measure import Budget, Progress, ProbeTimeout, measure
    from .model import ProbeUnavailable, prepare

    notes = []
    device = options.device
    if device != "cpu" and not _device_available(torch, device):
        notes.append(f"device {device!r} is not available here; the probe ran on cpu")
        device = "cpu"
    progress = Progress(graph.target, start)
    budget = Budget(options.timeout_s, start)
    try:
        with _seeded(torch, options.seed):
            runnable = prepare(graph, dict(input_shapes or {}), input_dtype, device)
            notes.extend(runnable.notes)
            measured = measure(graph, runnable, options.seed, budget, options.train_steps, progress)
        status, reason = "ok", None
    except ProbeUnavailable as exc:
        measured, status, reason = {}, "unavailable", str(exc)
    except ProbeTimeout as exc:
        measured, status, reason = {}, "timeout", str(exc)
    except Exception as exc:  # the model raised while running: the static findings still stand
        if os.environ.get("INITLINT_DEBUG"):
            raise
        detail = " ".join(str(exc).split())[:240]
        measured, status, reason = {}, "unavailable", f"running the model failed ({type(exc).__name__}: {detail})"
    finally:
        progress.done()
    result = {"status": status, "reason": reason, "device": device, **measured, "notes": notes}
    result["elapsed_s"] = round(time.perf_counter() - start, 3)
    return _rounded(result)


def _device_available(torch, device: str) -> bool:
    if device.startswith("cuda"):
        return torch.cuda.is_available()
    if device == "mps":
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return False


class _seeded:
    """Fix torch's global seed for the probe and put the caller's RNG state back afterwards."""

    def __init__(self, torch, seed: int):
        self.torch, self.seed = torch, seed

    def __enter__(self):
        self.state = self.torch.random.get_rng_state()
        self.torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        self.torch.random.set_rng_state(self.state)
        return False


def _rounded(value):
    """Six significant digits: the same command prints the same numbers; inf/nan become None."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def probe_target(graph: ModelGraph, result, options) -> None:
    """The probe stage of lint_graph: run it when the mode asks, confirm the static findings,
    run the probe-stage rules (with --probe always) and draw the plot."""
    from ..runner import selected_rules
    from .confirm import confirm_findings

    probe_options: ProbeOptions = getattr(options, "probe_options", None) or ProbeOptions()
    wants_plot = bool(probe_options.plot) and options.probe == "auto" and graph.has_structure
    if not (should_run(options.probe, graph, result.findings) or wants_plot):  # a plot needs the probe
        return
    parameters = sum(t.size for t in graph.tensors.values())
    if options.probe == "auto" and parameters > AUTO_MAX_PARAMETERS:
        why = f"the model has {parameters:,} parameters, more than --probe auto runs ({AUTO_MAX_PARAMETERS:,}); use --probe always to run it"
        result.notes.append(f"the dynamic probe did not run: {why}")
        confirm_findings(result.findings, None, why)
        return
    probe = run_probe(graph, options.load.input_shapes, options.load.input_dtype, probe_options)
    result.probe = probe
    result.notes.extend(probe.pop("notes", []))
    if probe["status"] != "ok":
        result.notes.append(f"the dynamic probe did not run to the end: {probe['reason']}")
        confirm_findings(result.findings, None, probe["reason"])
        return
    confirm_findings(result.findings, probe)
    result.notes.append(summary_line(probe))
    if options.probe == "always":
        graph.metadata["probe"] = probe
        run = run_rules(graph, selected_rules(options, result.target), options.rule_settings, stage="probe")
        result.findings.extend(run.findings)
        for code in {rule.code for rule in selected_rules(options, result.target) if rule.stage == "probe"}:
            result.rules[code] = f"failed: {run.failures[code]}" if code in run.failures else "ran"
        for code, error in run.failures.items():
            result.notes.append(f"{code} failed and was skipped: {error}")
    if probe_options.plot:
        from ..plot import plot_probe

        try:
            plot_probe(probe, result.findings, probe_options.plot, title=graph.target)
        except Exception as exc:
            result.notes.append(f"the plot could not be written to {probe_options.plot} ({type(exc).__name__}: {exc})")


def summary_line(probe: dict) -> str:
    """One line for the text report: what the probe ran and what it measured."""

    def fmt(value) -> str:
        return "n/a" if value is None else f"{value:.3g}"

    shapes = ", ".join("x".join(str(d) for d in shape) for shape in probe.get("input_shapes", {}).values())
    line = (
        f"probe: {len(probe.get('seeds', []))} seeded batches of {shapes or '?'} ({probe.get('loss')}, {probe.get('device')}): "
        f"gradient ratio first/last {fmt(probe.get('gradient_ratio'))}, forward ratio last/first {fmt(probe.get('forward_ratio'))}, "
        f"{len(probe.get('frozen_parameters', []))} frozen parameters, {probe.get('elapsed_s', 0):.1f} s"
    )
    train = probe.get("train")
    if train:
        moved = "moved" if train["moved"] else "did not move"
        line += f"; the loss {moved} in {train['steps']} {train['optimizer']} steps ({fmt(train['loss_start'])} -> {fmt(train['loss_end'])})"
    return line


def measurement_of(graph: ModelGraph) -> dict | None:
    """The probe's measurement for probe-stage rules; None when the probe did not run to the end."""
    probe = graph.metadata.get("probe")
    return probe if probe and probe.get("status") == "ok" else None


@dataclass
class GradientFlow:
    """The whole-model numbers the gradient-flow rules (IL401, IL402) judge, read off a measurement."""

    gradient: float | None  # input-gradient norm at the first weighted layer over that at the last
    forward: float | None  # forward variance at the last weighted layer over that at the first
    first: str | None
    last: str | None
    gradient_first: str | None  # the layers the gradient ratio was taken between
    gradient_last: str | None
    location: str  # the first layer's weight: where a finding is reported
    seeds: int

    @property
    def evidence(self) -> dict:
        return {"gradient_ratio": self.gradient, "forward_ratio": self.forward, "first_layer": self.first, "last_layer": self.last}


def gradient_flow(probe: dict) -> GradientFlow:
    first, last = probe.get("first_layer"), probe.get("last_layer")
    row = next((r for r in probe.get("layers", []) if r["layer"] == first), None)
    return GradientFlow(
        gradient=probe.get("gradient_ratio"),
        forward=probe.get("forward_ratio"),
        first=first,
        last=last,
        gradient_first=probe.get("gradient_first_layer") or first,
        gradient_last=probe.get("gradient_last_layer") or last,
        location=(row.get("weight") if row else None) or first or "model",
        seeds=len(probe.get("seeds", [])),
    )
