"""The constant-flow analysis: where an all-zero layer's constant output goes decides its outcome."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from initlint import example_models  # noqa: E402
from initlint.constant_flow import Fate, Harm, zero_outcome  # noqa: E402
from initlint.loaders.torch import graph_from_module  # noqa: E402


def _outcome(model, weight_name, example=None):
    graph = graph_from_module(model, type(model).__name__, example_input=example if example is not None else torch.randn(4, 16))
    (layer,) = [layer for layer in graph.layers.values() if layer.weight is not None and layer.weight.name == weight_name]
    return zero_outcome(graph, layer)


def test_zero_before_relu_is_blocked_by_the_activation():
    outcome = _outcome(example_models.zero_linear_before_relu(), "2.weight")
    assert (outcome.harm, outcome.fate, outcome.activation, outcome.zero_constant) == (Harm.FATAL, Fate.BLOCKED_BY_ACTIVATION, "relu", True)


def test_negative_bias_before_relu_is_blocked_too():
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    nn.init.zeros_(model[2].weight)
    nn.init.constant_(model[2].bias, -0.5)
    outcome = _outcome(model, "2.weight")
    assert (outcome.harm, outcome.fate, outcome.zero_constant) == (Harm.FATAL, Fate.BLOCKED_BY_ACTIVATION, False)


def test_zero_into_another_zero_layer_names_it():
    outcome = _outcome(example_models.two_consecutive_zero_layers(), "2.weight")
    assert (outcome.harm, outcome.fate, outcome.other_weight) == (Harm.FATAL, Fate.FEEDS_ZERO_LAYER, "4.weight")


def test_residual_branch_end_lora_b_and_head_are_allowed():
    fixup = _outcome(example_models.zero_last_conv_of_residual_branch(), "2.conv2.weight", torch.randn(2, 3, 8, 8))
    assert (fixup.harm, fixup.fate) == (Harm.ALLOWED, Fate.RESIDUAL)
    lora = _outcome(example_models.lora_b_zero_a_random(), "2.lora_B.weight")
    assert (lora.harm, lora.fate) == (Harm.ALLOWED, Fate.RESIDUAL)
    head = _outcome(example_models.zero_classifier_head(), "4.weight")
    assert head.harm == Harm.ALLOWED and head.fate in (Fate.MODEL_OUTPUT, Fate.ZERO_HEAD)


def test_positive_constant_before_relu_recovers_as_a_lone_zero_layer():
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    nn.init.zeros_(model[2].weight)
    nn.init.constant_(model[2].bias, 0.5)
    outcome = _outcome(model, "2.weight")
    assert (outcome.harm, outcome.fate) == (Harm.RECOVERABLE, Fate.LONE_ZERO_LAYER)
