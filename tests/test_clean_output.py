"""initlint's output on every fixture, in every format: no `nan`, no Python warning, no stray stderr.

Hostile and extreme fixtures (weights near the float64 limit, NaN shapes, unreadable files)
must end in findings or a one-line error in the report itself; numpy RuntimeWarnings or a
library's log dump on stderr would bury that, and `nan` in a message says nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted(str(p.relative_to(ROOT)) for p in [*(ROOT / "fixtures").glob("*.onnx"), *(ROOT / "tests" / "fixtures_fuzz").glob("*.onnx")])
NUMERIC_NAN = re.compile(r"(?<![A-Za-z_])nan(?![A-Za-z_])")  # how Python formats a float NaN


def _reject_constant(name: str):
    raise ValueError(f"JSON output holds {name}")


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github", "junit"])
def test_every_fixture_in_every_format_is_clean(fmt):
    assert len(FIXTURES) >= 10
    env = {**os.environ, "PYTHONWARNINGS": "always"}  # show every warning, in worker processes too
    run = subprocess.run(
        [sys.executable, "-m", "initlint", "check", *FIXTURES, "--format", fmt],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )
    assert run.returncode == 2, run.stderr[-2000:]  # some fuzz fixtures are unreadable by design
    assert run.stderr == "", run.stderr[-3000:]
    text = run.stdout
    if fmt == "sarif":  # the rules' own documentation rides along in tool.driver; judge the results
        document = json.loads(run.stdout)
        text = json.dumps([r.get("results", []) for r in document["runs"]] + [r.get("invocations", []) for r in document["runs"]])
    for fixture in FIXTURES:
        text = text.replace(fixture, "<fixture>")  # a fixture's own name may say "nan"
    assert not NUMERIC_NAN.search(text), [line for line in text.splitlines() if NUMERIC_NAN.search(line)][:5]
    if fmt in ("json", "sarif"):
        json.loads(run.stdout, parse_constant=_reject_constant)  # NaN / Infinity are not JSON
    if fmt in ("text", "json", "junit"):  # the formats that list clean models too
        for fixture in FIXTURES:
            assert fixture in run.stdout, fixture


def test_nan_detection_is_not_fooled_by_words():
    assert NUMERIC_NAN.search("predicted pre-activation std nan before tanh")
    assert NUMERIC_NAN.search("nan% of units")
    assert not NUMERIC_NAN.search("1 of 1 values are NaN or infinite; fc.nan_guard")


def test_json_holds_no_non_finite_number():
    import numpy as np

    from initlint.report import finite_json

    assert finite_json({"q": float("nan"), "rows": [np.float32("inf"), 1.5, 2, True], "name": "nan"}) == {"q": None, "rows": [None, 1.5, 2, True], "name": "nan"}
