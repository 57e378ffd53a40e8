"""`initlint DIR`: recursion, --exclude, .gitignore, parallel processes, one bad model among many."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from onnx_models import broken, healthy

from initlint.cli import main
from initlint.discover import expand_targets, lint_many
from initlint.runner import LintOptions


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    healthy(tmp_path / "m" / "a.onnx")
    broken(tmp_path / "m" / "sub" / "b.onnx")
    healthy(tmp_path / "m" / "legacy" / "c.onnx")
    healthy(tmp_path / "m" / ".cache" / "d.onnx")
    healthy(tmp_path / "m" / "build" / "e.onnx")
    (tmp_path / "m" / "notes.txt").write_text("not a model")
    return tmp_path


def test_recursion_finds_model_files_sorted_skipping_hidden(tree):
    found = expand_targets(["m"], respect_gitignore=False)
    assert found == ["m/a.onnx", "m/build/e.onnx", "m/legacy/c.onnx", "m/sub/b.onnx"]


def test_exclude_globs_match_paths_and_directory_names(tree):
    assert expand_targets(["m"], ["legacy", "m/build/*"], respect_gitignore=False) == ["m/a.onnx", "m/sub/b.onnx"]
    assert expand_targets(["m"], ["*.onnx"], respect_gitignore=False) == []


def test_explicit_file_is_linted_even_if_excluded(tree):
    assert expand_targets(["m/legacy/c.onnx"], ["legacy"]) == ["m/legacy/c.onnx"]


def test_gitignore_without_git_work_tree(tree):
    (tree / "m" / ".gitignore").write_text("build/\n/legacy/*.onnx\n!keep.onnx\n")
    assert expand_targets(["m"]) == ["m/a.onnx", "m/sub/b.onnx"]


def test_gitignore_inside_git_work_tree(tree):
    (tree / ".git" / "info").mkdir(parents=True)
    (tree / ".git" / "info" / "exclude").write_text("a.onnx\n")
    (tree / ".gitignore").write_text("**/legacy/\n")
    (tree / "m" / ".gitignore").write_text("e.onnx\n!a.onnx\n")  # a deeper file re-includes
    assert expand_targets(["m"]) == ["m/a.onnx", "m/sub/b.onnx"]


def test_gitignore_files_above_the_work_tree_root_do_not_apply(tree):
    (tree / ".gitignore").write_text("*.onnx\n")
    (tree / "m" / ".git").mkdir()
    assert expand_targets(["m"]) == ["m/a.onnx", "m/build/e.onnx", "m/legacy/c.onnx", "m/sub/b.onnx"]


FSMONITOR_HOOK = """#!/bin/sh
touch "{marker}"
"""


def test_scanning_a_folder_runs_nothing_from_its_git_config(tree, monkeypatch):
    """A model bundle's .git/config can name commands git runs (core.fsmonitor): git must not run."""
    marker = tree / "MARKER"
    hook = tree / "hook.sh"
    hook.write_text(FSMONITOR_HOOK.format(marker=marker))
    hook.chmod(0o755)
    git = tree / "m" / ".git"
    for folder in ("objects", "refs/heads", "info"):
        (git / folder).mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "config").write_text(f"[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfsmonitor = {hook}\n")
    (tree / "m" / ".gitignore").write_text("build/\n")
    if shutil.which("git"):  # the trap is armed: git itself would run the hook here
        subprocess.run(["git", "status", "--porcelain"], cwd=tree / "m", capture_output=True, timeout=60)
        armed = marker.exists()
        marker.unlink(missing_ok=True)
    else:
        armed = None
    calls = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: calls.append(a) or pytest.fail(f"subprocess started: {a}"))
    assert expand_targets(["m"]) == ["m/a.onnx", "m/legacy/c.onnx", "m/sub/b.onnx"]
    result = CliRunner().invoke(main, ["check", "m", "--probe", "never", "--jobs", "1"])
    assert result.exit_code == 1, result.output
    assert not marker.exists() and not calls
    assert armed in (True, None), "git did not run the hook: the test no longer shows the danger"


def test_looping_symlinks_in_a_scanned_folder_are_skipped(tree):
    (tree / "m" / "self").symlink_to("self")
    (tree / "m" / "loop.onnx").symlink_to("loop.onnx")
    (tree / "m" / "dangling.onnx").symlink_to("missing.onnx")
    assert expand_targets(["m"], respect_gitignore=False) == ["m/a.onnx", "m/build/e.onnx", "m/legacy/c.onnx", "m/sub/b.onnx"]
    result = CliRunner().invoke(main, ["check", "m", "--probe", "never", "--jobs", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_parallel_matches_serial_and_keeps_order(tree):
    targets = expand_targets(["m"], respect_gitignore=False)
    serial = lint_many(targets, LintOptions(probe="never"), jobs=1)
    parallel = lint_many(targets, LintOptions(probe="never"), jobs=2)
    assert [r.target for r in parallel] == targets
    summary = lambda results: [(r.target, [(f.code, f.location, f.severity) for f in r.findings]) for r in results]  # noqa: E731
    assert summary(parallel) == summary(serial)
    assert any(r.findings for r in parallel)


def test_unreadable_model_does_not_stop_the_others(tree):
    (tree / "m" / "bad.onnx").write_bytes(b"garbage")
    result = CliRunner().invoke(main, ["check", "m", "--jobs", "2", "--format", "json", "--probe", "never"])
    results = {r["target"]: r for r in json.loads(result.output)["results"]}
    assert results["m/bad.onnx"]["error"]
    assert [f["code"] for f in results["m/sub/b.onnx"]["findings"]] == ["IL101"]
    assert result.exit_code == 2  # unreadable outranks findings


CRASHING_WORKER = """
import os, sys
from initlint import discover
from initlint.discover import expand_targets, lint_many
from initlint.runner import LintOptions

real = discover.lint_target

def crashing(target, options):
    if target.endswith("a.onnx"):
        os._exit(1)  # as a segfault in a native reader would
    return real(target, options)

discover.lint_target = crashing  # inherited by the forked workers
results = lint_many(expand_targets(["m"], respect_gitignore=False), LintOptions(probe="never"), jobs=2)
for r in results:
    print(r.target, "|", r.error or "", "|", ",".join(f.code for f in r.findings))
"""


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the patched worker must be inherited by fork")
def test_a_model_that_kills_its_worker_is_reported_alone(tree):
    # In a fresh interpreter: without torch loaded, workers are forked and inherit the patch.
    run = subprocess.run([sys.executable, "-c", CRASHING_WORKER], capture_output=True, text=True, timeout=120)
    rows = {line.split(" | ")[0]: line.split(" | ")[1:] for line in run.stdout.splitlines()}
    assert len(rows) == 4, run.stdout + run.stderr
    assert "crashed" in rows["m/a.onnx"][0]
    assert rows["m/sub/b.onnx"] == ["", "IL101"]
    assert all(not error for target, (error, _) in rows.items() if target != "m/a.onnx")


def test_progress_bar_reports_to_stderr(tree, capsys):
    lint_many(expand_targets(["m"], respect_gitignore=False), LintOptions(probe="never"), jobs=1, progress=True)
    assert "linting" in capsys.readouterr().err


def test_text_output_has_summary_table(tree):
    result = CliRunner().invoke(main, ["check", "m", "--jobs", "1", "--probe", "never", "--exclude", "build", "--exclude", "legacy"])
    assert result.exit_code == 1
    table = result.output.split("\n\n")[-1].splitlines()
    assert table[0].split() == ["model", "errors", "warnings", "info", "status"]
    assert table[2].split() == ["m/a.onnx", "0", "0", "0", "ok"]
    assert table[3].split() == ["m/sub/b.onnx", "1", "0", "0", "fail"]


def test_directory_without_models_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["check", "empty"])
    assert result.exit_code == 2 and "no model files found" in result.output
