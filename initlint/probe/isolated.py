"""The probe in a child process with hard limits (initlint.isolation): what the model does while
it runs -- loop, sleep, allocate -- ends at the probe's time limit and memory cap, and a result
that does not arrive becomes a ``timeout`` or ``unavailable`` measurement with the reason.

The child reads the model again from its target (a file or a ``module:callable`` spec) with the
same load options; a spec's weights are sent from this process, since calling the spec again
draws a new initialization. ``--probe-timeout`` covers the whole stage: the child's start (a
fresh interpreter importing torch, and reading the model) counts against it, and what is left
is the child's own budget, checked between passes, so that a probe that runs out of time still
sends what it measured; past that the child is killed.
``INITLINT_PROBE_INPROCESS=1`` runs the probe in this process instead (faster; the time limit
is then only checked between passes) -- the test suite uses it where speed matters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

from ..graph import ModelGraph
from ..loaders import is_spec
from ..isolation import memory_cap, report_started, run_isolated
from ..measurement import ProbeMeasurement
from ..options import ProbeOptions

# Past the time limit, the child's own budget check (between passes) gets this long to end
# cleanly and send what it measured before it is killed.
GRACE_S = 2.0
# Imported before the memory cap is set, so their mappings are not charged to the model.
PRELOAD = ("torch", "initlint.probe", "initlint.probe.measure", "initlint.probe.model", "initlint.loaders")


# What one weighted layer's activations may hold during a pass: its output at the probe's widest
# batch (8 images of 3x224x224, 1.2 M elements) in float32, with the copies autograd keeps around
# it (normalization, activation, attention scores: 8x). Measured: ViT-B/16 (74 weighted layers,
# 87 M parameters) peaks near 3.6 GiB at 8x3x224x224, past a cap set by its weights alone.
ACTIVATION_BYTES_PER_LAYER = 8 * 4 * 8 * 3 * 224 * 224


def activation_allowance(graph: ModelGraph) -> int:
    return ACTIVATION_BYTES_PER_LAYER * sum(1 for _ in graph.weighted_layers())


def in_process() -> bool:
    return os.environ.get("INITLINT_PROBE_INPROCESS", "") not in ("", "0")


def run_probe_isolated(
    target: str,
    load_options,
    graph: ModelGraph,
    input_shapes,
    input_dtype,
    options: ProbeOptions,
    predictions,
) -> ProbeMeasurement:
    """Probe ``target`` (already read into ``graph`` here) in a child process."""
    state = None
    module = graph.metadata.get("module")
    if is_spec(target) and module is not None and hasattr(module, "state_dict"):
        try:
            state = {name: value.detach().cpu() for name, value in module.state_dict().items()}
        except Exception as exc:
            return ProbeMeasurement("unavailable", f"the model's weights could not be sent to the probe's process ({type(exc).__name__}: {exc})")
    model_bytes = sum(t.size * _itemsize(t.dtype) for t in graph.tensors.values())
    cap = memory_cap(model_bytes, activation_bytes=activation_allowance(graph))
    outcome = run_isolated(
        probe_in_child,
        target, load_options, state, input_shapes, input_dtype, options, tuple(predictions), time.time() + options.timeout_s,
        timeout_s=options.timeout_s + GRACE_S,
        memory_bytes=cap,
        preload=PRELOAD,
        # GPU drivers reserve far more address space than they use: watch resident memory only.
        limit_address_space=options.device == "cpu",
    )
    if outcome.ok:
        return outcome.value
    if outcome.kind == "timeout":
        where = "while the model ran" if outcome.startup_s is not None else "before the model was ready (starting the probe's process and reading the model again)"
        reason = f"the probe was stopped at its {options.timeout_s:g} s time limit (--probe-timeout) {where}"
        return ProbeMeasurement("timeout", reason)
    if outcome.kind == "memory":
        return ProbeMeasurement("unavailable", f"the probe was stopped: it {outcome.reason}")
    return ProbeMeasurement("unavailable", f"the probe's process failed: {outcome.reason}")


def probe_in_child(target, load_options, state, input_shapes, input_dtype, options, predictions, deadline: float) -> ProbeMeasurement:
    """In the child: read the model again (quietly: its warnings were shown by the parent), put
    the parent's weights in, say the setup is done, and probe in the time left to ``deadline``
    (wall-clock seconds, as time.time())."""
    from ..loaders import load
    from . import run_probe

    with _quiet_stderr():
        graph = load(target, load_options)
    if state is not None:
        module = graph.metadata.get("module")
        try:
            module.load_state_dict(state, strict=True)
        except Exception as exc:  # the spec built a different model the second time
            return ProbeMeasurement("unavailable", f"calling the spec again built a different model, so the probe cannot measure the one linted ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")
    report_started()
    options = dataclasses.replace(options, timeout_s=max(deadline - time.time(), 0.0))
    return run_probe(graph, input_shapes, input_dtype, options, predictions)


@contextlib.contextmanager
def _quiet_stderr():
    """Descriptor 2 to /dev/null (native code writes there too), then back."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _itemsize(dtype: str) -> int:
    digits = "".join(c for c in str(dtype) if c.isdigit())
    return max(int(digits) // 8, 1) if digits else 4
