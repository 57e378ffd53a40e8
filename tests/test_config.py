"""[tool.initlint] / initlint.toml settings: discovery, precedence, validation, and their effect."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from onnx_models import broken, save_mlp

from initlint.cli import main
from initlint.config import find_config, resolve
from initlint.errors import InitlintError


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lint(*args):
    # The static findings: --probe auto would add the probe's (IL404 behind a zero layer).
    result = CliRunner().invoke(main, ["check", "--jobs", "1", "--format", "json", "--probe", "never", *args])
    return result, (json.loads(result.output) if result.output.startswith("{") else None)


def codes(document):
    return sorted((r["target"], f["code"], f["location"], f["severity"]) for r in document["results"] for f in r["findings"])


def test_config_found_walking_up_and_initlint_toml_wins(project):
    (project / "pyproject.toml").write_text("[tool.initlint]\nfail-on = 'warning'\n")
    nested = project / "a" / "b"
    nested.mkdir(parents=True)
    assert find_config(nested) == project / "pyproject.toml"
    (project / "initlint.toml").write_text("fail-on = 'info'\n")
    assert find_config(nested) == project / "initlint.toml"
    assert resolve(start=nested)["fail-on"] == "info"


def test_pyproject_without_table_is_passed_over(project):
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    sub = project / "sub"
    sub.mkdir()
    (sub / "pyproject.toml").write_text("[tool.black]\nline-length = 100\n")
    assert find_config(sub) is None


def test_partial_config_keeps_other_defaults(project):
    (project / "pyproject.toml").write_text("[tool.initlint]\nignore = ['IL103']\n")
    settings = resolve()
    assert settings["ignore"] == ["IL103"]
    assert settings["fail-on"] == "error" and settings["probe"] == "auto" and settings.select is None
    assert settings.origins["ignore"] == "pyproject.toml" and settings.origins["fail-on"] == "default"


def test_ignore_in_config_removes_finding_and_changes_exit(project):
    broken(project / "m.onnx")
    result, doc = lint("m.onnx")
    assert result.exit_code == 1 and ("m.onnx", "IL101", "fc1.weight", "error") in codes(doc)
    (project / "pyproject.toml").write_text("[tool.initlint]\nignore = ['IL101']\n")
    result, doc = lint("m.onnx")
    assert result.exit_code == 0 and not codes(doc)


def test_cli_select_overrides_config_select(project):
    broken(project / "m.onnx")
    (project / "pyproject.toml").write_text("[tool.initlint]\nselect = ['IL105']\n")
    assert lint("m.onnx")[0].exit_code == 0
    result, doc = lint("m.onnx", "--select", "IL1")
    assert result.exit_code == 1 and [c[1] for c in codes(doc)] == ["IL101"]


def test_extend_select_adds_to_configured_select(project):
    broken(project / "m.onnx")
    (project / "pyproject.toml").write_text("[tool.initlint]\nselect = ['IL105']\nextend-select = ['IL101']\n")
    assert lint("m.onnx")[0].exit_code == 1


def test_fail_on_from_config_and_cli_override(project):
    save_mlp(project / "u.onnx", uniform_layer=1)
    (project / "initlint.toml").write_text("[rules.IL105]\ncoherent-error = 20.0\n")
    # The U(0, 1) layer also makes the logits large (IL305); this test is about IL105's thresholds.
    result, doc = lint("u.onnx", "--ignore", "IL305")  # coherent part 9.4: now below the error threshold, above the warning one
    assert codes(doc) == [("u.onnx", "IL105", "fc1.weight", "warning")] and result.exit_code == 0
    (project / "initlint.toml").write_text("fail-on = 'warning'\n[rules.IL105]\ncoherent-error = 20.0\n")
    assert lint("u.onnx", "--ignore", "IL305")[0].exit_code == 1
    assert lint("u.onnx", "--ignore", "IL305", "--fail-on", "error")[0].exit_code == 0


def test_rule_threshold_with_underscore_name_and_severity_drop(project):
    save_mlp(project / "u.onnx", uniform_layer=1)
    (project / "pyproject.toml").write_text("[tool.initlint.rules.IL105]\ncoherent_warning = 15.0\ncoherent-error = 20.0\n")
    result, doc = lint("u.onnx", "--ignore", "IL305")  # IL305: the large logits the U(0, 1) layer causes
    assert result.exit_code == 0 and not codes(doc)


def test_per_layer_ignores_glob_covers_layer_parameters(project):
    broken(project / "m.onnx")
    (project / "pyproject.toml").write_text("[tool.initlint.per-layer-ignores]\n'fc1' = ['IL1']\n")
    result, doc = lint("m.onnx")
    assert result.exit_code == 0 and not codes(doc)
    assert any("suppressed by per-layer-ignores" in n for n in doc["results"][0]["notes"])
    (project / "pyproject.toml").write_text("[tool.initlint.per-layer-ignores]\n'*.lora_B' = ['IL101']\n")
    assert lint("m.onnx")[0].exit_code == 1  # fc1 is not a lora_B


def test_per_file_ignores_relative_to_config_dir(project):
    broken(project / "zoo" / "legacy" / "old.onnx")
    broken(project / "zoo" / "new.onnx")
    (project / "pyproject.toml").write_text("[tool.initlint.per-file-ignores]\n'zoo/legacy/*' = ['IL101']\n")
    result, doc = lint("zoo")
    assert [c[0] for c in codes(doc)] == ["zoo/new.onnx"]
    assert result.exit_code == 1


@pytest.mark.parametrize(
    "text, named",
    [
        ("[tool.initlint]\nfail_on = 'warning'\n", "fail_on"),
        ("[tool.initlint]\nselect = ['IL999']\n", "IL999"),
        ("[tool.initlint.per-layer-ignores]\n'x' = ['XY1']\n", "XY1"),
        ("[tool.initlint.rules.IL105]\nthreshold = 1.0\n", "threshold"),
        ("[tool.initlint.rules.IL777]\nx = 1\n", "IL777"),
        ("[tool.initlint.rules.IL105]\ncoherent-error = 'high'\n", "coherent-error"),
        ("[tool.initlint]\nprobe = 'sometimes'\n", "sometimes"),
        ("[tool.initlint\n", "invalid TOML"),
    ],
)
def test_unknown_or_invalid_setting_exits_2_naming_it(project, text, named):
    healthy_model = save_mlp(project / "m.onnx")
    (project / "pyproject.toml").write_text(text)
    result = CliRunner().invoke(main, ["check", str(healthy_model)])
    assert result.exit_code == 2
    assert named in result.output and "pyproject.toml" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_explicit_config_file_of_any_name_and_missing_one(project):
    broken(project / "m.onnx")
    (project / "initlint.toml").write_text("fail-on = 'error'\n")  # found, but --config wins
    (project / "ci.toml").write_text("ignore = ['IL101']\n")  # any name but pyproject.toml: top-level keys
    assert CliRunner().invoke(main, ["check", "m.onnx", "--probe", "never"]).exit_code == 1
    assert CliRunner().invoke(main, ["check", "m.onnx", "--probe", "never", "--config", "ci.toml"]).exit_code == 0
    (project / "other").mkdir()
    (project / "other" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert CliRunner().invoke(main, ["check", "m.onnx", "--config", "other/pyproject.toml"]).exit_code == 2
    assert CliRunner().invoke(main, ["check", "m.onnx", "--config", "nowhere/initlint.toml"]).exit_code == 2


def test_config_command_prints_values_and_origins(project):
    (project / "pyproject.toml").write_text("[tool.initlint]\nfail-on = 'warning'\n[tool.initlint.rules.IL105]\ncoherent-error = 5.0\n")
    result = CliRunner().invoke(main, ["config", "--ignore", "IL103"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert 'fail-on = "warning"  # pyproject.toml' in lines
    assert 'ignore = ["IL103"]  # command line' in lines
    assert 'probe = "auto"  # default' in lines
    assert "coherent-error = 5.0  # pyproject.toml" in lines
    assert "z-threshold = 6.0  # default" in lines


def test_resolve_rejects_unknown_key_programmatically(project):
    (project / "initlint.toml").write_text("colour = true\n")
    with pytest.raises(InitlintError, match="unknown key 'colour'"):
        resolve()
