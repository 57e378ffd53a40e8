"""Graph building and static analysis are linear in the edges: one value with 50k consumers."""

from __future__ import annotations

import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from initlint.runner import LintOptions, lint_target

CONSUMERS = 50_000


def fan_out_model(count: int) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.zeros((8, 8), np.float32), "w")  # all zero: IL101 must still see it
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc")]
    nodes += [helper.make_node("Relu", ["h"], [f"r{i}"], name=f"relu{i}") for i in range(count)]
    outputs = [helper.make_tensor_value_info(f"r{i}", TensorProto.FLOAT, [1, 8]) for i in range(count)]
    graph = helper.make_graph(nodes, "fan_out", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])], outputs, [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_fifty_thousand_consumers_of_one_value_lint_in_seconds(tmp_path):
    path = tmp_path / "fan_out.onnx"
    onnx.save(fan_out_model(CONSUMERS), path)
    start = time.process_time()  # CPU time: other processes on a shared machine do not count
    result = lint_target(str(path), LintOptions(probe="never"))
    seconds = time.process_time() - start
    assert result.error is None, result.error
    assert len(result.graph.consumers(result.graph.layers["fc"])) == CONSUMERS
    assert [(f.code, f.location) for f in result.findings if f.code == "IL101"] == [("IL101", "w")]
    assert seconds < 5, f"{seconds:.1f} s of CPU for {CONSUMERS} consumers"
