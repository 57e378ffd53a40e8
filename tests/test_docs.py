"""Rule documentation: every rule has every section, docs/rules/ is current, `initlint rule` prints the page."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from initlint import docs
from initlint.cli import main
from initlint.engine import DOC_SECTIONS, Rule, Severity

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("rule", docs.builtin_rules(), ids=lambda r: r.code)
def test_rule_has_every_doc_section(rule):
    assert docs.doc_problems(rule) == []


def test_generated_docs_are_current():
    assert docs.stale(ROOT) == [], "run `python -m initlint.docs` and commit docs/rules/"


def test_missing_section_and_undocumented_option_are_reported():
    class Half(Rule):
        """Summary.

        ## What it does
        Something.

        ## Options
        - `alpha`: documented.
        """

        code, name, severity = "IL999", "half-documented", Severity.INFO
        options = {"alpha": 1.0, "beta": 2.0}

    problems = docs.doc_problems(Half)
    assert any("'## Why is this bad?'" in p for p in problems) and any("'beta'" in p for p in problems)
    assert not any("'alpha'" in p for p in problems)
    assert len([p for p in problems if "missing section" in p]) == len(DOC_SECTIONS) - 1


def test_stale_detection_and_regeneration(tmp_path):
    (tmp_path / "README.md").write_text(f"# x\n\n{docs.TABLE_START}\nold\n{docs.TABLE_END}\n")
    (tmp_path / "docs" / "rules").mkdir(parents=True)
    (tmp_path / "docs" / "rules" / "IL000-removed.md").write_text("gone")
    stale = docs.stale(tmp_path)
    assert "README.md (rules table)" in stale and any("IL000-removed" in s for s in stale)
    assert len(stale) == len(docs.builtin_rules()) + 2
    assert docs.main(["--root", str(tmp_path)]) == 0
    assert docs.stale(tmp_path) == [] and not (tmp_path / "docs" / "rules" / "IL000-removed.md").exists()
    assert docs.main(["--root", str(tmp_path), "--check"]) == 0
    readme = (tmp_path / "README.md").read_text()
    assert "| [IL101](docs/rules/IL101-zero-weights.md) | `zero-weights` | error |" in readme


def test_rule_command_prints_the_page():
    for rule in docs.builtin_rules():
        result = CliRunner().invoke(main, ["rule", rule.code])
        assert result.exit_code == 0 and result.output == docs.render_rule(rule)


def test_rule_with_options_shows_config_snippet():
    rule = next(r for r in docs.builtin_rules() if r.options)
    page = docs.render_rule(rule)
    assert f"[tool.initlint.rules.{rule.code}]" in page
    for option in rule.options:
        assert f"{option.replace('_', '-')} = " in page


def test_ci_workflow_commands_run(tmp_path, monkeypatch):
    """Every `initlint …` command of the documented GitHub Actions workflow is a valid invocation."""
    import shlex

    import yaml
    from onnx_models import broken

    workflow = yaml.safe_load((ROOT / "docs" / "ci" / "github-actions.yml").read_text())
    steps = workflow["jobs"]["initlint"]["steps"]
    assert any(step.get("uses", "").startswith("github/codeql-action/upload-sarif") for step in steps)
    commands = [line.strip() for step in steps for line in step.get("run", "").splitlines() if line.strip().startswith("initlint ")]
    assert any("--format sarif" in c for c in commands) and any("--format github" in c for c in commands)
    monkeypatch.chdir(tmp_path)
    broken(tmp_path / "models" / "broken.onnx")
    for command in commands:
        result = CliRunner().invoke(main, shlex.split(command)[1:])
        assert result.exit_code == 1, (command, result.output)  # findings, not a usage error
    assert (tmp_path / "initlint.sarif").is_file()
