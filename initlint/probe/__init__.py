"""The dynamic probe: run the model for a few seeded forward + backward passes and measure its
signal per layer (docs/science.md §8, §10).

Static rules predict; the probe measures. It runs on a private copy of the model (the user's
object is never touched), on CPU unless asked otherwise, with every seed fixed. torch is
imported only when a probe actually runs, so the ONNX-only static path never needs it.

The probe only measures: the runner decides when it runs, judges the findings' predictions
against its ``ProbeMeasurement`` (initlint.verdict) and runs the probe-stage rules. ``run_probe``
reads the graph and returns a plain picklable record, so it can run in another process.
"""

from __future__ import annotations

import os
import time

from ..graph import ModelGraph
from ..measurement import ProbeMeasurement
from ..options import MODES, ProbeOptions
from ..prediction import Prediction

__all__ = ["MODES", "ProbeOptions", "run_probe"]


def run_probe(
    graph: ModelGraph,
    input_shapes=None,
    input_dtype=None,
    options: ProbeOptions | None = None,
    predictions: tuple[Prediction, ...] | list[Prediction] = (),
) -> ProbeMeasurement:
    """Run and measure; always returns a ProbeMeasurement whose ``status`` is ok, timeout or
    unavailable (with the ``reason``). ``predictions`` only decide how many seeds to run: one,
    and more where a measurement is near a threshold (initlint.verdict.near_threshold)."""
    options = options or ProbeOptions()
    start = time.perf_counter()
    try:
        import torch
    except ImportError:
        return ProbeMeasurement("unavailable", "the probe needs PyTorch, which is not installed (pip install 'initlint[torch]')")
    from .inputs import ProbeUnavailable
    from .measure import Budget, Progress, ProbeTimeout, measure
    from .model import prepare

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
            result = measure(graph, runnable, options.seed, budget, options.train_steps, progress, tuple(predictions))
    except ProbeUnavailable as exc:
        result = ProbeMeasurement("unavailable", str(exc))
    except ProbeTimeout as exc:
        result = ProbeMeasurement("timeout", str(exc))
    except Exception as exc:  # the model raised while running: the static findings still stand
        if os.environ.get("INITLINT_DEBUG"):
            raise
        detail = " ".join(str(exc).split())[:240]
        result = ProbeMeasurement("unavailable", f"running the model failed ({type(exc).__name__}: {detail})")
    finally:
        progress.done()
    if graph.format == "onnx" and result.status == "unavailable":
        result = _forward_only(graph, result.reason, input_shapes, input_dtype, options, budget, tuple(predictions))
        notes = [n for n in notes if "onnx2torch" not in n]
        device = "cpu"
    result.device = device
    result.notes = notes + result.notes
    result.elapsed_s = round(time.perf_counter() - start, 3)
    return result


def _forward_only(graph, why, input_shapes, input_dtype, options, budget, predictions) -> ProbeMeasurement:
    """Where torch cannot run an ONNX model: its forward signal through onnxruntime; the
    backward claims stay unmeasured, with ``why`` as their reason."""
    import torch

    from .inputs import ProbeUnavailable
    from .measure import ProbeTimeout
    from .onnxruntime_forward import forward_only

    try:
        with _seeded(torch, options.seed):
            return forward_only(graph, why, input_shapes, input_dtype, options.seed, budget, predictions)
    except ProbeUnavailable as exc:
        return ProbeMeasurement("unavailable", str(exc))
    except ProbeTimeout as exc:
        return ProbeMeasurement("timeout", f"{why}; {exc}")
    except Exception as exc:
        if os.environ.get("INITLINT_DEBUG"):
            raise
        detail = " ".join(str(exc).split())[:200]
        return ProbeMeasurement("unavailable", f"{why}; onnxruntime failed too ({type(exc).__name__}: {detail})")


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
