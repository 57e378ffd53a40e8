"""The command line as a user meets it: exit codes, one-line errors, text and JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from initlint.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_healthy_example_exits_0():
    result = run(str(FIXTURES / "healthy_mlp.onnx"))
    assert result.exit_code == 0, result.output
    assert "Found 0 findings in 1 model." in result.output


def test_broken_example_exits_1_with_the_planted_mistakes():
    result = run(str(FIXTURES / "broken_mlp.onnx"), "--format", "json")
    assert result.exit_code == 1
    findings = json.loads(result.output)["results"][0]["findings"]
    got = {(f["code"], f["location"], f["severity"]) for f in findings}
    assert ("IL101", "2.weight", "error") in got
    assert ("IL105", "6.weight", "error") in got
    assert ("IL103", "8.weight", "warning") in got


def test_lora_adapter_example_is_clean():
    result = run(str(FIXTURES / "lora_adapter.onnx"), "--fail-on", "warning")
    assert result.exit_code == 0, result.output


def test_text_output_is_one_line_per_finding():
    result = run(str(FIXTURES / "broken_mlp.onnx"), "--quiet", "--probe", "never")  # the static findings only
    lines = result.output.strip().splitlines()
    assert any(line.startswith(f"{FIXTURES / 'broken_mlp.onnx'}: 2.weight: IL101 zero-weights [error] ") for line in lines)
    assert lines[-1] == "Found 4 findings (2 errors, 2 warnings) in 1 model."  # IL305 warns about the logits


def test_fail_on_warning_turns_a_warning_into_exit_1():
    onnx_only_warning = run(str(FIXTURES / "broken_mlp.onnx"), "--select", "IL103")
    assert onnx_only_warning.exit_code == 0
    assert run(str(FIXTURES / "broken_mlp.onnx"), "--select", "IL103", "--fail-on", "warning").exit_code == 1


def test_select_and_ignore_by_prefix():
    result = run(str(FIXTURES / "broken_mlp.onnx"), "--format", "json", "--select", "IL1", "--ignore", "IL101,IL105")
    codes = {f["code"] for f in json.loads(result.output)["results"][0]["findings"]}
    assert codes == {"IL103"}


def test_unknown_rule_code_is_a_usage_error():
    result = CliRunner().invoke(main, [str(FIXTURES / "healthy_mlp.onnx"), "--select", "XX999"])
    assert result.exit_code == 2
    assert "XX999" in result.output


def test_json_output_shape():
    result = run(str(FIXTURES / "broken_mlp.onnx"), str(FIXTURES / "healthy_mlp.onnx"), "--format", "json", "--probe", "never")
    doc = json.loads(result.output)
    assert set(doc) == {"initlint", "results"}
    assert [r["target"] for r in doc["results"]] == [str(FIXTURES / "broken_mlp.onnx"), str(FIXTURES / "healthy_mlp.onnx")]
    for res in doc["results"]:
        assert {"target", "format", "error", "findings", "probe", "elapsed_s"} <= set(res)
        assert res["format"] == "onnx" and res["error"] is None
        for f in res["findings"]:
            assert {"code", "name", "severity", "location", "message", "probe"} <= set(f)


@pytest.mark.parametrize(
    "make, cause",
    [
        (lambda p: p.write_bytes((FIXTURES / "healthy_mlp.onnx").read_bytes()[:5000]), "not"),
        (lambda p: p.write_bytes(os.urandom(4096)), "not"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: None, "no such file"),
    ],
    ids=["truncated", "random-bytes", "empty", "missing"],
)
def test_unreadable_model_is_one_line_exit_2(tmp_path, make, cause):
    path = tmp_path / "model.onnx"
    make(path)
    proc = subprocess.run([sys.executable, "-m", "initlint", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error_lines = [line for line in (proc.stdout + proc.stderr).splitlines() if str(path) in line]
    assert len(error_lines) == 1 and cause in error_lines[0], proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_unknown_extension_is_exit_2(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"\x89HDF\r\n")
    result = CliRunner().invoke(main, [str(path)])
    assert result.exit_code == 2
    assert "unsupported model format '.h5'" in result.output


def test_one_bad_target_does_not_hide_the_others(tmp_path):
    missing = tmp_path / "missing.onnx"
    result = CliRunner().invoke(main, [str(missing), str(FIXTURES / "broken_mlp.onnx"), "--format", "json"])
    assert result.exit_code == 2
    results = json.loads(result.output)["results"]
    assert "no such file" in results[0]["error"]
    assert {f["code"] for f in results[1]["findings"]} >= {"IL101", "IL105"}


def test_rules_lists_every_rule_with_code_name_severity():
    result = run("rules")
    assert result.exit_code == 0
    assert any(line.split()[:3] == ["IL101", "zero-weights", "error"] for line in result.output.splitlines())


def test_rule_prints_documentation():
    result = run("rule", "IL101")
    assert result.exit_code == 0
    for section in ("## What it does", "## Why is this bad?", "## Example", "## How to fix", "## References"):
        assert section in result.output
    assert CliRunner().invoke(main, ["rule", "IL999"]).exit_code == 2


def test_bad_input_shape_is_a_usage_error():
    result = CliRunner().invoke(main, [str(FIXTURES / "healthy_mlp.onnx"), "--input-shape", "2,x,3"])
    assert result.exit_code == 2
    assert "--input-shape" in result.output
