"""Inference-form exports of BatchNorm networks must not look like plain deep stacks (docs/science.md §10)."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from initlint.engine import Severity  # noqa: E402
from initlint.runner import LintOptions, lint_target  # noqa: E402


def conv_stack(depth: int, batchnorm: bool) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1, bias=not batchnorm)]
    for _ in range(depth):
        if batchnorm:
            layers.append(nn.BatchNorm2d(16))
        layers += [nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, bias=not batchnorm)]
    layers += [nn.Flatten(), nn.Linear(16 * 8 * 8, 4)]
    return nn.Sequential(*layers).eval()  # PyTorch's default init: the signal falls x6 per ReLU layer


def export(model: nn.Module, path, dynamo: bool) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 3, 8, 8),), str(path), dynamo=dynamo, verbose=False)
    return str(path)


def errors(path: str) -> set[str]:
    result = lint_target(path, LintOptions(select=["IL3"], probe="never"))
    assert result.error is None, result.error
    return {f.code for f in result.findings if f.severity >= Severity.ERROR}


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
def test_eval_mode_export_of_a_batchnorm_stack_is_not_a_vanishing_signal(tmp_path, dynamo):
    assert not errors(export(conv_stack(12, batchnorm=True), tmp_path / "bn.onnx", dynamo))


def test_the_same_stack_without_batchnorm_is_still_flagged(tmp_path):
    assert "IL301" in errors(export(conv_stack(12, batchnorm=False), tmp_path / "plain.onnx", dynamo=False))


def probe_errors(path: str) -> tuple[set[str], list[str]]:
    result = lint_target(path, LintOptions(probe="always"))
    assert result.error is None, result.error
    return {f.code for f in result.findings if f.severity >= Severity.ERROR}, result.notes


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
def test_probe_puts_folded_batchnorm_back_and_finds_the_export_healthy(tmp_path, dynamo):
    codes, notes = probe_errors(export(conv_stack(12, batchnorm=True), tmp_path / "bn.onnx", dynamo))
    assert not codes & {"IL401", "IL402"}, notes
    assert any("put back 13 BatchNorm layers" in note for note in notes), notes


def test_probe_still_confirms_vanishing_in_the_plain_stack(tmp_path):
    codes, notes = probe_errors(export(conv_stack(12, batchnorm=False), tmp_path / "plain.onnx", dynamo=False))
    assert "IL401" in codes, notes
    assert not any("put back" in note for note in notes)


class Hybrid(nn.Module):
    """A BatchNorm conv stem followed by LayerNorm'd tokens (MaxViT, CoAtNet, ConvNeXt-style heads)."""

    def __init__(self):
        super().__init__()
        self.stem = conv_stack(12, batchnorm=True)[:-2]  # without Flatten + Linear
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(tokens).mean(1))


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
def test_folded_batchnorm_is_recognized_beside_other_normalization_layers(tmp_path, dynamo):
    assert not errors(export(Hybrid().eval(), tmp_path / "hybrid.onnx", dynamo))
