"""Keeping torch's own output short: one-line exception text, silenced torch logs."""

from __future__ import annotations

import contextlib
import logging


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


@contextlib.contextmanager
def _quiet_torch_logs():
    """torch.export logs warnings through `logging`; initlint reports problems itself, on one line."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
