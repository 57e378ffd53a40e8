"""Which models ``--probe auto`` probes: those whose estimated cost fits a budget picked from
measurements (docs/performance.md, "Probe"). Larger models are skipped with a note; ``--probe
always`` runs them anyway."""

from __future__ import annotations

import math

from ..graph import ModelGraph

# The probe holds a copy of the weights plus their gradients (about 3x the model in memory) and
# runs one forward + backward per seed. Memory is what grows with the parameter count: the
# benchmark's process (benchmarks/probe_benchmark.py) peaked at 5.0 GB having probed VGG-16 (138 M
# parameters, 8x3x224x224) and the models before it. Time follows the compute per sample rather than
# the parameters (VGG-11, 133 M, probes in 3 s; ViT-B/16, 87 M, in 26 s, one thread): the probe's time
# budget (--probe-timeout) bounds it, and a finished pass is kept when it runs out.
AUTO_MAX_PARAMETERS = 150_000_000
# Elements of one input sample (3x224x224 = 150,528: an ImageNet-size image). The batch shrinks
# as samples grow (initlint.probe.inputs.batch_for), but activations grow with them.
AUTO_MAX_SAMPLE_ELEMENTS = 3 * 224 * 224


def auto_budget_refusal(graph: ModelGraph, input_shapes=None) -> str | None:
    """Why --probe auto does not run on ``graph``, or None when it fits the budget."""
    parameters = sum(t.size for t in graph.tensors.values())
    if parameters > AUTO_MAX_PARAMETERS:
        return f"the model has {parameters:,} parameters, more than --probe auto runs ({AUTO_MAX_PARAMETERS:,})"
    sample = _sample_elements(graph, input_shapes)
    if sample is not None and sample > AUTO_MAX_SAMPLE_ELEMENTS:
        return f"one input sample has {sample:,} elements, more than --probe auto runs ({AUTO_MAX_SAMPLE_ELEMENTS:,})"
    return None


def _sample_elements(graph: ModelGraph, input_shapes) -> int | None:
    """Elements per sample of the largest input, where the shape is known (given or recorded)."""
    shapes = [tuple(s) for s in (input_shapes or {}).values() if s]
    if not shapes:
        shapes = [tuple(d for d in dims) for dims, _ in graph.inputs.values() if dims and all(dims)]
    example = graph.metadata.get("example_input")
    if not shapes and example is not None and hasattr(example, "shape"):
        shapes = [tuple(example.shape)]
    sizes = [math.prod(shape[1:]) for shape in shapes if len(shape) >= 2]
    return max(sizes) if sizes else None
