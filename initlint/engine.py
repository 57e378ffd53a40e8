"""The rule engine: rule base class, discovery, selection, and running rules over a graph."""

from __future__ import annotations

import enum
import importlib
import pkgutil
import re
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, ClassVar, Iterable, Iterator

from .context import RuleContext
from .trained import hold_unconfirmed
from .graph import ModelGraph
from .measurement import ProbeMeasurement
from .prediction import Prediction, PredictionError

CODE_PATTERN = re.compile(r"^[A-Z]{1,3}[0-9]{3}$")
SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
DOC_SECTIONS = ("## What it does", "## Why is this bad?", "## Example", "## How to fix", "## References")


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    ERROR = 3

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> "Severity":
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (expected error, warning or info)") from None


@dataclass
class Finding:
    code: str
    name: str
    severity: Severity
    location: str  # the user's layer or parameter name
    message: str  # with the measured evidence
    fix: str | None = None
    # Machine-readable numbers behind the message.
    evidence: dict = field(default_factory=dict)
    # What the finding claims the probe will measure (initlint.prediction).
    prediction: Prediction | None = None
    # Set by the runner after the probe: {"verdict": "confirmed" | "refuted" | "inconclusive",
    # "reason": ..., "measured": ...} (initlint.verdict).
    probe: dict | None = None

    def to_json(self) -> dict:
        return {
            "code": self.code,
            "name": self.name,
            "severity": str(self.severity),
            "location": self.location,
            "message": self.message,
            "fix": self.fix,
            "evidence": self.evidence,
            "prediction": self.prediction.to_json() if self.prediction is not None else None,
            "probe": self.probe,
        }


@dataclass(frozen=True)
class Example:
    """A small model a rule must flag (``flagged`` non-empty) or must not flag.

    ``build`` returns a torch ``nn.Module`` initialized exactly as a user would; the generated
    tests lint it as a live module and as its ONNX export. ``flagged`` lists the locations
    expected to carry this rule's code; ``severity`` the least severity expected there.
    """

    build: Callable[[], Any]
    flagged: tuple[str, ...] = ()
    severity: str | None = None
    input_shape: tuple[int, ...] = (4, 16)
    input_dtype: str = "float32"

    @property
    def name(self) -> str:
        return self.build.__name__


class Rule:
    """Base class of every rule. A rule is one file in ``rules/`` holding one subclass.

    The docstring is the rule's documentation and must have the sections in DOC_SECTIONS.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    # "static" rules read the graph; "probe" rules also read the probe's measurement (ctx.probe).
    stage: ClassVar[str] = "static"
    # Needs the model structure (not just its weights).
    needs_structure: ClassVar[bool] = False
    # Configurable thresholds: option name -> default value.
    options: ClassVar[dict[str, Any]] = {}
    must_flag: ClassVar[tuple[Example, ...]] = ()
    must_not_flag: ClassVar[tuple[Example, ...]] = ()

    def __init__(self, settings: dict[str, Any] | None = None):
        self.settings = {**self.options, **(settings or {})}

    def check(self, ctx: RuleContext) -> Iterable[Finding]:
        raise NotImplementedError

    def finding(self, location: str, message: str, severity: Severity | None = None, **extra) -> Finding:
        return Finding(self.code, self.name, severity or self.severity, location, message, **extra)

    @classmethod
    def doc(cls) -> str:
        import inspect

        return inspect.cleandoc(cls.__doc__ or "")

    @classmethod
    def summary(cls) -> str:
        return cls.doc().splitlines()[0] if cls.doc() else ""


class RegistryError(Exception):
    pass


@dataclass
class Registry:
    rules: dict[str, type[Rule]] = field(default_factory=dict)
    # Rules that could not be loaded, by module or entry-point name, with the reason.
    broken: dict[str, str] = field(default_factory=dict)

    def register(self, rule: type[Rule]) -> None:
        code, name = getattr(rule, "code", None), getattr(rule, "name", None)
        if not isinstance(code, str) or not CODE_PATTERN.match(code):
            raise RegistryError(f"{rule.__qualname__}: invalid rule code {code!r}")
        if not isinstance(name, str) or not SLUG_PATTERN.match(name):
            raise RegistryError(f"{code}: invalid rule name {name!r}")
        if code in self.rules and self.rules[code] is not rule:
            raise RegistryError(f"{code}: code already used by {self.rules[code].__qualname__}")
        for other in self.rules.values():
            if other.name == name and other is not rule:
                raise RegistryError(f"{code}: name {name!r} already used by {other.code}")
        self.rules[code] = rule

    def __iter__(self) -> Iterator[type[Rule]]:
        return iter(sorted(self.rules.values(), key=lambda r: r.code))

    def get(self, code: str) -> type[Rule] | None:
        code = code.upper()
        if code in self.rules:
            return self.rules[code]
        return next((r for r in self.rules.values() if r.name == code.lower()), None)

    def select(self, select: Iterable[str] | None = None, ignore: Iterable[str] = ()) -> list[type[Rule]]:
        """Rules matching any of ``select`` (codes or prefixes; all when None) and none of ``ignore``."""
        chosen = []
        for rule in self:
            if select is not None and not any(_matches(rule, s) for s in select):
                continue
            if any(_matches(rule, s) for s in ignore):
                continue
            chosen.append(rule)
        return chosen

    def validate_selector(self, selector: str) -> None:
        if not any(_matches(rule, selector) for rule in self) and selector.upper() != "ALL":
            raise ValueError(f"unknown rule code or prefix {selector!r}")


def _matches(rule: type[Rule], selector: str) -> bool:
    selector = selector.strip()
    return selector.upper() == "ALL" or rule.code.startswith(selector.upper()) or rule.name == selector.lower()


def _rule_classes(module) -> list[type[Rule]]:
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Rule) and obj is not Rule and obj.__module__ == module.__name__
    ]


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """Every rule: the built-in ones in initlint.rules and those of the ``initlint.rules`` entry-point group."""
    global _REGISTRY
    if _REGISTRY is not None:
        return _REGISTRY
    reg = Registry()
    # Imported by name: rules/ installs as initlint.rules (a static import here would also make
    # the engine look like it depends on everything the package's __init__ pulls in).
    builtin = importlib.import_module(f"{__package__}.rules")

    for info in sorted(pkgutil.iter_modules(builtin.__path__), key=lambda m: m.name):
        module_name = f"{builtin.__name__}.{info.name}"
        try:
            module = importlib.import_module(module_name)
            for rule in _rule_classes(module):
                reg.register(rule)
        except Exception as exc:  # one broken rule must not stop the others
            reg.broken[module_name] = f"{type(exc).__name__}: {exc}"
    for ep in entry_points(group="initlint.rules"):
        try:
            loaded = ep.load()
            for rule in _rule_classes(loaded) if not isinstance(loaded, type) else [loaded]:
                reg.register(rule)
        except Exception as exc:
            reg.broken[f"entry point {ep.name}"] = f"{type(exc).__name__}: {exc}"
    _REGISTRY = reg
    return reg


@dataclass
class RuleRun:
    findings: list[Finding]
    # Rules that raised, with their error: reported, and the other rules still ran.
    failures: dict[str, str]
    skipped: dict[str, str]  # code -> why the rule did not apply


def run_rules(
    graph: ModelGraph | RuleContext,
    rules: Iterable[type[Rule]],
    settings: dict[str, dict] | None = None,
    stage: str = "static",
    probe: ProbeMeasurement | None = None,
) -> RuleRun:
    """Run the rules of ``stage``: "static" ones read the graph, "probe" ones also read the
    probe's measurement (``probe``; they find nothing without one). Each finding's prediction
    is checked against the graph: a span the probe cannot measure fails the rule."""
    ctx = graph if isinstance(graph, RuleContext) else RuleContext(graph, probe if probe is not None and probe.ok else None)
    graph = ctx.graph
    findings: list[Finding] = []
    failures: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for rule_cls in rules:
        if rule_cls.stage != stage:
            continue
        if rule_cls.needs_structure and not graph.has_structure:
            skipped[rule_cls.code] = "needs the model structure"
            continue
        rule = rule_cls((settings or {}).get(rule_cls.code))
        try:
            made = list(rule.check(ctx))
            for finding in made:
                if finding.prediction is not None and not isinstance(finding.prediction, Prediction):
                    raise PredictionError(f"{finding.location}: a prediction is an initlint.prediction.Prediction, not {type(finding.prediction).__name__}")
                if finding.prediction is not None:
                    finding.prediction.validate(graph)
            findings.extend(made)
        except Exception as exc:
            last = traceback.extract_tb(exc.__traceback__)[-1]
            failures[rule_cls.code] = f"{type(exc).__name__}: {exc} (at {last.filename}:{last.lineno})"
    if stage == "static":
        hold_unconfirmed(ctx, findings, Severity.INFO)  # trained weights (initlint.trained)
    order = {name: i for i, name in enumerate([*graph.tensors, *graph.layers])}
    findings.sort(key=lambda f: (order.get(f.location, len(order)), f.code))
    return RuleRun(findings, failures, skipped)
