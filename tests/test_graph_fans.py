"""Fans and structure per op, in both loaders (docs/science.md §2 "get them right or every rule lies")."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest

from initlint import graph as g
from initlint.loaders.onnx import build_graph


def onnx_graph(nodes, inputs, outputs, initializers):
    model = oh.make_model(oh.make_graph(nodes, "g", inputs, outputs, [onh.from_array(a, n) for n, a in initializers.items()]), opset_imports=[oh.make_opsetid("", 17)])
    return build_graph(model, Path("test.onnx"))


def vi(name, shape):
    return oh.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)


RNG = np.random.default_rng(0)


def w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_gemm_fans_follow_transB():
    graph = onnx_graph(
        [oh.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="fc1", transB=1), oh.make_node("Relu", ["h"], ["r"], name="act"), oh.make_node("Gemm", ["r", "W2"], ["y"], name="fc2")],
        [vi("x", [2, 16])],
        [vi("y", [2, 8])],
        {"W1": w(32, 16), "b1": w(32), "W2": w(32, 8)},
    )
    fc1, fc2 = graph.layers["fc1"], graph.layers["fc2"]
    assert (fc1.fan_in, fc1.fan_out, fc1.units) == (16, 32, 32)
    assert (fc2.fan_in, fc2.fan_out, fc2.units) == (32, 8, 8)
    assert graph.activation_after(fc1).activation == "relu"
    assert graph.max_depth == 2


def test_matmul_with_initializer_right_or_left_and_bias_add():
    graph = onnx_graph(
        [oh.make_node("MatMul", ["x", "W"], ["h"], name="mm"), oh.make_node("Add", ["h", "b"], ["hb"], name="bias"), oh.make_node("Tanh", ["hb"], ["y"], name="t")],
        [vi("x", [2, 5, 16])],
        [vi("y", [2, 5, 24])],
        {"W": w(16, 24), "b": w(24)},
    )
    mm = graph.layers["mm"]
    assert (mm.fan_in, mm.fan_out, mm.units) == (16, 24, 24)
    assert mm.bias is not None and mm.bias.name == "b"
    assert graph.activation_after(mm).activation == "tanh"  # through the bias add


def test_grouped_and_depthwise_conv_use_per_group_fans():
    graph = onnx_graph(
        [oh.make_node("Conv", ["x", "Wd"], ["h"], name="dw", group=8), oh.make_node("Conv", ["h", "Wg"], ["y"], name="grouped", group=2)],
        [vi("x", [1, 8, 8, 8])],
        [vi("y", [1, 16, 6, 6])],
        {"Wd": w(8, 1, 3, 3), "Wg": w(16, 4, 1, 1)},
    )
    dw, grouped = graph.layers["dw"], graph.layers["grouped"]
    assert (dw.fan_in, dw.fan_out) == (9, 9)  # not 72: fan_out per group
    assert (grouped.fan_in, grouped.fan_out) == (4, 8)


def test_conv_transpose_swaps_the_roles():
    graph = onnx_graph([oh.make_node("ConvTranspose", ["x", "W"], ["y"], name="up")], [vi("x", [1, 8, 4, 4])], [vi("y", [1, 4, 6, 6])], {"W": w(8, 4, 3, 3)})
    up = graph.layers["up"]
    assert up.kind == g.CONV_TRANSPOSE
    assert (up.fan_in, up.fan_out, up.units) == (72, 36, 4)


def test_weights_resolve_through_identity_and_keep_the_aliased_name():
    # The TorchScript exporter stores identical tensors once and links the copies by Identity.
    zeros = np.zeros((16, 16), np.float32)
    graph = onnx_graph(
        [oh.make_node("Identity", ["fc1.weight"], ["fc2.weight"]), oh.make_node("Gemm", ["x", "fc1.weight"], ["h"], name="fc1", transB=1), oh.make_node("Gemm", ["h", "fc2.weight"], ["y"], name="fc2", transB=1)],
        [vi("x", [2, 16])],
        [vi("y", [2, 16])],
        {"fc1.weight": zeros},
    )
    assert graph.layers["fc2"].weight.name == "fc2.weight"
    assert graph.layers["fc2"].weight.stats.all_zero


def test_constant_node_weights_are_found():
    weight = onh.from_array(w(8, 4), "c")
    graph = onnx_graph([oh.make_node("Constant", [], ["W"], value=weight), oh.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [vi("x", [2, 8])], [vi("y", [2, 4])], {})
    assert graph.layers["mm"].kind == g.LINEAR and graph.layers["mm"].fan_in == 8


def test_residual_add_and_depth():
    graph = onnx_graph(
        [
            oh.make_node("Gemm", ["x", "W1"], ["h1"], name="fc1", transB=1),
            oh.make_node("Relu", ["h1"], ["r1"], name="relu1"),
            oh.make_node("Gemm", ["r1", "W2"], ["h2"], name="fc2", transB=1),
            oh.make_node("Add", ["x", "h2"], ["y"], name="residual"),
        ],
        [vi("x", [2, 16])],
        [vi("y", [2, 16])],
        {"W1": w(16, 16), "W2": w(16, 16)},
    )
    assert graph.layers["residual"].kind == g.ADD
    assert graph.depth["residual"] == 2


def test_shape_arithmetic_is_not_data_flow():
    graph = onnx_graph(
        [
            oh.make_node("Shape", ["x"], ["s"]),
            oh.make_node("Gemm", ["x", "W"], ["h"], name="fc", transB=1),
            oh.make_node("Reshape", ["h", "s"], ["y"], name="reshape"),
        ],
        [vi("x", [2, 16])],
        [vi("y", [2, 16])],
        {"W": w(16, 16)},
    )
    assert graph.layers["reshape"].inputs == ["fc"]


torch = pytest.importorskip("torch")


def test_torch_fans_per_module_kind():
    from torch import nn

    from initlint.loaders.torch import graph_from_module

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 16)
            self.lstm = nn.LSTM(16, 32, batch_first=True)
            self.conv = nn.Conv1d(32, 64, 3, groups=4)
            self.up = nn.ConvTranspose1d(64, 8, 4)
            self.fc = nn.Linear(8, 2)

        def forward(self, ids):
            h, _ = self.lstm(self.emb(ids))
            h = torch.relu(self.conv(h.transpose(1, 2)))
            return self.fc(self.up(h).mean(-1))

    graph = graph_from_module(Net(), "Net")
    layers = graph.layers
    assert (layers["emb"].kind, layers["emb"].fan_in) == (g.EMBEDDING, 1)
    assert (layers["lstm"].kind, layers["lstm"].fan_in, layers["lstm"].fan_out) == (g.RNN, 16, 32)
    assert (layers["conv"].fan_in, layers["conv"].fan_out) == (8 * 3, 16 * 3)
    assert (layers["up"].fan_in, layers["up"].fan_out, layers["up"].units) == (64 * 4, 8 * 4, 8)
    assert (layers["fc"].fan_in, layers["fc"].fan_out) == (8, 2)
    assert graph.activation_after(layers["conv"]).activation == "relu"


@pytest.mark.parametrize(
    "shape, groups, transposed, fans",
    [
        ((64, 32), 1, False, (32, 64)),  # a matrix [out, in]
        ((64, 16, 3, 3), 1, False, (144, 576)),
        ((256, 1, 3, 3), 256, False, (9, 9)),  # depthwise: per-group fan_out 9, not 2304
        ((64, 8, 3, 3), 4, False, (72, 144)),  # grouped
        ((16, 32, 4, 4), 1, True, (256, 512)),  # transposed [C_in, C_out/groups, k...]
        ((16, 8, 3), 2, True, (24, 24)),
    ],
)
def test_conv_fans_count_per_group(shape, groups, transposed, fans):
    assert g.conv_fans(shape, groups, transposed) == fans


def test_convolution_fans_are_computed_in_one_place():
    """Every loader takes a kernel's fans from graph.conv_fans: four hand-written copies of the
    receptive-field product had drifted apart before."""
    root = Path(__file__).resolve().parents[1] / "initlint"
    copies = [
        f"{path.relative_to(root.parent)}:{number}"
        for path in root.rglob("*.py")
        if path.name != "graph.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"shape\[2:\]|receptive\w*\s*=", line)
    ]
    assert copies == [], copies


def test_weights_only_and_module_conv_fans_agree():
    torch = pytest.importorskip("torch")
    from initlint.loaders.torch import graph_from_module
    from initlint.loaders.weights_only import add_weight_layers

    model = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3), torch.nn.ConvTranspose2d(16, 4, 2), torch.nn.Conv2d(4, 4, 3, groups=4))
    live = graph_from_module(model, "live")
    assert [(l.fan_in, l.fan_out) for l in live.weighted_layers()] == [(72, 144), (64, 16), (9, 9)]
    weights_only = g.ModelGraph(target="w", format="state_dict", has_structure=False)
    weights_only.tensors = {name: live.tensors[name] for name in ("0.weight",)}
    add_weight_layers(weights_only)
    assert (weights_only.layers["0"].fan_in, weights_only.layers["0"].fan_out) == (72, 144)
