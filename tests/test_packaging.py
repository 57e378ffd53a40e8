"""The distribution ships the rules as initlint.rules and no generic top-level 'rules' module."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_rules_inside_the_package(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 and "setuptools" in proc.stderr:
        pytest.skip("setuptools is not installed in this environment")
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("initlint-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "initlint/rules/IL101_zero_weights.py" in names
    assert not any(name.startswith("rules/") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "initlint = initlint.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
