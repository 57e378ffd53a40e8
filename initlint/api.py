"""The Python API: lint a live ``nn.Module`` (or a model file, or a spec) from code or a test.

    report = initlint.check(model, example_input)
    assert report.ok, report
    report.raise_for_findings()

Settings come from the nearest ``[tool.initlint]`` config (as for the command line, so a
project's per-layer-ignores apply to its tests too), overridden by keyword arguments named as
the config keys with underscores: ``select``, ``extend_select``, ``ignore``, ``fail_on``,
``probe``, ``per_layer_ignores``, ``rules`` (``{"IL105": {"coherent_error": 5.0}}``).
``config=False`` ignores config files; ``config="path/to/pyproject.toml"`` picks one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .config import resolve, validate
from .engine import Finding, Severity
from .errors import InitlintError
from .runner import TargetResult, lint_graph, lint_target

_OPTION_KEYS = ("select", "extend_select", "ignore", "fail_on", "probe", "per_layer_ignores", "per_file_ignores", "rules")


class InitFindingsError(AssertionError):
    """Raised by :meth:`Report.raise_for_findings`; an AssertionError, so pytest shows it as a test failure."""

    def __init__(self, report: "Report"):
        super().__init__(str(report))
        self.report = report


@dataclass
class Report:
    target: str
    fail_on: Severity
    result: TargetResult = field(repr=False)

    @property
    def findings(self) -> list[Finding]:
        return self.result.findings

    @property
    def notes(self) -> list[str]:
        return self.result.notes

    @property
    def failing(self) -> list[Finding]:
        """The findings at or above ``fail_on``."""
        return [f for f in self.findings if f.severity >= self.fail_on]

    @property
    def failed_rules(self) -> list[str]:
        """Rules that crashed on the model (the notes say why): it was not fully checked."""
        return self.result.failed_rules()

    @property
    def ok(self) -> bool:
        """No finding at or above ``fail_on``, and every selected rule ran: a rule that failed
        on the model does not pass it."""
        return not self.failing and not self.failed_rules

    def raise_for_findings(self) -> "Report":
        if not self.ok:
            raise InitFindingsError(self)
        return self

    def __str__(self) -> str:
        if self.ok:
            return f"initlint: {self.target}: no findings at or above {self.fail_on} ({len(self.findings)} below)"
        lines = [f"initlint: {self.target}: {len(self.failing)} finding(s) at or above {self.fail_on}:"]
        if self.failed_rules:
            failures = [note for note in self.notes if any(note.startswith(f"{code} failed") for code in self.failed_rules)]
            lines.append(f"  could not be checked by {', '.join(self.failed_rules)} (the rule failed): {'; '.join(failures)}")
        for f in self.failing:
            lines.append(f"  {f.location}: {f.code} {f.name} [{f.severity}] {f.message}")
            if f.fix:
                lines.append(f"    fix: {f.fix}")
        return "\n".join(lines)


def check(model: Any, example_input: Any = None, *, config: str | os.PathLike | bool | None = None, **options: Any) -> Report:
    """Lint ``model``: a live ``torch.nn.Module``, a model file path, or a ``module:callable`` spec.

    ``example_input`` is kept with the graph for the dynamic probe. Unknown options raise
    TypeError; invalid values or an unreadable model raise :class:`initlint.errors.InitlintError`.
    """
    unknown = sorted(set(options) - set(_OPTION_KEYS))
    if unknown:
        raise TypeError(f"check() got unexpected option(s) {', '.join(map(repr, unknown))}; valid: {', '.join(_OPTION_KEYS)}")
    given = {}
    for name, value in options.items():
        key = name.replace("_", "-")
        if key in ("select", "extend-select", "ignore") and isinstance(value, str):
            value = [value]
        if key == "rules" and isinstance(value, dict):
            value = {code: {o.replace("_", "-"): v for o, v in opts.items()} if isinstance(opts, dict) else opts for code, opts in value.items()}
        given[key] = validate(key, value, "initlint.check()")
    settings = resolve(given, config=config)
    lint_options = settings.lint_options()
    if isinstance(model, (str, os.PathLike)):
        target = os.fspath(model)
        result = lint_target(target, lint_options)
        if result.error:
            raise InitlintError(target, result.error.removeprefix(f"{target}: "))
        return Report(target, settings.fail_on, result)
    from .loaders.torch import graph_from_module

    target = type(model).__name__
    graph = graph_from_module(model, target)
    graph.metadata["example_input"] = example_input
    result = TargetResult(target=target, format="torch", graph=graph)
    lint_graph(graph, lint_options, result)
    return Report(target, settings.fail_on, result)


def assert_init_ok(model: Any, example_input: Any = None, **options: Any) -> Report:
    """Fail (AssertionError listing the findings) when ``model``'s init has findings at or above ``fail_on``."""
    __tracebackhide__ = True  # pytest: show the caller's line, not this one
    return check(model, example_input, **options).raise_for_findings()
