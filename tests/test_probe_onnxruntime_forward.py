"""Forward-only measurement through onnxruntime where torch cannot run an ONNX model: the
forward claims are settled, the backward ones stay inconclusive with the reason, and the
user's file is not written; on the trained models of installed packages (silero-vad,
rapidocr), the probe runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx2torch")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from initlint.options import LintOptions  # noqa: E402
from initlint.runner import lint_target  # noqa: E402

DEPTH, WIDTH = 20, 64


def glorot_relu_stack_with_an_op_onnx2torch_lacks(path: Path, uniform_zero_one: int | None = None) -> None:
    """20 Gemm + Relu layers with Glorot-uniform weights (layer ``uniform_zero_one``: U(0, 1)),
    then Hardmax (no onnx2torch converter)."""
    rng = np.random.default_rng(0)
    nodes, inits, value = [], [], "x"
    limit = np.sqrt(6 / (2 * WIDTH))
    for i in range(DEPTH):
        low, high = (0.0, 1.0) if i == uniform_zero_one else (-limit, limit)
        inits.append(numpy_helper.from_array(rng.uniform(low, high, (WIDTH, WIDTH)).astype(np.float32), f"w{i}"))
        inits.append(numpy_helper.from_array(np.zeros(WIDTH, np.float32), f"b{i}"))
        nodes.append(helper.make_node("Gemm", [value, f"w{i}", f"b{i}"], [f"z{i}"], name=f"fc{i}", transB=1))
        nodes.append(helper.make_node("Relu", [f"z{i}"], [f"a{i}"], name=f"relu{i}"))
        value = f"a{i}"
    nodes.append(helper.make_node("Hardmax", [value], ["y"], name="hardmax"))
    graph = helper.make_graph(nodes, "stack", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTH])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_forward_claims_settle_and_backward_claims_say_why_when_torch_cannot_convert(tmp_path):
    path = tmp_path / "stack.onnx"
    glorot_relu_stack_with_an_op_onnx2torch_lacks(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    result = lint_target(str(path), LintOptions(probe="always"))
    assert result.error is None, result.error
    probe = result.probe
    assert probe["status"] == "ok", probe.get("reason")
    assert probe["forward_only"].startswith("forward-only through onnxruntime: ") and "Hardmax" in probe["forward_only"]
    assert len(probe["layers"]) == DEPTH and probe["gradient_ratio"] is None
    assert probe["forward_ratio"] < 1e-3  # the vanishing forward signal, measured
    assert all(row["dead_fraction"] is not None for row in probe["layers"])
    il201 = next(f for f in result.findings if f.code == "IL201")
    assert il201.probe["verdict"] == "confirmed", il201.probe
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # the user's file is untouched


def test_backward_claims_stay_inconclusive_with_the_reason(tmp_path):
    from initlint.loaders import load
    from initlint.prediction import Prediction
    from initlint.probe import run_probe
    from initlint.verdict import judge

    path = tmp_path / "stack.onnx"
    glorot_relu_stack_with_an_op_onnx2torch_lacks(path)
    graph = load(str(path))
    measurement = run_probe(graph)
    assert measurement.ok and measurement.forward_only
    backward = [
        Prediction("gradient_energy_ratio", "below", 1e-3, from_layer="fc19", to_layer="fc0"),
        Prediction("frozen_parameters", "above", 0.5, parameters=("w3",)),
    ]
    for prediction in backward:
        verdict = judge(prediction, measurement)
        assert verdict["verdict"] == "inconclusive" and verdict["reason"] == measurement.forward_only
    forward = judge(Prediction("forward_variance_ratio", "below", 1e-3, from_layer="fc0", to_layer="fc19"), measurement)
    assert forward["verdict"] == "confirmed", forward


def test_a_layers_own_gain_is_measured_forward_only(tmp_path):
    """Each Gemm's input (the graph input for the first, a Relu's output after) is read too:
    Glorot-uniform 64 -> 64 weights give fan_in·E[W²] = 1."""
    from initlint.loaders import load
    from initlint.prediction import Prediction
    from initlint.probe import run_probe
    from initlint.verdict import judge

    path = tmp_path / "stack.onnx"
    glorot_relu_stack_with_an_op_onnx2torch_lacks(path)
    measurement = run_probe(load(str(path)))
    assert measurement.ok and measurement.forward_only
    for layer in ("fc0", "fc10", "fc19"):
        verdict = judge(Prediction("layer_gain", "above", 0.5, to_layer=layer), measurement)
        assert verdict["verdict"] == "confirmed" and verdict["measured"] == pytest.approx(1.0, rel=0.2), (layer, verdict)


def test_a_shared_offset_is_measured_forward_only(tmp_path):
    path = tmp_path / "stack.onnx"
    glorot_relu_stack_with_an_op_onnx2torch_lacks(path, uniform_zero_one=3)
    result = lint_target(str(path), LintOptions(probe="always"))
    assert result.error is None and result.probe["forward_only"], result.error
    il105 = next(f for f in result.findings if f.code == "IL105")
    assert il105.prediction.to_layer == "fc3" and il105.probe["verdict"] == "confirmed", il105.probe


def test_an_input_size_the_model_refuses_is_retried(tmp_path):
    """A conv net whose open spatial dims need a multiple of 32 (five stride-2 convolutions and
    a Reshape to a fixed width): the first candidate size that runs is used."""
    from initlint.probe.onnxruntime_forward import CANDIDATE_SIZES, _input_specs

    rng = np.random.default_rng(0)
    nodes, inits, value, channels = [], [], "x", 3
    for i in range(5):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.3, (8, channels, 3, 3)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [value, f"w{i}"], [f"c{i}"], strides=[2, 2], pads=[1, 1, 1, 1]))
        value, channels = f"c{i}", 8
    inits.append(numpy_helper.from_array(np.array([0, 8 * 2 * 2], np.int64), "flat"))  # accepts 64x64 only
    nodes.append(helper.make_node("Reshape", [value, "flat"], ["y"]))
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    from initlint.graph import ModelGraph

    specs = _input_specs(proto, ModelGraph(target="cnn.onnx", format="onnx"), {}, None)
    assert CANDIDATE_SIZES[0] != 64 and specs[0][1][1:] == (3, 64, 64)


def installed(package: str, relative: str) -> Path:
    module = pytest.importorskip(package)
    path = Path(module.__file__).parent / relative
    if not path.is_file():
        pytest.skip(f"{package} has no {relative} here")
    return path


@pytest.mark.parametrize("relative", ["data/silero_vad.onnx", "data/silero_vad_half.onnx", "data/silero_vad_op18_ifless.onnx", "data/silero_vad_16k_sequence.onnx"])
def test_probe_runs_on_silero_vad(relative):
    """Weights inside If branches chosen by the sample rate: the branch 16000 takes is inlined."""
    result = lint_target(str(installed("silero_vad", relative)), LintOptions(probe="always", allow_empty=True))
    probe = result.probe
    assert probe["status"] == "ok", probe.get("reason")
    assert probe["layers"], probe
    if probe["forward_only"]:
        assert probe["forward_only"].startswith("forward-only through onnxruntime: ")


@pytest.mark.slow
@pytest.mark.parametrize("relative", ["models/ch_PP-OCRv4_det_infer.onnx", "models/ch_PP-OCRv4_rec_infer.onnx", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx"])
def test_probe_runs_on_rapidocr(relative):
    result = lint_target(str(installed("rapidocr_onnxruntime", relative)), LintOptions(probe="always", allow_empty=True))
    probe = result.probe
    assert probe["status"] == "ok", probe.get("reason")
    assert len(probe["layers"]) >= 10
    assert all(row["output_variance"] is not None for row in probe["layers"])
