"""Helpers that turn a rule's examples into tests, in torch and in ONNX form (needs torch)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from .engine import Example, Finding, Rule, registry, run_rules
from .example_models import plain_mlp  # noqa: F401  (re-exported: tests build the same stacks)
from .graph import ModelGraph


def example_input(example: Example, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    if example.input_dtype.startswith("int"):
        return torch.randint(0, 8, example.input_shape, generator=generator)
    return torch.randn(example.input_shape, generator=generator)


def export_onnx(model, example_input, path: str | Path | None = None) -> bytes:
    """Export with the TorchScript-based exporter in training mode, which keeps BatchNorm and
    the user's parameter names (the eval-mode export folds BatchNorm into the conv)."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example_input,),
            buffer if path is None else str(path),
            dynamo=False,
            training=torch.onnx.TrainingMode.TRAINING,
            do_constant_folding=False,
            input_names=["input"],
            output_names=["output"],
        )
    return buffer.getvalue() if path is None else Path(path).read_bytes()


def graph_of(model, form: str, example_input=None, tmp_path: Path | None = None) -> ModelGraph:
    """The ModelGraph of a live module (``form="torch"``) or of its ONNX export (``"onnx"``)."""
    if form == "torch":
        from .loaders.torch import graph_from_module

        # The example input too, as a spec returning (model, example_input) gives it: models
        # torch.fx cannot trace (transformers') are then read through torch.export, not module order.
        return graph_from_module(model, type(model).__name__, example_input)
    import onnx

    from .loaders.onnx import build_graph

    path = (tmp_path or Path(".")) / "model.onnx"
    # Written to disk when there is a place for it: the probe reloads the file with its weights.
    data = export_onnx(model, example_input, path if tmp_path is not None else None)
    proto = onnx.load_from_string(data)
    return build_graph(proto, path)


def findings_for(rule: type[Rule], graph: ModelGraph, example: Example | None = None) -> list[Finding]:
    """The rule's findings; a probe-stage rule first gets the probe run on the example's input."""
    measurement = None
    if rule.stage == "probe":
        from .probe import run_probe

        shapes = {"": example.input_shape} if example is not None else {}
        measurement = run_probe(graph, shapes, example.input_dtype if example is not None else None)
        assert measurement.ok, measurement.reason
    run = run_rules(graph, [rule], stage=rule.stage, probe=measurement)
    assert not run.failures, run.failures
    return run.findings


def all_examples():
    """(rule, kind, example) for every example of every rule: kind is "must_flag" or "must_not_flag"."""
    for rule in registry():
        for example in rule.must_flag:
            yield rule, "must_flag", example
        for example in rule.must_not_flag:
            yield rule, "must_not_flag", example


def probed_findings(rule: type[Rule], graph: ModelGraph, example: Example) -> tuple[list[Finding], object]:
    """The rule's findings after the probe ran on the example's input and judged them (as the
    runner does): (findings with ``finding.probe`` set, the ProbeMeasurement)."""
    from .probe import run_probe
    from .runner import confirm_findings

    static = run_rules(graph, [rule]) if rule.stage == "static" else None
    predictions = [f.prediction for f in static.findings if f.prediction is not None] if static else []
    measurement = run_probe(graph, {"": example.input_shape}, example.input_dtype, predictions=predictions)
    if rule.stage == "static":
        assert not static.failures, static.failures
        confirm_findings(static.findings, measurement)
        return static.findings, measurement
    run = run_rules(graph, [rule], stage="probe", probe=measurement)
    assert not run.failures, run.failures
    return run.findings, measurement
