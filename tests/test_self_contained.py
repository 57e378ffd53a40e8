"""The repository is self-contained: no tracked file reads or cites a path outside it.

A user's clone has nothing beside it. A test that reads a sibling folder of the checkout, a
rule that cites a design note kept elsewhere, or an absolute path from a developer's machine works where it was
written and breaks (or points nowhere) everywhere else.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".git", ".venv", "venv", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis"}

# Citations and reads of things that live outside the repository. The design notes' science is
# in docs/science.md; the SARIF schema is vendored under tests/schemas/.
OUTSIDE = re.compile(
    r"\.\./shared\b"  # a sibling folder of the checkout
    r"|\bDESIGN(?:-style)?\.md\b|\bDESIGN[ ]§"  # design notes that are not in the repository
    r"|(?<![\w.])/(?:work|home|Users|root)/\w"  # absolute paths of a developer's machine
)
# Path(__file__).parents[N] with N past the repository root.
PARENTS = re.compile(r"__file__\)[^\n]*?\.parents\[(\d+)\]")


def _tracked_files() -> list[Path]:
    """The files of the repository: git's list in a checkout, else every file outside build and cache folders."""
    if shutil.which("git") and (ROOT / ".git").exists():
        run = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60)
        if run.returncode == 0:
            return [ROOT / name for name in run.stdout.decode().split("\0") if name]
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        files += [Path(folder) / name for name in names]
    return files


def outside_references(path: Path, text: str) -> list[str]:
    """Each line of ``text`` (the content of ``path``) that reads or cites a path outside the repository."""
    relative = path.relative_to(ROOT)
    depth = len(relative.parts) - 1  # parents[depth] is the repository root
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        escaping = [int(n) for n in PARENTS.findall(line) if int(n) > depth] if path.suffix == ".py" else []
        if OUTSIDE.search(line) or escaping:
            problems.append(f"{relative}:{number}: {line.strip()[:120]}")
    return problems


def test_no_tracked_file_reads_or_cites_outside_the_repository():
    problems = []
    for path in _tracked_files():
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # model fixtures and other binary files
        problems += outside_references(path, text)
    assert not problems, "\n".join(problems)


# The outside names are assembled, so that this file does not itself hold what it looks for.
SIBLING, NOTES = "../" + "shared", "DESIGN"


@pytest.mark.parametrize(
    "relative, line",
    [
        ("tests/test_x.py", 'SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "x.json"'),
        ("tests/test_x.py", f'json.loads(Path("{SIBLING}/schemas/sarif.json").read_text())'),
        ("rules/IL999_x.py", f"    - {NOTES}.md §5 (when a zero tensor is fatal)"),
        ("initlint/x.py", f"# Bounds from {NOTES} §8"),
        ("benchmarks/x.py", 'MODELS = "/work/models"'),
    ],
)
def test_outside_references_are_recognized(relative, line):
    assert outside_references(ROOT / relative, line) != []


@pytest.mark.parametrize(
    "relative, line",
    [
        ("tests/test_x.py", "ROOT = Path(__file__).resolve().parents[1]"),
        ("initlint/loaders/torch/x.py", "HERE = Path(__file__).parents[3]"),
        ("tests/test_x.py", 'location = "../../etc/passwd"  # a hostile model: must be refused'),
        ("rules/IL101_x.py", "    - docs/science.md §5 (when a zero tensor is fatal)"),
        ("tests/test_x.py", 'SCHEMA = Path(__file__).resolve().parent / "schemas" / "sarif-schema-2.1.0.json"'),
    ],
)
def test_references_inside_the_repository_pass(relative, line):
    assert outside_references(ROOT / relative, line) == []
