"""Settings: ``[tool.initlint]`` in pyproject.toml or the top level of initlint.toml, then the command line.

The nearest config file is found by walking up from the current directory (``initlint.toml``
wins over ``pyproject.toml`` in the same directory; a pyproject.toml without ``[tool.initlint]``
is passed over). Command-line flags replace the configured value of their key, except
``--extend-select`` and ``--ignore``, which add to it (as in ruff). Defaults survive a partial
config. An unknown key, rule code or rule option is an error that names it.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .engine import Severity, registry
from .errors import InitlintError

CONFIG_FILES = ("initlint.toml", "pyproject.toml")
PROBE_MODES = ("auto", "always", "never")
DEFAULTS: dict[str, Any] = {
    "select": None,  # None: every rule
    "extend-select": [],
    "ignore": [],
    "fail-on": "error",
    "probe": "auto",
    "exclude": [],
    "per-layer-ignores": {},
    "per-file-ignores": {},
    "rules": {},
}
# Command-line values of these keys add to the configured ones instead of replacing them.
ADDITIVE = frozenset({"extend-select", "ignore"})
DEFAULT, COMMAND_LINE = "default", "command line"


@dataclass
class Settings:
    values: dict[str, Any]
    origins: dict[str, str]  # key -> DEFAULT, the config file, COMMAND_LINE, or "<file> + command line"
    path: Path | None  # the config file, if one was found or given
    root: Path  # per-file-ignores globs are relative to this directory

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def select(self) -> list[str] | None:
        select, extend = self.values["select"], self.values["extend-select"]
        if select is None:
            return None  # every rule already; extend-select cannot add more
        return [*select, *extend]

    @property
    def fail_on(self) -> Severity:
        return Severity.parse(self.values["fail-on"])

    def lint_options(self, load=None):
        from .options import LintOptions

        kwargs = {"load": load} if load is not None else {}
        return LintOptions(
            select=self.select,
            ignore=list(self.values["ignore"]),
            probe=self.values["probe"],
            rule_settings={code: dict(opts) for code, opts in self.values["rules"].items()},
            per_layer_ignores=dict(self.values["per-layer-ignores"]),
            per_file_ignores=dict(self.values["per-file-ignores"]),
            root=str(self.root),
            **kwargs,
        )

    def describe(self) -> str:
        """The resolved settings as TOML, each line commented with where its value came from."""
        lines = [f"# config file: {self.path if self.path else '(none found; defaults)'}"]
        for key in DEFAULTS:
            if key in ("per-layer-ignores", "per-file-ignores", "rules"):
                continue
            value = self.values[key]
            shown = '["ALL"]' if key == "select" and value is None else _toml(value)
            lines.append(f"{key} = {shown}  # {self.origins[key]}")
        for key in ("per-layer-ignores", "per-file-ignores"):
            lines.append(f"\n[{key}]  # {self.origins[key]}")
            for pattern, codes in self.values[key].items():
                lines.append(f"{_toml(pattern)} = {_toml(codes)}")
        configured = self.values["rules"]
        for rule in registry():
            if not rule.options:
                continue
            lines.append(f"\n[rules.{rule.code}]  # {rule.name}")
            for option, default in rule.options.items():
                value = configured.get(rule.code, {}).get(option, default)
                origin = self.origins["rules"] if option in configured.get(rule.code, {}) else DEFAULT
                lines.append(f"{option.replace('_', '-')} = {_toml(value)}  # {origin}")
        return "\n".join(lines)


def _toml(value: Any) -> str:
    return json.dumps(value)  # JSON strings, numbers, booleans and lists are valid TOML


def find_config(start: Path | None = None) -> Path | None:
    """The nearest initlint.toml, or pyproject.toml with a [tool.initlint] table, from ``start`` up."""
    directory = (start or Path.cwd()).resolve()
    for folder in (directory, *directory.parents):
        for name in CONFIG_FILES:
            candidate = folder / name
            if candidate.is_file() and (name != "pyproject.toml" or _table(candidate) is not None):
                return candidate
    return None


def _table(path: Path) -> dict | None:
    """The initlint table of a config file (None: a pyproject.toml without one)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InitlintError(str(path), f"cannot read the config file ({type(exc).__name__}: {exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InitlintError(str(path), f"invalid TOML: {exc}") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InitlintError(str(path), f"unusable TOML value: {exc}") from None
    except RecursionError:
        raise InitlintError(str(path), "invalid TOML: arrays or tables nested too deeply") from None
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        if not isinstance(tool, dict):
            raise InitlintError(str(path), f"tool must be a table, not {type(tool).__name__}")
        table = tool.get("initlint")
        if table is not None and not isinstance(table, dict):
            raise InitlintError(str(path), "[tool.initlint] must be a table")
        return table
    return data


def load_config(path: Path) -> dict[str, Any]:
    """The validated settings of one config file, keyed as in DEFAULTS (only the keys it sets)."""
    table = _table(path)
    if table is None:
        raise InitlintError(str(path), "has no [tool.initlint] table")
    where = str(path)
    prefix = "tool.initlint." if path.name == "pyproject.toml" else ""
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in DEFAULTS:
            raise InitlintError(where, f"unknown key {prefix}{_short(key)}", f"known keys: {', '.join(DEFAULTS)}")
        values[key] = validate(key, value, where, prefix)
    return values


def validate(key: str, value: Any, where: str, prefix: str = "") -> Any:
    """Check one setting; return it in canonical form (codes upper-case, rule options with underscores)."""
    name = f"{prefix}{key}"
    if key in ("select", "extend-select", "ignore"):
        return _codes(value, name, where)
    if key == "fail-on":
        if not isinstance(value, str) or value.lower() not in ("error", "warning", "info"):
            raise InitlintError(where, f"{name} = {_short(value)}: expected \"error\", \"warning\" or \"info\"")
        return value.lower()
    if key == "probe":
        if value not in PROBE_MODES:
            raise InitlintError(where, f"{name} = {_short(value)}: expected one of {', '.join(PROBE_MODES)}")
        return value
    if key == "exclude":
        return _strings(value, name, where)
    if key in ("per-layer-ignores", "per-file-ignores"):
        if not isinstance(value, dict):
            raise InitlintError(where, f"{name} must be a table of glob = [codes]")
        return {str(pattern): _codes(codes, f"{name}.{pattern!r}", where) for pattern, codes in value.items()}
    if key == "rules":
        return _rule_options(value, name, where)
    raise InitlintError(where, f"unknown key {name!r}", f"known keys: {', '.join(DEFAULTS)}")


def _strings(value: Any, name: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InitlintError(where, f"{name} must be a list of strings, not {_short(value)}")
    return list(value)


def _codes(value: Any, name: str, where: str) -> list[str]:
    codes = _strings(value, name, where)
    reg = registry()
    for code in codes:
        try:
            reg.validate_selector(code)
        except ValueError:
            raise InitlintError(where, f"{name}: unknown rule code or prefix {_short(code)}", "see `initlint rules`") from None
    return [code.strip() for code in codes]


def _rule_options(value: Any, name: str, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise InitlintError(where, f"{name} must be a table of [{name}.CODE] tables")
    settings: dict[str, dict[str, Any]] = {}
    for code, options in value.items():
        rule = registry().get(code)
        if rule is None:
            raise InitlintError(where, f"{name}: unknown rule {_short(code)}", "see `initlint rules`")
        if not isinstance(options, dict):
            raise InitlintError(where, f"{name}.{code} must be a table of option = value")
        for option, setting in options.items():
            attr = option.replace("-", "_")
            valid = ", ".join(o.replace("_", "-") for o in rule.options) or "none"
            if attr not in rule.options:
                raise InitlintError(where, f"{name}.{code}: unknown option {_short(option)}", f"{rule.code} options: {valid}")
            default = rule.options[attr]
            if not _same_kind(setting, default):
                raise InitlintError(where, f"{name}.{code}.{option} = {_short(setting)}: expected a {type(default).__name__} like {default!r}")
            if isinstance(default, float) and not math.isfinite(_as_float(setting)):
                raise InitlintError(where, f"{name}.{code}.{option}: expected a finite number, not {_short(setting)}")
            settings.setdefault(rule.code, {})[attr] = float(setting) if isinstance(default, float) else setting
    return settings


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond the float range
        return math.inf


def _short(value: Any, limit: int = 60) -> str:
    """A value for an error line: a hostile config may hold a megabyte string or a huge integer."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python converts to text
        return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and (isinstance(default, float) or isinstance(value, int))
    return isinstance(value, type(default))


def resolve(cli: dict[str, Any] | None = None, config: str | Path | bool | None = None, start: Path | None = None) -> Settings:
    """Defaults, then the config file (``config``; the nearest one from ``start`` when None or
    True; none when False), then ``cli``: only the keys given explicitly, already validated."""
    if config is False:
        path = None
    else:
        path = Path(config) if config not in (None, True) else find_config(start)
    if path is not None and not path.is_file():
        raise InitlintError(str(path), "no such config file")
    values = {key: _copy(value) for key, value in DEFAULTS.items()}
    origins = dict.fromkeys(DEFAULTS, DEFAULT)
    if path is not None:
        for key, value in load_config(path).items():
            values[key] = value
            origins[key] = path.name
    for key, value in (cli or {}).items():
        if key not in DEFAULTS:
            raise ValueError(f"unknown setting {key!r}")
        if key in ADDITIVE and origins[key] != DEFAULT:
            values[key] = [*values[key], *value]
            origins[key] = f"{origins[key]} + {COMMAND_LINE}"
        else:
            values[key] = value
            origins[key] = COMMAND_LINE
    root = path.parent.resolve() if path is not None else Path.cwd()
    return Settings(values, origins, path.resolve() if path is not None else None, root)


def _copy(value: Any) -> Any:
    return type(value)(value) if isinstance(value, (list, dict)) else value


# --- matching, used by the runner -----------------------------------------------------------


def location_matches(location: str, pattern: str) -> bool:
    """A layer glob matches the location itself or anything under it (``*.lora_B`` matches
    ``blocks.0.lora_B.weight``), so one pattern covers a layer and its parameters."""
    return fnmatchcase(location, pattern) or fnmatchcase(location, pattern + ".*")


def path_matches(target: str, pattern: str, root: str | Path | None = None) -> bool:
    """A model-path glob matches the path relative to ``root`` (the config file's directory),
    the path as given, or the file name."""
    candidates = {target.replace(os.sep, "/"), os.path.basename(target)}
    if root is not None:
        try:
            candidates.add(Path(target).resolve().relative_to(Path(root).resolve()).as_posix())
        except (ValueError, OSError):
            pass
    return any(fnmatchcase(candidate, pattern) for candidate in candidates)
