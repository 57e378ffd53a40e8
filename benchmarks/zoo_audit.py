"""Audit IL101-IL105 and the loaders on real, default-initialized models in every form.

    python benchmarks/zoo_audit.py                 # the whole zoo, every form
    python benchmarks/zoo_audit.py resnet18 timm:  # models whose name starts with one of these
    python benchmarks/zoo_audit.py --forms live,onnx-eval --no-plants

Every model is built with random init (no downloads) and saved in each form that applies: the
live module, ONNX (TorchScript exporter in eval mode, BatchNorm folded; in training mode; the
dynamo exporter for a few), a torch.export ``.pt2``, TorchScript, a state dict and safetensors.
A healthy model must have no IL1xx finding at warning or above. Then real mistakes are planted
(a zero layer before a ReLU, ``nn.init.uniform_``, constant-fill, copied rows, a NaN) and each
must be caught at its parameter's name in every form. Prints one table row per model x form.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import re
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from initlint.engine import Severity, registry, run_rules
from initlint.loaders import LoadOptions, load
from initlint.loaders.torch import graph_from_module

CODES = ("IL101", "IL102", "IL103", "IL104", "IL105")
ALL_FORMS = ("live", "onnx-eval", "onnx-train", "onnx-dynamo", "pt2", "torchscript", "state_dict", "safetensors")


@dataclass
class Entry:
    name: str
    build: Callable[[], nn.Module]
    example: Callable[[], tuple]  # positional example inputs
    forms: tuple[str, ...] = ("live", "onnx-eval", "onnx-train", "pt2", "torchscript", "state_dict", "safetensors")
    plants: list = field(default_factory=list)  # (label, mutate(model), {location: (code, least severity)})


# --- the zoo ---------------------------------------------------------------------------------


def _image(size=64, batch=2):
    return lambda: (torch.randn(batch, 3, size, size),)


def _tokens(length=8, batch=2, vocab=64):
    return lambda: (torch.randint(1, vocab, (batch, length)),)


def _tv(name, size=64, forms=None, **kwargs):
    import torchvision

    def build():
        return torchvision.models.get_model(name, weights=None, **kwargs)

    label = name + "".join(f"[{k}={v}]" for k, v in kwargs.items() if k not in ("aux_logits", "init_weights", "image_size"))
    return Entry(label, build, _image(size), **({"forms": forms} if forms else {}))


# The dynamo-based ONNX exporter is slow: a few models only.
DYNAMO = {"resnet18", "mobilenet_v3_small", "convnext_tiny", "vit_b_16", "llama", "bert", "peft-lora[B=0]"}
HF_FORMS = ("live", "onnx-eval", "pt2", "state_dict", "safetensors")


class _HFWrapper(nn.Module):
    """Calls a transformers model with keyword inputs and returns its first tensor output, so the
    exporters see plain tensors (a real user's export script does the same)."""

    def __init__(self, model, keys):
        super().__init__()
        self.model = model
        self.keys = keys

    def forward(self, *args):
        out = self.model(**dict(zip(self.keys, args)), return_dict=False)
        return out[0]


def _hf(label, config_factory, model_factory, keys=("input_ids",), example=None, forms=HF_FORMS, wrap=False):
    def build():
        torch.manual_seed(0)
        model = model_factory(config_factory())
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False
        return _HFWrapper(model, keys) if wrap else model

    return Entry(label, build, example or _tokens(), forms)


def _tiny(cls_name, **extra):
    import transformers

    base = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=64, max_position_embeddings=64)
    base.update(extra)
    return lambda: getattr(transformers, cls_name)(**base)


def _model(cls_name):
    import transformers

    return lambda config: getattr(transformers, cls_name)(config)


def zoo() -> list[Entry]:
    entries = [
        _tv("resnet18"),
        _tv("resnet18", zero_init_residual=True),
        _tv("resnet50"),
        _tv("resnet50", zero_init_residual=True),
        _tv("resnext50_32x4d", zero_init_residual=True),
        _tv("wide_resnet50_2"),
        _tv("vgg11", size=224),  # the TorchScript exporter needs 7 | input/32 for the adaptive pool
        _tv("vgg11_bn", size=224),
        _tv("densenet121"),
        _tv("mobilenet_v2"),
        _tv("mobilenet_v3_small"),
        _tv("mobilenet_v3_large"),
        _tv("efficientnet_b0"),
        _tv("efficientnet_v2_s"),
        _tv("regnet_y_400mf"),
        _tv("regnet_x_400mf"),
        _tv("convnext_tiny"),
        _tv("shufflenet_v2_x1_0"),
        _tv("squeezenet1_1"),
        _tv("mnasnet0_5"),
        _tv("googlenet", aux_logits=False, init_weights=True),
        _tv("inception_v3", size=96, aux_logits=False, init_weights=True),
        _tv("vit_b_16", size=32, image_size=32),
        _tv("swin_t"),
        _tv("maxvit_t", size=224, forms=("live", "onnx-train", "state_dict")),
    ]
    for name in ("fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"):
        entries.append(_segmentation(name))
    entries += [
        _hf("gpt2", lambda: __import__("transformers").GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=64, n_positions=64), _model("GPT2LMHeadModel")),
        _hf("bert", _tiny("BertConfig"), _model("BertForMaskedLM")),
        _hf("roberta", _tiny("RobertaConfig", max_position_embeddings=72), _model("RobertaForMaskedLM")),
        _hf("llama", _tiny("LlamaConfig", num_key_value_heads=2), _model("LlamaForCausalLM")),
        _hf("mistral", _tiny("MistralConfig", num_key_value_heads=2), _model("MistralForCausalLM")),
        _hf("qwen2", _tiny("Qwen2Config", num_key_value_heads=2), _model("Qwen2ForCausalLM")),
        _hf("gpt_neox", _tiny("GPTNeoXConfig"), _model("GPTNeoXForCausalLM")),
        _hf("opt", lambda: __import__("transformers").OPTConfig(hidden_size=32, ffn_dim=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=64, max_position_embeddings=64, word_embed_proj_dim=32), _model("OPTForCausalLM")),
        _hf(
            "t5",
            lambda: __import__("transformers").T5Config(d_model=32, d_kv=8, d_ff=64, num_heads=4, num_layers=2, vocab_size=64),
            _model("T5ForConditionalGeneration"),
            keys=("input_ids", "decoder_input_ids"),
            example=lambda: (torch.randint(1, 64, (2, 8)), torch.randint(1, 64, (2, 8))),
            wrap=True,
        ),
        _hf(
            "vit(hf)",
            lambda: __import__("transformers").ViTConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8),
            _model("ViTForImageClassification"),
            keys=("pixel_values",),
            example=_image(32),
        ),
        _hf(
            "clip-text",
            lambda: __import__("transformers").CLIPTextConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=64, max_position_embeddings=16),
            _model("CLIPTextModel"),
        ),
        _hf(
            "clip-vision",
            lambda: __import__("transformers").CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8),
            _model("CLIPVisionModel"),
            keys=("pixel_values",),
            example=_image(32),
        ),
        _hf(
            "whisper",
            lambda: __import__("transformers").WhisperConfig(
                d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=64, num_mel_bins=8, max_source_positions=16, max_target_positions=16,
                pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
            ),
            _model("WhisperForConditionalGeneration"),
            keys=("input_features", "decoder_input_ids"),
            example=lambda: (torch.randn(2, 8, 32), torch.randint(1, 64, (2, 4))),
            wrap=True,
        ),
    ]
    entries += _peft_entries() + _timm_entries()
    for entry in entries:
        if entry.name in DYNAMO:
            entry.forms = (*entry.forms, "onnx-dynamo")
    _add_plants(entries)
    return entries


def _segmentation(name):
    import torchvision

    def build():
        model = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=4, aux_loss=None)
        return _FirstOutput(model)

    return Entry(name, build, _image(64), ("live", "onnx-eval", "state_dict"))


class _FirstOutput(nn.Module):
    """torchvision segmentation models return a dict; exporters want a tensor."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def _peft_entries() -> list[Entry]:
    try:
        import peft  # noqa: F401
    except ImportError:
        return []
    entries = []
    for label, init, targets in (
        ("peft-lora[B=0]", True, ("q_proj", "v_proj")),
        ("peft-lora[B=0,mlp]", True, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
        ("peft-lora[random]", False, ("q_proj", "v_proj")),
        ("peft-lora[gaussian]", "gaussian", ("q_proj", "v_proj")),
        ("peft-lora[pissa]", "pissa", ("q_proj", "v_proj")),
        ("peft-lora[olora]", "olora", ("q_proj", "v_proj")),
    ):
        entries.append(Entry(label, _peft_builder(init, targets), _tokens(), HF_FORMS))
    # PEFT's embedding LoRA is the other way round: A = 0, B random
    entries.append(Entry("peft-lora[embed]", _peft_builder(True, ("q_proj",), embed=True), _tokens(), HF_FORMS))
    return entries


def _peft_builder(init, targets, embed=False):
    def build():
        import peft
        import transformers

        torch.manual_seed(0)
        base = transformers.LlamaForCausalLM(_tiny("LlamaConfig", num_key_value_heads=2)())
        base.config.use_cache = False
        modules = list(targets) + (["embed_tokens"] if embed else [])
        config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=modules, init_lora_weights=init, lora_dropout=0.0)
        return peft.get_peft_model(base, config)

    return build


def _timm_entries() -> list[Entry]:
    try:
        import timm  # noqa: F401
    except ImportError:
        return []
    forms = ("live", "onnx-eval", "onnx-train", "pt2", "state_dict")
    entries = []
    for name, size in (
        ("resnet26d", 64),
        ("efficientnet_b0", 64),
        ("convnext_atto", 64),
        ("vit_tiny_patch16_224", 224),
        ("deit_tiny_patch16_224", 224),
        ("regnety_002", 64),
        ("mobilenetv3_small_050", 64),
        ("resmlp_12_224", 224),
        ("nfnet_f0", 64),
        ("levit_128s", 224),
        ("poolformer_s12", 64),
    ):
        entries.append(Entry(f"timm:{name}", _timm_builder(name), _image(size), forms))
    return entries


def _timm_builder(name):
    def build():
        import timm

        return timm.create_model(name, pretrained=False, num_classes=10)

    return build


# --- planted mistakes --------------------------------------------------------------------------


def _zero(*names):
    def mutate(model):
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name in names:
                params[name].zero_()

    return mutate


def _uniform(name):
    def mutate(model):
        with torch.no_grad():
            nn.init.uniform_(dict(model.named_parameters())[name])

    return mutate


def _copy_rows(name):
    def mutate(model):
        with torch.no_grad():
            weight = dict(model.named_parameters())[name]
            weight[1 : weight.shape[0] // 2] = weight[0]

    return mutate


def _nan(name):
    def mutate(model):
        with torch.no_grad():
            dict(model.named_parameters())[name].view(-1)[3] = float("nan")

    return mutate


def _constant_all(value=0.05):
    def mutate(model):
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.ndim >= 2:
                    param.fill_(value)
                elif name.endswith("bias"):
                    param.zero_()

    return mutate


E, W = "error", "warning"


def _add_plants(entries: list[Entry]) -> None:
    plants = {
        "resnet18": [
            ("zero conv before BN+ReLU", _zero("layer2.0.conv1.weight"), {"layer2.0.conv1.weight": ("IL101", E)}),
            ("uniform_", _uniform("layer3.1.conv2.weight"), {"layer3.1.conv2.weight": ("IL105", E)}),
            ("copied filters", _copy_rows("layer1.1.conv1.weight"), {"layer1.1.conv1.weight": ("IL103", W)}),
            ("NaN", _nan("layer4.0.conv2.weight"), {"layer4.0.conv2.weight": ("IL104", E)}),
            ("constant everywhere", _constant_all(), {"conv1.weight": ("IL102", E), "layer1.0.conv1.weight": ("IL102", E)}),
        ],
        "vgg11": [
            ("zero conv+bias before ReLU", _zero("features.3.weight", "features.3.bias"), {"features.3.weight": ("IL101", E)}),
            ("zero hidden Linear+bias before ReLU", _zero("classifier.0.weight", "classifier.0.bias"), {"classifier.0.weight": ("IL101", E)}),
            ("uniform_", _uniform("features.6.weight"), {"features.6.weight": ("IL105", E)}),
            ("constant everywhere", _constant_all(), {"features.0.weight": ("IL102", E), "classifier.0.weight": ("IL102", E)}),
        ],
        "mobilenet_v2": [
            ("zero expand conv before BN+ReLU6", _zero("features.2.conv.0.0.weight"), {"features.2.conv.0.0.weight": ("IL101", E)}),
            ("NaN", _nan("classifier.1.weight"), {"classifier.1.weight": ("IL104", E)}),
        ],
        "densenet121": [
            ("uniform_", _uniform("features.denseblock1.denselayer2.conv1.weight"), {"features.denseblock1.denselayer2.conv1.weight": ("IL105", E)}),
        ],
        # U(0, 1) right behind a LayerNorm (here, GPT-2's c_fc, ConvNeXt's fc1): the norm's centering
        # cancels the shared offset at init, so IL105 warns of a dormant offset (docs/science.md §5).
        "vit_b_16": [
            ("uniform_ MLP", _uniform("encoder.layers.encoder_layer_0.mlp.0.weight"), {"encoder.layers.encoder_layer_0.mlp.0.weight": ("IL105", W)}),
            ("copied rows", _copy_rows("encoder.layers.encoder_layer_1.mlp.3.weight"), {"encoder.layers.encoder_layer_1.mlp.3.weight": ("IL103", W)}),
        ],
        "gpt2": [
            ("uniform_ c_fc", _uniform("transformer.h.0.mlp.c_fc.weight"), {"transformer.h.0.mlp.c_fc.weight": ("IL105", W)}),
            ("NaN in attention", _nan("transformer.h.1.attn.c_attn.weight"), {"transformer.h.1.attn.c_attn.weight": ("IL104", E)}),
        ],
        "bert": [
            ("zero intermediate (GELU) and output", _zero(
                "bert.encoder.layer.0.intermediate.dense.weight", "bert.encoder.layer.0.intermediate.dense.bias",
                "bert.encoder.layer.0.output.dense.weight", "bert.encoder.layer.0.output.dense.bias",
            ), {"bert.encoder.layer.0.intermediate.dense.weight": ("IL101", E)}),
            ("copied rows", _copy_rows("bert.encoder.layer.1.attention.self.query.weight"), {"bert.encoder.layer.1.attention.self.query.weight": ("IL103", W)}),
        ],
        "llama": [
            ("uniform_ up_proj", _uniform("model.layers.0.mlp.up_proj.weight"), {"model.layers.0.mlp.up_proj.weight": ("IL105", E)}),
            ("NaN", _nan("model.layers.1.self_attn.o_proj.weight"), {"model.layers.1.self_attn.o_proj.weight": ("IL104", E)}),
        ],
    }
    plants["timm:vit_tiny_patch16_224"] = [
        ("zero fc1 and fc2 around GELU", _zero("blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight", "blocks.0.mlp.fc2.bias"), {"blocks.0.mlp.fc1.weight": ("IL101", E)}),
    ]
    plants["timm:resnet26d"] = [
        ("zero conv before BN+ReLU", _zero("layer1.0.conv1.weight"), {"layer1.0.conv1.weight": ("IL101", E)}),
        ("NaN", _nan("layer3.0.conv2.weight"), {"layer3.0.conv2.weight": ("IL104", E)}),
    ]
    plants["timm:convnext_atto"] = [
        ("uniform_ MLP", _uniform("stages.1.blocks.0.mlp.fc1.weight"), {"stages.1.blocks.0.mlp.fc1.weight": ("IL105", W)}),
        ("copied rows", _copy_rows("stages.2.blocks.0.mlp.fc2.weight"), {"stages.2.blocks.0.mlp.fc2.weight": ("IL103", W)}),
    ]
    for entry in entries:
        entry.plants = plants.get(entry.name, [])
    lora_both_zero = [e for e in entries if e.name == "peft-lora[B=0]"]
    for entry in lora_both_zero:
        a = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
        entry.plants = [("LoRA A=0 and B=0", _zero(a), {a: ("IL101", E)})]


# --- forms -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """Exporters print graphs and warnings, some from C++: silence file descriptors 1 and 2."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _one(example: tuple):
    return example[0] if len(example) == 1 else example


def save_in_form(model: nn.Module, example: tuple, form: str, directory: Path) -> Path | None:
    """The file holding ``model`` in ``form`` (None for the live module)."""
    if form == "live":
        return None
    path = directory / f"model.{form}"
    with _quiet():
        if form.startswith("onnx"):
            path = path.with_suffix(".onnx")
            kwargs = {"dynamo": False, "do_constant_folding": True, "training": torch.onnx.TrainingMode.EVAL}
            if form == "onnx-train":
                kwargs.update(training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
                model.train()
            elif form == "onnx-dynamo":
                kwargs = {"dynamo": True, "external_data": False}
            if form != "onnx-train":
                model.eval()
            torch.onnx.export(model, example, str(path), opset_version=None if form == "onnx-dynamo" else 17, **kwargs)
            model.train()
        elif form == "pt2":
            path = path.with_suffix(".pt2")
            torch.export.save(torch.export.export(model, example, strict=False), str(path))
        elif form == "torchscript":
            path = path.with_suffix(".pt")
            model.eval()
            torch.jit.save(torch.jit.trace(model, example, check_trace=False), str(path))
            model.train()
        elif form == "state_dict":
            path = path.with_suffix(".pt")
            torch.save(model.state_dict(), str(path))
        elif form == "safetensors":
            from safetensors.torch import save_model

            path = path.with_suffix(".safetensors")
            save_model(model, str(path))
        else:
            raise ValueError(form)
    return path


def lint(graph):
    rules = registry().select(list(CODES))
    run = run_rules(graph, rules)
    if run.failures:
        raise RuntimeError(f"rule failures: {run.failures}")
    return run.findings


# --- the audit ---------------------------------------------------------------------------------


class _ReportingList(list):
    """A list that reports each row as it is appended, so a long audit shows progress."""

    def __init__(self, report):
        super().__init__()
        self.report = report

    def append(self, row) -> None:
        super().append(row)
        self.report(row)


@dataclass
class Row:
    model: str
    form: str
    case: str  # "healthy" or a plant label
    ok: bool | None  # None: torch could not save the model in this form (nothing for initlint to read)
    detail: str
    seconds: float


def audit_entry(entry: Entry, forms, plants: bool, directory: Path, report=lambda row: None) -> list[Row]:
    rows = _ReportingList(report)
    cases = [("healthy", None, {})] + (entry.plants if plants else [])
    for case, mutate, expected in cases:
        torch.manual_seed(0)
        try:
            model = entry.build()
            if mutate is not None:
                mutate(model)
            example = entry.example()
        except Exception as exc:
            rows.append(Row(entry.name, "-", case, False, f"build failed: {type(exc).__name__}: {str(exc)[:120]}", 0.0))
            continue
        for form in forms:
            if form not in entry.forms:
                continue
            start = time.perf_counter()
            try:
                # a copy per form: a training-mode export runs the model and updates BatchNorm's running statistics
                path = save_in_form(copy.deepcopy(model), example, form, directory)
            except Exception as exc:  # the exporter's limitation, not initlint's
                rows.append(Row(entry.name, form, case, None, f"SAVE FAILED (torch) {type(exc).__name__}: {' '.join(str(exc).split())[:120]}", time.perf_counter() - start))
                continue
            try:
                graph = graph_from_module(model, entry.name, example_input=_one(example)) if path is None else load(str(path), LoadOptions())
                findings = lint(graph)
            except Exception as exc:
                detail = f"CRASH {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
                if "-v" in sys.argv:
                    traceback.print_exc()
                rows.append(Row(entry.name, form, case, False, detail, time.perf_counter() - start))
                continue
            rows.append(Row(entry.name, form, case, *_judge(findings, expected, form, graph), time.perf_counter() - start))
    return rows


# Without the structure a zero matrix cannot be told from an intended one (LoRA B, a residual
# branch end): IL101 reports it as info there, by design (rules/IL101_zero_weights.py).
WEIGHTS_ONLY = ("state_dict", "safetensors")


def _judge(findings, expected: dict, form: str, graph) -> tuple[bool, str]:
    ok, detail = _verdict(findings, expected, form)
    weighted = len(graph.weighted_layers())
    if weighted == 0:
        return False, f"EMPTY GRAPH (no weighted layer); {detail}"
    return ok, f"{detail} [{weighted} weighted layers{'' if graph.has_structure else ', no structure'}]"


def _verdict(findings, expected: dict, form: str) -> tuple[bool, str]:
    flagged = [f for f in findings if f.severity >= Severity.WARNING]
    infos = len(findings) - len(flagged)
    if not expected:
        if not flagged:
            return True, f"clean ({infos} info)" if infos else "clean"
        shown = "; ".join(f"{f.code} {f.severity} {f.location}: {f.message[:90]}" for f in flagged[:4])
        return False, f"FALSE ALARM x{len(flagged)}: {shown}"
    missing = []
    for location, (code, least) in expected.items():
        hits = [f for f in findings if f.code == code and f.location == location]
        least = "info" if form in WEIGHTS_ONLY and code == "IL101" else least
        if not hits or max(f.severity for f in hits) < Severity.parse(least):
            near = [f"{f.code} {f.severity} {f.location}" for f in findings if f.code == code][:3]
            missing.append(f"{code}@{location} (got {near or 'none'})")
    if missing and all(_exporter_named(m, findings) for m in expected.items() if _missed(m, findings, form)):
        return False, "MISNAMED (caught under the exporter's tensor name) " + "; ".join(missing)
    if missing:
        return False, "MISSED " + "; ".join(missing)
    extra = [f for f in flagged if (f.location not in expected)]
    note = f" (+{len(extra)} other: {', '.join(sorted({f.code for f in extra}))})" if extra else ""
    return True, "caught" + note


def _missed(item, findings, form) -> bool:
    location, (code, least) = item
    least = "info" if form in WEIGHTS_ONLY and code == "IL101" else least
    return not any(f.code == code and f.location == location and f.severity >= Severity.parse(least) for f in findings)


def _exporter_named(item, findings) -> bool:
    """The mistake was caught, on a tensor the exporter renamed (onnx::Conv_12, val_34)."""
    location, (code, least) = item
    return any(f.code == code and f.severity >= Severity.parse(least) and re.match(r"^(onnx::\w+|val_\d+)$", f.location) for f in findings)


def _cell(rows: list[Row]) -> str:
    if not rows:
        return ""
    if any(r.ok is False and not r.detail.startswith("MISNAMED") for r in rows):
        return "FAIL"
    if any(r.ok is False for r in rows):
        return "named"
    if all(r.ok is None for r in rows):
        return "n/a"
    return "ok" + ("*" if any(r.ok is None for r in rows) else "")


def print_table(rows: list[Row], forms: list[str]) -> None:
    """One line per model: per form, ok (healthy clean, every plant caught at its name), named
    (caught, but reported under an exporter-generated tensor name), FAIL, or n/a (torch could not save)."""
    models = list(dict.fromkeys(r.model for r in rows))
    used = [f for f in forms if any(r.form == f for r in rows)]
    width = max(len(m) for m in models) if models else 10
    print(f"{'model':{width}}  plants  " + "  ".join(f"{f:>11}" for f in used))
    for model in models:
        mine = [r for r in rows if r.model == model]
        plants = len({r.case for r in mine}) - 1
        cells = [_cell([r for r in mine if r.form == f]) for f in used]
        print(f"{model:{width}}  {plants:>6}  " + "  ".join(f"{c:>11}" for c in cells))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="prefixes of model names to run (default: all)")
    parser.add_argument("--forms", default=",".join(ALL_FORMS))
    parser.add_argument("--no-plants", action="store_true")
    parser.add_argument("-v", action="store_true", help="tracebacks for crashes")
    parser.add_argument("--tsv", help="also append every row to this tab-separated file")
    parser.add_argument("--summarize", nargs="+", metavar="TSV", help="print the table and summary of earlier --tsv files and exit")
    args = parser.parse_args(argv)
    if args.summarize:
        rows = []
        for path in args.summarize:
            for line in Path(path).read_text().splitlines():
                model, form, case, ok, seconds, detail = line.split("\t")
                rows.append(Row(model, form, case, {"True": True, "False": False}.get(ok), detail, float(seconds)))
        return summarize(rows, list(ALL_FORMS), len({r.model for r in rows}), sum(r.seconds for r in rows))
    forms = args.forms.split(",")
    torch.set_num_threads(2)
    entries = [e for e in zoo() if not args.models or any(e.name.startswith(m) for m in args.models)]
    rows: list[Row] = []
    total = time.perf_counter()
    tsv = open(args.tsv, "a") if args.tsv else None

    def report(row: Row) -> None:
        mark = "n/a" if row.ok is None else "ok " if row.ok else "BAD"
        print(f"{mark} {row.model:28} {row.form:12} {row.case:36} {row.seconds:6.1f}s  {row.detail}", flush=True)
        if tsv:
            tsv.write("\t".join([row.model, row.form, row.case, str(row.ok), f"{row.seconds:.1f}", row.detail]) + "\n")
            tsv.flush()

    with tempfile.TemporaryDirectory() as tmp:
        for entry in entries:
            rows.extend(audit_entry(entry, forms, not args.no_plants, Path(tmp), report))
    return summarize(rows, forms, len(entries), time.perf_counter() - total)


def summarize(rows: list[Row], forms: list[str], models: int, seconds: float) -> int:
    print()
    print_table(rows, forms)
    bad = [r for r in rows if r.ok is False]
    healthy = [r for r in rows if r.case == "healthy" and r.ok is not None]
    planted = [r for r in rows if r.case != "healthy" and r.ok is not None]
    print()
    print(f"models {models}, runs {len(rows)} in {seconds:.0f}s")
    print(f"healthy runs: {len(healthy)}, clean {sum(r.ok for r in healthy)}")
    print(f"planted runs: {len(planted)}, caught at the right name {sum(r.ok for r in planted)}, caught under an exporter's name {sum(r.detail.startswith('MISNAMED') for r in planted)}")
    print(f"crashes: {sum('CRASH' in r.detail for r in rows)}; forms torch itself could not save: {sum(r.ok is None for r in rows)}")
    for row in bad:
        print(f"  BAD {row.model} {row.form} {row.case}: {row.detail}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
