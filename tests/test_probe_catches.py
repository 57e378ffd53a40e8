"""What only measurement sees, and the classic mistake, end to end under the default options.

The static rules see at most part of these faults (the tiled rows: only warnings, exit 0 with
--probe never); --probe auto runs the probe on models this small and its findings count. And the rule named after the
classic mistake (ReLU + Glorot) ends confirmed, torch spec and ONNX alike.
"""

from __future__ import annotations

import json
import textwrap

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from initlint.cli import main  # noqa: E402
from initlint.testing import export_onnx  # noqa: E402

MODELS = textwrap.dedent('''
    import torch
    import torch.nn as nn

    from initlint.example_models import plain_mlp


    def he(w):
        nn.init.kaiming_normal_(w, nonlinearity="relu")


    def bias_cascade():
        """A bias of -1 everywhere: the ReLU units die a few layers in, and then everything upstream freezes."""
        torch.manual_seed(0)
        return plain_mlp(10, "ReLU", he, width=64, bias=-1.0)


    def tiled_rows():
        """Every hidden layer a tiled copy of its first row: all units of a layer are one unit."""
        torch.manual_seed(0)
        model = plain_mlp(6, "ReLU", he, width=64)
        linears = [m for m in model if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer in linears[1:-1]:
                layer.weight.copy_(layer.weight[0:1].expand_as(layer.weight))
        return model


    class DiffusersUNet(nn.Module):
        def __init__(self):
            super().__init__()
            from diffusers import UNet2DModel

            self.unet = UNet2DModel(
                sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
                down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
            )

        def forward(self, x):
            return self.unet(x, 10).sample


    def zero_unet():
        """Every convolution weight of a small diffusers UNet zeroed (biases and norms untouched).
        torch.fx cannot trace the UNet: the spec gives its example input, as a user's would, for torch.export."""
        torch.manual_seed(0)
        model = DiffusersUNet()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    module.weight.zero_()
        return model, torch.randn(4, 3, 16, 16)  # the example input torch.export traces it with


    def glorot_relu(depth):
        torch.manual_seed(0)
        return plain_mlp(depth, "ReLU", nn.init.xavier_uniform_, width=256)


    def glorot_relu_20():
        return glorot_relu(20)


    def glorot_relu_8():
        return glorot_relu(8)
''')


@pytest.fixture
def models(tmp_path, monkeypatch):
    (tmp_path / "probe_catch_models.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no [tool.initlint] above
    return tmp_path / "probe_catch_models.py"


def lint(target: str, *options: str):
    result = CliRunner().invoke(main, [target, "--format", "json", *options])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.output)["results"][0]


@pytest.mark.parametrize("name, code", [("bias_cascade", "IL404"), ("tiled_rows", "IL403"), ("zero_unet", "IL404")])
def test_faults_the_probe_measures_exit_1_under_default_options(models, name, code):
    """Once caught by the probe alone; the static rules now see each of them too (IL304 carries
    the biases' means, IL101 the zero convolutions, IL103 the tiled rows), and the probe still
    measures the damage: a finding of its own, or listed under the static error that explains it."""
    if name == "zero_unet":
        pytest.importorskip("diffusers")
    exit_code, result = lint(f"{models}:{name}")
    assert result["probe"]["status"] == "ok", result["probe"]
    errors = [f for f in result["findings"] if f["severity"] == "error"]
    measured = {f["code"] for f in errors} | {c["code"] for f in errors for c in f["evidence"].get("probe_consequences", [])}
    assert exit_code == 1 and code in measured, [(f["code"], f["location"]) for f in result["findings"]]


def _il201(result):
    found = [f for f in result["findings"] if f["code"] == "IL201" and f["location"] == "0.weight"]
    assert found, [(f["code"], f["location"]) for f in result["findings"]]
    return found[0]


@pytest.mark.parametrize("depth, severity", [(20, "error"), (8, "error")])
@pytest.mark.parametrize("form", ["torch", "onnx"])
def test_relu_after_glorot_is_confirmed_and_fails_the_run(models, tmp_path, depth, severity, form):
    target = f"{models}:glorot_relu_{depth}"
    if form == "onnx":
        import probe_catch_models

        path = tmp_path / f"glorot_relu_{depth}.onnx"
        export_onnx(getattr(probe_catch_models, f"glorot_relu_{depth}")(), torch.randn(4, 16), path)
        target = str(path)
    exit_code, result = lint(target)
    finding = _il201(result)
    assert finding["probe"]["verdict"] == "confirmed", finding["probe"]
    assert finding["severity"] == severity and exit_code == 1
    assert finding["prediction"]["quantity"] == "forward_variance_ratio"
    assert finding["probe"]["measured"] < finding["prediction"]["threshold"]
