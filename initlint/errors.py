"""Errors about the user's input: always reported as one line and exit code 2."""

from __future__ import annotations


class InitlintError(Exception):
    """A model, spec or option that initlint cannot use.

    ``target`` is the file or spec the problem is about, ``cause`` says what is wrong and
    ``hint``, where there is one, what to do about it.
    """

    def __init__(self, target: str, cause: str, hint: str | None = None):
        super().__init__(target, cause, hint)
        self.target = str(target)
        self.cause = cause
        self.hint = hint

    def __str__(self) -> str:
        line = f"{self.target}: {self.cause}"
        if self.hint:
            line += f" ({self.hint})"
        # One line, whatever the underlying library put in its message.
        return " ".join(line.split())


TORCH_HINT = "install the torch extra: pip install 'initlint[torch]'"


def require_torch(target: str):
    """Import torch or say clearly that this input needs it."""
    try:
        import torch
    except ImportError:
        raise InitlintError(target, "this input needs PyTorch, which is not installed", TORCH_HINT) from None
    return torch
