"""Helpers that turn a rule's examples into tests, in torch and in ONNX form (needs torch)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from .engine import Example, Finding, Rule, registry, run_rules
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
        from .loaders.torch_loader import graph_from_module

        return graph_from_module(model, type(model).__name__)
    import onnx

    from .loaders.onnx_loader import build_graph

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


def plain_mlp(depth: int, activation="ReLU", init=None, width: int = 64, bias: float | None = None):
    """The plain stack most rule examples use: Linear(16, width), activation, then depth - 2 hidden
    Linear + activation, then Linear(width, 4). ``init`` is applied to every weight in order;
    ``bias`` fills every bias but the head's. ``activation`` is an nn class or its name."""
    import torch.nn as nn

    act = getattr(nn, activation) if isinstance(activation, str) else activation
    layers = [nn.Linear(16, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    layers.append(nn.Linear(width, 4))
    model = nn.Sequential(*layers)
    for layer in model:
        if isinstance(layer, nn.Linear):
            if init is not None:
                init(layer.weight)
            if bias is not None and layer is not model[-1]:
                nn.init.constant_(layer.bias, bias)
    return model


# --- zero-initialized models the examples of IL101 (static) and IL404 (probe) share ----------


def zero_linear_before_relu():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    nn.init.zeros_(model[2].weight)
    nn.init.zeros_(model[2].bias)
    return model


def two_consecutive_zero_layers():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))
    for layer in (model[2], model[4]):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return model


def _lora_model(zero_a: bool):
    import torch.nn as nn

    class LoRALinear(nn.Module):
        def __init__(self, features: int, rank: int = 4):
            super().__init__()
            self.base = nn.Linear(features, features)
            self.lora_A = nn.Linear(features, rank, bias=False)
            self.lora_B = nn.Linear(rank, features, bias=False)
            nn.init.kaiming_uniform_(self.lora_A.weight, a=5**0.5)
            nn.init.zeros_(self.lora_B.weight)
            if zero_a:
                nn.init.zeros_(self.lora_A.weight)

        def forward(self, x):
            return self.base(x) + self.lora_B(self.lora_A(x)) * 2.0

    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), LoRALinear(32), nn.ReLU(), nn.Linear(32, 4))


def lora_with_a_and_b_zero():
    return _lora_model(zero_a=True)


def lora_b_zero_a_random():
    return _lora_model(zero_a=False)


def zero_last_conv_of_residual_branch():
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
            nn.init.zeros_(self.conv2.weight)  # Fixup: the branch starts as the identity
            nn.init.zeros_(self.conv2.bias)

        def forward(self, x):
            return self.relu(x + self.conv2(self.relu(self.conv1(x))))

    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), Block(8), Block(8), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))


def zero_classifier_head():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    nn.init.zeros_(model[4].weight)
    nn.init.zeros_(model[4].bias)
    return model


def rezero_gate():
    import torch
    import torch.nn as nn

    class ReZeroBlock(nn.Module):
        def __init__(self, features: int):
            super().__init__()
            self.fc = nn.Linear(features, features)
            self.alpha = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x + self.alpha * torch.relu(self.fc(x))

    return nn.Sequential(nn.Linear(16, 32), ReZeroBlock(32), ReZeroBlock(32), nn.Linear(32, 4))
