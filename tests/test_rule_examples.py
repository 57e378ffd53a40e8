"""Every rule's own examples, as named tests, in torch form and in ONNX form.

must_flag: each listed location carries the rule's code at (at least) the listed severity.
must_not_flag: the rule reports nothing at warning or above (info is not a flag).

Then the same examples through the probe: a must-flag finding's prediction ends ``confirmed``
(or the rule's claim is one the probe cannot measure, for the reason in UNMEASURED), and a
must-not-flag example has no error after the probe either.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from initlint.engine import Severity  # noqa: E402
from initlint.testing import all_examples, example_input, findings_for, graph_of, probed_findings  # noqa: E402

# Static rules read the graph; probe rules get the dynamic probe run on the example first.
CASES = [
    pytest.param(rule, kind, example, form, id=f"{rule.code}-{kind}-{example.name}-{form}")
    for rule, kind, example in all_examples()
    for form in ("torch", "onnx")
]


@pytest.mark.parametrize("rule, kind, example, form", CASES)
def test_rule_example(rule, kind, example, form, tmp_path):
    torch.manual_seed(0)
    model = example.build()
    graph = graph_of(model, form, example_input(example), tmp_path)
    findings = findings_for(rule, graph, example)
    if kind == "must_flag":
        assert example.flagged, "a must-flag example names the locations it expects"
        least = Severity.parse(example.severity or str(rule.severity))
        for location in example.flagged:
            hits = [f for f in findings if f.location == location]
            assert hits, f"{rule.code} did not flag {location}; got {[(f.location, str(f.severity)) for f in findings]}"
            assert max(f.severity for f in hits) >= least, f"{location}: {[str(f.severity) for f in hits]} below {least}"
    else:
        flagged = [(f.location, str(f.severity), f.message) for f in findings if f.severity >= Severity.WARNING]
        assert not flagged, f"{rule.code} flagged a model it must not flag: {flagged}"


def test_every_rule_has_examples_both_ways():
    from initlint.engine import registry

    for rule in registry():
        assert rule.must_flag and rule.must_not_flag, f"{rule.code} needs must-flag and must-not-flag examples"


def test_rules_import_model_builders_not_test_helpers():
    """Loading every rule (and building its examples' models) leaves initlint.testing, the
    helpers that export ONNX and run the probe for tests, unimported."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from initlint.engine import registry\n"
        "rules = registry()\n"
        "assert rules, 'no rules loaded'\n"
        "for rule in rules:\n"
        "    for example in (*rule.must_flag, *rule.must_not_flag):\n"
        "        example.build()\n"
        "print(sorted(m for m in sys.modules if m.startswith('initlint.testing')))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]", run.stdout


def test_dead_relu_bias_message_states_a_negative_threshold():
    """IL304 once printed "bias below -3σ = 4.27": the bound a bias must be below is negative."""
    import re

    from initlint.engine import registry

    rule = next(r for r in registry() if r.code == "IL304")
    example = rule.must_flag[0]
    torch.manual_seed(0)
    [finding] = [f for f in findings_for(rule, graph_of(example.build(), "torch"), example) if f.code == "IL304"][:1]
    bound = re.search(r"below -3σ = (-?[\d.]+)", finding.message)
    assert bound and float(bound.group(1)) < 0, finding.message
    assert finding.message.startswith(tuple("0123456789")) and "will not train" in finding.message
    assert f'nn.init.zeros_(model.get_parameter("{finding.location}"))' in finding.fix


# Rules whose claim is not (yet) a quantity the probe measures, and why.
# Rule code -> why the probe cannot measure its claim (none at present).
UNMEASURED: dict[str, str] = {}
# Findings that make no claim, by rule: IL101's zero layer chained behind a fatal one (the
# fatal one carries the claim); IL105's offset behind a LayerNorm, which cancels it at init
# (dormant: nothing to measure).
WARNINGS_WITHOUT_CLAIM = {"IL101", "IL105"}


@pytest.mark.parametrize("rule, kind, example, form", CASES)
def test_rule_example_verdict_after_the_probe(rule, kind, example, form, tmp_path):
    torch.manual_seed(0)
    model = example.build()
    graph = graph_of(model, form, example_input(example), tmp_path)
    findings, measurement = probed_findings(rule, graph, example)
    assert measurement.ok, measurement.reason
    if kind == "must_not_flag":
        errors = [(f.location, f.message) for f in findings if f.severity >= Severity.ERROR]
        assert not errors, f"{rule.code} still errs on a model it must not flag after the probe: {errors}"
        return
    if rule.stage == "probe":
        assert all(f.prediction is None for f in findings)  # a probe finding is itself the measurement
        return
    flagged = [f for f in findings if f.location in example.flagged]
    assert flagged
    for finding in flagged:
        verdict = finding.probe["verdict"]
        if rule.code in UNMEASURED or (finding.prediction is None and rule.code in WARNINGS_WITHOUT_CLAIM and finding.severity < Severity.ERROR):
            assert finding.prediction is None and verdict == "inconclusive"
            continue
        assert finding.prediction is not None, f"{rule.code} at {finding.location} makes no claim the probe can check"
        assert verdict == "confirmed", f"{rule.code} at {finding.location}: {finding.probe}"
