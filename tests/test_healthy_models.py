"""No false alarms: default-initialized real architectures get no error-level finding from any rule.

torchvision and transformers models are built from their own code (no weights downloaded),
linted as live modules and as ONNX exports. The cheap ones run by default; the large ones
(VGG at 224 px, ResNet-50, DenseNet-121, ConvNeXt, ViT-B/16) when INITLINT_SLOW=1.
"""

from __future__ import annotations

import os
import warnings

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from initlint.engine import Severity, registry, run_rules  # noqa: E402
from initlint.testing import graph_of  # noqa: E402

slow = pytest.mark.skipif(not os.environ.get("INITLINT_SLOW"), reason="large model: set INITLINT_SLOW=1")
models = torchvision.models


def _hf(kind: str):
    transformers = pytest.importorskip("transformers")
    small = dict(vocab_size=128)
    if kind == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=4, n_embd=64, n_head=4, n_positions=32, **small))
    elif kind == "bert":
        config = transformers.BertConfig(num_hidden_layers=4, hidden_size=64, num_attention_heads=4, intermediate_size=128, max_position_embeddings=32, **small)
        model = transformers.BertForMaskedLM(config)
    else:
        config = transformers.LlamaConfig(num_hidden_layers=4, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128, max_position_embeddings=32, **small)
        model = transformers.LlamaForCausalLM(config)
    model.config.use_cache = False

    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, ids):
            # An explicit mask keeps the exporter off ops it cannot write (aten::diff).
            return self.m(input_ids=ids, attention_mask=torch.ones_like(ids)).logits

    return LogitsOnly()


def _image(size):
    return lambda: torch.randn(1, 3, size, size)


def _tokens():
    return torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))


CASES = [
    ("resnet18", models.resnet18, _image(64), ()),
    ("resnet18-zero-init-residual", lambda: models.resnet18(zero_init_residual=True), _image(64), ()),
    ("mobilenet_v3_small", models.mobilenet_v3_small, _image(64), ()),
    ("efficientnet_b0", models.efficientnet_b0, _image(64), ()),
    ("gpt2-small-config", lambda: _hf("gpt2"), _tokens, ()),
    ("bert-small-config", lambda: _hf("bert"), _tokens, ()),
    ("llama-small-config", lambda: _hf("llama"), _tokens, ()),
    ("resnet50", models.resnet50, _image(64), (slow,)),
    ("resnet50-zero-init-residual", lambda: models.resnet50(zero_init_residual=True), _image(64), (slow,)),
    ("vgg11", models.vgg11, _image(224), (slow,)),  # its ONNX export needs 224 px (adaptive pool 7x7)
    ("vgg11_bn", models.vgg11_bn, _image(224), (slow,)),
    ("densenet121", models.densenet121, _image(64), (slow,)),
    ("convnext_tiny", models.convnext_tiny, _image(64), (slow,)),
    ("vit_b_16", lambda: models.vit_b_16(image_size=32), _image(32), (slow,)),
]


@pytest.mark.parametrize(
    "build, example, form",
    [pytest.param(build, example, form, id=f"{name}-{form}", marks=marks) for name, build, example, marks in CASES for form in ("torch", "onnx")],
)
def test_healthy_model_has_no_error(build, example, form):
    torch.manual_seed(0)
    model = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = graph_of(model, form, example())
    run = run_rules(graph, [rule for rule in registry() if rule.stage == "static"])
    assert not run.failures, run.failures
    errors = [(f.code, f.location, f.message) for f in run.findings if f.severity >= Severity.ERROR]
    assert not errors, errors
    if form == "onnx" and graph.metadata.get("structure") != "module-order":
        # The signal reached every weighted layer: nothing was cut off by an op the pass dropped.
        from initlint.signal import signal_of

        sig = signal_of(graph)
        weighted = [layer for layer in graph.layers.values() if layer.is_weighted]
        assert weighted and all(sig[layer.name].q_out > 0 for layer in weighted if not layer.weight.stats.all_zero)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "resnet18"])
def test_eval_mode_export_with_batchnorm_folded_has_no_error(name, tmp_path):
    """Deployed exports fold BatchNorm into the convolutions (docs/science.md §10): still healthy."""
    import io

    import onnx

    from initlint.loaders.onnx import build_graph

    torch.manual_seed(0)
    model = getattr(models, name)().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), buffer, dynamo=False)  # constant folding on
    proto = onnx.load_from_string(buffer.getvalue())
    assert "BatchNormalization" not in {node.op_type for node in proto.graph.node}
    graph = build_graph(proto, tmp_path / "model.onnx")
    run = run_rules(graph, [rule for rule in registry() if rule.stage == "static"])
    errors = [(f.code, f.location, f.message) for f in run.findings if f.severity >= Severity.ERROR]
    assert not errors, errors
    from initlint.signal import signal_of

    assert any("conv+BatchNorm pairs of an eval-mode export" in note for note in signal_of(graph).notes)
