"""Right on real models: detection, false alarms, settled verdicts and cost, under the default options.

    python benchmarks/real_models.py                  # everything installed here
    python benchmarks/real_models.py --only plants    # plants | stock | trained
    python benchmarks/real_models.py --forms spec     # spec, onnx (default both)

(a) Detection: each planted class of mistake, written the way users write it, linted as a spec
    (this file's ``plant_*`` callables, returning (model, example_input)) and as its ONNX export,
    with the default options (probe auto): caught at the expected severity?
(b) False alarms: errors, and IL105/IL2xx/IL3xx warnings, on default-initialized library
    architectures (torchvision, timm, transformers, diffusers; small configs) and on the trained
    models shipped inside pip packages (rapidocr-onnxruntime, silero-vad, lpips).
(c) Settled verdicts: the share of warning-or-error findings with a prediction that the probe
    settled (confirmed or refuted).
(d) Cost: wall and CPU seconds (this process and the probe's child) per model.

A package that is not installed is skipped with a line saying so. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import resource
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from initlint.engine import Severity
from initlint.example_models import plain_mlp
from initlint.options import LintOptions
from initlint.runner import lint_target

HERE = Path(__file__).resolve()
ALARM_PREFIXES = ("IL105", "IL2", "IL3")  # init-time rules: a warning from them on a healthy model is a false alarm


class Wrapped(nn.Module):
    """A library model called the way its users call it, returning plain tensors (what exporters need)."""

    def __init__(self, model, call):
        super().__init__()
        self.model = model
        self.call = call

    def forward(self, *args):
        return self.call(self.model, *args)


def he(w):
    nn.init.kaiming_normal_(w, nonlinearity="relu")


def _linears(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


# --- (a) planted mistakes: each returns (model, example_input) -----------------------------------


def plant_uninitialized_memory():
    """A parameter made with torch.empty and never initialized: what the allocator left
    (1e38s, denormals, zeros), written deterministically."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    garbage = torch.tensor([3.4e38, -1.2e37, 0.0, 1e-40, 7.7e21, -2.0e-39, 0.0, 5.5e30])
    with torch.no_grad():
        model[2].weight.copy_(garbage.repeat(64 * 64 // 8).reshape(64, 64))
    return model, torch.randn(8, 16)


def plant_randn_logits():
    """weight = torch.randn(shape) on a 1000-100-10 ReLU MLP: logits std ≈ 230, loss ≈ 360."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1000, 100), nn.ReLU(), nn.Linear(100, 10))
    for layer in _linears(model):
        layer.weight = nn.Parameter(torch.randn(layer.weight.shape))
    return model, torch.randn(8, 1000)


def plant_all_batchnorm_gains_zero():
    """constant_(bn.weight, 0) on every BatchNorm of a ResNet-18 (not only the last of each branch)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.constant_(module.weight, 0)
    return model, torch.randn(2, 3, 64, 64)


def _tiled(which):
    torch.manual_seed(0)
    model = plain_mlp(6, "ReLU", he, width=64)
    with torch.no_grad():
        for layer in which(_linears(model)):
            layer.weight.copy_(layer.weight[0:1].expand_as(layer.weight))
    return model, torch.randn(8, 16)


def plant_tiled_rows_everywhere():
    """Every hidden layer a tiled copy of its first row."""
    return _tiled(lambda linears: linears[1:-1])


def plant_one_constant_layer():
    """One layer set to 0.05 among He-initialized ones: recovers slowly (a warning)."""
    torch.manual_seed(0)
    model = plain_mlp(6, "ReLU", he, width=64)
    nn.init.constant_(_linears(model)[3].weight, 0.05)
    return model, torch.randn(8, 16)


class DivideByFour(nn.Module):
    def forward(self, x):
        return x / 4


def plant_divide_after_relu():
    """x / 4 after each ReLU of a 10-layer He MLP: the signal shrinks 16x per layer."""
    torch.manual_seed(0)
    layers = []
    for layer in plain_mlp(10, "ReLU", he):
        layers.append(layer)
        if isinstance(layer, nn.ReLU):
            layers.append(DivideByFour())
    return nn.Sequential(*layers), torch.randn(8, 16)


class HandWrittenHardswish(nn.Module):
    def forward(self, x):
        return x * torch.nn.functional.relu6(x + 3) / 6


def plant_handwritten_hardswish():
    """A 10-layer PyTorch-default MLP with x * relu6(x + 3) / 6: caught as its nn.Hardswish twin is."""
    torch.manual_seed(0)
    layers = [nn.Linear(16, 64), HandWrittenHardswish()]
    for _ in range(8):
        layers += [nn.Linear(64, 64), HandWrittenHardswish()]
    return nn.Sequential(*layers, nn.Linear(64, 4)), torch.randn(8, 16)


def plant_gpt2_standard_normal():
    """GPT-2 (small config) with every weight re-drawn from N(0, 1)."""
    import transformers

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=32, vocab_size=128))
    model.config.use_cache = False
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 1)
    return _logits(model), torch.randint(0, 128, (2, 16))


def plant_bias_cascade():
    """A bias of -1 everywhere in a 10-layer He ReLU MLP: units die a few layers in."""
    torch.manual_seed(0)
    return plain_mlp(10, "ReLU", he, width=64, bias=-1.0), torch.randn(8, 16)


def plant_glorot_relu_20():
    torch.manual_seed(0)
    return plain_mlp(20, "ReLU", nn.init.xavier_uniform_, width=256), torch.randn(8, 16)


def plant_glorot_relu_8():
    torch.manual_seed(0)
    return plain_mlp(8, "ReLU", nn.init.xavier_uniform_, width=256), torch.randn(8, 16)


def plant_zero_unet_convs():
    """Every convolution weight of a small diffusers UNet zeroed (biases and norms untouched)."""
    model, example = stock_diffusers_unet2d()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.zero_()
    return model, example


# name -> (expected severity at least, packages it needs)
PLANTS = {
    "uninitialized_memory": ("error", ()),
    "randn_logits": ("error", ()),
    "all_batchnorm_gains_zero": ("error", ("torchvision",)),
    "tiled_rows_everywhere": ("error", ()),
    "one_constant_layer": ("warning", ()),
    "divide_after_relu": ("error", ()),
    "handwritten_hardswish": ("error", ()),
    "gpt2_standard_normal": ("error", ("transformers",)),
    "bias_cascade": ("error", ()),
    "glorot_relu_20": ("error", ()),
    "glorot_relu_8": ("error", ()),
    "zero_unet_convs": ("error", ("diffusers",)),
}


# --- (b) stock architectures, default init, small configs ----------------------------------------


def _logits(model):
    return Wrapped(model, lambda m, ids: m(input_ids=ids, attention_mask=torch.ones_like(ids)).logits)


def stock_resnet18():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10), torch.randn(2, 3, 64, 64)


def stock_resnet18_zero_init_residual():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10, zero_init_residual=True), torch.randn(2, 3, 64, 64)


def stock_mobilenet_v3_small():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(num_classes=10), torch.randn(2, 3, 64, 64)


def stock_timm_resnet26d():
    import timm

    torch.manual_seed(0)
    return timm.create_model("resnet26d", pretrained=False, num_classes=10), torch.randn(2, 3, 64, 64)


def stock_timm_convnext_atto():
    import timm

    torch.manual_seed(0)
    return timm.create_model("convnext_atto", pretrained=False, num_classes=10), torch.randn(2, 3, 64, 64)


def stock_gpt2():
    import transformers

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=32, vocab_size=128))
    model.config.use_cache = False
    return _logits(model), torch.randint(0, 128, (2, 16))


def stock_llama():
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128, max_position_embeddings=32, vocab_size=128)
    model = transformers.LlamaForCausalLM(config)
    model.config.use_cache = False
    return _logits(model), torch.randint(0, 128, (2, 16))


def stock_diffusers_unet2d():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
    )
    return Wrapped(unet, lambda m, x: m(x, 10).sample), torch.randn(2, 3, 16, 16)


def stock_diffusers_unet2d_condition():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=8,
    )
    return Wrapped(unet, lambda m, x, c: m(x, 10, encoder_hidden_states=c).sample), (torch.randn(2, 4, 16, 16), torch.randn(2, 7, 32))


def stock_diffusers_autoencoder_kl():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(32, 64), latent_channels=4,
        norm_num_groups=8, layers_per_block=1, sample_size=32,
    )
    return Wrapped(vae, lambda m, x: m(x).sample), torch.randn(2, 3, 32, 32)


def stock_detr():
    """HF DETR with its own ResNet backbone (no timm, no download): d_model 256 as released, one
    encoder and one decoder layer. Both heads are outputs, as in the model's users' code."""
    import transformers as t

    torch.manual_seed(0)
    config = t.DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False, num_queries=10, num_labels=5,
        backbone_config=t.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], out_features=["stage4"]),
        d_model=256, encoder_layers=1, decoder_layers=1, encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=256, decoder_ffn_dim=256,
    )
    detr = t.DetrForObjectDetection(config)
    return Wrapped(detr, lambda m, x: tuple(m(pixel_values=x)[k] for k in ("logits", "pred_boxes"))), torch.randn(1, 3, 64, 64)


def stock_whisper():
    import transformers as t

    torch.manual_seed(0)
    config = t.WhisperConfig(
        d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, vocab_size=64, num_mel_bins=8, max_source_positions=16, max_target_positions=16,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )
    whisper = t.WhisperForConditionalGeneration(config)
    whisper.config.use_cache = False
    # An explicit decoder mask keeps the exporter off aten::diff.
    call = lambda m, f, d: m(input_features=f, decoder_input_ids=d, decoder_attention_mask=torch.ones_like(d), use_cache=False).logits  # noqa: E731
    return Wrapped(whisper, call), (torch.randn(2, 8, 32), torch.randint(1, 64, (2, 4)))


def stock_swin():
    import transformers as t

    torch.manual_seed(0)
    config = t.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4, num_labels=10)
    return Wrapped(t.SwinForImageClassification(config), lambda m, x: m(pixel_values=x).logits), torch.randn(2, 3, 32, 32)


def stock_mamba():
    import transformers as t

    torch.manual_seed(0)
    config = t.MambaConfig(vocab_size=64, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4, use_cache=False)
    return Wrapped(t.MambaForCausalLM(config), lambda m, x: m(input_ids=x, use_cache=False).logits), torch.randint(1, 64, (2, 8))


def stock_nn_transformer():
    torch.manual_seed(0)
    model = nn.Transformer(d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64, batch_first=True)
    # Causality stated, not detected from the masks: the exporter cannot write the detection.
    call = lambda m, src, tgt: m(src, tgt, src_is_causal=False, tgt_is_causal=False, memory_is_causal=False)  # noqa: E731
    return Wrapped(model, call), (torch.randn(2, 6, 32), torch.randn(2, 5, 32))


STOCK = {
    "resnet18": ("torchvision",),
    "resnet18_zero_init_residual": ("torchvision",),
    "mobilenet_v3_small": ("torchvision",),
    "timm_resnet26d": ("timm",),
    "timm_convnext_atto": ("timm",),
    "gpt2": ("transformers",),
    "llama": ("transformers",),
    "diffusers_unet2d": ("diffusers",),
    "diffusers_unet2d_condition": ("diffusers",),
    "diffusers_autoencoder_kl": ("diffusers",),
    "detr": ("transformers",),
    "whisper": ("transformers",),
    "swin": ("transformers",),
    "mamba": ("transformers",),
    "nn_transformer": (),
}


def trained_files() -> list[tuple[str, Path]]:
    """Trained models that ship inside pip packages (only those installed here)."""
    found = []
    for package, pattern in (("rapidocr_onnxruntime", "*.onnx"), ("silero_vad", "*.onnx"), ("lpips", "*.pth")):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for path in sorted(Path(next(iter(spec.submodule_search_locations))).rglob(pattern)):
            found.append((package, path))
    return found


# --- running ------------------------------------------------------------------------------------


def missing(packages) -> list[str]:
    return [p for p in packages if importlib.util.find_spec(p) is None]


def export(model, example, path: Path) -> None:
    """ONNX as users export it: eval mode, opset 17; training mode where the eval-mode fast path
    cannot be exported (nn.Transformer's fused attention)."""
    args = example if isinstance(example, tuple) else (example,)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            model.eval()
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17)
        except Exception:
            model.train()
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17, training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
        finally:
            model.train()


@dataclass
class Row:
    group: str  # plant | stock | trained
    name: str
    form: str
    outcome: str = ""  # plants: caught/missed; healthy: clean/FALSE ALARM; or an error
    ok: bool = True
    codes: list = field(default_factory=list)  # (code, severity) at warning or above
    settled: int = 0
    predicted: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def lint(target: str):
    start_wall, start_cpu = time.perf_counter(), _cpu()
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        result = lint_target(target, LintOptions())
    return result, time.perf_counter() - start_wall, _cpu() - start_cpu


def judge(row: Row, result, expected: str | None) -> None:
    if result.error:
        row.outcome, row.ok = f"could not check: {result.error[:90]}", False
        return
    flagged = [f for f in result.findings if f.severity >= Severity.WARNING]
    row.codes = sorted({(f.code, str(f.severity)) for f in flagged})
    with_claim = [f for f in flagged if f.prediction is not None]
    row.predicted = len(with_claim)
    row.settled = sum(1 for f in with_claim if (f.probe or {}).get("verdict") in ("confirmed", "refuted"))
    worst = max((f.severity for f in flagged), default=None)
    if expected is not None:  # a plant: caught at the expected severity (a warning class must not be an error)
        want = Severity.parse(expected)
        row.ok = worst is not None and (worst >= want if want == Severity.ERROR else worst == want)
        row.outcome = f"caught ({worst})" if row.ok else f"MISSED (worst {worst}, want {expected})"
    else:
        alarms = [f for f in flagged if f.severity >= Severity.ERROR or f.code.startswith(ALARM_PREFIXES)]
        row.ok = not alarms
        row.outcome = "clean" if row.ok else "FALSE ALARM " + ", ".join(sorted({f"{f.code}:{f.severity}" for f in alarms}))


def run_built(group: str, name: str, build, expected, forms, directory: Path) -> list[Row]:
    rows = []
    for form in forms:
        row = Row(group, name, form)
        try:
            if form == "spec":
                result, row.wall_s, row.cpu_s = lint(f"{HERE}:{group}_{name}")
            else:
                model, example = build()
                path = directory / f"{group}_{name}.onnx"
                export(model, example, path)
                result, row.wall_s, row.cpu_s = lint(str(path))
            judge(row, result, expected)
        except Exception as exc:  # an exporter that cannot write the model: reported, not fatal
            row.outcome, row.ok = f"failed: {type(exc).__name__}: {str(exc)[:80]}", False
        rows.append(row)
        print(f"{group:7} {name:30} {form:5} {row.outcome[:70]:70} {row.wall_s:6.1f}s wall {row.cpu_s:6.1f}s cpu", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("plants", "stock", "trained"), action="append")
    parser.add_argument("--forms", default="spec,onnx")
    parser.add_argument("names", nargs="*", help="only models whose name starts with one of these")
    args = parser.parse_args(argv)
    groups = args.only or ["plants", "stock", "trained"]
    forms = args.forms.split(",")
    picked = lambda name: not args.names or any(name.startswith(p) for p in args.names)  # noqa: E731
    rows: list[Row] = []
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for group, table in (("plant", PLANTS if "plants" in groups else {}), ("stock", STOCK if "stock" in groups else {})):
            for name, entry in table.items():
                needs = entry[1] if group == "plant" else entry
                if not picked(name):
                    continue
                if missing(needs):
                    print(f"{group:7} {name:30} skipped: {', '.join(missing(needs))} not installed")
                    continue
                expected = entry[0] if group == "plant" else None
                rows += run_built(group, name, globals()[f"{group}_{name}"], expected, forms, directory)
        if "trained" in groups:
            files = trained_files()
            if not files:
                print("trained: none of rapidocr-onnxruntime, silero-vad, lpips is installed")
            for package, path in files:
                if not picked(package):
                    continue
                row = Row("trained", f"{package}/{path.name}", path.suffix.lstrip("."))
                result, row.wall_s, row.cpu_s = lint(str(path))
                judge(row, result, None)
                rows.append(row)
                print(f"trained {row.name:30} {row.form:5} {row.outcome[:70]:70} {row.wall_s:6.1f}s wall {row.cpu_s:6.1f}s cpu", flush=True)
    return summarize(rows)


def summarize(rows: list[Row]) -> int:
    print("\n## Summary\n")
    print("| group | models x forms | right | wrong | warning+ findings with a claim | settled by the probe | wall s (median / max) | CPU s (median / max) |")
    print("|---|---|---|---|---|---|---|---|")
    for group in ("plant", "stock", "trained"):
        mine = [r for r in rows if r.group == group]
        if not mine:
            continue
        walls = sorted(r.wall_s for r in mine)
        cpus = sorted(r.cpu_s for r in mine)
        predicted, settled = sum(r.predicted for r in mine), sum(r.settled for r in mine)
        share = f"{settled}/{predicted} ({settled / predicted:.0%})" if predicted else "0/0"
        print(
            f"| {group} | {len(mine)} | {sum(r.ok for r in mine)} | {sum(not r.ok for r in mine)} | {predicted} | {share} | "
            f"{walls[len(walls) // 2]:.1f} / {walls[-1]:.1f} | {cpus[len(cpus) // 2]:.1f} / {cpus[-1]:.1f} |"
        )
    wrong = [r for r in rows if not r.ok]
    for r in wrong:
        print(f"- {r.group} {r.name} ({r.form}): {r.outcome}  {r.codes}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
