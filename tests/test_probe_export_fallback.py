"""A model torch.fx cannot trace but torch.export can is still probed (the live module is kept)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from initlint.loaders import LoadOptions  # noqa: E402
from initlint.runner import LintOptions, lint_target  # noqa: E402

MODELS = '''
import torch
from torch import nn


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(16, 16) for _ in range(3))
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        if x.shape[0] > 1:  # control flow on a shape: torch.fx cannot trace it
            for layer in self.layers:
                x = torch.relu(layer(x))
        return self.head(x)


def build():
    torch.manual_seed(0)
    return Branchy(), torch.randn(8, 16)
'''


def test_probe_runs_on_a_graph_from_the_export_fallback(tmp_path):
    (tmp_path / "branchy.py").write_text(MODELS)
    result = lint_target(f"{tmp_path / 'branchy.py'}:build", LintOptions(probe="always"))
    assert result.error is None, result.error
    assert any("torch.export" in note for note in result.notes), result.notes
    assert result.probe is not None and result.probe["status"] == "ok", result.notes
    assert len(result.probe["layers"]) == 4


def test_probe_runs_a_pt2_archive_on_the_shapes_it_was_exported_with(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
    import models

    model = models.broken_mlp()
    torch.export.save(torch.export.export(model, (model.example_input,)), str(tmp_path / "broken.pt2"))
    path = str(tmp_path / "broken.pt2")
    untrusted = lint_target(path, LintOptions(probe="auto"))  # running the program runs its guard code: the opt-in
    assert untrusted.error is None and untrusted.probe["status"] == "unavailable"
    assert "only with --trust-code" in untrusted.probe["reason"]
    result = lint_target(path, LintOptions(probe="auto", load=LoadOptions(trust_pickle=True)))
    assert result.error is None and result.probe is not None and result.probe["status"] == "ok", result.notes
    zero = next(f for f in result.findings if f.code == "IL101")
    assert zero.location == "2.weight" and zero.probe["verdict"] == "confirmed"
