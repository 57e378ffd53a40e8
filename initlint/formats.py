"""Output formats for CI systems: SARIF 2.1.0 (GitHub code scanning), GitHub workflow commands, JUnit XML.

Paths are written relative to the current directory (the repository root in CI), with ``/``
separators. A finding is placed at line 1 of the model file, or, for a model built from Python
(a live module or a ``module:callable`` spec), at the line of the ``__init__`` that defines
the offending submodule or parameter, when that can be found.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

from . import __version__
from .engine import Finding, Rule, Severity, registry
from .report import finite_json, printable
from .runner import TargetResult

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_GITHUB_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
_SOURCE_LINE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


@dataclass(frozen=True)
class Place:
    """Where a finding points: a file (as given or absolute) and a 1-based line."""

    file: str
    line: int = 1


def relative_uri(path: str) -> str:
    """``path`` relative to the current directory with / separators; absolute if outside it."""
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return absolute.as_posix()


def place_of(result: TargetResult, finding: Finding | None = None) -> Place:
    if finding is not None and result.graph is not None:
        source = _python_source(result, finding.location)
        if source is not None:
            return source
    return Place(_target_file(result.target))


def _target_file(target: str) -> str:
    """The file a target lives in: the model file, or the Python file of a spec."""
    if os.path.exists(target) or ":" not in target:
        return target
    module, _, _ = target.rpartition(":")
    if module.endswith(".py"):
        return module
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    return spec.origin if spec is not None and spec.origin else target


def _python_source(result: TargetResult, location: str) -> Place | None:
    graph = result.graph
    module = graph.metadata.get("module")
    if module is not None:
        place = module_definition(module, location)
        if place is not None:
            return place
    layer = graph.layers.get(location) or next(
        (layer for layer in graph.layers.values() if any(t.name == location for t in layer.params.values())), None
    )
    match = _SOURCE_LINE.search(layer.source or "") if layer is not None else None
    return Place(match["file"], int(match["line"])) if match else None


def module_definition(root, location: str) -> Place | None:
    """The line of the user's ``__init__`` that assigns the submodule or parameter ``location``.

    ``blocks.0.fc2.weight``: tried as ``self.weight = `` in fc2's class (only if user-written),
    ``self.fc2 = `` in block 0's class, then ``self.blocks = `` in the root's class.
    """
    parts = location.split(".")
    chain = [root]
    for part in parts[:-1]:
        child = getattr(chain[-1], part, None) if not part.isdigit() else _indexed(chain[-1], part)
        if child is None:
            break
        chain.append(child)
    for depth in range(len(chain) - 1, -1, -1):
        owner, attr = chain[depth], parts[depth]
        if attr.isdigit() or type(owner).__module__.startswith("torch."):
            continue
        place = _assignment_line(type(owner), attr)
        if place is not None:
            return place
    return None


def _indexed(container, index: str):
    try:
        return container[int(index)]
    except Exception:
        return getattr(container, index, None)


def _assignment_line(cls: type, attr: str) -> Place | None:
    pattern = re.compile(rf"\bself\.{re.escape(attr)}\s*(?::[^=]*)?=(?!=)")
    for klass in cls.__mro__:
        if klass.__module__.startswith(("torch.", "builtins")):
            continue
        try:
            lines, start = inspect.getsourcelines(klass)
            file = inspect.getsourcefile(klass)
        except (OSError, TypeError):
            continue
        for offset, line in enumerate(lines):
            if pattern.search(line) and file:
                return Place(file, start + offset)
    return None


# --- SARIF ----------------------------------------------------------------------------------


def _sarif_rule(rule: type[Rule]) -> dict:
    from .docs import render_rule, rule_sections

    what = rule_sections(rule).get("## What it does") or rule.summary()
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary() or rule.name},
        "fullDescription": {"text": " ".join(what.split())},
        "help": {"text": rule.doc(), "markdown": render_rule(rule)},
        "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity]},
        "properties": {"tags": ["initialization", rule.stage]},
    }


def _artifact(file: str) -> dict:
    uri = relative_uri(file)
    if uri.startswith("/"):
        return {"uri": Path(uri).as_uri()}
    return {"uri": uri, "uriBaseId": "%SRCROOT%"}


def render_sarif(results: list[TargetResult]) -> str:
    rules = list(registry())
    index = {rule.code: i for i, rule in enumerate(rules)}
    sarif_results = []
    notifications = []
    for result in results:
        if result.error:
            notifications.append(
                {
                    "level": "error",
                    "message": {"text": result.error},
                    "locations": [{"physicalLocation": {"artifactLocation": _artifact(_target_file(result.target))}}],
                }
            )
            continue
        for finding in result.findings:
            place = place_of(result, finding)
            entry = {
                "ruleId": finding.code,
                "level": _SARIF_LEVEL[finding.severity],
                "message": {"text": f"{finding.location}: {finding.message}" + (f" Fix: {finding.fix}" if finding.fix else "")},
                "locations": [
                    {
                        "physicalLocation": {"artifactLocation": _artifact(place.file), "region": {"startLine": max(1, place.line)}},
                        "logicalLocations": [{"name": finding.location.rsplit(".", 1)[-1], "fullyQualifiedName": finding.location, "kind": "member"}],
                    }
                ],
                # Stable across runs (the message carries measured numbers): code scanning uses it to track alerts.
                "partialFingerprints": {"initlintFinding/v1": _fingerprint(result.target, finding)},
            }
            if finding.code in index:
                entry["ruleIndex"] = index[finding.code]
            if finding.evidence:
                entry["properties"] = {"evidence": finite_json(json.loads(json.dumps(finding.evidence, default=str)))}
            sarif_results.append(entry)
    run = {
        "tool": {"driver": {"name": "initlint", "version": __version__, "semanticVersion": __version__, "rules": [_sarif_rule(r) for r in rules]}},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().resolve().as_uri() + "/"}},
        "invocations": [{"executionSuccessful": not notifications, "toolExecutionNotifications": notifications}],
        "results": sarif_results,
    }
    return json.dumps({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}, indent=2)


def _fingerprint(target: str, finding: Finding) -> str:
    from .baseline import portable_target

    key = "\0".join((portable_target(target), finding.code, finding.location))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


# --- GitHub workflow commands ---------------------------------------------------------------


def _escape_data(text: str) -> str:
    # Only %, CR and LF are the runner's escapes; other control characters are written out as
    # text escapes so none can end a command or reach the log viewer raw.
    return printable(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(results: list[TargetResult]) -> str:
    """``::error file=…,line=…,title=…::message`` lines, shown as annotations on the changed files."""
    lines = []
    for result in results:
        if result.error:
            lines.append(f"::error file={_escape_property(relative_uri(_target_file(result.target)))},title=initlint::{_escape_data(result.error)}")
            continue
        for f in result.findings:
            place = place_of(result, f)
            props = f"file={_escape_property(relative_uri(place.file))},line={place.line},title={_escape_property(f'{f.code} {f.name}')}"
            lines.append(f"::{_GITHUB_LEVEL[f.severity]} {props}::{_escape_data(f'{f.location}: {f.message}')}")
    return "\n".join(lines)


# --- JUnit XML ------------------------------------------------------------------------------


def render_junit(results: list[TargetResult], fail_on: Severity = Severity.ERROR) -> str:
    """One test suite per model, one test case per model × rule that was selected for it.

    A rule fails its case when it reports a finding at or above ``fail_on``; findings below it
    go to the case's system-out. A model that cannot be read is one case with an error.
    """
    suites = ET.Element("testsuites", name="initlint")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for result in results:
        target = relative_uri(result.target) if os.path.exists(result.target) else result.target
        suite = ET.SubElement(suites, "testsuite", name=target)
        counts = dict.fromkeys(totals, 0)
        if result.error:
            case = ET.SubElement(suite, "testcase", classname=target, name="load", time=f"{result.elapsed_s:.3f}")
            ET.SubElement(case, "error", message=result.error, type="unreadable-model").text = result.error
            counts["tests"] += 1
            counts["errors"] += 1
        for code, status in result.rules.items():
            rule = registry().get(code)
            case = ET.SubElement(suite, "testcase", classname=target, name=f"{code} {rule.name if rule else ''}".strip())
            counts["tests"] += 1
            findings = [f for f in result.findings if f.code == code]
            failing = [f for f in findings if f.severity >= fail_on]
            text = "\n".join(f"{f.location}: [{f.severity}] {f.message}" for f in findings)
            if status.startswith("skipped"):
                ET.SubElement(case, "skipped", message=status)
                counts["skipped"] += 1
            elif status.startswith("failed"):
                ET.SubElement(case, "error", message=status, type="rule-error").text = status
                counts["errors"] += 1
            elif failing:
                message = f"{len(failing)} finding(s) at or above {fail_on}: " + "; ".join(f.location for f in failing[:5])
                ET.SubElement(case, "failure", message=message, type=str(max(f.severity for f in failing))).text = text
                counts["failures"] += 1
            elif findings:
                ET.SubElement(case, "system-out").text = text
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        suites.set(key, str(value))
    _xml_safe(suites)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")


# XML 1.0 allows no control character but tab, newline and carriage return, escaped or not.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml_clean(text: str) -> str:
    return _NOT_XML.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)


def _xml_safe(root: ET.Element) -> None:
    """Write characters XML cannot hold (a tensor name may carry any) as text escapes, so the
    report stays a well-formed document."""
    for element in root.iter():
        if element.text:
            element.text = _xml_clean(element.text)
        for key, value in element.attrib.items():
            element.attrib[key] = _xml_clean(value)


def render(output_format: str, results: list[TargetResult], fail_on: Severity = Severity.ERROR) -> str:
    if output_format == "sarif":
        return render_sarif(results)
    if output_format == "github":
        return render_github(results)
    if output_format == "junit":
        return render_junit(results, fail_on)
    raise ValueError(f"unknown format {output_format!r}")
