"""One name per layer in all output: notes, probe rows, signal rows and predictions name a layer
as findings name its parameters (``fc1`` for ``fc1.weight``), never by its ONNX node (``/fc1/Gemm``)."""

from __future__ import annotations

import json

import pytest

from initlint.graph import Layer, ModelGraph, Tensor
from initlint.report import render_json
from initlint.runner import LintOptions, lint_target
from tests.onnx_models import save_mlp


def _tensor(name, shape=(4, 4)):
    import numpy as np

    return Tensor(name, shape, "float32", lambda: np.zeros(shape, np.float32))


def test_a_layer_is_named_by_the_module_of_its_weight():
    graph = ModelGraph("m", "onnx")
    graph.add(Layer("/fc1/Gemm", "linear", "Gemm", params={"weight": _tensor("fc1.weight")}))
    graph.add(Layer("/act/Relu", "activation", "Relu", inputs=["/fc1/Gemm"]))
    graph.add(Layer("dense_node", "linear", "MatMul", params={"weight": _tensor("dense/kernel")}))
    graph.add(Layer("/MatMul", "linear", "MatMul", params={"weight": _tensor("onnx::MatMul_7")}))
    # One weight read by two layers (tied): neither may take the module's name.
    tied = _tensor("wte.weight")
    graph.add(Layer("/wte/Gather", "embedding", "Gather", params={"weight": tied}))
    graph.add(Layer("/lm_head/MatMul", "linear", "MatMul", params={"weight": tied}))
    assert graph.labels == {
        "/fc1/Gemm": "fc1",
        "/act/Relu": "/act/Relu",
        "dense_node": "dense",
        "/MatMul": "/MatMul",
        "/wte/Gather": "/wte/Gather",
        "/lm_head/MatMul": "/lm_head/MatMul",
    }


def test_notes_probe_rows_and_predictions_name_layers_as_findings_do(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx2torch")
    path = save_mlp(tmp_path / "mlp.onnx", zero_layer=1, uniform_layer=2)
    result = lint_target(str(path), LintOptions(probe="always"))
    assert result.error is None and result.probe and result.probe["status"] == "ok", result.probe
    data = json.loads(render_json([result]))["results"][0]
    assert {f["location"] for f in data["findings"]} >= {"fc1.weight"}
    probe_rows = [row["layer"] for row in data["probe"]["layers"]]
    assert probe_rows == ["fc0", "fc1", "fc2"]
    assert [row["layer"] for row in data["signal"] if row["kind"] == "linear"] == ["fc0", "fc1", "fc2"]
    spans = {f["prediction"].get(key) for f in data["findings"] if f.get("prediction") for key in ("from_layer", "to_layer")} - {None}
    assert spans <= {"fc0", "fc1", "fc2"}
    # Nowhere in what a user reads does an ONNX node name of a weighted layer appear.
    everything = json.dumps(data)
    assert "/Gemm" not in everything, [line for line in data["notes"] if "/Gemm" in line]
    assert any("e.g. layer fc" in note for note in data["notes"]), data["notes"]
