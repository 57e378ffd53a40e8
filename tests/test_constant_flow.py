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


def test_the_second_of_two_zero_layers_is_fed_a_frozen_zero():
    """Its input is tanh(0) = 0 for good (the first never trains: its gradient goes through this
    zero weight), so this weight's gradient, input times output gradient, is 0 too."""
    outcome = _outcome(example_models.two_consecutive_zero_layers(), "4.weight")
    assert (outcome.harm, outcome.fate, outcome.other_weight, outcome.zero_constant) == (Harm.FATAL, Fate.FED_BY_ZERO_LAYER, "2.weight", True)


def test_a_zero_input_through_relu_or_a_zero_shift_norm_is_frozen_too():
    through_relu = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))
    through_norm = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16), nn.LayerNorm(16), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))
    for model in (through_relu, through_norm):
        for layer in (model[2], model[4]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
    first = _outcome(through_relu, "2.weight")
    assert (first.harm, first.fate) == (Harm.FATAL, Fate.BLOCKED_BY_ACTIVATION)
    for model in (through_relu, through_norm):
        second = _outcome(model, "4.weight")
        assert (second.harm, second.fate, second.other_weight) == (Harm.FATAL, Fate.FED_BY_ZERO_LAYER, "2.weight")


class _TwoZeroLayersAndASkip(nn.Module):
    """Two zero layers in a row; the first one's output is also added to a skip path (to a second output)."""

    def __init__(self):
        super().__init__()
        self.stem, self.first, self.second = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.head, self.skip_head = nn.Linear(16, 4), nn.Linear(16, 4)
        for layer in (self.first, self.second):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        h = torch.tanh(self.stem(x))
        u = self.first(h)
        return self.head(torch.tanh(self.second(torch.tanh(u)))), self.skip_head(h + u)


def test_a_zero_layer_fed_by_one_that_recovers_recovers_after_it():
    """The first zero layer gets a gradient through the skip path, so its output moves and the
    second's input with it: the second stays a lone zero layer, not a fatal one."""
    first = _outcome(_TwoZeroLayersAndASkip(), "first.weight")
    assert (first.harm, first.fate) == (Harm.ALLOWED, Fate.RESIDUAL)
    second = _outcome(_TwoZeroLayersAndASkip(), "second.weight")
    assert (second.harm, second.fate) == (Harm.RECOVERABLE, Fate.LONE_ZERO_LAYER)


def test_a_shift_that_trains_through_another_path_unlocks_the_next_zero_layer():
    """ReLU(0) = 0 blocks the first zero layer, but the LayerNorm's shift after it also feeds a
    random layer: that shift trains, so the second zero layer's input does not stay 0."""

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.first, self.norm = nn.Linear(16, 16), nn.Linear(16, 16), nn.LayerNorm(16)
            self.second, self.side, self.head = nn.Linear(16, 16), nn.Linear(16, 4), nn.Linear(16, 4)
            for layer in (self.first, self.second):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

        def forward(self, x):
            n = self.norm(torch.relu(self.first(torch.tanh(self.stem(x)))))
            return self.head(torch.tanh(self.second(n))), self.side(n)

    second = _outcome(Model(), "second.weight")
    assert (second.harm, second.fate) == (Harm.RECOVERABLE, Fate.LONE_ZERO_LAYER)


def test_a_zero_branch_added_to_the_model_input_is_a_residual():
    """The model input is no layer of the graph; the Add still has an independent operand."""

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.branch, self.end, self.head = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 4)
            nn.init.zeros_(self.end.weight)
            nn.init.zeros_(self.end.bias)

        def forward(self, x):
            return self.head(torch.tanh(x + self.end(torch.relu(self.branch(x)))))

    outcome = _outcome(Model(), "end.weight")
    assert (outcome.harm, outcome.fate) == (Harm.ALLOWED, Fate.RESIDUAL)


def test_many_zero_layers_are_analysed_in_one_pass(monkeypatch):
    """150 pairs of zero layers between random ones: each second one is fed by the first. The
    upstream pass runs once and each layer's downstream is followed a bounded number of steps,
    not once per zero layer (which would follow ~300² paths)."""
    from initlint import constant_flow

    layers = [nn.Linear(8, 8)]
    for _ in range(150):
        layers += [nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8)]
    model = nn.Sequential(*layers)
    zeroed = [layer for i, layer in enumerate(model) if isinstance(layer, nn.Linear) and i % 6 in (2, 4)]
    for layer in zeroed:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    graph = graph_from_module(model, "chain", example_input=torch.randn(2, 8))
    follows, passes = [], []
    follow, upstream_pass = constant_flow._follow, constant_flow.ConstantFlow._frozen_outputs
    monkeypatch.setattr(constant_flow, "_follow", lambda *args, **kw: follows.append(1) or follow(*args, **kw))
    monkeypatch.setattr(constant_flow.ConstantFlow, "_frozen_outputs", lambda self: passes.append(1) or upstream_pass(self))
    flow = constant_flow.ConstantFlow(graph)
    zero = [layer for layer in graph.layers.values() if layer.weight is not None and layer.weight.stats.all_zero]
    fates = [flow.outcome(layer).fate for layer in zero]
    assert len(zero) == 300 and fates == [Fate.FEEDS_ZERO_LAYER, Fate.FED_BY_ZERO_LAYER] * 150
    assert len(passes) == 1 and len(follows) <= 8 * len(zero)
