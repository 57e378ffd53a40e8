"""Lint one target end to end: load -> model graph -> rules -> (probe) -> result."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from .config import location_matches, path_matches
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
    # layer/parameter glob -> codes, and model-path glob -> codes, not reported there (config.py).
    per_layer_ignores: dict[str, list[str]] = field(default_factory=dict)
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)
    root: str | None = None  # the directory per-file-ignores globs are relative to
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
    # code -> "ran" | "skipped: why" | "failed: error", for each rule selected for this target.
    rules: dict[str, str] = field(default_factory=dict)
    signal: list[dict] | None = None  # predicted variance per layer (initlint.signal)
    summary: dict | None = None  # model_summary() kept where the graph is dropped (worker processes)

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
            "model": self.model_summary(),
            "signal": self.signal,
            "elapsed_s": round(self.elapsed_s, 4),
        }

    def model_summary(self) -> dict | None:
        """What was read: size, depth and, for ONNX, the file's IR and opset versions."""
        if self.graph is None:
            return self.summary
        graph = self.graph
        summary = {
            "layers": len(graph.layers),
            "weighted_layers": len(graph.weighted_layers()),
            "parameters": sum(t.size for t in graph.tensors.values()),
            "depth": graph.max_depth,
            "has_structure": graph.has_structure,
        }
        summary.update({k: v for k, v in graph.metadata.items() if k in ("ir_version", "opsets", "producer")})
        return summary


def selected_rules(options: LintOptions, target: str | None = None) -> list[type[Rule]]:
    ignore = list(options.ignore)
    if target is not None:
        ignore += [code for pattern, codes in options.per_file_ignores.items() if path_matches(target, pattern, options.root) for code in codes]
    return registry().select(options.select, ignore)


def _layer_ignored(finding: Finding, options: LintOptions) -> bool:
    return any(
        location_matches(finding.location, pattern) and any(rule.code == finding.code for rule in registry().select(codes))
        for pattern, codes in options.per_layer_ignores.items()
    )


def lint_graph(graph: ModelGraph, options: LintOptions, result: TargetResult) -> None:
    rules = selected_rules(options, result.target)
    run = run_rules(graph, rules, options.rule_settings)
    result.findings = [f for f in run.findings if not _layer_ignored(f, options)]
    if len(result.findings) < len(run.findings):
        result.notes.append(f"{len(run.findings) - len(result.findings)} finding(s) suppressed by per-layer-ignores")
    for rule in rules:
        if rule.stage == "static":
            why = run.skipped.get(rule.code) or run.failures.get(rule.code)
            result.rules[rule.code] = "ran" if why is None else f"{'skipped' if rule.code in run.skipped else 'failed'}: {why}"
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
        probe_target(graph, result, options)
        result.findings = [f for f in result.findings if not _layer_ignored(f, options)]
    for rule in rules:
        if rule.stage == "probe":
            result.rules.setdefault(rule.code, "skipped: the probe-stage rules run with --probe always")


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
