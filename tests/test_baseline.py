"""--write-baseline records today's findings; --baseline reports only new ones."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from onnx_models import broken, healthy, save_mlp

from initlint.cli import main


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken(tmp_path / "zoo" / "a.onnx")
    healthy(tmp_path / "zoo" / "b.onnx")
    return tmp_path


def run(*args):
    # The static findings only: --probe auto would add what the probe measures (IL404 behind the zero layer).
    return CliRunner().invoke(main, ["check", "--jobs", "1", "--probe", "never", *args])


def test_write_baseline_records_findings_with_stable_keys(zoo):
    result = run("zoo", "--write-baseline", "baseline.json")
    assert result.exit_code == 0, result.output
    assert "Wrote 1 finding of 2 models" in result.output
    document = json.loads((zoo / "baseline.json").read_text())
    assert document["findings"] == [{"target": "zoo/a.onnx", "code": "IL101", "location": "fc1.weight"}]


def test_baseline_hides_known_findings_and_reports_new_ones(zoo):
    run("zoo", "--write-baseline", "baseline.json")
    assert run("zoo", "--baseline", "baseline.json").exit_code == 0
    save_mlp(zoo / "zoo" / "b.onnx", uniform_layer=2)  # a regression in another model
    result = run("zoo", "--baseline", "baseline.json", "--format", "json")
    assert result.exit_code == 1
    findings = [(r["target"], f["code"]) for r in json.loads(result.output)["results"] for f in r["findings"]]
    assert findings == [("zoo/b.onnx", "IL105")]


def test_baseline_matches_from_another_spelling_of_the_path(zoo):
    run("zoo", "--write-baseline", "baseline.json")
    assert run(str(zoo / "zoo" / "a.onnx"), "--baseline", "baseline.json").exit_code == 0
    assert run("./zoo/a.onnx", "--baseline", "baseline.json").exit_code == 0


def test_baseline_counts_occurrences(zoo):
    run("zoo", "--write-baseline", "baseline.json")
    save_mlp(zoo / "zoo" / "a.onnx", zero_layer=1, uniform_layer=0)  # same IL101 plus a new IL105
    document = json.loads(run("zoo", "--baseline", "baseline.json", "--format", "json").output)
    assert [f["code"] for r in document["results"] for f in r["findings"]] == ["IL105"]


@pytest.mark.parametrize("content", [None, "not json", '{"findings": [{"code": "IL101"}]}'])
def test_bad_baseline_file_exits_2(zoo, content):
    if content is not None:
        (zoo / "baseline.json").write_text(content)
    result = run("zoo", "--baseline", "baseline.json")
    assert result.exit_code == 2 and "baseline.json" in result.output and "Traceback" not in result.output
