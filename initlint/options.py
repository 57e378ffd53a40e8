"""What one lint run is asked to do: the options the CLI, the config file and the API fill in."""

from __future__ import annotations

from dataclasses import dataclass, field

from .loaders import LoadOptions


MODES = ("auto", "always", "never")


@dataclass
class ProbeOptions:
    seed: int = 0
    timeout_s: float = 60.0
    train_steps: int = 0
    plot: str | None = None  # a .png or .svg path for the per-layer signal plot
    device: str = "cpu"


@dataclass
class LintOptions:
    select: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    probe: str = "auto"  # auto | always | never
    load: LoadOptions = field(default_factory=LoadOptions)
    # rule code -> {option: value}
    rule_settings: dict[str, dict] = field(default_factory=dict)
    # layer/parameter glob -> codes, and model-path glob -> codes, not reported there (config.py).
    per_layer_ignores: dict[str, list[str]] = field(default_factory=dict)
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)
    root: str | None = None  # the directory per-file-ignores globs are relative to
    probe_options: ProbeOptions = field(default_factory=ProbeOptions)
    # A model in which no weighted layer was read, or whose structure is only a module-order
    # guess, is "could not check" (exit 2) unless this is set (--allow-empty).
    allow_empty: bool = False
