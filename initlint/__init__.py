"""initlint: a linter for neural-network weight initialization."""

__version__ = "0.1.0"

__all__ = ["check", "Report", "assert_init_ok"]


def __getattr__(name: str):
    # Lazy, so that `import initlint` stays cheap and the CLI's imports stay acyclic.
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'initlint' has no attribute {name!r}")
