"""Trained models shipped inside pip packages: init-time rules do not fail the gate on them
(initlint.trained), while corruption still would. Skipped where a package is not installed."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

from initlint.engine import Severity, registry, run_rules
from initlint.loaders import LoadOptions, load

INIT_TIME = ("IL105", "IL2", "IL3")


def _package_files(package: str, pattern: str) -> list[Path]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(Path(next(iter(spec.submodule_search_locations))).rglob(pattern))


TRAINED = [
    *(("rapidocr_onnxruntime", p) for p in _package_files("rapidocr_onnxruntime", "*.onnx")),
    *(("silero_vad", p) for p in _package_files("silero_vad", "*.onnx")),
    *(("lpips", p) for p in _package_files("lpips", "*.pth")),
]


@pytest.mark.parametrize("package, path", TRAINED or [pytest.param(None, None, marks=pytest.mark.skip(reason="no trained-model package installed"))], ids=lambda v: getattr(v, "name", v))
def test_trained_model_has_no_error_and_no_init_time_warning(package, path):
    """Linted as a user would (default options: the probe runs where the model fits its budget).
    The probe feeds synthetic inputs, on which a trained speech model's output sigmoid saturates
    and a trained detector's channels stay silent: that must not fail the gate either."""
    from initlint.options import LintOptions
    from initlint.runner import TargetResult, lint_graph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = load(str(path), LoadOptions())
        result = TargetResult(target=str(path), format=graph.format, graph=graph)
        lint_graph(graph, LintOptions(), result)
    assert not [note for note in result.notes if "failed and was skipped" in note], result.notes
    errors = [(f.code, f.location, f.message) for f in result.findings if f.severity >= Severity.ERROR]
    assert not errors, errors
    warned = [(f.code, f.location) for f in result.findings if f.severity >= Severity.WARNING and f.code.startswith(INIT_TIME)]
    assert not warned, warned


def test_corruption_in_a_trained_model_still_fails(tmp_path):
    onnx = pytest.importorskip("onnx")
    numpy_helper = pytest.importorskip("onnx.numpy_helper")
    files = _package_files("rapidocr_onnxruntime", "*cls_infer.onnx")
    if not files:
        pytest.skip("rapidocr-onnxruntime is not installed")
    import numpy as np

    proto = onnx.load(str(files[0]))
    # This model stores its weights in Constant nodes: corrupt the largest convolution kernel.
    tensors = [*proto.graph.initializer, *(a.t for node in proto.graph.node if node.op_type == "Constant" for a in node.attribute if a.name == "value")]
    target = max((t for t in tensors if len(t.dims) == 4), key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(target).copy()
    values.flat[::7] = 3.0e38  # what uninitialized memory can hold
    target.CopyFrom(numpy_helper.from_array(values, target.name))
    path = tmp_path / "corrupted.onnx"
    onnx.save(proto, str(path))
    graph = load(str(path), LoadOptions())
    run = run_rules(graph, [rule for rule in registry() if rule.stage == "static"])
    assert any(f.code == "IL106" and f.severity >= Severity.ERROR for f in run.findings), [(f.code, f.location) for f in run.findings]


def test_a_custom_init_is_not_mistaken_for_trained_weights():
    """N(0, 0.1) everywhere matches no scheme's scale but keeps the normal family: still judged."""
    torch = pytest.importorskip("torch")
    from initlint.example_models import plain_mlp
    from initlint.testing import graph_of

    torch.manual_seed(0)
    model = plain_mlp(30, "ReLU", lambda w: torch.nn.init.normal_(w, std=0.1), 64)
    graph = graph_of(model, "torch")
    run = run_rules(graph, [rule for rule in registry() if rule.stage == "static"])
    assert any(f.code == "IL301" and f.severity >= Severity.ERROR for f in run.findings)


def test_on_a_trained_model_only_input_independent_confirmations_restore_the_severity():
    from initlint.engine import Finding
    from initlint.prediction import Claim, Prediction, Quantity
    from initlint.trained import restores_severity

    saturated = Finding("IL202", "saturating-activation-overscaled", Severity.INFO, "x.weight", "m",
                        prediction=Prediction(Quantity.SATURATED_FRACTION, Claim.ABOVE, 0.5, to_layer="x"))
    copies = Finding("IL103", "duplicate-units", Severity.INFO, "x.weight", "m",
                     prediction=Prediction(Quantity.DUPLICATE_UNIT_FRACTION, Claim.ABOVE, 0.0, to_layer="x"))
    assert not restores_severity(saturated, on_trained_model=True)
    assert restores_severity(saturated, on_trained_model=False)  # one odd layer in a model at init
    assert restores_severity(copies, on_trained_model=True)
