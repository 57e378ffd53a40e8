"""Hand-written normalization modules (RMSNorm as pow/mean/rsqrt/mul) are one norm layer,
whether the graph comes from torch.fx or torch.export, so a pre-norm transformer stays healthy."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from initlint import graph as g  # noqa: E402
from initlint.engine import Severity  # noqa: E402
from initlint.loaders.torch import graph_from_exported, graph_from_module  # noqa: E402
from initlint.runner import LintOptions, TargetResult, lint_graph  # noqa: E402


class RMSNorm(nn.Module):
    def __init__(self, features: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(features))
        self.eps = eps

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


class Block(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.norm = RMSNorm(features)
        self.gate = nn.Linear(features, 2 * features, bias=False)
        self.up = nn.Linear(features, 2 * features, bias=False)
        self.down = nn.Linear(2 * features, features, bias=False)
        for layer in (self.gate, self.up, self.down):
            nn.init.normal_(layer.weight, std=0.02)  # the HF initializer_range

    def forward(self, x):
        h = self.norm(x)
        return x + self.down(nn.functional.silu(self.gate(h)) * self.up(h))


def llama_like(depth: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), *[Block(32) for _ in range(depth)], RMSNorm(32), nn.Linear(32, 4))


def lint(graph):
    result = TargetResult("model", graph.format)
    lint_graph(graph, LintOptions(probe="never"), result)
    return result


@pytest.mark.parametrize("form", ["fx", "export"])
def test_handwritten_rmsnorm_is_one_norm_layer_and_the_model_is_clean(form):
    model = llama_like()
    if form == "fx":
        graph = graph_from_module(model, "llama_like")
    else:
        graph = graph_from_exported(torch.export.export(model, (torch.randn(2, 5, 16),)), "llama_like", "pt2")
    norms = [layer for layer in graph.layers.values() if layer.kind == g.NORM]
    assert [layer.name for layer in norms][:2] == ["1.norm", "2.norm"] and len(norms) == 9
    assert norms[0].weight is not None and norms[0].weight.name == "1.norm.weight"
    assert not any(layer.op in ("pow", "rsqrt") for layer in graph.layers.values())
    assert graph.activation_after(graph.layers["1.gate"]).activation == "silu"
    result = lint(graph)
    errors = [(f.code, f.location, f.message) for f in result.findings if f.severity >= Severity.WARNING]
    assert not errors, errors
