"""What the dynamic probe costs.

1. The probe (one seeded forward + backward pass with hooks, more only where a measurement is
   near a threshold, the private copy of the model and the zero-gradient bookkeeping) as a ratio
   to one plain forward + backward of the same model on the same batch, in the same mode
   (normalization in training mode).
2. What ``--probe auto`` does per model with no example input: whether it fits the auto budget
   (initlint/probe/budget.py), the input the probe picks, the seeds it runs and its time.
3. The end-to-end time of ``initlint --probe always`` on a ResNet-50-sized model (a fresh
   process: import, build, trace, static rules, probe, report).

Run: python benchmarks/probe_benchmark.py [--quick]   (needs torch and torchvision; CPU)
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

from initlint.loaders.torch import graph_from_module
from initlint.probe import ProbeOptions, run_probe
from initlint.probe.budget import auto_budget_refusal
from initlint.probe.measure import standard_loss
from initlint.probe.model import set_probe_mode


def deep_mlp():
    layers = []
    for i in range(30):
        layers += [nn.Linear(64 if i == 0 else 256, 256), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(256, 10)), (256, 64)


def resnet18():
    import torchvision

    return torchvision.models.resnet18(), (16, 3, 64, 64)


def resnet50():
    import torchvision

    return torchvision.models.resnet50(), (8, 3, 112, 112)


# CPU time of this process with one intra-op thread: on a shared machine wall time swings by
# an order of magnitude with other jobs, CPU time measures the work itself.
clock = time.process_time


def plain_step_seconds(module, x) -> float:
    start = clock()
    module.zero_grad(set_to_none=True)
    loss, _ = standard_loss(module(x), 0)
    loss.backward()
    return clock() - start


def probe_seconds(graph, shape) -> tuple[float, dict]:
    start = clock()
    probe = run_probe(graph, {"": shape}, None, ProbeOptions(timeout_s=600))
    elapsed = clock() - start
    assert probe.ok, probe.reason
    return elapsed, probe


def compare(model, shape, repeats: int) -> tuple[float, float, dict]:
    """Best-of-N of each, interleaved: on a shared machine the minimum is the honest cost."""
    plain_module = copy.deepcopy(model)
    set_probe_mode(plain_module)
    x = torch.randn(shape)
    plain_step_seconds(plain_module, x)  # warm-up: allocator and kernels
    graph = graph_from_module(model, "bench")
    for tensor in graph.tensors.values():
        tensor.stats  # computed once by the static rules in a real run, and shared with the probe
    plain, probe_times, probe = [], [], {}
    for _ in range(repeats):
        plain.append(plain_step_seconds(plain_module, x))
        elapsed, probe = probe_seconds(graph, shape)
        probe_times.append(elapsed)
    return min(plain), min(probe_times), probe


def end_to_end(spec: str) -> tuple[float, dict]:
    """Wall time of a fresh process (all threads), as a user sees it, and its JSON result. The
    probe gets 300 s so that the number is that of a finished probe (the default budget is 60)."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "initlint", spec, "--probe", "always", "--probe-timeout", "300", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"initlint failed on {spec}: {done.stderr.strip()[-400:]}")
    return elapsed, json.loads(done.stdout)["results"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no ResNet-50 ratio")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    repeats = 3 if args.quick else 5
    builders = [deep_mlp, resnet18] + ([] if args.quick else [resnet50])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, CPU; CPU seconds, best of {repeats}")
    print(f"{'model':<10} {'batch shape':<20} {'fwd+bwd s':>10} {'probe s':>9} {'ratio':>6}  grad ratio")
    for build in builders:
        model, shape = build()
        plain, probe_s, probe = compare(model, shape, repeats)
        print(f"{build.__name__:<10} {str(shape):<20} {plain:>10.3f} {probe_s:>9.3f} {probe_s / plain:>5.2f}x  {probe.gradient_ratio:.3g} ({len(probe.seeds)} seed(s))")
    print()
    print("--probe auto, no example input (wall seconds of run_probe; the budget is initlint/probe/budget.py):")
    print(f"{'model':<16} {'parameters':>12} {'auto':>5} {'input':<20} {'seeds':>5} {'probe s':>8} {'peak RSS':>9}  (peak of this process so far)")
    for build in auto_models(args.quick):
        model = build()
        graph = graph_from_module(model, build.__name__)
        refusal = auto_budget_refusal(graph)
        parameters = sum(t.size for t in graph.tensors.values())
        if refusal:
            print(f"{build.__name__:<16} {parameters:>12,} {'skip':>5}  ({refusal})")
            continue
        start = time.perf_counter()
        probe = run_probe(graph, {}, None, ProbeOptions())
        shape = "x".join(str(d) for d in next(iter(probe.input_shapes.values()), []))
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{build.__name__:<16} {parameters:>12,} {'run':>5} {shape:<20} {len(probe.seeds):>5} {time.perf_counter() - start:>8.1f} {peak_gb:>7.1f} GB  {probe.status}")
    spec = f"{Path(__file__).resolve()}:resnet50_spec"
    elapsed, result = end_to_end(spec)
    probe = result["probe"] or {}
    shapes = probe.get("input_shapes")
    il4 = [f["code"] for f in result["findings"] if f["code"].startswith("IL4")]
    print(f"end to end (wall): initlint {Path(spec).name} --probe always: {elapsed:.1f} s "
          f"(probe {probe.get('status')}, {probe.get('elapsed_s')} s, input {shapes}, gradient ratio {probe.get('gradient_ratio')}, IL4xx findings: {il4 or 'none'})")


def auto_models(quick: bool):
    import torchvision

    def glorot_relu_mlp_20():
        return deep_mlp()[0]

    def small_unet():
        from diffusers import UNet2DModel

        class Wrapped(nn.Module):
            def __init__(self):
                super().__init__()
                self.unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
                                        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)

            def forward(self, x):
                return self.unet(x, 10).sample

        return Wrapped()

    models = [glorot_relu_mlp_20, torchvision.models.resnet18, torchvision.models.mobilenet_v3_small]
    if not quick:
        models += [torchvision.models.resnet50, small_unet, torchvision.models.wide_resnet50_2, torchvision.models.vit_b_16,
                   torchvision.models.vgg11, torchvision.models.vgg16, torchvision.models.vit_l_16]
    return models


def resnet50_spec():
    """A ResNet-50 with torchvision's default init, probed at the input size the probe infers."""
    import torchvision

    return torchvision.models.resnet50()


if __name__ == "__main__":
    main()
