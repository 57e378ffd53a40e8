"""Lint one target end to end: load -> model graph -> rules -> (probe) -> result."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from .engine import Finding, Rule, Severity, registry, run_rules
from .errors import InitlintError
from .graph import ModelGraph
from .loaders import LoadOptions, detect_format, load
from .probe import ProbeOptions, probe_target


@dataclass
class LintOptions:
    select: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    probe: str = "auto"  # auto | always | never
    load: LoadOptions = field(default_factory=LoadOptions)
    # rule code -> {option: value}
    rule_settings: dict[str, dict] = field(default_factory=dict)
    probe_options: ProbeOptions = field(default_factory=ProbeOptions)


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
            "elapsed_s": round(self.elapsed_s, 4),
        }


def selected_rules(options: LintOptions) -> list[type[Rule]]:
    return registry().select(options.select, options.ignore)


def lint_graph(graph: ModelGraph, options: LintOptions, result: TargetResult) -> None:
    run = run_rules(graph, selected_rules(options), options.rule_settings)
    result.findings = run.findings
    result.notes.extend(graph.notes)
    for code, why in run.skipped.items():
        result.notes.append(f"{code} skipped: {why}")
    for code, error in run.failures.items():
        result.notes.append(f"{code} failed and was skipped: {error}")
    for module, error in registry().broken.items():
        result.notes.append(f"rule module {module} could not be loaded: {error}")
    if options.probe != "never":
        probe_target(graph, result, options)


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
