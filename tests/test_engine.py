"""The rule engine: registry validation, selection by prefix, isolation of broken rules, plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from initlint import engine
from initlint.engine import Registry, RegistryError, Rule, Severity, registry, run_rules
from initlint.loaders.onnx import load_onnx

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def make_rule(code, name, check=lambda self, graph: []):
    return type(f"Rule{code}", (Rule,), {"code": code, "name": name, "severity": Severity.WARNING, "check": check, "__doc__": "x"})


def test_registry_refuses_bad_and_duplicate_codes_and_names():
    reg = Registry()
    reg.register(make_rule("IL901", "first-rule"))
    with pytest.raises(RegistryError, match="already used"):
        reg.register(make_rule("IL901", "other-rule"))
    with pytest.raises(RegistryError, match="already used"):
        reg.register(make_rule("IL902", "first-rule"))
    with pytest.raises(RegistryError, match="invalid rule code"):
        reg.register(make_rule("IL9", "short-code"))
    with pytest.raises(RegistryError, match="invalid rule name"):
        reg.register(make_rule("IL903", "Not A Slug"))


def test_selection_by_prefix_code_and_name():
    reg = registry()
    codes = lambda rules: {r.code for r in rules}  # noqa: E731
    assert codes(reg.select(["IL1"])) == {r.code for r in reg if r.code.startswith("IL1")}
    assert codes(reg.select(["IL1"], ["IL103"])) == codes(reg.select(["IL1"])) - {"IL103"}
    assert codes(reg.select(["zero-weights"])) == {"IL101"}
    with pytest.raises(ValueError):
        reg.validate_selector("IL9")


def test_a_rule_that_raises_is_reported_and_the_others_still_run():
    def explode(self, graph):
        raise RuntimeError("boom")

    broken = make_rule("IL998", "explodes", explode)
    graph = load_onnx(FIXTURES / "broken_mlp.onnx")
    run = run_rules(graph, [broken, registry().get("IL101")])
    assert "IL998" in run.failures and "boom" in run.failures["IL998"]
    assert [f.code for f in run.findings] == ["IL101"]


def test_third_party_rules_register_through_the_entry_point_group(monkeypatch):
    plugin = make_rule("XY101", "plugin-rule")

    class FakeEntryPoint:
        name = "xy"

        def load(self):
            return plugin

    class Broken(FakeEntryPoint):
        name = "broken"

        def load(self):
            raise ImportError("missing dependency")

    monkeypatch.setattr(engine, "entry_points", lambda group: [FakeEntryPoint(), Broken()] if group == "initlint.rules" else [])
    monkeypatch.setattr(engine, "_REGISTRY", None)
    reg = registry()
    assert reg.get("XY101") is plugin
    assert "entry point broken" in reg.broken
    assert reg.get("IL101") is not None  # the built-in rules are still there
    monkeypatch.setattr(engine, "_REGISTRY", None)


def test_every_builtin_rule_documents_every_section():
    for rule in registry():
        doc = rule.doc()
        missing = [s for s in engine.DOC_SECTIONS if s not in doc]
        assert not missing, f"{rule.code} lacks {missing}"
