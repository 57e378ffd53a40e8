"""IL101-IL105 on real, default-initialized models (torchvision, transformers, PEFT), in the
forms users lint them: live module, ONNX export, .pt2, TorchScript, state dict.

A fast, representative slice of ``benchmarks/zoo_audit.py``: healthy models must have no
finding at warning or above; planted mistakes must be caught at their parameter's name.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torch import nn  # noqa: E402

from initlint.engine import Severity, registry, run_rules  # noqa: E402
from initlint.loaders import LoadOptions, load  # noqa: E402
from initlint.loaders.torch import graph_from_module  # noqa: E402
from initlint.testing import export_onnx  # noqa: E402

IMAGE = (2, 3, 32, 32)


def _il1(graph):
    run = run_rules(graph, registry().select(["IL101", "IL102", "IL103", "IL104", "IL105"]))
    assert not run.failures, run.failures
    return run.findings


def _flags(findings):
    return [(f.code, str(f.severity), f.location, f.message[:100]) for f in findings if f.severity >= Severity.WARNING]


def _at(findings, code, location):
    return max((f.severity for f in findings if f.code == code and f.location == location), default=None)


def _graph(model, form, tmp_path, example):
    """The graph initlint reads for ``model`` saved in ``form``."""
    if form == "live":
        return graph_from_module(model, type(model).__name__, example_input=example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if form == "onnx-train":
            path = tmp_path / "model.onnx"
            export_onnx(model, example, path)
        elif form == "pt2":
            path = tmp_path / "model.pt2"
            torch.export.save(torch.export.export(model, (example,), strict=False), str(path))
        elif form == "torchscript":
            path = tmp_path / "model_ts.pt"
            torch.jit.trace(model.eval(), (example,), check_trace=False).save(str(path))
        elif form == "state_dict":
            path = tmp_path / "model_sd.pt"
            torch.save(model.state_dict(), path)
        elif form == "safetensors":
            from safetensors.torch import save_model

            path = tmp_path / "model.safetensors"
            save_model(model, str(path))
        else:
            raise ValueError(form)
    return load(str(path), LoadOptions(trust_pickle=form == "torchscript"))  # TorchScript runs its code on load: the opt-in


def _tv(name, **kwargs):
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, **kwargs)


# --- healthy models: nothing at warning or above --------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("resnet18", {}),
        ("resnet18", {"zero_init_residual": True}),
        ("mobilenet_v3_small", {}),
        ("shufflenet_v2_x0_5", {}),
        ("squeezenet1_1", {}),
        ("mnasnet0_5", {}),
        ("regnet_y_400mf", {}),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()) or "default",
)
def test_default_initialized_torchvision_model_is_clean(name, kwargs):
    graph = graph_from_module(_tv(name, **kwargs), name)
    assert len(graph.weighted_layers()) > 10
    assert not _flags(_il1(graph))


@pytest.mark.parametrize("form", ["onnx-train", "torchscript", "safetensors"])
def test_zero_init_residual_resnet_is_clean_in_every_form(form, tmp_path):
    graph = _graph(_tv("resnet18", zero_init_residual=True), form, tmp_path, torch.randn(IMAGE))
    assert len(graph.weighted_layers()) == 21
    assert not _flags(_il1(graph))


def test_tiny_gpt2_is_clean_and_zero_mlp_around_gelu_new_is_fatal():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=64, n_positions=32, use_cache=False)
    model = transformers.GPT2LMHeadModel(config)
    graph = graph_from_module(model, "gpt2", example_input=torch.randint(1, 64, (2, 8)))
    # Conv1D [in, out] layers and the tied embedding / head are all read
    assert {"transformer.h.0.attn.c_attn", "transformer.h.1.mlp.c_proj"} <= {layer.name for layer in graph.weighted_layers()}
    assert not _flags(_il1(graph))
    # gelu_new falls apart into mul/pow/tanh/add when traced; read as one activation, gelu(0) = 0
    # between two zero layers is fatal (before: its inner Add looked like a residual, no finding)
    assert graph.layers["transformer.h.0.mlp.act"].activation == "gelu"
    with torch.no_grad():
        for layer in (model.transformer.h[0].mlp.c_fc, model.transformer.h[0].mlp.c_proj):
            layer.weight.zero_()
            layer.bias.zero_()
    findings = _il1(graph_from_module(model, "gpt2", example_input=torch.randint(1, 64, (2, 8))))
    assert _at(findings, "IL101", "transformer.h.0.mlp.c_fc.weight") == Severity.ERROR


# --- planted mistakes: caught at the parameter's name, in every form ---------------------------


def _zeroed_resnet():
    model = _tv("resnet18")
    with torch.no_grad():
        model.layer2[0].conv1.weight.zero_()  # conv -> BatchNorm (beta 0) -> ReLU: fatal
    return model


@pytest.mark.parametrize("form, least", [("live", "error"), ("onnx-train", "error"), ("pt2", "error"), ("state_dict", "info")])
def test_zero_conv_before_batchnorm_relu_is_caught_in_resnet(form, least, tmp_path):
    findings = _il1(_graph(_zeroed_resnet(), form, tmp_path, torch.randn(IMAGE)))
    # without the structure a zero matrix may be intended (LoRA B): info, by design
    assert _at(findings, "IL101", "layer2.0.conv1.weight") == Severity.parse(least)
    assert [f for f in _flags(findings) if f[2] != "layer2.0.conv1.weight"] == []


def test_planted_value_mistakes_are_caught_in_a_resnet_state_dict(tmp_path):
    model = _tv("resnet18")
    with torch.no_grad():
        nn.init.uniform_(model.layer3[1].conv2.weight)
        model.layer1[1].conv1.weight[1:8] = model.layer1[1].conv1.weight[0]
        model.layer4[0].conv2.weight.view(-1)[3] = float("nan")
    findings = _il1(_graph(model, "state_dict", tmp_path, None))
    assert _at(findings, "IL105", "layer3.1.conv2.weight") == Severity.ERROR
    assert _at(findings, "IL103", "layer1.1.conv1.weight") == Severity.WARNING
    assert _at(findings, "IL104", "layer4.0.conv2.weight") == Severity.ERROR
    assert len(_flags(findings)) == 3


def _constant_resnet():
    model = _tv("resnet18")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                param.fill_(0.05)
            elif name.endswith("bias"):
                param.zero_()
    return model


@pytest.mark.parametrize("form", ["live", "safetensors"])
def test_constant_fill_of_every_layer_is_an_error_even_without_structure(form, tmp_path):
    findings = _il1(_graph(_constant_resnet(), form, tmp_path, torch.randn(IMAGE)))
    for location in ("conv1.weight", "layer1.0.conv1.weight", "layer4.1.conv2.weight", "fc.weight"):
        assert _at(findings, "IL102", location) == Severity.ERROR, location
    # a constant tensor is IL102's alone: its rounding-noise variance is no nonzero mean
    assert not [f for f in findings if f.code == "IL105"]


def test_constant_conv_before_batchnorm_relu_and_a_constant_conv_is_an_error():
    model = _tv("resnet18")
    with torch.no_grad():
        model.layer1[0].conv1.weight.fill_(0.05)  # conv -> BN(1, 0) -> ReLU -> constant conv: units stay alike
        model.layer1[0].conv2.weight.fill_(0.02)
    findings = _il1(graph_from_module(model, "resnet18"))
    assert _at(findings, "IL102", "layer1.0.conv1.weight") == Severity.ERROR
    # conv2 feeds a residual add with a random path: its neighbours break the symmetry, slowly
    # (docs/science.md §11): a warning, not an error
    assert _at(findings, "IL102", "layer1.0.conv2.weight") == Severity.WARNING


@pytest.mark.parametrize("form", ["pt2", "torchscript"])
def test_relu6_reaching_the_graph_as_hardtanh_still_blocks_a_zero_layer(form, tmp_path):
    # MobileNetV2's conv -> BN -> ReLU6: torch.export and TorchScript spell nn.ReLU6 hardtanh(x, 0, 6)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4)
    )
    with torch.no_grad():
        model[2].weight.zero_()
    graph = _graph(model, form, tmp_path, torch.randn(2, 3, 8, 8))
    assert [layer.activation for layer in graph.layers.values() if layer.kind == "activation"] == ["relu6", "relu6"]
    assert _at(_il1(graph), "IL101", "2.weight") == Severity.ERROR


# --- PEFT LoRA adapters ------------------------------------------------------------------------


def _lora_llama(init_lora_weights):
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=1, vocab_size=64, use_cache=False
    )
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=init_lora_weights, lora_dropout=0.0)
    return peft.get_peft_model(transformers.LlamaForCausalLM(config), lora)


A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"


def test_peft_lora_with_b_zero_is_clean_and_both_zero_is_fatal():
    model = _lora_llama(True)
    example = torch.randint(1, 64, (2, 8))
    graph = graph_from_module(model, "lora", example_input=example)
    assert B in graph.tensors and graph.tensors[B].stats.all_zero
    assert not _flags(_il1(graph))
    with torch.no_grad():
        dict(model.named_parameters())[A].zero_()
    findings = _il1(graph_from_module(model, "lora", example_input=example))
    assert _at(findings, "IL101", A) == Severity.ERROR


# --- ONNX loader: names the exporters made up are traced back to the module -----------------


def test_folded_batchnorm_conv_in_eval_export_is_named_after_its_module(tmp_path):
    import onnx

    from initlint.loaders.onnx import build_graph

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)

        def forward(self, x):
            return torch.relu(self.bn1(self.conv1(x)))

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Sequential(Block(), Block()), nn.Flatten(), nn.Linear(8 * 8 * 8, 4)).eval()
    with torch.no_grad():
        model[1][1].conv1.weight.zero_()
    path = tmp_path / "eval.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(path), dynamo=False, training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True)
    proto = onnx.load(str(path))
    # the exporter names the folded weight onnx::Conv_N; the node keeps the module scope
    assert any(n.name == "/1/1.1/conv1/Conv" for n in proto.graph.node)
    findings = _il1(build_graph(proto, path))
    assert _at(findings, "IL101", "1.1.conv1.weight") == Severity.ERROR


def test_zero_vectors_stored_with_broadcast_dims_are_not_matrices_in_a_state_dict(tmp_path):
    # ResMLP's Affine shift is (1, 1, C) and NFNet's skip-init gain (C, 1, 1, 1): zero vectors, not layers
    state = {"blocks.0.norm1.beta": torch.zeros(1, 1, 16), "stages.0.conv3.gain": torch.zeros(16, 1, 1, 1), "lora_B.weight": torch.zeros(16, 4), "fc.weight": torch.randn(16, 16)}
    torch.save(state, tmp_path / "sd.pt")
    findings = _il1(load(str(tmp_path / "sd.pt"), LoadOptions()))
    assert [(f.code, f.location, str(f.severity)) for f in findings] == [("IL101", "lora_B.weight", "info")]


def test_dynamo_export_transposed_linear_weight_is_named_after_its_module():
    """What torch.onnx.export(dynamo=True) writes for nn.Linear on a [batch, seq, features] input:
    the weight transposed to [in, out] as initializer val_N, MatMul then Add of the bias, and the
    module path in the node's pkg.torch.onnx.name_scopes (LLaMA's up_proj reads val_245)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from initlint.loaders.onnx import build_graph

    rng = np.random.default_rng(0)
    weights = {"val_0": rng.normal(0, 0.3, (8, 16)), "val_2": rng.uniform(0, 1, (16, 16)), "val_4": rng.normal(0, 0.2, (16, 4))}
    biases = {"0.bias": np.zeros(16), "2.bias": np.zeros(16), "4.bias": np.zeros(4)}
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in {**weights, **biases}.items()]
    nodes, previous = [], "input"
    for index, (weight, bias) in enumerate(zip(weights, biases)):
        module, call = str(2 * index), f"linear_{index}"
        matmul = helper.make_node("MatMul", [previous, weight], [f"mm_{index}"], name=f"node_MatMul_{index}")
        add = helper.make_node("Add", [f"mm_{index}", bias], [call], name=f"node_{call}")
        for node in (matmul, add):
            node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=repr(["", module, call]))
        nodes += [matmul, add]
        previous = call
        if index < 2:
            nodes.append(helper.make_node("Relu", [call], [f"relu_{index}"], name=f"node_relu_{index}"))
            previous = f"relu_{index}"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [2, 5, 8])],
        [helper.make_tensor_value_info(previous, onnx.TensorProto.FLOAT, [2, 5, 4])], initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    findings = _il1(build_graph(proto, "mlp.onnx"))
    assert _at(findings, "IL105", "val_2") is None  # U(0, 1) caught, but reported by the exporter's name
    assert _at(findings, "IL105", "2.weight") == Severity.ERROR


def test_two_zero_layers_around_gelu_decomposed_by_opset_17_export_are_fatal(tmp_path):
    """BERT's intermediate -> GELU -> output with both zero: gelu(0) = 0 feeds a zero layer, fatal
    (docs/science.md §5). The torch form says error; the opset-17 export stopped at Erf and said warning."""
    import onnx

    from initlint.loaders.onnx import build_graph

    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 4))
    with torch.no_grad():
        for layer in (model[2], model[4]):
            layer.weight.zero_()
            layer.bias.zero_()
    path = tmp_path / "gelu17.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(2, 8),), str(path), dynamo=False, opset_version=17)
    proto = onnx.load(str(path))
    assert "Erf" in {n.op_type for n in proto.graph.node} and "Gelu" not in {n.op_type for n in proto.graph.node}
    assert _at(_il1(graph_from_module(model, "mlp")), "IL101", "2.weight") == Severity.ERROR
    assert _at(_il1(build_graph(proto, path)), "IL101", "2.weight") == Severity.ERROR


def test_peft_adapter_file_with_both_lora_factors_zero_is_fatal_without_structure(tmp_path):
    from safetensors.torch import save_file

    prefix = "base_model.model.model.layers.0.self_attn"
    adapter = {
        f"{prefix}.q_proj.lora_A.weight": torch.zeros(4, 32),  # A = 0 and B = 0: fatal
        f"{prefix}.q_proj.lora_B.weight": torch.zeros(32, 4),
        f"{prefix}.v_proj.lora_A.weight": torch.randn(4, 32) * 0.1,  # the intended B = 0: info only
        f"{prefix}.v_proj.lora_B.weight": torch.zeros(32, 4),
    }
    save_file(adapter, str(tmp_path / "adapter_model.safetensors"))
    findings = _il1(load(str(tmp_path / "adapter_model.safetensors"), LoadOptions()))
    assert _at(findings, "IL101", f"{prefix}.q_proj.lora_A.weight") == Severity.ERROR
    assert _at(findings, "IL101", f"{prefix}.q_proj.lora_B.weight") == Severity.ERROR
    assert _at(findings, "IL101", f"{prefix}.v_proj.lora_B.weight") == Severity.INFO
