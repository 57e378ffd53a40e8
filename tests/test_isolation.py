"""initlint.isolation: a function in a child process with hard wall-time and memory limits."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the spawned child imports isolation_targets by name

import isolation_targets as targets  # noqa: E402

from initlint.isolation import GIB, memory_cap, run_isolated  # noqa: E402


def test_a_result_that_arrives_is_kept():
    outcome = run_isolated(targets.add, 2, b=3, timeout_s=60)
    assert outcome.ok and outcome.value == 5 and outcome.reason is None
    big = run_isolated(targets.big_result, 1_000_000, timeout_s=60)
    assert big.ok and len(big.value) == 1_000_000 and big.value[-1] == 999_999


@pytest.mark.parametrize("function", [targets.sleep_forever, targets.spin_forever])
def test_the_time_limit_is_kept(function):
    start = time.monotonic()
    outcome = run_isolated(function, timeout_s=3)
    elapsed = time.monotonic() - start
    assert not outcome.ok and outcome.kind == "timeout" and "3 s" in outcome.reason
    assert 3 <= elapsed < 3 + 6, elapsed  # the deadline plus killing and reaping


def test_one_big_allocation_fails_against_the_address_space_cap():
    outcome = run_isolated(targets.allocate_and_touch, 4, timeout_s=60, memory_bytes=GIB // 2)
    assert not outcome.ok and outcome.kind == "memory", outcome
    assert "512 MiB" in outcome.reason


def test_growth_past_the_cap_is_stopped():
    outcome = run_isolated(targets.allocate_in_steps, 16, 200, timeout_s=60, memory_bytes=GIB // 4)  # up to 3.2 GB
    assert not outcome.ok and outcome.kind == "memory", outcome


def test_an_exception_is_the_reason_on_one_line():
    outcome = run_isolated(targets.raise_value_error, timeout_s=60)
    assert not outcome.ok and outcome.kind == "error"
    assert outcome.reason.startswith("ValueError: bad input (at isolation_targets.py:")


def test_a_child_that_dies_is_reported():
    outcome = run_isolated(targets.exit_hard, timeout_s=60)
    assert not outcome.ok and outcome.kind == "died" and "exit code 3" in outcome.reason


def test_memory_cap_grows_with_the_model_and_stays_under_free_memory():
    from initlint.isolation import available_memory

    small, large = memory_cap(1 << 20), memory_cap(4 * GIB)
    assert small >= min(2 * GIB, int((available_memory() or 4 * GIB) * 0.75))
    assert large >= small
    if available_memory():
        assert large <= available_memory() * 0.75 + 1


def test_memory_cap_makes_room_for_the_activations_of_a_pass():
    """A transformer's activations outgrow its weights (ViT-B/16 at 8x3x224x224 needs 3.6 GiB
    with 0.35 GB of weights): the cap adds what the layers may keep for the backward pass."""
    from initlint.isolation import available_memory
    from initlint.probe.isolated import activation_allowance
    from initlint.testing import graph_of

    plain, roomy = memory_cap(1 << 20), memory_cap(1 << 20, activation_bytes=3 * GIB)
    free = available_memory()
    if free and free * 0.75 < 4 * GIB + (1 << 23):
        pytest.skip("too little free memory here to see the difference")
    assert roomy == 4 * GIB + 8 * (1 << 20) and plain == 2 * GIB
    torch = pytest.importorskip("torch")
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    assert activation_allowance(graph_of(mlp, "torch")) == 2 * activation_allowance(graph_of(torch.nn.Linear(8, 2), "torch"))
