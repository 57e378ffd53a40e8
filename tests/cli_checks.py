"""The command line as the hostile-input tests drive it, and their one check: one line, exit 2."""

from __future__ import annotations

from click.testing import CliRunner

from initlint.cli import main


def lint(*args):
    """initlint on ``args`` without the probe (these tests are about reading files)."""
    return CliRunner().invoke(main, [*map(str, args), "--probe", "never"])


def assert_one_line_error(result, path, *fragments):
    """Exit 2, no traceback, and exactly one output line about ``path``, holding each fragment."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith(str(path))]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
