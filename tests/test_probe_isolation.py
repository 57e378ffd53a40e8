"""The probe runs in a child process with hard limits (initlint.probe.isolated): --probe-timeout is
kept even inside a single operation, memory is capped, and a result that arrives is the same as
the in-process one. These tests run the default path (conftest.py makes the rest of the suite
probe in-process, for speed)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2torch")

from initlint.options import LintOptions, ProbeOptions  # noqa: E402
from initlint.probe import isolated  # noqa: E402
from initlint.runner import lint_target  # noqa: E402

SPECS = """
import time
import torch
from torch import nn


def running(x):
    # A real run, not a trace (torch.fx passes a Proxy, torch.export a fake tensor): the static
    # stage reads the structure without waiting on what follows.
    return type(x) is torch.Tensor


class Sleeper(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        if running(x):
            time.sleep(3600)
        return self.fc(x)


class Hoarder(nn.Module):
    # Keeps 64 MiB blocks, touched, until something stops it.
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.blocks = []

    def forward(self, x):
        while running(x):
            self.blocks.append(torch.ones(16 << 20))
            time.sleep(0.01)
        return self.fc(x)


def sleeper():
    return Sleeper()


def hoarder():
    return Hoarder()


def mlp():
    # Not seeded: the child would draw other weights if it built its own.
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
"""


@pytest.fixture
def isolated_probe(monkeypatch, tmp_path):
    monkeypatch.delenv("INITLINT_PROBE_INPROCESS", raising=False)
    (tmp_path / "specs.py").write_text(textwrap.dedent(SPECS))
    return tmp_path / "specs.py"


def _lint(target: str, timeout_s: float = 60.0):
    options = LintOptions(probe="always", probe_options=ProbeOptions(timeout_s=timeout_s))
    return lint_target(target, options)


def test_a_sleeping_forward_ends_at_the_time_limit(isolated_probe):
    start = time.monotonic()
    result = _lint(f"{isolated_probe}:sleeper", timeout_s=4)
    elapsed = time.monotonic() - start
    assert result.error is None
    assert result.probe["status"] == "timeout"
    assert any("4 s time limit (--probe-timeout)" in note for note in result.notes), result.notes
    # The limit plus the grace for a clean end, the spec's own load here, and killing the child.
    assert elapsed < 4 + isolated.GRACE_S + 6, elapsed
    assert all(f.probe["verdict"] == "inconclusive" for f in result.findings)


def test_memory_growth_is_stopped_at_the_cap(isolated_probe, monkeypatch):
    monkeypatch.setattr(isolated, "memory_cap", lambda model_bytes, activation_bytes=0: 768 << 20)
    result = _lint(f"{isolated_probe}:hoarder", timeout_s=120)
    assert result.error is None
    assert result.probe["status"] == "unavailable"
    note = next(n for n in result.notes if "did not run to the end" in n)
    assert "768 MiB memory budget" in note, note


def test_a_result_that_arrives_is_the_in_process_one(isolated_probe, monkeypatch):
    """The spec's weights travel to the child: it measures the model that was linted, not a
    fresh draw of the same architecture."""
    spec = f"{isolated_probe}:mlp"
    apart = _lint(spec)
    assert apart.probe["status"] == "ok", apart.notes
    # The in-process probe of a second build would measure other weights: compare on the
    # same graph instead, probing it here.
    from initlint.probe import run_probe

    monkeypatch.setenv("INITLINT_PROBE_INPROCESS", "1")
    here = run_probe(apart.graph, options=ProbeOptions())
    assert [row["std"] for row in apart.probe["layers"]] == [round_6(r.std) for r in here.layers]
    assert apart.probe["gradient_ratio"] == round_6(here.gradient_ratio)


def round_6(value: float) -> float:
    return float(f"{value:.6g}")


def _tanh_chain(path, length: int) -> None:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    nodes = [helper.make_node("MatMul", ["x", "W"], ["t0"], name="mm")]
    nodes += [helper.make_node("Tanh", [f"t{i}"], [f"t{i + 1}"], name=f"act{i}") for i in range(length)]
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.3, (8, 8)).astype(np.float32), "W")
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info(f"t{length}", TensorProto.FLOAT, [4, 8])], [weight],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.slow
def test_probe_timeout_ends_a_100k_node_chain(tmp_path, monkeypatch):
    """A 3 MB chain of 100k Tanh nodes ran for minutes at GBs in the probe; the command now ends
    within 20 s with --probe-timeout 5."""
    monkeypatch.delenv("INITLINT_PROBE_INPROCESS", raising=False)
    path = tmp_path / "chain.onnx"
    _tanh_chain(path, 100_000)
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "initlint", "check", str(path), "--probe", "always", "--probe-timeout", "5", "--format", "json"],
        capture_output=True, text=True, timeout=120,
    )
    elapsed = time.monotonic() - start
    assert run.returncode in (0, 1), run.stderr
    result = json.loads(run.stdout)["results"][0]
    assert result["probe"]["status"] == "timeout"
    assert elapsed < 20, elapsed
