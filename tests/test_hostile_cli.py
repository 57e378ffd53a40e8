"""The command line under hostile or broken inputs: a crashing rule, hostile specs, configs and
outputs. Each ends in a report or one line and exit code 2, never a traceback or a silent pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from initlint.cli import main

ROOT = Path(__file__).resolve().parents[1]
HEALTHY = ROOT / "fixtures" / "healthy_mlp.onnx"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def zero_layer_then(path: Path, activation: str, **attrs) -> Path:
    """An all-zero Gemm, then ``activation`` (with ``attrs``), then a random Gemm."""
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc", transB=1),
        helper.make_node(activation, ["h"], ["a"], name="act", **attrs),
        helper.make_node("Gemm", ["a", "w2"], ["y"], name="fc2", transB=1),
    ]
    inits = [
        numpy_helper.from_array(np.zeros((8, 8), np.float32), "w"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b"),
        numpy_helper.from_array((np.random.default_rng(0).standard_normal((8, 8)) * 0.35).astype(np.float32), "w2"),
    ]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_rule_that_crashes_is_a_note_and_exit_2(tmp_path, monkeypatch):
    from initlint.engine import registry

    def crash(self, graph):
        raise RuntimeError("boom")

    monkeypatch.setattr(registry().get("IL105"), "check", crash)
    result = run(str(HEALTHY), "--probe", "never", "--format", "json")
    assert result.exit_code == 2, result.output
    report = json.loads(result.stdout)["results"][0]
    assert any(note.startswith("IL105 failed") and "boom" in note for note in report["notes"])
    assert "could not be checked by IL105" in result.stderr
    text = run(str(HEALTHY), "--probe", "never")
    assert text.exit_code == 2 and "Traceback" not in text.output


def test_a_crashing_rule_fails_write_baseline_too(tmp_path, monkeypatch):
    from initlint.engine import registry

    monkeypatch.setattr(registry().get("IL105"), "check", lambda self, graph: 1 / 0)
    result = run(str(HEALTHY), "--probe", "never", "--write-baseline", str(tmp_path / "baseline.json"))
    assert result.exit_code == 2 and "could not be checked by IL105" in result.stderr


@pytest.mark.parametrize("activation", ["LeakyRelu", "Elu", "Selu", "HardSigmoid"])
def test_list_valued_alpha_does_not_hide_a_zero_layer(tmp_path, activation):
    path = zero_layer_then(tmp_path / "m.onnx", activation, alpha=[0.1, 0.2])
    result = run(str(path), "--probe", "never", "--format", "json")
    report = json.loads(result.stdout)["results"][0]
    assert not [note for note in report["notes"] if "failed" in note], report["notes"]
    assert ("IL101", "w") in {(f["code"], f["location"]) for f in report["findings"]}
    assert result.exit_code in (0, 1)
