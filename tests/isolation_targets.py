"""Module-level functions for tests/test_isolation.py (a spawned child imports them by name)."""

from __future__ import annotations

import os
import time


def add(a, b):
    return a + b


def sleep_forever():
    while True:
        time.sleep(1)


def spin_forever():
    while True:
        pass


def allocate_and_touch(gib: float):
    block = bytearray(int(gib * (1 << 30)))  # zero-filled: every page is touched
    return len(block)


def allocate_in_steps(step_mib: int, steps: int):
    blocks = []
    for _ in range(steps):
        blocks.append(b"x" * (step_mib << 20))
        time.sleep(0.01)
    return len(blocks)


def raise_value_error():
    raise ValueError("bad\ninput")


def exit_hard():
    os._exit(3)


def big_result(count: int):
    return list(range(count))
