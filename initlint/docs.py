"""Rule documentation, from the rules' own docstrings: docs/rules/<CODE>-<name>.md and the README table.

    python -m initlint.docs            write docs/rules/ and the README's rules table
    python -m initlint.docs --check    exit 1 if a rule lacks a section or a generated file is stale

``initlint rule CODE`` prints the same text as the rule's page.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from .engine import DOC_SECTIONS, Rule, registry

DOCS_DIR = Path("docs") / "rules"
TABLE_START, TABLE_END = "<!-- rules-table -->", "<!-- /rules-table -->"


def builtin_rules() -> list[type[Rule]]:
    """The rules that ship with initlint (third-party rules document themselves)."""
    return [rule for rule in registry() if rule.__module__.startswith("initlint.rules.")]


def rule_sections(rule: type[Rule]) -> dict[str, str]:
    """The ``## Section`` blocks of a rule's doc, by heading."""
    sections: dict[str, str] = {}
    heading = None
    for line in rule.doc().splitlines():
        if line.startswith("## "):
            heading = line.strip()
            sections[heading] = ""
        elif heading is not None:
            sections[heading] += line + "\n"
    return {h: text.strip() for h, text in sections.items()}


def doc_problems(rule: type[Rule]) -> list[str]:
    """What is missing from a rule's documentation (empty when complete)."""
    sections = rule_sections(rule)
    problems = [f"{rule.code}: missing section {s!r}" for s in DOC_SECTIONS if not sections.get(s)]
    if rule.options:
        options_text = sections.get("## Options", "")
        if not options_text:
            problems.append(f"{rule.code}: has options {sorted(rule.options)} but no '## Options' section")
        problems += [f"{rule.code}: option {o!r} is not documented under '## Options'" for o in rule.options if options_text and o not in options_text]
    return problems


def render_rule(rule: type[Rule]) -> str:
    """A rule's page; also what ``initlint rule CODE`` prints."""
    text = f"# {rule.code} {rule.name} (default severity: {rule.severity})\n\n{rule.doc()}\n"
    if rule.options:
        settings = "\n".join(f"{o.replace('_', '-')} = {json.dumps(v)}" for o, v in rule.options.items())
        text += f"\n## Configuration\nIn `pyproject.toml` (defaults shown):\n\n```toml\n[tool.initlint.rules.{rule.code}]\n{settings}\n```\n"
    return text


def rule_path(rule: type[Rule]) -> Path:
    return DOCS_DIR / f"{rule.code}-{rule.name}.md"


def rules_table(link_prefix: str = "") -> str:
    """The README's rule table (markdown), one row per built-in rule, linking to its page."""
    rows = ["| Code | Name | Severity | What it flags |", "|---|---|---|---|"]
    for rule in builtin_rules():
        summary = rule.summary().replace("|", "\\|")
        rows.append(f"| [{rule.code}]({link_prefix}{rule_path(rule).as_posix()}) | `{rule.name}` | {rule.severity} | {summary} |")
    return "\n".join(rows)


def expected_files(root: Path) -> dict[Path, str]:
    return {root / rule_path(rule): render_rule(rule) for rule in builtin_rules()}


def _with_table(readme: str) -> str:
    pattern = re.compile(re.escape(TABLE_START) + r".*?" + re.escape(TABLE_END), re.S)
    return pattern.sub(lambda _: f"{TABLE_START}\n{rules_table()}\n{TABLE_END}", readme)


def stale(root: Path) -> list[str]:
    """Generated files that differ from what the rules say now (including pages of removed rules)."""
    expected = expected_files(root)
    problems = [str(p.relative_to(root)) for p, text in expected.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    docs = root / DOCS_DIR
    if docs.is_dir():
        problems += [str(p.relative_to(root)) for p in sorted(docs.glob("*.md")) if p not in expected]
    readme = root / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        if TABLE_START in text and _with_table(text) != text:
            problems.append("README.md (rules table)")
    return problems


def write(root: Path) -> list[Path]:
    """Write every rule page and the README table; remove pages of rules that no longer exist."""
    expected = expected_files(root)
    (root / DOCS_DIR).mkdir(parents=True, exist_ok=True)
    for path in (root / DOCS_DIR).glob("*.md"):
        if path not in expected:
            path.unlink()
    for path, text in expected.items():
        path.write_text(text, encoding="utf-8")
    written = list(expected)
    readme = root / "README.md"
    if readme.is_file() and TABLE_START in readme.read_text(encoding="utf-8"):
        readme.write_text(_with_table(readme.read_text(encoding="utf-8")), encoding="utf-8")
        written.append(readme)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m initlint.docs", description="Generate docs/rules/ from the rules' docstrings.")
    parser.add_argument("--check", action="store_true", help="exit 1 if a doc section is missing or a generated file is stale")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root (default: .)")
    args = parser.parse_args(argv)
    problems = [p for rule in builtin_rules() for p in doc_problems(rule)]
    for problem in problems:
        print(f"initlint.docs: {problem}", file=sys.stderr)
    if args.check:
        outdated = stale(args.root)
        for path in outdated:
            print(f"initlint.docs: {path} is stale; run `python -m initlint.docs`", file=sys.stderr)
        return 1 if problems or outdated else 0
    for path in write(args.root):
        print(f"wrote {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
