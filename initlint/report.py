"""Render results for people (text) and machines (json)."""

from __future__ import annotations

import json
from typing import Iterable

import click

from . import __version__
from .engine import Severity
from .runner import TargetResult

_COLOURS = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "blue"}


def render_json(results: Iterable[TargetResult]) -> str:
    return json.dumps({"initlint": __version__, "results": [r.to_json() for r in results]}, indent=2, default=_jsonable)


def _jsonable(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def render_text(results: list[TargetResult], quiet: bool = False, show_fixes: bool = False, color: bool = False) -> str:
    lines: list[str] = []
    counts = {s: 0 for s in Severity}
    errors = 0
    for result in results:
        if result.error:
            errors += 1
            lines.append(click.style(f"{result.error}", fg="red", bold=True) if color else result.error)
            continue
        for f in result.findings:
            counts[f.severity] += 1
            severity = click.style(str(f.severity), fg=_COLOURS[f.severity], bold=True) if color else str(f.severity)
            # Only what the probe settled; "inconclusive" (no checkable prediction, no run) is in the JSON.
            settled = f.probe and f.probe.get("verdict") in ("confirmed", "refuted")
            verdict = f" [probe: {f.probe['verdict']}]" if settled else ""
            lines.append(f"{result.target}: {f.location}: {f.code} {f.name} [{severity}] {f.message}{verdict}")
            if show_fixes and f.fix:
                lines.append(f"    fix: {f.fix}")
        if not quiet:
            for note in result.notes:
                lines.append(f"{result.target}: note: {note}")
    total = sum(counts.values())
    if not quiet or total or errors:
        parts = [f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}" for s in (Severity.ERROR, Severity.WARNING, Severity.INFO) if counts[s]]
        summary = f"Found {total} finding{'s' if total != 1 else ''}" + (f" ({', '.join(parts)})" if parts else "")
        summary += f" in {len(results)} model{'s' if len(results) != 1 else ''}"
        if errors:
            summary += f"; {errors} could not be read"
        lines.append(summary + ".")
    return "\n".join(lines)
