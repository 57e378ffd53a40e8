"""Keeping torch's own output short: one-line exception text, silenced torch logs and prints."""

from __future__ import annotations

import contextlib
import io
import logging


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


@contextlib.contextmanager
def _quiet_torch():
    """initlint reports torch's failures itself, on one line: torch.export logs warnings and
    errors through `logging` and, when it fails, prints the partial graph it traced to stderr
    (over 100 KB for a transformer). Both are held back while torch works."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)
