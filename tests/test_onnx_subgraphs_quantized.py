"""ONNX files whose weights are not plain float initializers of the main graph: inside If/Loop
branches and local functions, and quantized (QDQ, QOperator, onnxruntime's quantize_dynamic).
Before, all of them were read as having no weighted layer and passed silently."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from initlint import graph as g
from initlint.cli import main
from initlint.loaders import load

torch = pytest.importorskip("torch")
nn = torch.nn

DEPTH, WIDTH = 20, 64


def glorot_relu_mlp():
    torch.manual_seed(0)
    layers = []
    for _ in range(DEPTH):
        linear = nn.Linear(WIDTH, WIDTH)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(WIDTH, 10))


def export(model, path, shape=(2, WIDTH)):
    torch.onnx.export(model, torch.randn(*shape), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    return path


def lint(path, *args):
    result = CliRunner().invoke(main, [str(path), "--probe", "never", "--format", "json", *args], catch_exceptions=False)
    report = json.loads(result.output)["results"][0]
    return result.exit_code, report


def codes(report) -> set[str]:
    return {f["code"] for f in report["findings"]}


def test_weights_in_an_if_branch_are_linted(tmp_path):
    """The deep Glorot + ReLU stack sits in the then-branch (as silero-vad keeps its 16 kHz
    network); the else-branch is a second small net. Both branches' weights are read."""
    inner = onnx.load(str(export(glorot_relu_mlp(), tmp_path / "mlp.onnx")))
    then_branch = helper.make_graph(list(inner.graph.node), "then", [], [helper.make_tensor_value_info(inner.graph.output[0].name, TensorProto.FLOAT, None)], list(inner.graph.initializer))
    other = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.1, (WIDTH, 10)).astype(np.float32), "other.weight")
    else_branch = helper.make_graph(
        [helper.make_node("MatMul", ["x", "other.weight"], ["else_out"], name="other")],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, None)],
        [other],
    )
    outer = helper.make_graph(
        [helper.make_node("If", ["use_first"], ["y"], name="choose", then_branch=then_branch, else_branch=else_branch)],
        "outer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH]), helper.make_tensor_value_info("use_first", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
    )
    path = tmp_path / "if_model.onnx"
    onnx.save(helper.make_model(outer, opset_imports=[helper.make_opsetid("", 17)]), str(path))

    graph = load(str(path))
    assert len(graph.weighted_layers()) == DEPTH + 2  # the stack, its head, the else-branch MatMul
    assert "other.weight" in {layer.weight.name for layer in graph.weighted_layers()}
    code, report = lint(path)
    assert code == 1, report
    assert {"IL201", "IL301"} <= codes(report)
    assert any("control-flow" in note for note in report["notes"])


def test_weights_in_a_local_function_are_read_under_the_call_name(tmp_path):
    weight = helper.make_tensor("w", TensorProto.FLOAT, [8, 8], np.zeros(64, np.float32))
    body = [
        helper.make_node("Constant", [], ["w"], value=weight),
        helper.make_node("MatMul", ["inp", "w"], ["z"], name="proj"),
        helper.make_node("Relu", ["z"], ["out"], name="act"),
    ]
    function = helper.make_function("local", "Block", ["inp"], ["out"], body, [helper.make_opsetid("", 17)])
    outer = helper.make_graph(
        [helper.make_node("Block", ["x"], ["h"], domain="local", name="block0"), helper.make_node("Block", ["h"], ["y"], domain="local", name="block1")],
        "outer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
    )
    model = helper.make_model(outer, functions=[function], opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    path = tmp_path / "functions.onnx"
    onnx.save(model, str(path))
    graph = load(str(path))
    names = [layer.name for layer in graph.weighted_layers()]
    assert names == ["block0/proj", "block1/proj"]
    assert graph.layers["block1/proj"].inputs == ["block0/act"]  # the two calls are chained
    code, report = lint(path)
    assert "IL101" in codes(report)  # two zero layers into ReLU: fatal, now seen


def test_dynamically_quantized_model_is_linted_with_its_weights(tmp_path):
    quantization = pytest.importorskip("onnxruntime.quantization")
    plain = export(glorot_relu_mlp(), tmp_path / "mlp.onnx")
    quantized = tmp_path / "mlp_int8.onnx"
    quantization.quantize_dynamic(str(plain), str(quantized), weight_type=quantization.QuantType.QInt8)
    assert any(node.op_type == "MatMulInteger" for node in onnx.load(str(quantized)).graph.node)

    graph = load(str(quantized))
    reference = load(str(plain))
    assert len(graph.weighted_layers()) == len(reference.weighted_layers()) == DEPTH + 1
    first = graph.weighted_layers()[0]
    assert first.weight.dtype == "float32"  # read as reals, not as the stored int8
    exact_layer = reference.weighted_layers()[0]  # Gemm(transB=1) stores [out, in]; the quantizer [in, out]
    exact = exact_layer.weight.values() if exact_layer.unit_axis == first.unit_axis else exact_layer.weight.values().T
    assert np.abs(first.weight.values() - exact).max() < np.abs(exact).max() / 100
    code, report = lint(quantized)
    assert code == 1 and {"IL201", "IL301"} <= codes(report), report


@pytest.mark.parametrize("quant_format", ["QDQ", "QOperator"])
def test_statically_quantized_cnn_is_read_with_its_weights(tmp_path, quant_format):
    quantization = pytest.importorskip("onnxruntime.quantization")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
    plain = export(model, tmp_path / "cnn.onnx", (2, 3, 8, 8))

    class Calibration(quantization.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": np.random.default_rng(i).normal(size=(2, 3, 8, 8)).astype(np.float32)} for i in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantized = tmp_path / f"cnn_{quant_format}.onnx"
    quantization.quantize_static(str(plain), str(quantized), Calibration(), quant_format=getattr(quantization.QuantFormat, quant_format), per_channel=True)
    graph = load(str(quantized))
    reference = load(str(plain)).weighted_layers()
    layers = graph.weighted_layers()
    assert [layer.kind for layer in layers] == [g.CONV, g.CONV, g.LINEAR]
    conv = layers[0]
    assert conv.weight.shape == (16, 3, 3, 3) and (conv.fan_in, conv.fan_out) == (27, 144)
    exact = reference[0].weight.values()
    assert np.abs(conv.weight.values() - exact).max() <= np.abs(exact).max() / 100  # per-channel scales applied
    assert not any(t.dtype in ("int8", "uint8") and t.ndim >= 2 for t in graph.tensors.values())  # no raw integers left


def test_chunked_dequantization_matches_the_whole_tensor(monkeypatch):
    """Per-channel scales applied chunk by chunk, along any axis, agree with dequantizing at once."""
    from initlint import stats

    rng = np.random.default_rng(0)
    stored = rng.integers(-128, 128, (40, 7, 3), dtype=np.int8)
    scale = rng.uniform(0.001, 0.01, 40).astype(np.float32)
    zero = rng.integers(-3, 3, 40).astype(np.int8)
    whole = (stored.astype(np.float32) - zero[:, None, None]) * scale[:, None, None]
    monkeypatch.setattr(g, "CHUNK_ELEMENTS", 50)  # many chunks, none aligned with the channels
    monkeypatch.setattr(stats, "CHUNK_ELEMENTS", 50)
    tensor = g.Tensor("w", stored.shape, "float32", lambda: stored, affine=g.Affine(scale, zero, 0))
    for axis in range(3):
        chunked = np.concatenate(list(tensor.chunks(axis)))
        np.testing.assert_allclose(chunked, np.moveaxis(whole, axis, 0).reshape(-1), rtol=1e-6)
    assert tensor.stats.var == pytest.approx(float(whole.astype(np.float64).var()), rel=1e-6)


def test_onnx_file_without_weights_could_not_be_checked(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "no_weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "relu_only.onnx"
    onnx.save(helper.make_model(graph), str(path))
    result = CliRunner().invoke(main, [str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    first = result.output.splitlines()[0]
    assert first.startswith(str(path)) and "could not check" in first and "no weights" in first
    allowed = CliRunner().invoke(main, [str(path), "--allow-empty"], catch_exceptions=False)
    assert allowed.exit_code == 0, allowed.output
    assert "not checked" in allowed.output


def test_module_order_guess_could_not_be_checked():
    """A module torch.fx and torch.export both refuse (no example input) is only a guess."""
    from initlint.options import LintOptions
    from initlint.runner import lint_graph, TargetResult, unchecked_reason
    from initlint.loaders.torch import graph_from_module

    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x  # torch.fx cannot trace a data-dependent branch

    graph = graph_from_module(DataDependent(), "m")
    assert graph.metadata.get("structure") == "module-order"
    assert "module order" in unchecked_reason(graph)
    lint_graph(graph, LintOptions(probe="never"), TargetResult("m", "torch"))  # still lints what it can


def test_training_mode_layer_drop_is_traced_in_eval_mode():
    """Layer drop branches on a random draw only while training (wav2vec2, Conformer, DETR):
    the eval-mode trace has every layer and its edges, not a module-order guess."""
    from initlint.loaders.torch import graph_from_module

    class LayerDrop(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))

        def forward(self, x):
            if x.shape[0] == 0:  # torch.fx cannot branch on a traced size; torch.export can
                return x
            for block in self.blocks:
                if self.training and torch.rand(()) < 0.1:  # torch.export cannot branch on a random draw
                    continue
                x = torch.relu(block(x))
            return x

    model = LayerDrop()
    graph = graph_from_module(model, "m", example_input=torch.randn(2, 8))
    assert graph.metadata.get("structure") != "module-order"
    assert len(graph.weighted_layers()) == 3
    assert any("eval mode" in note for note in graph.notes)
    assert model.training  # the user's module is left in the mode it was in
