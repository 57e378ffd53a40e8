"""Small ONNX models for the integration tests, built with onnx.helper (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DIMS = (16, 32, 32, 10)


def save_mlp(path: str | Path, zero_layer: int | None = None, uniform_layer: int | None = None, seed: int = 0) -> Path:
    """A 3-layer ReLU MLP with He-normal weights named fc0..fc2 as torch would.

    ``zero_layer``: that layer's weight is all zero (fatal before a ReLU: IL101 error).
    ``uniform_layer``: that layer's weight is U(0, 1) (IL105 non-zero mean).
    """
    rng = np.random.default_rng(seed)
    inits, nodes, value = [], [], "input"
    for i in range(len(DIMS) - 1):
        fan_in, fan_out = DIMS[i], DIMS[i + 1]
        weight = (rng.standard_normal((fan_out, fan_in)) * np.sqrt(2 / fan_in)).astype(np.float32)
        if i == zero_layer:
            weight[:] = 0
        if i == uniform_layer:
            weight = rng.uniform(0, 1, (fan_out, fan_in)).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"fc{i}.weight"), numpy_helper.from_array(np.zeros(fan_out, np.float32), f"fc{i}.bias")]
        nodes.append(helper.make_node("Gemm", [value, f"fc{i}.weight", f"fc{i}.bias"], [f"h{i}"], name=f"/fc{i}/Gemm", transB=1))
        value = f"h{i}"
        if i < len(DIMS) - 2:
            nodes.append(helper.make_node("Relu", [value], [f"r{i}"], name=f"/relu{i}/Relu"))
            value = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [4, DIMS[0]])],
        [helper.make_tensor_value_info(value, TensorProto.FLOAT, [4, DIMS[-1]])],
        inits,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def healthy(path) -> Path:
    return save_mlp(path)


def broken(path) -> Path:
    """IL101 error at fc1.weight."""
    return save_mlp(path, zero_layer=1)
