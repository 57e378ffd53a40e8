"""Baselines: record today's findings, then report only new ones.

A finding is keyed by (target, code, location): the message carries measured numbers that may
move a little from run to run, the key does not. Targets are stored relative to the current
directory with ``/`` separators, so a baseline written on one machine matches on another. The
same key may occur several times; a baseline absorbs as many occurrences as it recorded.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from . import __version__
from .errors import InitlintError
from .runner import TargetResult

BASELINE_VERSION = 1


def portable_target(target: str) -> str:
    """A file target relative to the current directory, with / separators; a spec as it is."""
    if not os.path.exists(target):
        return target
    try:
        return Path(target).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(target).resolve().as_posix()


def finding_keys(results: list[TargetResult]) -> Counter:
    return Counter((portable_target(r.target), f.code, f.location) for r in results for f in r.findings)


def write_baseline(path: str | Path, results: list[TargetResult]) -> int:
    """Write the findings of ``results`` to ``path``; return how many were recorded."""
    keys = finding_keys(results)
    entries = [{"target": t, "code": c, "location": loc} for (t, c, loc), n in sorted(keys.items()) for _ in range(n)]
    document = {"initlint": __version__, "baseline": BASELINE_VERSION, "findings": entries}
    try:
        Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InitlintError(str(path), f"cannot write the baseline ({exc.strerror or exc})") from None
    return len(entries)


def load_baseline(path: str | Path) -> Counter:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InitlintError(str(path), "no such baseline file", "create it with --write-baseline") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InitlintError(str(path), f"not a readable baseline ({type(exc).__name__}: {exc})") from None
    entries = document.get("findings") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and {"target", "code", "location"} <= e.keys() for e in entries):
        raise InitlintError(str(path), "not an initlint baseline (expected {\"findings\": [{\"target\", \"code\", \"location\"}, ...]})")
    return Counter((str(e["target"]), str(e["code"]), str(e["location"])) for e in entries)


def apply_baseline(results: list[TargetResult], baseline: Counter) -> int:
    """Drop the findings the baseline already records; return how many were dropped."""
    remaining = Counter(baseline)
    dropped = 0
    for result in results:
        target = portable_target(result.target)
        kept = []
        for finding in result.findings:
            key = (target, finding.code, finding.location)
            if remaining[key] > 0:
                remaining[key] -= 1
                dropped += 1
            else:
                kept.append(finding)
        if len(kept) < len(result.findings):
            result.notes.append(f"{len(result.findings) - len(kept)} finding(s) already in the baseline not shown")
        result.findings = kept
    return dropped
