"""The PyTorch loaders: specs, torch.export archives, TorchScript, state dicts, safetensors.

Every file is built in tmp_path from a small model; the same model in every form must give the
same graph (where the form has one) and the same IL1xx findings at the same locations.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from initlint import graph as g  # noqa: E402
from initlint.cli import main  # noqa: E402
from initlint.errors import InitlintError  # noqa: E402
from initlint.loaders import LoadOptions, load  # noqa: E402
from initlint.loaders.torch import graph_from_module  # noqa: E402
from initlint.runner import LintOptions, lint_target  # noqa: E402

# One model with something for every IL1xx rule, a residual add, functional and module
# activations, BatchNorm, LayerNorm, a grouped conv and a transposed conv.
BROKEN_NET = '''
import torch
from torch import nn
import torch.nn.functional as F


class BrokenNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.bn = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.fc1 = nn.Linear(4 * 16 * 16, 64)
        self.fc2 = nn.Linear(64, 64)     # zeros, feeding ReLU: fatal
        self.fc3 = nn.Linear(64, 64)     # constant
        self.fc4 = nn.Linear(64, 64)     # duplicated rows
        self.fc5 = nn.Linear(64, 64)     # U(0, 1)
        self.fc6 = nn.Linear(64, 64)     # one NaN
        self.ln = nn.LayerNorm(64)
        self.relu = nn.ReLU()
        self.head = nn.Linear(64, 10)
        with torch.no_grad():
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)
            nn.init.constant_(self.fc3.weight, 0.05)
            self.fc4.weight[1::2] = self.fc4.weight[0::2]
            nn.init.uniform_(self.fc5.weight)
            self.fc6.weight[3, 5] = float("nan")

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        h = torch.tanh(self.up(h)).flatten(1)
        h = self.relu(self.fc1(h))
        h = self.relu(self.fc2(h))
        h = h + torch.tanh(self.fc3(h))
        h = self.relu(self.fc4(h))
        h = self.relu(self.fc5(h))
        h = F.gelu(self.ln(self.fc6(h)))
        return self.head(h)


def build():
    torch.manual_seed(0)
    return BrokenNet()


def build_with_example():
    return build(), torch.randn(2, 4, 8, 8)
'''


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    """The same model as a spec, .pt2, TorchScript, state dict and .safetensors."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("forms")
    source = root / "brokennet.py"
    source.write_text(BROKEN_NET)
    spec = importlib.util.spec_from_file_location("brokennet_for_tests", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # torch.save pickles the class by module name
    spec.loader.exec_module(module)
    model = module.build()
    example = torch.randn(2, 4, 8, 8)
    paths = {"spec": f"{source}:build"}
    paths["pt2"] = str(root / "model.pt2")
    torch.export.save(torch.export.export(model, (example,)), paths["pt2"])
    paths["torchscript"] = str(root / "model_ts.pt")
    paths["torchscript_traced"] = str(root / "model_traced.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(model).save(paths["torchscript"])
        torch.jit.trace(model, (example,), check_trace=False).save(paths["torchscript_traced"])
    paths["state_dict"] = str(root / "model_sd.pt")
    torch.save(model.state_dict(), paths["state_dict"])
    paths["safetensors"] = str(root / "model.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, paths["safetensors"])
    paths["whole"] = str(root / "whole.pt")
    torch.save(model, paths["whole"])
    return {"paths": paths, "model": model, "example": example, "module": module, "root": root}


def _il1(target, **load_options):
    result = lint_target(target, LintOptions(select=["IL1"], probe="never", load=LoadOptions(**load_options)))
    assert result.error is None, result.error
    return result


def _findings(result, with_severity=True):
    return {(f.code, f.location, str(f.severity)) if with_severity else (f.code, f.location) for f in result.findings}


def _layer_summary(graph):
    """Layers in order with their edges; parameterless layers (relu, add) by kind, since torch.fx
    and torch.export number repeated calls differently."""

    def label(name):
        layer = graph.layers[name]
        return layer.name if layer.params else layer.kind

    return [
        (label(layer.name), layer.kind, [label(i) for i in layer.inputs], layer.fan_in, layer.fan_out, layer.attrs.get("activation"), sorted((r, t.name) for r, t in layer.params.items()))
        for layer in graph.layers.values()
    ]


def test_spec_finds_every_il1_problem(forms):
    found = _findings(_il1(forms["paths"]["spec"]), with_severity=False)
    for expected in [("IL101", "fc2.weight"), ("IL102", "fc3.weight"), ("IL103", "fc4.weight"), ("IL104", "fc6.weight"), ("IL105", "fc5.weight")]:
        assert expected in found, f"{expected} not in {sorted(found)}"


def test_pt2_graph_is_the_fx_graph(forms):
    """Same layer names, kinds, edges, fans and parameter names from torch.fx and torch.export."""
    fx = graph_from_module(forms["model"], "live")
    exported = load(forms["paths"]["pt2"])
    assert exported.format == "pt2" and exported.has_structure
    assert _layer_summary(exported) == _layer_summary(fx)
    assert list(exported.tensors) == [name for name, _ in forms["model"].named_parameters()]
    conv = exported.layers["conv"]
    assert conv.kind == g.CONV and conv.attrs["groups"] == 2 and (conv.fan_in, conv.fan_out) == (2 * 9, 4 * 9)
    up = exported.layers["up"]
    assert up.kind == g.CONV_TRANSPOSE and up.unit_axis == 1 and (up.fan_in, up.fan_out) == (8 * 4, 4 * 4)
    assert exported.inputs == {"x": ((2, 4, 8, 8), "float32")}


def test_pt2_findings_equal_spec_findings(forms):
    assert _findings(_il1(forms["paths"]["pt2"])) == _findings(_il1(forms["paths"]["spec"]))


@pytest.mark.parametrize("form", ["torchscript", "torchscript_traced"])
def test_torchscript_graph_and_findings_equal_the_spec(forms, form):
    result = _il1(forms["paths"][form], trust_pickle=True)  # loading TorchScript runs its code: the opt-in
    assert result.graph.format == "torchscript"
    assert _layer_summary(result.graph) == _layer_summary(graph_from_module(forms["model"], "live"))
    assert _findings(result) == _findings(_il1(forms["paths"]["spec"]))


def test_torchscript_falls_back_to_module_order(forms, monkeypatch):
    from initlint.loaders.torch import torchscript

    def unreadable(*args):
        raise ValueError("unexpected node")

    monkeypatch.setattr(torchscript, "_graph_from_torchscript", unreadable)
    guessed = lint_target(forms["paths"]["torchscript"], LintOptions(select=["IL1"], probe="never", load=LoadOptions(trust_pickle=True)))
    assert "could not check" in guessed.error and "module order" in guessed.error  # never passed silently
    result = lint_target(forms["paths"]["torchscript"], LintOptions(select=["IL1"], probe="never", allow_empty=True, load=LoadOptions(trust_pickle=True)))
    assert any("registered" in note and "unexpected node" in note for note in result.notes), result.notes
    assert _findings(result, with_severity=False) == _findings(_il1(forms["paths"]["spec"]), with_severity=False)
    fc1 = result.graph.layers["fc1"]
    assert (fc1.kind, fc1.op, fc1.fan_in, fc1.fan_out) == (g.LINEAR, "Linear", 1024, 64)
    assert result.graph.layers["conv"].attrs["groups"] == 2


@pytest.mark.parametrize("form", ["state_dict", "safetensors"])
def test_weights_only_forms_flag_the_same_tensors(forms, form):
    result = _il1(forms["paths"][form])
    assert not result.graph.has_structure and result.graph.format == form
    assert any("structure rules need" in note for note in result.notes), result.notes
    spec = _findings(_il1(forms["paths"]["spec"]), with_severity=False)
    found = _findings(result, with_severity=False)
    # Without structure IL101 still names the zero matrix (as info); the value rules agree exactly.
    assert ("IL101", "fc2.weight") in found
    assert {f for f in found if f[0] != "IL101"} == {f for f in spec if f[0] != "IL101"}


def test_safetensors_values_match_the_model(forms):
    graph = load(forms["paths"]["safetensors"])
    for name, value in forms["model"].state_dict().items():
        tensor = graph.tensors[name]
        assert tensor.shape == tuple(value.shape)
        np.testing.assert_array_equal(tensor.values(), value.numpy())


def test_safetensors_reads_every_dtype_without_torch(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(1)
    values = torch.randn(6, 5, generator=generator)
    tensors = {
        "f32": values,
        "f64": values.double(),
        "f16": values.half(),
        "bf16": values.bfloat16(),
        "i64": torch.arange(12).reshape(3, 4),
        "i8": torch.arange(-4, 4, dtype=torch.int8),
        "u8": torch.arange(8, dtype=torch.uint8),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(2.5),
    }
    path = tmp_path / "all.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    monkeypatch.setitem(sys.modules, "torch", None)  # the reader must not need torch
    graph = load(str(path))
    assert graph.metadata["safetensors_metadata"] == {"format": "pt"}
    for name, value in tensors.items():
        expected = value.float().numpy() if value.dtype in (torch.float16, torch.bfloat16) else value.numpy()
        assert graph.tensors[name].shape == tuple(value.shape)
        np.testing.assert_array_equal(graph.tensors[name].values(), expected)
    assert graph.tensors["bf16"].dtype == "bfloat16"


def test_state_dict_nested_in_a_checkpoint(tmp_path, forms):
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": forms["model"].state_dict(), "optimizer": {"lr": 0.1}}, path)
    graph = load(str(path))
    assert set(graph.tensors) == set(forms["model"].state_dict())
    assert any("'state_dict'" in note for note in graph.notes)



@pytest.mark.parametrize("layout", ["flat", "lightning"])
def test_optimizer_state_in_a_checkpoint_is_not_read_as_weights(tmp_path, layout):
    """Adam's moments are tensors of the parameters' shapes saved beside the weights; read as
    weights they doubled the parameter count and drew findings on `optimizer.state.0.exp_avg`."""
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 8)).sum().backward()
    optimizer.step()
    weights = {f"net.{name}": value for name, value in model.state_dict().items()}
    if layout == "flat":  # weights at the top level, no nesting key initlint knows
        checkpoint = {"epoch": 3, **weights, "optimizer": optimizer.state_dict()}
    else:
        checkpoint = {"state_dict": weights, "optimizer_states": [optimizer.state_dict()]}
    path = tmp_path / "checkpoint.ckpt.pt"
    torch.save(checkpoint, path)
    graph = load(str(path))
    assert set(graph.tensors) == set(weights)
    assert sum(t.size for t in graph.tensors.values()) == sum(p.numel() for p in model.parameters())
    if layout == "flat":
        assert any("optimizer state" in note and "'optimizer'" in note for note in graph.notes), graph.notes


def test_a_file_with_only_an_optimizer_state_is_a_clean_error(tmp_path):
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "optimizer.pt"
    torch.save(optimizer.state_dict(), path)
    with pytest.raises(InitlintError, match="optimizer state only"):
        load(str(path))

def test_whole_module_pickle_needs_trust_pickle(forms):
    with pytest.raises(InitlintError, match="--trust-pickle") as error:
        load(forms["paths"]["whole"])
    assert "arbitrary code" in str(error.value) and "\n" not in str(error.value)
    graph = load(forms["paths"]["whole"], LoadOptions(trust_pickle=True))
    assert _layer_summary(graph) == _layer_summary(graph_from_module(forms["model"], "live"))


def test_spec_example_input_is_kept(forms):
    graph = load(forms["paths"]["spec"].replace(":build", ":build_with_example"))
    assert tuple(graph.metadata["example_input"].shape) == (2, 4, 8, 8)


UNTRACEABLE = '''
import torch
from torch import nn


class Untraceable(nn.Module):
    """torch.fx cannot branch on a shape; torch.export specializes it."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 8)

    def forward(self, x):
        if x.shape[-1] > 4:
            x = x + self.fc2(torch.relu(self.fc1(x)))
        return x


def build():
    return Untraceable()


def build_with_attribute():
    model = Untraceable()
    model.example_input = torch.randn(3, 8)
    return model
'''


def test_fx_failure_falls_back_to_torch_export_with_input_shape(tmp_path):
    (tmp_path / "untraceable.py").write_text(UNTRACEABLE)
    spec = f"{tmp_path / 'untraceable.py'}:build"
    graph = load(spec, LoadOptions(input_shapes={"": (3, 8)}))
    assert any("torch.export" in note and "--input-shape" in note for note in graph.notes), graph.notes
    kinds = {layer.name: layer.kind for layer in graph.layers.values()}
    assert kinds["fc1"] == g.LINEAR and kinds["fc2"] == g.LINEAR
    assert graph.activation_after(graph.layers["fc1"]).activation == "relu"
    adds = [layer for layer in graph.layers.values() if layer.kind == g.ADD]
    assert len(adds) == 1 and graph.layers["fc2"] in graph.producers(adds[0])

    attribute = load(f"{tmp_path / 'untraceable.py'}:build_with_attribute")
    assert any("example input from the spec" in note for note in attribute.notes), attribute.notes


def test_fx_failure_without_example_input_uses_module_order_and_says_how_to_fix(tmp_path):
    (tmp_path / "untraceable.py").write_text(UNTRACEABLE)
    graph = load(f"{tmp_path / 'untraceable.py'}:build")
    assert list(graph.layers) == ["fc1", "fc2", "output"]
    assert any("module registration order" in note and "--input-shape" in note for note in graph.notes), graph.notes


HF_MODELS = '''
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel


def gpt2():
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16, bos_token_id=0, eos_token_id=0))


def bert():
    return BertModel(BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=64, max_position_embeddings=16))
'''


# gpt2: gelu_new (tanh-approximated GELU, several ops when traced) is read as one gelu
@pytest.mark.parametrize("name, activation", [("gpt2", "gelu"), ("bert", "gelu")])
def test_transformers_models_load_through_torch_export(tmp_path, name, activation):
    pytest.importorskip("transformers")
    (tmp_path / "hf_models.py").write_text(HF_MODELS)
    graph = load(f"{tmp_path / 'hf_models.py'}:{name}")
    assert any("torch.export" in note for note in graph.notes), graph.notes
    weighted = graph.weighted_layers()
    # every parameter name is the user's (no wrapper prefix), and the projections are linear layers
    assert all(layer.weight.name in graph.tensors for layer in weighted)
    assert not any(name.startswith("wrapped") for name in graph.tensors)
    assert sum(layer.kind == g.LINEAR for layer in weighted) >= 8
    residual_adds = [layer for layer in graph.layers.values() if layer.kind == g.ADD and any(p.is_weighted for p in graph.upstream(layer))]
    assert len(residual_adds) >= 4  # attention and MLP residuals of two blocks
    assert any(layer.activation == activation for layer in graph.layers.values())
    if name == "gpt2":
        c_fc = graph.layers["transformer.h.0.mlp.c_fc"]  # Conv1D stores weight [in, out]
        assert (c_fc.unit_axis, c_fc.fan_in, c_fc.fan_out) == (-1, 32, 128)
        assert graph.layers["lm_head"].weight.name == "transformer.wte.weight"  # tied, named as named_parameters() does


# --- bad specs: one line, exit 2 -------------------------------------------------------------

BAD_SPECS = '''
import torch

def raises():
    raise RuntimeError("boom")

def not_a_module():
    return 42

model_instance = torch.nn.Linear(2, 2)
'''


@pytest.mark.parametrize(
    "attr, message",
    [
        ("raises", "raised RuntimeError: boom"),
        ("not_a_module", "returned int, not a torch.nn.Module"),
        ("missing", "has no attribute 'missing'"),
    ],
)
def test_bad_spec_is_a_one_line_error(tmp_path, attr, message):
    (tmp_path / "bad_specs.py").write_text(BAD_SPECS)
    result = CliRunner().invoke(main, [f"{tmp_path / 'bad_specs.py'}:{attr}"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if "bad_specs.py" in line]) == 1


def test_spec_file_with_syntax_error_and_missing_module(tmp_path):
    (tmp_path / "broken_syntax.py").write_text("def build(:\n")
    result = CliRunner().invoke(main, [f"{tmp_path / 'broken_syntax.py'}:build", "no_such_package_xyz.models:build"])
    assert result.exit_code == 2
    assert "SyntaxError" in result.output and "cannot import 'no_such_package_xyz.models'" in result.output
    assert "Traceback" not in result.output


def test_spec_may_name_a_module_instance(tmp_path):
    (tmp_path / "bad_specs.py").write_text(BAD_SPECS)
    graph = load(f"{tmp_path / 'bad_specs.py'}:model_instance")
    assert [layer.kind for layer in graph.layers.values()][0] == g.LINEAR


# --- without torch ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["spec", "pt2", "torchscript", "state_dict"])
def test_missing_torch_is_explained(forms, monkeypatch, form):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(InitlintError) as error:
        load(forms["paths"][form])
    assert "needs PyTorch" in str(error.value) and "pip install 'initlint[torch]'" in str(error.value)


def test_missing_torch_exit_code_and_safetensors_still_work(forms, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    # --jobs 1: the simulated missing torch lives in this process only, not in worker processes.
    result = CliRunner().invoke(main, [forms["paths"]["pt2"], forms["paths"]["safetensors"], "--select", "IL104", "--jobs", "1"])
    assert result.exit_code == 2
    assert "needs PyTorch" in result.output
    assert "fc6.weight: IL104" in result.output  # the other target's results are not hidden


def test_loading_a_spec_twice_gives_the_same_graph(forms):
    # load_spec registers the user's file under a private module name each time
    first = load(forms["paths"]["spec"])
    second = load(forms["paths"]["spec"])
    assert _layer_summary(first) == _layer_summary(second)


class _DataDependentBranch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 4)
        self.fc2 = torch.nn.Linear(4, 4)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        if bool(x.sum() > 0):
            x = self.fc2(x)
        return x


def test_torchscript_branch_on_data_falls_back_to_module_order(tmp_path):
    path = tmp_path / "branchy.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_DataDependentBranch()).save(str(path))
    graph = load(str(path), LoadOptions(trust_pickle=True))
    assert [layer.name for layer in graph.layers.values()] == ["fc1", "fc2", "output"]
    assert any("control flow hides" in note and "fc2.weight" in note for note in graph.notes), graph.notes


class _DataDependentWidth(torch.nn.Module):
    """Neither torch.fx (int() of a Proxy) nor torch.export (a data-dependent size) can trace it."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 16)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x):
        h = self.fc(x)
        width = int((h > 0).sum()) % 16 + 1
        return self.head(h[:, :width].sum(-1, keepdim=True).expand(-1, 16))


def test_failed_export_fallback_prints_nothing_on_stderr(capsys):
    """torch.export prints the partial graph it traced to stderr when it fails (over 100 KB for
    a transformer); initlint reports the failure in one note instead."""
    graph = graph_from_module(_DataDependentWidth(), "live", example_input=torch.randn(4, 16))
    assert any("torch.export with the example input" in note and "failed too" in note for note in graph.notes), graph.notes
    assert graph.metadata.get("structure") == "module-order"
    assert capsys.readouterr().err == ""
