"""docs/performance.md's numbers come from the benchmark's own output, written by a script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _writer():
    spec = importlib.util.spec_from_file_location("write_performance_doc", ROOT / "benchmarks" / "write_performance_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_block_is_replaced_and_other_sections_kept():
    writer = _writer()
    doc = "# Perf\n\nprose\n\n<!-- generated:static -->\nold table\n<!-- /generated:static -->\n\n## Probe\n\nhand-kept probe numbers\n"
    updated = writer.replace_block(doc, "static", "new table", "## Static benchmark results")
    assert "new table" in updated and "old table" not in updated
    assert "## Probe\n\nhand-kept probe numbers" in updated and "prose" in updated
    appended = writer.replace_block(updated, "probe", "probe output", "## Probe benchmark results")
    assert appended.endswith("## Probe benchmark results\n\n<!-- generated:probe -->\nprobe output\n<!-- /generated:probe -->\n")


def test_machine_line_names_cpu_cores_and_versions():
    line = _writer().machine()
    assert "cores" in line and "Python" in line and "numpy" in line and "torch" in line


def test_performance_doc_numbers_are_generated_and_dated():
    doc = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    start, end = doc.index("<!-- generated:static -->"), doc.index("<!-- /generated:static -->")
    block = doc[start:end]
    assert "Measured 2" in block and "cores" in block and "| gpt2 500 MB |" in block
    outside = doc[:start] + doc[end:]
    assert "| gpt2" not in outside, "benchmark tables outside the generated block drift: regenerate instead"
