"""Static-lint cost against the floor, per model size: time and peak memory ratios.

Builds GPT-2-shaped ONNX models of random weights (no downloads) at several sizes, then runs,
each in its own subprocess so that peak RSS is measured per run:

* floor: ``onnx.load`` the file and compute mean and variance of every initializer with numpy
  (the least any tool that looks at every weight must do);
* initlint: ``python -m initlint --probe never`` on the same file (the static rules only);
* startup: ``python -c "import onnx, numpy"`` against ``initlint`` on a tiny model.

Usage (benchmarks/write_performance_doc.py runs this and writes docs/performance.md from its --json output):

    python benchmarks/static_benchmark.py --sizes 10,500,2000 --repeat 3

Sizes are in MB of weights; the largest size stores its weights as external data (a separate
file beside the model). Files go to a temporary directory (``--workdir``) and are deleted
afterwards unless ``--keep``. Other processes sharing the CPU add noise: the minimum of
``--repeat`` runs is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

# (d_model, layers, vocab, context) per nominal size in MB; 4 bytes per float32 weight.
SHAPES = {
    1: (64, 2, 1000, 128),
    10: (256, 2, 4000, 512),
    100: (512, 6, 32000, 1024),
    500: (768, 12, 50257, 1024),  # GPT-2 small, 124M parameters
    2000: (1024, 36, 50257, 1024),  # 506M parameters
}
EXTERNAL_FROM_MB = 1000
FLOOR = """
import sys
import onnx
from onnx import numpy_helper
model = onnx.load(sys.argv[1])
for init in model.graph.initializer:
    values = numpy_helper.to_array(init)
    values.mean()
    values.var()
"""


@dataclass
class Spec:
    name: str
    shape: tuple[int, ...]
    kind: str  # "weight" (normal, std 0.02), "zeros", "ones"


def gpt2_graph(d: int, layers: int, vocab: int, context: int) -> tuple[list, list[Spec]]:
    """Nodes and initializer specs of a GPT-2-style decoder stack (weights stored [in, out])."""
    specs = [Spec("wte", (vocab, d), "weight"), Spec("wpe", (context, d), "weight")]
    nodes = [
        helper.make_node("Gather", ["wte", "input_ids"], ["tok"], name="wte_lookup"),
        helper.make_node("Gather", ["wpe", "position_ids"], ["pos"], name="wpe_lookup"),
        helper.make_node("Add", ["tok", "pos"], ["h0"], name="embed_sum"),
    ]
    specs.append(Spec("split_sizes", (3,), "split"))
    x = "h0"
    for i in range(layers):
        p = f"h.{i}."
        specs += [
            Spec(p + "ln_1.weight", (d,), "ones"), Spec(p + "ln_1.bias", (d,), "zeros"),
            Spec(p + "attn.c_attn.weight", (d, 3 * d), "weight"), Spec(p + "attn.c_attn.bias", (3 * d,), "zeros"),
            Spec(p + "attn.c_proj.weight", (d, d), "weight"), Spec(p + "attn.c_proj.bias", (d,), "zeros"),
            Spec(p + "ln_2.weight", (d,), "ones"), Spec(p + "ln_2.bias", (d,), "zeros"),
            Spec(p + "mlp.c_fc.weight", (d, 4 * d), "weight"), Spec(p + "mlp.c_fc.bias", (4 * d,), "zeros"),
            Spec(p + "mlp.c_proj.weight", (4 * d, d), "weight"), Spec(p + "mlp.c_proj.bias", (d,), "zeros"),
        ]
        v = lambda s: p + s  # noqa: E731 - value names of this block
        nodes += [
            helper.make_node("LayerNormalization", [x, v("ln_1.weight"), v("ln_1.bias")], [v("a")], name=v("ln_1"), axis=-1),
            helper.make_node("MatMul", [v("a"), v("attn.c_attn.weight")], [v("qkv0")], name=v("attn.c_attn")),
            helper.make_node("Add", [v("qkv0"), v("attn.c_attn.bias")], [v("qkv")], name=v("attn.c_attn.add")),
            helper.make_node("Split", [v("qkv"), "split_sizes"], [v("q"), v("k"), v("v")], name=v("attn.split"), axis=-1),
            helper.make_node("Transpose", [v("k")], [v("kt")], name=v("attn.kt"), perm=[0, 2, 1]),
            helper.make_node("MatMul", [v("q"), v("kt")], [v("scores")], name=v("attn.scores")),
            helper.make_node("Softmax", [v("scores")], [v("probs")], name=v("attn.softmax"), axis=-1),
            helper.make_node("MatMul", [v("probs"), v("v")], [v("ctx")], name=v("attn.context")),
            helper.make_node("MatMul", [v("ctx"), v("attn.c_proj.weight")], [v("o0")], name=v("attn.c_proj")),
            helper.make_node("Add", [v("o0"), v("attn.c_proj.bias")], [v("o")], name=v("attn.c_proj.add")),
            helper.make_node("Add", [x, v("o")], [v("x1")], name=v("residual_1")),
            helper.make_node("LayerNormalization", [v("x1"), v("ln_2.weight"), v("ln_2.bias")], [v("b")], name=v("ln_2"), axis=-1),
            helper.make_node("MatMul", [v("b"), v("mlp.c_fc.weight")], [v("f0")], name=v("mlp.c_fc")),
            helper.make_node("Add", [v("f0"), v("mlp.c_fc.bias")], [v("f")], name=v("mlp.c_fc.add")),
            helper.make_node("Gelu", [v("f")], [v("g")], name=v("mlp.act")),
            helper.make_node("MatMul", [v("g"), v("mlp.c_proj.weight")], [v("m0")], name=v("mlp.c_proj")),
            helper.make_node("Add", [v("m0"), v("mlp.c_proj.bias")], [v("m")], name=v("mlp.c_proj.add")),
            helper.make_node("Add", [v("x1"), v("m")], [v("out")], name=v("residual_2")),
        ]
        x = v("out")
    specs += [Spec("ln_f.weight", (d,), "ones"), Spec("ln_f.bias", (d,), "zeros")]
    nodes.append(helper.make_node("LayerNormalization", [x, "ln_f.weight", "ln_f.bias"], ["last_hidden_state"], name="ln_f", axis=-1))
    return nodes, specs


def tensor_bytes(spec: Spec, d: int, rng: np.random.Generator) -> bytes:
    if spec.kind == "split":
        return np.array([d, d, d], np.int64).tobytes()
    n = int(np.prod(spec.shape))
    if spec.kind == "weight":
        return (rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)).tobytes()
    return (np.ones(n, np.float32) if spec.kind == "ones" else np.zeros(n, np.float32)).tobytes()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def build_model(path: Path, size_mb: int, external: bool, seed: int = 0) -> int:
    """Write the model (streaming: one tensor in memory at a time). Returns the weight bytes."""
    d, layers, vocab, context = SHAPES[size_mb]
    nodes, specs = gpt2_graph(d, layers, vocab, context)
    rng = np.random.default_rng(seed)
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "sequence"]),
    ]
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", d])]
    graph = helper.make_graph(nodes, f"gpt2_{size_mb}mb", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], producer_name="initlint-benchmark")

    def meta(spec: Spec) -> TensorProto:
        dtype = TensorProto.INT64 if spec.kind == "split" else TensorProto.FLOAT
        return TensorProto(name=spec.name, dims=list(spec.shape), data_type=dtype)

    total = 0
    if external:
        data_name = path.name + ".data"
        with open(path.parent / data_name, "wb") as data:
            for spec in specs:
                payload = tensor_bytes(spec, d, rng)
                tensor = meta(spec)
                tensor.data_location = TensorProto.EXTERNAL
                for key, value in (("location", data_name), ("offset", str(data.tell())), ("length", str(len(payload)))):
                    tensor.external_data.add(key=key, value=value)
                data.write(payload)
                total += len(payload)
                model.graph.initializer.append(tensor)
        path.write_bytes(model.SerializeToString())
        return total

    # Embedded raw data, written field by field: ModelProto.graph (7) -> GraphProto.initializer (5)
    # -> TensorProto.raw_data (9), so the builder never holds the whole model.
    graph_bytes = model.graph.SerializeToString()
    model.ClearField("graph")
    entries = []
    for spec in specs:
        nbytes = 4 * int(np.prod(spec.shape)) if spec.kind != "split" else 24
        head = meta(spec).SerializeToString() + _key(9, 2) + _varint(nbytes)
        entries.append((spec, head, nbytes))
    graph_len = len(graph_bytes) + sum(len(_key(5, 2)) + len(_varint(len(h) + n)) + len(h) + n for _, h, n in entries)
    with open(path, "wb") as out:
        out.write(model.SerializeToString())
        out.write(_key(7, 2) + _varint(graph_len) + graph_bytes)
        for spec, head, nbytes in entries:
            payload = tensor_bytes(spec, d, rng)
            assert len(payload) == nbytes
            out.write(_key(5, 2) + _varint(len(head) + nbytes) + head + payload)
            total += nbytes
    return total


def measure(argv: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one subprocess."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.stderr and proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed with exit {code}: {stderr.strip()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def best_of(argv: list[str], repeat: int) -> tuple[float, float, float]:
    """The minimum of each measure over ``repeat`` runs: other load only ever adds."""
    runs = [measure(argv) for _ in range(repeat)]
    return tuple(min(r[i] for r in runs) for i in range(3))


def _row(model: str, weight_bytes: int, floor, lint) -> dict:
    return {
        "model": model,
        "weights_mb": weight_bytes / 1e6,
        "floor_s": floor[0], "initlint_s": lint[0],
        "floor_cpu_s": floor[1], "initlint_cpu_s": lint[1],
        "floor_rss_mb": floor[2], "initlint_rss_mb": lint[2],
    }


def build_in_subprocess(path: Path, size_mb: int, external: bool) -> int:
    """Build in a child process: a forked child's peak RSS starts from its parent's, so the
    measuring process must stay small."""
    argv = [sys.executable, __file__, "--build", str(path), str(size_mb)] + (["--external"] if external else [])
    return int(subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--build":
        print(build_model(Path(sys.argv[2]), int(sys.argv[3]), "--external" in sys.argv))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,500,2000", help=f"comma-separated MB, from {sorted(SHAPES)}")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="where the models are written (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the model files")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="initlint-bench-", dir=args.workdir))
    python = sys.executable
    initlint = [python, "-m", "initlint", "--probe", "never", "--quiet"]
    rows = []
    try:
        tiny = workdir / "tiny.onnx"
        build_in_subprocess(tiny, 1, external=False)
        floor = best_of([python, "-c", "import onnx, numpy"], args.repeat + 2)
        lint = best_of([*initlint, str(tiny)], args.repeat + 2)
        rows.append(_row("startup: tiny model vs import onnx, numpy", tiny.stat().st_size, floor, lint))
        for size in sizes:
            external = size >= EXTERNAL_FROM_MB
            path = workdir / f"gpt2_{size}mb.onnx"
            t0 = time.perf_counter()
            weight_bytes = build_in_subprocess(path, size, external)
            print(f"built {path.name} ({weight_bytes / 1e6:.0f} MB of weights{', external data' if external else ''}) in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            floor = best_of([python, "-c", FLOOR, str(path)], args.repeat)
            lint = best_of([*initlint, str(path)], args.repeat)
            rows.append(_row(f"gpt2 {size} MB{' (external data)' if external else ''}", weight_bytes, floor, lint))
            for leftover in workdir.glob(f"gpt2_{size}mb.onnx*"):
                if not args.keep:
                    leftover.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    header = f"{'model':<42} {'weights MB':>10} {'wall s floor/initlint':>22} {'x':>5} {'CPU s floor/initlint':>21} {'x':>5} {'peak RSS MB floor/initlint':>27} {'RSS/weights':>11}"
    print(header)
    for row in rows:
        rss_ratio = f"{row['initlint_rss_mb'] / row['weights_mb']:.2f}" if row["weights_mb"] >= 5 else "-"
        print(
            f"{row['model']:<42} {row['weights_mb']:>10.1f} {row['floor_s']:>10.2f} / {row['initlint_s']:<9.2f} {row['initlint_s'] / row['floor_s']:>5.2f} "
            f"{row['floor_cpu_s']:>9.2f} / {row['initlint_cpu_s']:<9.2f} {row['initlint_cpu_s'] / row['floor_cpu_s']:>5.2f} "
            f"{row['floor_rss_mb']:>13.0f} / {row['initlint_rss_mb']:<11.0f} {rss_ratio:>11}"
        )
    print(f"(best of {args.repeat} runs each; machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, numpy {np.__version__}, onnx {onnx.__version__})")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
