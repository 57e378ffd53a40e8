"""Seed models shared by the fuzz tests (a module, so the harnesses do not import each other)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def onnx_mlp_bytes() -> bytes:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Tanh", ["h"], ["t"], name="act"),
        helper.make_node("Gemm", ["t", "w2"], ["y"], name="fc2", transB=1),
    ]
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 4)) * 0.5).astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
        numpy_helper.from_array((rng.standard_normal((2, 8)) * 0.35).astype(np.float32), "w2"),
    ]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
