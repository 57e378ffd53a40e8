"""initlint.check() on a live nn.Module and a path, and the pytest plugin's fixture and helper."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from onnx_models import broken, healthy

import initlint
from initlint.api import InitFindingsError
from initlint.errors import InitlintError

torch = pytest.importorskip("torch")
nn = torch.nn


class Net(nn.Module):
    def __init__(self, zero_hidden: bool = False):
        super().__init__()
        self.fc0 = nn.Linear(16, 32)
        self.fc1 = nn.Linear(32, 32)
        self.head = nn.Linear(32, 4)
        if zero_hidden:
            nn.init.zeros_(self.fc1.weight)
            nn.init.zeros_(self.fc1.bias)

    def forward(self, x):
        return self.head(torch.relu(self.fc1(torch.relu(self.fc0(x)))))


@pytest.fixture(autouse=True)
def no_project_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no [tool.initlint] above tmp_path


def test_check_live_module_reports_findings():
    torch.manual_seed(0)
    report = initlint.check(Net(zero_hidden=True), torch.randn(2, 16))
    assert not report.ok
    assert [(f.code, f.location) for f in report.failing] == [("IL101", "fc1.weight")]
    # --probe auto runs the probe on a model this small, and it measures what the zeros freeze:
    # everything upstream of and in fc1 (ReLU(0) = 0 passes no gradient), and the head's weight.
    # The confirmed IL101 explains them, so they are listed under it, not reported again.
    [root] = report.failing
    frozen = {c["location"] for c in root.evidence["probe_consequences"] if c["code"] == "IL404"}
    assert frozen == {"fc0.weight", "fc0.bias", "fc1.weight", "fc1.bias", "head.weight"}
    assert "5 parameters never get a gradient" in root.message
    with pytest.raises(InitFindingsError, match="fc1.weight: IL101 zero-weights") as raised:
        report.raise_for_findings()
    assert isinstance(raised.value, AssertionError) and raised.value.report is report


def test_check_healthy_module_is_ok():
    torch.manual_seed(0)
    report = initlint.check(Net())
    assert report.ok and report.raise_for_findings() is report


def test_options_override_and_validate():
    torch.manual_seed(0)
    # The static finding only: the probe (IL404) would measure the frozen layers too.
    assert initlint.check(Net(zero_hidden=True), ignore="IL101", probe="never").ok
    assert initlint.check(Net(zero_hidden=True), per_layer_ignores={"fc1": ["IL101"]}, probe="never").ok
    with pytest.raises(TypeError, match="colour"):
        initlint.check(Net(), colour=True)
    with pytest.raises(InitlintError, match="IL999"):
        initlint.check(Net(), select=["IL999"])


def test_project_config_applies_unless_disabled(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.initlint]\nprobe = 'never'\n[tool.initlint.per-layer-ignores]\n'fc1' = ['IL101']\n")
    torch.manual_seed(0)
    assert initlint.check(Net(zero_hidden=True)).ok
    assert not initlint.check(Net(zero_hidden=True), config=False).ok


def test_check_path(tmp_path):
    assert not initlint.check(broken(tmp_path / "b.onnx")).ok
    assert initlint.check(str(healthy(tmp_path / "h.onnx"))).ok
    (tmp_path / "x.onnx").write_bytes(b"junk")
    with pytest.raises(InitlintError, match="x.onnx"):
        initlint.check(tmp_path / "x.onnx")


PLUGIN_TEST = '''
import torch, torch.nn as nn
from initlint.pytest_plugin import assert_init_ok

def make(zero):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    if zero:
        nn.init.zeros_(model[2].weight)
        nn.init.zeros_(model[2].bias)
    return model

def test_fixture_healthy(initlint):
    initlint.assert_init_ok(make(False))

def test_fixture_broken(initlint):
    initlint.assert_init_ok(make(True))

def test_helper_broken():
    assert_init_ok(make(True))
'''


def test_plugin_is_registered_as_pytest11_entry_point():
    from importlib.metadata import entry_points

    assert "initlint.pytest_plugin" in [ep.value for ep in entry_points(group="pytest11")]


def test_pytest_plugin_fixture_and_helper(tmp_path):
    # A separate pytest run, as a user's project would have it: the plugin loads by entry point.
    (tmp_path / "test_model.py").write_text(PLUGIN_TEST)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_model.py"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert "1 passed" in run.stdout and "2 failed" in run.stdout, run.stdout[-3000:]
    assert "2.weight: IL101 zero-weights [error]" in run.stdout
