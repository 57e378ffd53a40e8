"""Static analysis grows linearly with the graph: time per shape as the node count grows 10x.

Builds ONNX models in memory (no downloads) of two shapes that once made graph building or
analysis quadratic:

* fan-out: one MatMul whose output feeds N ``Relu`` nodes (one value with N consumers);
* chain: N ``MatMul`` + ``Tanh`` pairs in a row (a deep graph).

Each model is linted in this process with ``--probe never`` settings (``lint_target``), timing
load, rules and signal propagation together. The CPU time of this process is reported (other
processes sharing the machine do not inflate it); ``ratio`` is the time at 10N over the time at
N, ~10 for linear growth, ~100 for quadratic.

    python benchmarks/graph_scaling.py --nodes 5000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def fan_out(count: int) -> onnx.ModelProto:
    """One value read by ``count`` Relu nodes, each a graph output."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32) * 0.5, "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc")]
    nodes += [helper.make_node("Relu", ["h"], [f"r{i}"], name=f"relu{i}") for i in range(count)]
    outputs = [helper.make_tensor_value_info(f"r{i}", TensorProto.FLOAT, [1, 8]) for i in range(count)]
    graph = helper.make_graph(nodes, "fan_out", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])], outputs, [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def chain(count: int) -> onnx.ModelProto:
    """``count`` nodes: MatMul and Tanh pairs, each MatMul with its own 4x4 weight."""
    rng = np.random.default_rng(0)
    nodes, inits, value = [], [], "x"
    for i in range(count // 2):
        inits.append(numpy_helper.from_array((rng.standard_normal((4, 4)) * 0.5).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [value, f"w{i}"], [f"m{i}"], name=f"fc{i}"))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"t{i}"], name=f"tanh{i}"))
        value = f"t{i}"
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info(value, TensorProto.FLOAT, [1, 4])], inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


SHAPES = {"fan-out": fan_out, "chain": chain}


def lint_seconds(path: Path, repeat: int) -> float:
    """The least CPU time of ``repeat`` static lints of ``path``."""
    from initlint.runner import LintOptions, lint_target

    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        result = lint_target(str(path), LintOptions(probe="never"))
        best = min(best, time.process_time() - start)
        if result.error:
            raise SystemExit(f"{path}: {result.error}")
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000, help="the smaller node count N (the larger is 10N)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per model; the least time is kept")
    args = parser.parse_args(argv)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    print(f"{'shape':<8} {'nodes':>8} {'cpu s':>8} {'ratio':>6}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as workdir:
        for name, build in SHAPES.items():
            previous = None
            for count in (args.nodes, 10 * args.nodes):
                path = Path(workdir) / f"{name}-{count}.onnx"
                onnx.save(build(count), path)
                seconds = lint_seconds(path, args.repeat)
                os.unlink(path)
                ratio = f"{seconds / previous:6.1f}" if previous else ""
                if previous:
                    worst = max(worst, seconds / previous)
                print(f"{name:<8} {count:>8} {seconds:>8.2f} {ratio:>6}", flush=True)
                previous = seconds
    print(f"largest 10x-growth ratio: {worst:.1f} (linear ~10, quadratic ~100)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
