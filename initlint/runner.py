"""Lint one target end to end: load -> model graph -> rules -> (probe) -> result."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from .engine import Finding, Rule, Severity, registry, run_rules
from .errors import InitlintError
from .graph import ModelGraph
from .loaders import LoadOptions, detect_format, load


@dataclass
class LintOptions:
    select: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    probe: str = "auto"  # auto | always | never
    load: LoadOptions = field(default_factory=LoadOptions)
    # rule code -> {option: value}
    rule_settings: dict[str, dict] = field(default_factory=dict)


@dataclass
class TargetResult:
    target: str
    format: str | None
    error: str | None = None
    findings: list[Finding] = field(default_factory=list)
    probe: dict | None = None
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    graph: ModelGraph | None = None
    signal: list[dict] | None = None  # predicted variance per layer (initlint.signal)

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "format": self.format,
            "error": self.error,
            "findings": [f.to_json() for f in self.findings],
            "probe": self.probe,
            "notes": self.notes,
            "signal": self.signal,
            "elapsed_s": round(self.elapsed_s, 4),
        }


def selected_rules(options: LintOptions) -> list[type[Rule]]:
    return registry().select(options.select, options.ignore)


def lint_graph(graph: ModelGraph, options: LintOptions, result: TargetResult) -> None:
    run = run_rules(graph, selected_rules(options), options.rule_settings)
    result.findings = run.findings
    result.notes.extend(graph.notes)
    if graph.has_structure:
        from .signal import signal_of  # computed once per graph, shared with the IL3xx rules

        try:
            propagated = signal_of(graph)
            result.signal = propagated.to_json()
            result.notes.extend(propagated.notes)
        except Exception as exc:  # the findings stand without it
            result.notes.append(f"signal propagation failed and was skipped: {type(exc).__name__}: {exc}")
    for code, why in run.skipped.items():
        result.notes.append(f"{code} skipped: {why}")
    for code, error in run.failures.items():
        result.notes.append(f"{code} failed and was skipped: {error}")
    for module, error in registry().broken.items():
        result.notes.append(f"rule module {module} could not be loaded: {error}")
    if options.probe != "never":
        result.notes.append("the dynamic probe is not available yet; static findings only")


def lint_target(target: str, options: LintOptions) -> TargetResult:
    start = time.perf_counter()
    result = TargetResult(target=target, format=None)
    try:
        result.format = detect_format(target)
        graph = load(target, options.load)
        result.format = graph.format
        result.graph = graph
        lint_graph(graph, options, result)
    except InitlintError as exc:
        result.error = str(exc)
    except MemoryError:
        result.error = f"{target}: out of memory while reading the model"
    except RecursionError:
        result.error = f"{target}: the model graph is nested too deeply to read"
    except Exception as exc:  # a model we cannot read must not end in a traceback
        if os.environ.get("INITLINT_DEBUG"):
            raise
        detail = " ".join(str(exc).split())[:300]
        result.error = f"{target}: could not be read ({type(exc).__name__}: {detail}); set INITLINT_DEBUG=1 for a traceback"
    result.elapsed_s = time.perf_counter() - start
    return result
