"""A model linted as a torch spec and as its ONNX export gives the same IL1xx findings."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from initlint.loaders import LoadOptions, load  # noqa: E402
from initlint.runner import LintOptions, lint_target  # noqa: E402
from pathlib import Path  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize("name", ["broken_mlp", "healthy_mlp", "lora_adapter"])
def test_spec_and_onnx_export_agree_on_weight_value_rules(name):
    options = LintOptions(select=["IL1"], probe="never")
    spec = lint_target(f"{FIXTURES / 'models.py'}:{name}", options)
    onnx = lint_target(str(FIXTURES / f"{name}.onnx"), options)
    assert spec.error is None and onnx.error is None
    as_set = lambda r: {(f.code, f.location, f.severity) for f in r.findings}  # noqa: E731
    assert as_set(spec) == as_set(onnx)
    if name == "broken_mlp":
        assert {"IL101", "IL103", "IL105"} <= {f.code for f in spec.findings}


def test_spec_graph_keeps_the_users_names():
    graph = load(f"{FIXTURES / 'models.py'}:healthy_mlp", LoadOptions())
    assert "2.weight" in graph.tensors
    assert graph.layers["2"].kind == "linear" and graph.layers["2"].fan_in == 64
    assert graph.activation_after(graph.layers["2"]).activation == "relu"
    assert graph.max_depth == 6
