"""Render results for people (text) and machines (json)."""

from __future__ import annotations

import json
import math
import numbers
import re
from typing import Iterable

import click

from . import __version__
from .engine import Severity
from .runner import TargetResult

_COLOURS = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "blue"}


# Characters that would break a report line or a terminal: C0/C1 controls (newline, carriage
# return, escape) and Unicode line and paragraph separators.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` on one line, its control characters written as escapes: a newline in a tensor
    name must not forge a report line, nor an escape sequence repaint the terminal."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def render_json(results: Iterable[TargetResult]) -> str:
    document = {"initlint": __version__, "results": [r.to_json() for r in results]}
    return json.dumps(finite_json(document), indent=2, default=_jsonable, allow_nan=False)


def finite_json(value):
    """``value`` with every non-finite float as None: NaN and Infinity are not JSON, and an
    overflowed statistic (weights near the float64 limit) is unknown rather than a number."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):  # numpy floats too
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def _jsonable(value):
    try:
        return finite_json(float(value))
    except (TypeError, ValueError):
        return str(value)


def render_text(results: list[TargetResult], quiet: bool = False, show_fixes: bool = False, color: bool = False) -> str:
    lines: list[str] = []
    counts = {s: 0 for s in Severity}
    errors = 0
    for result in results:
        target = printable(result.target)
        if result.error:
            errors += 1
            error = printable(result.error)
            lines.append(click.style(error, fg="red", bold=True) if color else error)
            continue
        for f in result.findings:
            counts[f.severity] += 1
            severity = click.style(str(f.severity), fg=_COLOURS[f.severity], bold=True) if color else str(f.severity)
            # Only what the probe settled; "inconclusive" (no checkable prediction, no run) is in the JSON.
            settled = f.probe and f.probe.get("verdict") in ("confirmed", "refuted")
            verdict = f" [probe: {f.probe['verdict']}]" if settled else ""
            lines.append(f"{target}: {printable(f.location)}: {f.code} {f.name} [{severity}] {printable(f.message)}{verdict}")
            if show_fixes and f.fix:
                lines.append(f"    fix: {printable(f.fix)}")
        if not quiet:
            for note in result.notes:
                lines.append(f"{target}: note: {printable(note)}")
    total = sum(counts.values())
    if not quiet or total or errors:
        parts = [f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}" for s in (Severity.ERROR, Severity.WARNING, Severity.INFO) if counts[s]]
        summary = f"Found {total} finding{'s' if total != 1 else ''}" + (f" ({', '.join(parts)})" if parts else "")
        summary += f" in {len(results)} model{'s' if len(results) != 1 else ''}"
        if errors:
            summary += f"; {errors} could not be read"
        lines.append(summary + ".")
    return "\n".join(lines)
