"""The test suite is deterministic: property-based tests replay a fixed sequence of examples."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")

TESTS = Path(__file__).resolve().parent


def test_hypothesis_profile_is_derandomized_without_a_database():
    if os.environ.get("HYPOTHESIS_PROFILE", "initlint") != "initlint":
        pytest.skip("a randomized profile was asked for")
    assert hypothesis.settings.default.derandomize is True
    assert hypothesis.settings.default.database is None


def _module_level_property_tests():
    for path in sorted(TESTS.glob("test_*.py")):
        if "hypothesis" not in path.read_text(encoding="utf-8"):
            continue
        try:
            module = importlib.import_module(path.stem)
        except pytest.skip.Exception:  # an optional package is absent
            continue
        for name, test in vars(module).items():
            if getattr(test, "is_hypothesis_test", False):
                yield f"{path.stem}.{name}", test


def test_every_property_test_is_seeded_or_derandomized():
    if os.environ.get("HYPOTHESIS_PROFILE", "initlint") != "initlint":
        pytest.skip("a randomized profile was asked for")
    tests = dict(_module_level_property_tests())
    assert tests, "no property-based tests found"
    unseeded = [
        name
        for name, test in tests.items()
        if getattr(test, "_hypothesis_internal_use_seed", None) is None
        and not getattr(test, "_hypothesis_internal_use_settings", hypothesis.settings.default).derandomize
    ]
    assert not unseeded, unseeded
