"""Norm modules that call torch.nn.functional themselves (timm's BatchNormAct2d) are read with
their gain as the weight, not the running mean that F.batch_norm takes first."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from initlint.loaders.torch import graph_from_module  # noqa: E402
from initlint.options import LintOptions  # noqa: E402
from initlint.runner import TargetResult, lint_graph  # noqa: E402


class BatchNormCallingFunctional(torch.nn.BatchNorm1d):
    """What timm's BatchNormAct2d does: F.batch_norm(x, running_mean, running_var, weight, bias, ...)."""

    def forward(self, x):
        return torch.relu(torch.nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training, 0.1, self.eps))


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), BatchNormCallingFunctional(32), torch.nn.Linear(32, 4))


def test_functional_batch_norm_reads_its_gain_not_its_running_mean():
    graph = graph_from_module(_model(), "m", example_input=torch.randn(4, 16))
    [norm] = [layer for layer in graph.layers.values() if layer.kind == "norm"]
    assert norm.weight.name == "1.weight" and norm.bias.name == "1.bias"


def test_running_mean_of_zeros_is_not_a_zero_gain():
    graph = graph_from_module(_model(), "m", example_input=torch.randn(4, 16))
    result = TargetResult(target="m", format="torch", graph=graph)
    lint_graph(graph, LintOptions(select=["IL101"], probe="never"), result)
    assert result.findings == [], [(f.location, f.message) for f in result.findings]
