"""Fatal vs recoverable symmetry, decided by what the gradient can reach (docs/science.md §5, §11).

Every normalization gain at zero on the main path and every hidden layer one unit wide stop
training: errors. One constant or tiled layer among random ones recovers, slowly: a warning, not
info and not an error. The legitimate zero patterns stay clean. Each model is judged as a live
module and as its ONNX export.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from initlint.engine import Severity, registry, run_rules  # noqa: E402
from initlint.symmetry import Harm, symmetry_of  # noqa: E402
from initlint.testing import graph_of, plain_mlp  # noqa: E402

SYMMETRY_CODES = ("IL101", "IL102", "IL103")


def he(w):
    nn.init.kaiming_normal_(w, nonlinearity="relu")


def mlp_with(mutate_layers, which):
    torch.manual_seed(0)
    model = plain_mlp(6, "ReLU", he, width=64)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer in which(linears):
            mutate_layers(layer)
    return model


def tile(layer):
    layer.weight.copy_(layer.weight[0:1].expand_as(layer.weight))


def constant(layer):
    layer.weight.fill_(0.05)


def resnet18(zero_gains):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(zero_init_residual=zero_gains == "last")
    if zero_gains == "every":
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 0)  # the copy-paste bug: every gain, not the last of each branch
    return model


def findings(model, form, example, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = graph_of(model, form, example, tmp_path)
    run = run_rules(graph, [rule for rule in registry() if rule.stage == "static"])
    assert not run.failures, run.failures
    return graph, [(f.code, f.location, f.severity) for f in run.findings if f.code in SYMMETRY_CODES and f.severity >= Severity.WARNING]


FORMS = ("torch", "onnx")


@pytest.mark.parametrize("form", FORMS)
def test_every_batchnorm_gain_zero_is_an_error_and_zero_init_residual_is_clean(form, tmp_path):
    image = torch.randn(2, 3, 64, 64)
    _, broken = findings(resnet18("every"), form, image, tmp_path)
    errors = {location for code, location, severity in broken if code == "IL101" and severity == Severity.ERROR}
    assert "bn1.weight" in errors, broken  # the stem's gain: ReLU(0) blocks every gradient upstream
    _, legit = findings(resnet18("last"), form, image, tmp_path)
    assert not legit, legit


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "name, mutate, which, code, severity",
    [
        ("every hidden layer tiled", tile, lambda ls: ls[1:-1], "IL103", Severity.ERROR),
        ("every hidden layer constant", constant, lambda ls: ls[1:-1], "IL102", Severity.ERROR),
        ("one tiled layer", tile, lambda ls: ls[3:4], "IL103", Severity.WARNING),
        ("one constant layer", constant, lambda ls: ls[3:4], "IL102", Severity.WARNING),
    ],
)
def test_one_unit_wide_layers(form, tmp_path, name, mutate, which, code, severity):
    model = mlp_with(mutate, which)
    _, found = findings(model, form, torch.randn(8, 16), tmp_path)
    assert found and {c for c, _, _ in found} == {code}, found
    assert {s for _, _, s in found} == {severity}, (name, found)


def test_hidden_layers_exclude_the_first_and_the_readout():
    model = mlp_with(tile, lambda ls: ls[1:-1])
    graph = graph_of(model, "torch")
    symmetry = symmetry_of(graph)
    assert symmetry.hidden == ("2", "4", "6", "8") and symmetry.collapsed == symmetry.hidden
    assert symmetry.everywhere and symmetry.harm("4") == Harm.FATAL and symmetry.harm("0") is None


def test_tiled_readout_alone_is_not_fatal():
    """The first and last layers are not hidden: tiling both leaves the hidden layers random."""
    model = mlp_with(tile, lambda ls: [ls[0], ls[-1]])
    symmetry = symmetry_of(graph_of(model, "torch"))
    assert set(symmetry.collapsed) == {"0", "10"} and not symmetry.everywhere
    assert symmetry.harm("10") == Harm.RECOVERABLE
