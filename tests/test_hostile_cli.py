"""The command line under hostile or broken inputs: a crashing rule, hostile specs, configs and
outputs. Each ends in a report or one line and exit code 2, never a traceback or a silent pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


# --- hostile specs ------------------------------------------------------------------------------

SPECS = '''
import os, sys
import torch


def exits():
    sys.exit(0)


class Custom(BaseException):
    pass


def raises():
    raise Custom("not an Exception")


def prints():
    print("chatter from the spec")
    os.write(1, b"chatter from native code\\n")  # below Python's sys.stdout
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
'''


@pytest.fixture
def specs(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs.py").write_text(SPECS)
    return tmp_path


def test_a_spec_that_exits_or_raises_base_exception_is_one_error_line(specs):
    result = run("specs.py:exits", "specs.py:raises", str(HEALTHY), "--probe", "never", "--format", "json")
    assert result.exit_code == 2
    results = {r["target"]: r for r in json.loads(result.stdout)["results"]}
    assert "sys.exit(0)" in results["specs.py:exits"]["error"]
    assert "raised Custom" in results["specs.py:raises"]["error"]
    assert results[str(HEALTHY)]["error"] is None and results[str(HEALTHY)]["model"]["layers"]  # the others still reported
    assert all("\n" not in r["error"] for r in results.values() if r["error"])


def test_a_spec_that_prints_does_not_corrupt_json(specs):
    """In a real process: native writes to file descriptor 1 must not reach the report either."""
    out = subprocess.run([sys.executable, "-m", "initlint", "specs.py:prints", str(HEALTHY), "--probe", "never", "--format", "json"], capture_output=True, text=True, timeout=300, cwd=specs)
    report = json.loads(out.stdout)  # parses: nothing but the report on stdout
    assert [r["target"] for r in report["results"]] == ["specs.py:prints", str(HEALTHY)]
    assert "chatter from the spec" in out.stderr and "chatter from native code" in out.stderr
    assert out.returncode in (0, 1), out.stderr


# --- stdout that cannot be written --------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_to_a_full_device_is_one_line_and_exit_2():
    with open("/dev/full", "w") as full:
        out = subprocess.run([sys.executable, "-m", "initlint", str(HEALTHY), "--probe", "never"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["initlint: cannot write the report to stdout (No space left on device)"]


def test_closed_stdout_is_one_line_and_exit_2():
    out = subprocess.run([sys.executable, "-m", "initlint", str(HEALTHY), "--probe", "never"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120, preexec_fn=lambda: os.close(1))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["initlint: cannot write the report to stdout (stdout is closed)"]


# --- hostile configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, says",
    [
        ("tool = 5\n", "tool must be a table"),
        ("[tool.initlint]\nexclude = " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
        ("[tool.initlint.rules.IL105]\ncoherent-error = " + "9" * 5000 + "\n", "unusable TOML value"),
        ("[tool.initlint.rules.IL105]\ncoherent-error = " + "9" * 400 + "\n", "expected a finite number"),
        ("[tool.initlint]\nprobe = \"" + "x" * 100_000 + "\"\n", "expected one of"),
    ],
)
def test_hostile_pyproject_is_one_line_and_exit_2(tmp_path, monkeypatch, text, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(text)
    result = run(str(HEALTHY), "--probe", "never")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and len(lines[0]) < 400, lines


# --- output injection ---------------------------------------------------------------------------

FORGED = "w\nmodel.onnx: x.weight: IL104 non-finite-weights [error] forged\x1b[2J\x07"


def named_zero_model(path: Path, name: str) -> Path:
    nodes = [helper.make_node("Gemm", ["x", name], ["h"], name="fc", transB=1), helper.make_node("Relu", ["h"], ["y"], name="relu")]
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], [numpy_helper.from_array(np.zeros((8, 8), np.float32), name)]
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_control_characters_in_a_tensor_name_forge_no_report_line(tmp_path):
    path = named_zero_model(tmp_path / "m.onnx", FORGED)
    text = run(str(path), "--probe", "never", "-q")
    assert text.exit_code == 1
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{path}: w\\nmodel.onnx") and "IL101" in lines[0], lines
    assert "\x1b" not in text.stdout and "\x07" not in text.stdout
    github = run(str(path), "--probe", "never", "--format", "github")
    assert len(github.stdout.strip().splitlines()) == 1 and "\x1b" not in github.stdout
    junit = run(str(path), "--probe", "never", "--format", "junit")
    from xml.etree import ElementTree as ET

    root = ET.fromstring(junit.stdout)  # well-formed despite the control characters
    assert root.get("failures") == "1"
    report = json.loads(run(str(path), "--probe", "never", "--format", "json").stdout)
    assert report["results"][0]["findings"][0]["location"] == FORGED  # JSON keeps the name exact


# --- files initlint writes ----------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-o", "--write-baseline"])
def test_the_report_is_never_written_over_an_input_model(tmp_path, flag):
    path = tmp_path / "model.onnx"
    path.write_bytes(HEALTHY.read_bytes())
    result = run(str(path), "--probe", "never", flag, str(path))
    assert result.exit_code == 2 and "is an input model" in result.stderr
    assert path.read_bytes() == HEALTHY.read_bytes()
    other = tmp_path / "other.pt"
    other.write_bytes(b"precious")
    result = run(str(path), "--probe", "never", flag, str(other))
    assert result.exit_code == 2 and other.read_bytes() == b"precious"


def test_plot_into_a_missing_directory_exits_2(tmp_path):
    result = run(str(HEALTHY), "--plot", str(tmp_path / "missing" / "signal.png"))
    assert result.exit_code == 2 and "no such directory" in result.stderr


def test_plots_of_models_with_the_same_file_name_do_not_collide():
    from initlint.cli import plot_paths

    paths = plot_paths("out/signal.png", ["a/model.onnx", "b/model.onnx", "a_model.onnx", "a/model.onnx.x"])
    assert len(set(paths.values())) == 4
    assert paths["a/model.onnx"] == "out/signal-a_model.onnx.png"
    assert plot_paths("signal.svg", ["a/model.onnx"]) == {"a/model.onnx": "signal.svg"}


def test_json_of_several_models_in_parallel_has_the_model_summary(tmp_path):
    other = tmp_path / "other.onnx"
    other.write_bytes(HEALTHY.read_bytes())
    result = run(str(HEALTHY), str(other), "--probe", "never", "--format", "json", "--jobs", "2")
    models = [r["model"] for r in json.loads(result.stdout)["results"]]
    assert all(m and m["layers"] == 12 and m["has_structure"] for m in models), models


def test_probe_and_plot_on_a_weights_only_file_say_why_they_did_not_apply(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "w.safetensors"
    safetensors_numpy.save_file({"fc.weight": np.zeros((4, 4), np.float32)}, str(path))
    result = run(str(path), "--probe", "always", "--plot", str(tmp_path / "p.png"), "--format", "json")
    notes = json.loads(result.stdout)["results"][0]["notes"]
    assert any(n.startswith("--probe always was not applied: the file holds weights only") for n in notes), notes
    assert any(n.startswith("--plot drew nothing for this model: the file holds weights only") for n in notes), notes
    assert not (tmp_path / "p.png").exists()


def test_a_rule_that_crashes_does_not_pass_the_api_report(monkeypatch):
    from initlint import api
    from initlint.engine import registry

    def crash(self, graph):
        raise RuntimeError("boom")

    assert api.check(str(HEALTHY), probe="never", config=False).ok  # the model itself passes
    monkeypatch.setattr(registry().get("IL105"), "check", crash)
    report = api.check(str(HEALTHY), probe="never", config=False)
    assert not report.ok and report.failed_rules == ["IL105"] and not report.failing
    assert "could not be checked by IL105" in str(report) and "boom" in str(report)
    with pytest.raises(api.InitFindingsError):
        report.raise_for_findings()
