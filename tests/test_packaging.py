"""The distribution ships the rules as initlint.rules, every subpackage, and no generic top-level 'rules' module."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _source_copy(destination: Path) -> Path:
    """The files a wheel is built from, copied out of the checkout: setuptools writes build/ and
    *.egg-info beside the sources, and a test must not write into the checkout."""
    source = destination / "src"
    shutil.copytree(ROOT / "initlint", source / "initlint", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "rules", source / "rules", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    return source


def test_wheel_ships_rules_and_every_subpackage(tmp_path):
    build_existed = (ROOT / "build").exists()
    source = _source_copy(tmp_path)
    wheels = tmp_path / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 and "setuptools" in proc.stderr:
        pytest.skip("setuptools is not installed in this environment")
    assert proc.returncode == 0, proc.stderr
    wheel = next(wheels.glob("initlint-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "initlint/rules/IL101_zero_weights.py" in names
    assert not any(name.startswith("rules/") for name in names)
    # Every module of the source tree is in the wheel: a subpackage missing from pyproject's
    # package list would install an initlint that fails on import.
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "initlint").rglob("*.py") if "__pycache__" not in p.parts)
    missing = [m for m in modules if m not in names]
    assert not missing, missing
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "initlint = initlint.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert (ROOT / "build").exists() == build_existed, "building the wheel wrote build/ into the checkout"
