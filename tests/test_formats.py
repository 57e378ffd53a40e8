"""Machine output: SARIF 2.1.0 (validated against the official schema), GitHub workflow commands, JUnit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner
from onnx_models import broken, healthy, save_mlp

from initlint.cli import main
from initlint.engine import Finding, Severity, registry
from initlint.formats import render_github
from initlint.runner import TargetResult

# The official SARIF 2.1.0 schema, vendored unmodified (see tests/schemas/README.md).
SCHEMA = Path(__file__).resolve().parent / "schemas" / "sarif-schema-2.1.0.json"


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken(tmp_path / "models" / "broken.onnx")
    healthy(tmp_path / "models" / "healthy.onnx")
    (tmp_path / "models" / "garbage.onnx").write_bytes(b"\x00\x01not a model" * 10)
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, ["check", "--jobs", "1", "--probe", "never", *args])  # the static findings


def validate_sarif(document):
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.is_file():
        pytest.fail(f"SARIF schema not found at {SCHEMA}")
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))


def test_sarif_validates_and_locates_findings(zoo):
    result = run("models", "--format", "sarif", "--output", "out.sarif")
    assert result.exit_code == 2  # garbage.onnx is unreadable: that outranks findings
    assert result.output == ""
    document = json.loads((zoo / "out.sarif").read_text())
    validate_sarif(document)
    sarif_run = document["runs"][0]
    [finding] = sarif_run["results"]
    assert finding["ruleId"] == "IL101" and finding["level"] == "error"
    location = finding["locations"][0]
    assert location["physicalLocation"]["artifactLocation"] == {"uri": "models/broken.onnx", "uriBaseId": "%SRCROOT%"}
    assert location["physicalLocation"]["region"]["startLine"] == 1
    assert location["logicalLocations"][0]["fullyQualifiedName"] == "fc1.weight"
    rules = sarif_run["tool"]["driver"]["rules"]
    assert rules[finding["ruleIndex"]]["id"] == "IL101"
    assert "## Why is this bad?" in rules[finding["ruleIndex"]]["help"]["markdown"]
    assert {r["id"] for r in rules} == {r.code for r in registry()}
    [notification] = sarif_run["invocations"][0]["toolExecutionNotifications"]
    assert "garbage.onnx" in notification["message"]["text"] and not sarif_run["invocations"][0]["executionSuccessful"]


def test_sarif_fingerprint_is_stable_when_numbers_change(zoo):
    first = json.loads(run("models/broken.onnx", "--format", "sarif").output)
    broken(zoo / "models" / "broken.onnx")  # same model rewritten: same key
    second = json.loads(run("models/broken.onnx", "--format", "sarif").output)
    fingerprint = lambda doc: doc["runs"][0]["results"][0]["partialFingerprints"]  # noqa: E731
    assert fingerprint(first) == fingerprint(second)


def test_sarif_points_at_python_line_defining_the_module(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    source = textwrap.dedent(
        """\
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc0 = nn.Linear(8, 16)
                self.fc1 = nn.Linear(16, 16)
                self.fc2 = nn.Linear(16, 4)
                nn.init.zeros_(self.fc1.weight)
                nn.init.zeros_(self.fc1.bias)

            def forward(self, x):
                return self.fc2(self.fc1(x).relu())


        def build():
            return Net()
        """
    )
    (tmp_path / "netdef.py").write_text(source)
    result = run("netdef.py:build", "--format", "sarif", "--select", "IL101")
    document = json.loads(result.output)
    validate_sarif(document)
    [finding] = document["runs"][0]["results"]
    physical = finding["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "netdef.py"
    assert physical["region"]["startLine"] == source.splitlines().index("        self.fc1 = nn.Linear(16, 16)") + 1
    github = run("netdef.py:build", "--format", "github", "--select", "IL101").output
    assert github.startswith(f"::error file=netdef.py,line={physical['region']['startLine']},title=IL101 zero-weights::fc1.weight: ")


def test_github_annotations(zoo):
    result = run("models", "--format", "github")
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("::error file=models/broken.onnx,line=1,title=IL101 zero-weights::fc1.weight: this layer and every layer before it will never train: all 1,024 values are 0.0")
    assert lines[1].startswith("::error file=models/garbage.onnx,title=initlint::models/garbage.onnx: ")
    assert len(lines) == 2  # healthy.onnx: nothing


def test_github_escapes_properties_and_data():
    finding = Finding("IL101", "zero-weights", Severity.WARNING, "a.b", "50% zero\nsecond line")
    text = render_github([TargetResult(target="dir,x/m:1.onnx", format="onnx", findings=[finding])])
    assert text == "::warning file=dir%2Cx/m%3A1.onnx,line=1,title=IL101 zero-weights::a.b: 50%25 zero%0Asecond line"


def test_junit_one_case_per_model_and_rule(zoo):
    result = run("models", "--format", "junit", "--select", "IL101,IL105")
    root = ET.fromstring(result.output)
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"models/broken.onnx", "models/garbage.onnx", "models/healthy.onnx"}
    broken_cases = {c.get("name"): c for c in suites["models/broken.onnx"].iter("testcase")}
    assert set(broken_cases) == {"IL101 zero-weights", "IL105 nonzero-mean-weights"}
    assert broken_cases["IL101 zero-weights"].find("failure") is not None
    assert broken_cases["IL105 nonzero-mean-weights"].find("failure") is None
    assert all(c.find("failure") is None for c in suites["models/healthy.onnx"].iter("testcase"))
    [load_case] = suites["models/garbage.onnx"].iter("testcase")
    assert load_case.find("error") is not None
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "1", "1")


def test_junit_findings_below_fail_on_pass_with_output(zoo):
    save_mlp(zoo / "u.onnx", uniform_layer=1)
    (zoo / "initlint.toml").write_text("[rules.IL105]\ncoherent-error = 20.0\n")  # the finding becomes a warning
    case = ET.fromstring(run("u.onnx", "--format", "junit", "--select", "IL105").output).find(".//testcase")
    assert case.find("failure") is None and "fc1.weight: [warning]" in case.find("system-out").text
    case = ET.fromstring(run("u.onnx", "--format", "junit", "--select", "IL105", "--fail-on", "warning").output).find(".//testcase")
    assert case.find("failure") is not None


def test_onnx_path_never_imports_torch(zoo):
    script = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from initlint.cli import main\n"
        "results = {}\n"
        "for fmt in ('sarif', 'github', 'junit', 'text'):\n"
        "    result = CliRunner().invoke(main, ['check', 'models', '--jobs', '2', '--format', fmt])\n"
        "    results[fmt] = [result.exit_code, result.output, repr(result.exception) if not isinstance(result.exception, (SystemExit, type(None))) else None]\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'results': results}))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["torch"] is False
    for fmt, (exit_code, output, exception) in report["results"].items():
        # every format ran to the end: garbage.onnx is unreadable (exit 2), broken.onnx has an IL101 finding
        assert exception is None and exit_code == 2, (fmt, exit_code, exception)
        assert "broken.onnx" in output and "IL101" in output and "garbage.onnx" in output, (fmt, output[:500])
