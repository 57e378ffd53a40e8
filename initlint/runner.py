"""Lint one target end to end. The runner owns the stages: load -> model graph -> static rules ->
probe (when it runs) -> probe-stage rules and the verdicts on the static findings -> result."""

from __future__ import annotations

import os
import time
import dataclasses
from dataclasses import dataclass, field

from .config import location_matches, path_matches
from .context import RuleContext
from .trained import ON_TRAINED_MODEL, PENDING, hold_probe_findings, restores_severity
from .engine import Finding, Rule, Severity, registry, run_rules
from .errors import InitlintError
from .graph import ModelGraph
from .loaders import detect_format, load
from .measurement import ProbeMeasurement
from .options import LintOptions
from .prediction import Claim, Quantity
from .probe import ProbeOptions, run_probe
from .probe.budget import auto_budget_refusal
from .probe.isolated import in_process, run_probe_isolated
from .verdict import judge

__all__ = ["LintOptions", "TargetResult", "lint_graph", "lint_target", "selected_rules", "unchecked_reason"]


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

    def failed_rules(self) -> list[str]:
        """Codes of the rules that crashed on this model: it was not fully checked."""
        return [code for code, status in self.rules.items() if status.startswith("failed")]

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


def lint_graph(graph: ModelGraph, options: LintOptions, result: TargetResult, source: str | None = None) -> None:
    """Rules, probe and verdicts on ``graph``. ``source``: the file or spec it was read from, so
    the probe can read it again in a child process with hard limits (initlint.probe.isolated);
    a live module with no source is probed in this process."""
    rules = selected_rules(options, result.target)
    ctx = RuleContext(graph)
    run = run_rules(ctx, rules, options.rule_settings)
    result.findings = [f for f in run.findings if not _layer_ignored(f, options)]
    _in_the_model_vocabulary(graph, result.findings)
    if len(result.findings) < len(run.findings):
        result.notes.append(f"{len(run.findings) - len(result.findings)} finding(s) suppressed by per-layer-ignores")
    for rule in rules:
        if rule.stage == "static":
            why = run.skipped.get(rule.code) or run.failures.get(rule.code)
            result.rules[rule.code] = "ran" if why is None else f"{'skipped' if rule.code in run.skipped else 'failed'}: {why}"
    result.notes.extend(graph.notes)
    if graph.has_structure:
        try:
            propagated = ctx.signal  # computed once per graph, shared with the IL3xx rules
            result.signal = _named_for_people(propagated.to_json(), graph)
            result.notes.extend(propagated.notes)
        except Exception as exc:  # the findings stand without it
            result.notes.append(f"signal propagation failed and was skipped: {type(exc).__name__}: {exc}")
    for code, why in run.skipped.items():
        result.notes.append(f"{code} skipped: {why}")
    for code, error in run.failures.items():
        result.notes.append(f"{code} failed and was skipped: {error}")
    for module, error in registry().broken.items():
        result.notes.append(f"rule module {module} could not be loaded: {error}")
    probe_rules = [rule for rule in rules if rule.stage == "probe"]
    measurement, why_not = _probe_stage(graph, options, result, source)
    confirm_findings(result.findings, measurement, why_not)
    _name_predictions_for_people(result.findings, graph)
    if measurement is None or not measurement.ok:
        for rule in probe_rules:
            result.rules.setdefault(rule.code, f"skipped: {why_not or 'the probe did not run'}")
        return
    probe_ctx = RuleContext(graph, measurement)
    probe_run = run_rules(probe_ctx, probe_rules, options.rule_settings, stage="probe")
    hold_probe_findings(probe_ctx, probe_run.findings, Severity.INFO)
    for finding in probe_run.findings:  # a probe-stage finding is itself a measurement
        finding.probe = {"verdict": "confirmed", "reason": "measured by the probe"}
    _in_the_model_vocabulary(graph, probe_run.findings)
    measured = [f for f in probe_run.findings if not _layer_ignored(f, options)]
    result.findings.extend(_fold_consequences(result.findings, measured))
    for rule in probe_rules:
        result.rules[rule.code] = f"failed: {probe_run.failures[rule.code]}" if rule.code in probe_run.failures else "ran"
    for code, error in probe_run.failures.items():
        result.notes.append(f"{code} failed and was skipped: {error}")
    _plot(graph, options, result)


# What a fatal constant pattern does downstream, as the probe measures it: frozen parameters and
# layers whose units are all dead. Listed under the static finding that explains them.
CONSEQUENCE_CODES = ("IL403", "IL404")


def _fold_consequences(static: list[Finding], measured: list[Finding]) -> list[Finding]:
    """The probe findings to report beside ``static``.

    A confirmed static finding that predicted frozen parameters (an all-zero layer feeding a
    ReLU, every normalization gain zero, every hidden layer one unit wide) explains the frozen
    parameters and dead layers the probe then measures: the gradient stops at one place and
    everything behind it freezes. Reporting each of those again buries the cause under a dozen
    errors, so they are folded into that finding (its message says how many, its evidence names
    them), as a compiler reports the first error and not its cascade. Without such a root cause
    each stays a finding of its own.
    """
    roots = [f for f in static if f.severity >= Severity.ERROR and _measured_frozen(f)]
    if not roots:
        return measured
    folded = [f for f in measured if f.code in CONSEQUENCE_CODES]
    if not folded:
        return measured
    root = roots[0]
    frozen = list(dict.fromkeys(f.location for f in folded if f.code == "IL404"))  # execution order
    dead = list(dict.fromkeys(f.location for f in folded if f.code == "IL403"))
    parts = []
    if frozen:
        parts.append(f"{len(frozen)} parameter{'s' if len(frozen) != 1 else ''} never get a gradient ({_first_few(frozen)})")
    if dead:
        parts.append(f"every unit is dead after {len(dead)} layer{'s' if len(dead) != 1 else ''} ({_first_few(dead)})")
    root.message += f"; the probe measured the damage: {' and '.join(parts)} (IL404/IL403, reported here)"
    root.evidence = {**root.evidence, "probe_consequences": [{"code": f.code, "location": f.location} for f in folded]}
    return [f for f in measured if f.code not in CONSEQUENCE_CODES]


def _measured_frozen(finding: Finding) -> bool:
    """The finding is about parameters the probe measured frozen: a confirmed claim that they
    are, or a refuted claim that they are not."""
    prediction, verdict = finding.prediction, (finding.probe or {}).get("verdict")
    if prediction is None or prediction.quantity is not Quantity.FROZEN_PARAMETERS:
        return False
    return verdict == ("confirmed" if prediction.claim is Claim.ABOVE else "refuted")


def _first_few(names: list[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _named_for_people(rows: list[dict], graph: ModelGraph) -> list[dict]:
    """Rows (probe, signal) name each layer as findings do: ``fc1``, not ``/fc1/Gemm``."""
    for row in rows:
        row["layer"] = graph.label(row["layer"])
    return rows


def _name_predictions_for_people(findings: list[Finding], graph: ModelGraph) -> None:
    """Once judged, a prediction names its layers as the probe rows do (the plot matches the two)."""
    for finding in findings:
        prediction = finding.prediction
        if prediction is not None and (prediction.from_layer or prediction.to_layer):
            finding.prediction = dataclasses.replace(
                prediction,
                from_layer=prediction.from_layer and graph.label(prediction.from_layer),
                to_layer=prediction.to_layer and graph.label(prediction.to_layer),
            )


def _in_the_model_vocabulary(graph: ModelGraph, findings: list[Finding]) -> None:
    """Fix hints name PyTorch's init calls; a Keras model's user sets kernel_initializer=..."""
    if graph.metadata.get("framework") == "keras":
        from .loaders.keras.vocabulary import keras_fix

        for finding in findings:
            finding.fix = keras_fix(finding.fix)


def _probe_stage(graph: ModelGraph, options: LintOptions, result: TargetResult, source: str | None = None) -> tuple[ProbeMeasurement | None, str | None]:
    """Run the probe when the mode and the auto budget allow: (measurement, why it did not run)."""
    if options.probe == "never":
        return None, "the probe was not run (--probe never)"
    if not graph.has_structure:
        return None, "the probe needs the model structure (a module:callable spec or an ONNX file)"
    if options.probe == "auto":
        refusal = auto_budget_refusal(graph, options.load.input_shapes)
        if refusal:
            result.notes.append(f"the dynamic probe did not run: {refusal}; use --probe always to run it")
            return None, refusal
    predictions = [f.prediction for f in result.findings if f.prediction is not None]
    probe_options: ProbeOptions = options.probe_options or ProbeOptions()
    if source is not None and not in_process():
        measurement = run_probe_isolated(source, options.load, graph, options.load.input_shapes, options.load.input_dtype, probe_options, predictions)
    else:
        measurement = run_probe(graph, options.load.input_shapes, options.load.input_dtype, probe_options, predictions)
    result.probe = measurement.to_json()
    _named_for_people(result.probe.get("layers") or [], graph)
    for key in ("first_layer", "last_layer", "gradient_first_layer", "gradient_last_layer"):
        if result.probe.get(key):
            result.probe[key] = graph.label(result.probe[key])
    result.notes.extend(measurement.notes)
    if not measurement.ok:
        result.notes.append(f"the dynamic probe did not run to the end: {measurement.reason}")
        return measurement, measurement.reason
    result.notes.append(summary_line(measurement))
    return measurement, None


def confirm_findings(findings: list[Finding], probe: ProbeMeasurement | None, why_not: str | None = None) -> None:
    """Set ``finding.probe`` on every finding. A refuted fault drops to info and says why; a
    refuted claim that the pattern is harmless means the probe measured the fault: the finding
    rises to its rule's severity (the one it gives that fault) and says so."""
    for finding in findings:
        if probe is None or not probe.ok:
            finding.probe = {"verdict": "inconclusive", "reason": why_not or "the probe did not run"}
            continue
        if finding.prediction is None:
            finding.probe = {"verdict": "inconclusive", "reason": "the finding makes no claim the probe measures"}
            continue
        finding.probe = judge(finding.prediction, probe)
        pending = finding.evidence.pop(PENDING, None)  # a finding on trained weights (initlint.trained)
        on_trained_model = finding.evidence.pop(ON_TRAINED_MODEL, False)
        if pending is not None and finding.probe["verdict"] == "confirmed":
            if restores_severity(finding, on_trained_model):
                finding.severity = Severity.parse(pending)
                finding.message += " (confirmed by the probe)"
            else:
                finding.message += " (the probe measured it on synthetic inputs, which say little about a trained model: kept as info)"
        if finding.probe["verdict"] != "refuted":
            continue
        if not finding.prediction.claims_fault:
            rule = registry().get(finding.code)
            fault = rule.severity if rule is not None else Severity.ERROR
            if fault > finding.severity:
                finding.probe["original_severity"] = str(finding.severity)
                finding.severity = fault
            finding.message += f" (the probe measured the fault this finding said would not happen: {finding.probe['reason']})"
        elif finding.severity > Severity.INFO:
            finding.probe["original_severity"] = str(finding.severity)
            finding.severity = Severity.INFO
            finding.message += f" (refuted by the probe: {finding.probe['reason']})"


def summary_line(probe: ProbeMeasurement) -> str:
    """One line for the text report: what the probe ran and what it measured."""

    def fmt(value) -> str:
        return "n/a" if value is None else f"{value:.3g}"

    shapes = ", ".join("x".join(str(d) for d in shape) for shape in probe.input_shapes.values())
    line = (
        f"probe: {len(probe.seeds)} seeded batch(es) of {shapes or '?'} ({probe.loss}, {probe.device}): "
        f"gradient ratio first/last {fmt(probe.gradient_ratio)}, forward ratio last/first {fmt(probe.forward_ratio)}, "
        f"{len(probe.frozen_parameters)} frozen parameters, {probe.elapsed_s:.1f} s"
    )
    if probe.seed_note:
        line += f" ({probe.seed_note})"
    train = probe.train
    if train:
        moved = "moved" if train["moved"] else "did not move"
        line += f"; the loss {moved} in {train['steps']} {train['optimizer']} steps ({fmt(train['loss_start'])} -> {fmt(train['loss_end'])})"
    return line


def _plot(graph: ModelGraph, options: LintOptions, result: TargetResult) -> None:
    path = options.probe_options.plot if options.probe_options else None
    if not path or result.probe is None:
        return
    from .plot import plot_probe

    try:
        plot_probe(result.probe, result.findings, path, title=graph.target)
    except Exception as exc:
        result.notes.append(f"the plot could not be written to {path} ({type(exc).__name__}: {exc})")


def unchecked_reason(graph: ModelGraph) -> str | None:
    """Why the model was not really checked, or None: a lint that read nothing must not pass."""
    if not graph.weighted_layers():
        held = sum(t.size for t in graph.tensors.values())
        if held:
            return f"no weighted layer was found among its {len(graph.layers)} ops ({held:,} values in constants no layer uses as weights)"
        return f"no weights were read from it ({len(graph.layers)} ops, no initializer, constant or parameter)"
    if graph.metadata.get("structure") == "module-order":
        return "its structure is only a guess from module order, so the structure and signal rules could not run"
    return None


def lint_target(target: str, options: LintOptions) -> TargetResult:
    start = time.perf_counter()
    result = TargetResult(target=target, format=None)
    try:
        result.format = detect_format(target)
        graph = load(target, options.load)
        result.format = graph.format
        result.graph = graph
        lint_graph(graph, options, result, source=target)
        unchecked = unchecked_reason(graph)
        if unchecked and not options.allow_empty:
            result.error = f"{target}: could not check: {unchecked} (--allow-empty accepts a model that was not checked)"
        elif unchecked:
            result.notes.append(f"not checked: {unchecked} (accepted with --allow-empty)")
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
