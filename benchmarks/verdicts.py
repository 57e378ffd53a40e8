"""How many warning-or-error findings the probe settles, on the project's own zoo and rule examples.

    python benchmarks/verdicts.py                    # rule examples + the whole zoo (live modules)
    python benchmarks/verdicts.py --examples-only    # the rule examples only (a minute or two)
    python benchmarks/verdicts.py resnet18 gpt2      # zoo models whose name starts with one of these

Every model is linted as a user would, with the default options (``--probe auto``: the probe runs
where the model fits the auto budget). For each static finding at warning or above (its severity
before the probe) it records the verdict: confirmed, refuted or inconclusive (with the reason).
The zoo's planted faults (benchmarks/zoo_audit.py) and the rule examples' must-flag locations are
checked for a refutation: a planted fault the probe refutes is a wrong verdict. Prints one line
per model and the totals; exits 1 when the settled share is below --target or a planted fault
was refuted.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from initlint.engine import Severity  # noqa: E402
from initlint.loaders.torch import graph_from_module  # noqa: E402
from initlint.options import LintOptions  # noqa: E402
from initlint.runner import TargetResult, lint_graph  # noqa: E402
from initlint.testing import all_examples, example_input  # noqa: E402


def lint_module(model, name: str, example) -> TargetResult:
    graph = graph_from_module(model, name, example_input=example)
    graph.metadata.setdefault("example_input", example)  # as a spec returning (model, example) gives the probe
    result = TargetResult(target=name, format="torch", graph=graph)
    lint_graph(graph, LintOptions(), result)
    return result


def static_severity(finding) -> Severity:
    original = (finding.probe or {}).get("original_severity")
    return Severity.parse(original) if original else finding.severity


def judged(result: TargetResult) -> list:
    """The static findings at warning or above (before the probe), with their verdicts."""
    return [f for f in result.findings if (f.probe or {}).get("reason") != "measured by the probe" and static_severity(f) >= Severity.WARNING]


def cases(names: list[str], examples: bool, zoo: bool):
    """(label, build, example input, planted {location: code})."""
    if examples:
        for rule, kind, example in all_examples():
            # A must-flag example is a planted fault too: its flagged locations, under its rule's code.
            planted = {location: rule.code for location in example.flagged} if kind == "must_flag" else {}
            yield f"{rule.code}:{kind}:{example.name}", example.build, lambda e=example: example_input(e), planted
    if not zoo:
        return
    import zoo_audit

    for entry in zoo_audit.zoo():
        if names and not any(entry.name.startswith(n) for n in names):
            continue
        example = lambda e=entry: zoo_audit._one(e.example())  # noqa: E731
        yield entry.name, entry.build, example, {}
        for label, mutate, expected in entry.plants:
            def build(e=entry, m=mutate):
                model = e.build()
                m(model)
                return model

            yield f"{entry.name} [{label}]", build, example, {loc: code for loc, (code, _) in expected.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="zoo models whose name starts with one of these")
    parser.add_argument("--examples-only", action="store_true")
    parser.add_argument("--zoo-only", action="store_true")
    parser.add_argument("--target", type=float, default=0.9, help="share of findings that must end settled")
    args = parser.parse_args(argv)
    counts = collections.Counter()
    reasons = collections.Counter()
    refuted_plants = []
    start = time.perf_counter()
    for label, build, make_input, planted in cases(args.names, not args.zoo_only, not args.examples_only):
        torch.manual_seed(0)
        t0 = time.perf_counter()
        try:
            model, example = build(), make_input()
            result = lint_module(model, label, example)
        except Exception as exc:  # a model the zoo cannot build here (a missing optional package)
            print(f"{label}: skipped ({type(exc).__name__}: {' '.join(str(exc).split())[:100]})", flush=True)
            continue
        findings = judged(result)
        verdicts = collections.Counter(f.probe["verdict"] for f in findings)
        counts.update(verdicts)
        for f in findings:
            if f.probe["verdict"] == "inconclusive":
                reasons[f"{f.code}: {f.probe['reason'][:90]}"] += 1
            if planted.get(f.location) == f.code and f.probe["verdict"] == "refuted":
                refuted_plants.append(f"{label}: {f.code} at {f.location}: {f.probe['reason']}")
        probe = result.probe or {}
        shown = ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())) or "no finding at warning or above"
        print(f"{label}: {shown} (probe {probe.get('status', 'not run')}, {time.perf_counter() - t0:.1f} s)", flush=True)
    total = sum(counts.values())
    settled = counts["confirmed"] + counts["refuted"]
    share = settled / total if total else 1.0
    print()
    print(f"warning-or-error findings: {total}; confirmed {counts['confirmed']}, refuted {counts['refuted']}, inconclusive {counts['inconclusive']}")
    print(f"settled (confirmed or refuted): {share:.1%} (target {args.target:.0%}); planted faults refuted: {len(refuted_plants)}")
    for line in refuted_plants:
        print(f"  REFUTED PLANT {line}")
    if reasons:
        print("inconclusive, by reason:")
        for reason, n in reasons.most_common(12):
            print(f"  {n:4d}  {reason}")
    print(f"{time.perf_counter() - start:.0f} s")
    return 0 if share >= args.target and not refuted_plants else 1


if __name__ == "__main__":
    sys.exit(main())
