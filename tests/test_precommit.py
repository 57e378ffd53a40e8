"""The pre-commit hook of this repository blocks a commit of a broken model and allows a healthy one.

pre-commit installs initlint from this repository's HEAD into its own environment with pip
(numpy, onnx, click from the package index): about 30 s the first time for a given commit,
then cached in pytest's cache directory. Skipped when git is missing or the package index
cannot be reached.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from onnx_models import broken, healthy

from initlint.loaders import MODEL_SUFFIXES

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / ".pre-commit-hooks.yaml"
_NETWORK = re.compile(r"NewConnectionError|Temporary failure in name resolution|Could not find a version|No matching distribution|ConnectTimeout|Network is unreachable")


def test_hook_definition_matches_model_suffixes():
    [hook] = yaml.safe_load(HOOKS.read_text())
    assert hook["id"] == "initlint" and hook["entry"] == "initlint" and hook["language"] == "python"
    files = re.compile(hook["files"])
    for suffix in MODEL_SUFFIXES - {".bin"}:  # .bin is too generic to claim every such file
        assert files.search(f"models/net{suffix}"), suffix
    assert not files.search("train.py") and not files.search("weights.bin") and not files.search("model.onnx.txt")


def pre_commit_home(config, tmp_path: Path) -> Path:
    """pytest's cache directory when the cache plugin is active (the hook environment then
    survives between runs), else a temporary one: with ``-p no:cacheprovider`` the config has
    no ``cache`` attribute at all."""
    cache = getattr(config, "cache", None)
    return cache.mkdir("initlint-pre-commit") if cache is not None else tmp_path / "pre-commit-cache"


def test_pre_commit_home_without_the_cache_plugin(tmp_path):
    class ConfigWithoutCache:  # what `pytest -p no:cacheprovider` hands the test
        pass

    assert pre_commit_home(ConfigWithoutCache(), tmp_path) == tmp_path / "pre-commit-cache"


def test_pre_commit_home_with_the_cache_plugin(tmp_path, request):
    if getattr(request.config, "cache", None) is None:
        pytest.skip("pytest runs without its cache plugin")
    home = pre_commit_home(request.config, tmp_path)
    assert home.is_dir() and tmp_path not in home.parents


def test_documented_pre_commit_revs_exist_or_are_placeholders():
    """A `rev:` in the docs must be a placeholder the user fills in or a ref this repository has."""
    for doc in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        for rev in re.findall(r"^\s*rev:\s*(\S.*?)\s*$", doc.read_text(), flags=re.M):
            if rev.startswith("<"):
                continue
            if shutil.which("git") is None or _git(ROOT, "rev-parse", "--is-inside-work-tree", check=False).returncode != 0:
                pytest.skip("checking a pinned rev needs a git checkout")
            assert _git(ROOT, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False).returncode == 0, f"{doc.name}: rev {rev!r} does not exist"


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check, timeout=120)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_commit_of_broken_model_is_blocked_and_healthy_allowed(tmp_path, request):
    if _git(ROOT, "rev-parse", "--is-inside-work-tree", check=False).returncode != 0:
        pytest.skip("the repository is not a git checkout")
    rev = _git(ROOT, "rev-parse", "HEAD").stdout.strip()
    cache = pre_commit_home(request.config, tmp_path)
    env = {**os.environ, "PRE_COMMIT_HOME": str(cache), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    project = tmp_path / "project"
    project.mkdir()
    _git(project, "init", "-q")
    (project / ".pre-commit-config.yaml").write_text(f"repos:\n- repo: {ROOT}\n  rev: {rev}\n  hooks:\n  - id: initlint\n")
    pre_commit = [sys.executable, "-m", "pre_commit"]
    # Drop the environments of earlier commits' runs, whose temporary projects are gone.
    subprocess.run([*pre_commit, "gc"], cwd=project, capture_output=True, env=env, timeout=120)
    subprocess.run([*pre_commit, "install"], cwd=project, check=True, capture_output=True, env=env, timeout=120)

    def commit(message: str) -> tuple[int, str]:
        # git shows the hook's report on stderr
        run = subprocess.run(["git", "commit", "-m", message], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=900)
        return run.returncode, run.stdout

    healthy(project / "models" / "healthy.onnx")
    _git(project, "add", ".")
    code, output = commit("healthy model")
    if code != 0 and _NETWORK.search(output):
        pytest.skip("pre-commit could not install the hook environment (package index unreachable)")
    assert code == 0 and re.search(r"initlint\.+Passed", output), output

    broken(project / "models" / "broken.onnx")
    _git(project, "add", ".")
    code, output = commit("broken model")
    assert code != 0 and re.search(r"initlint\.+Failed", output), output
    assert "broken.onnx: fc1.weight: IL101 zero-weights [error]" in output
    assert _git(project, "rev-list", "--count", "HEAD").stdout.strip() == "1"

