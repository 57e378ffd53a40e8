"""Many models at once: expand directories into model files and lint them in parallel.

A directory is searched recursively for files with a model suffix (loaders.MODEL_SUFFIXES),
skipping hidden directories, paths matching an ``--exclude`` glob, paths ignored by the
``.gitignore`` files above them (read with pathspec; git itself never runs), and entries that
are not readable files (broken or looping symlinks). Files and specs named explicitly are always linted. Each model is linted in its own
worker process, so one model that crashes its reader does not stop the others.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable, Iterable

import click
import pathspec

from .loaders import MODEL_SUFFIXES, is_spec
from .options import LintOptions
from .report import printable
from .runner import TargetResult, lint_target

# Below this many models a progress bar is more noise than help.
PROGRESS_MIN_MODELS = 5


def _excluded(path: str, patterns: Iterable[str]) -> bool:
    """An exclude glob matches the path, any of its parent directories, or a path component."""
    try:
        posix = Path(os.path.abspath(path)).relative_to(os.path.abspath(os.getcwd())).as_posix()
    except ValueError:
        posix = Path(path).as_posix()
    parts = posix.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatchcase(candidate, pattern.rstrip("/")) for pattern in patterns for candidate in (*prefixes, *parts))


def expand_targets(targets: Iterable[str], exclude: Iterable[str] = (), respect_gitignore: bool = True) -> list[str]:
    """Targets with every directory replaced by the model files under it, sorted, without duplicates."""
    exclude = list(exclude)
    expanded: list[str] = []
    for target in targets:
        if is_spec(target) or not os.path.isdir(target):
            expanded.append(target)
            continue
        found = []
        for folder, dirs, files in os.walk(target):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _excluded(os.path.join(folder, d), exclude))
            for name in sorted(files):
                path = os.path.join(folder, name)
                if Path(name).suffix.lower() in MODEL_SUFFIXES and os.path.isfile(path) and not _excluded(path, exclude):
                    found.append(path)
        if respect_gitignore and found:
            ignored = gitignored(found)
            found = [path for path in found if path not in ignored]
        external = onnx_external_data(found)
        expanded.extend(path for path in found if path not in external)
    return list(dict.fromkeys(expanded))


def onnx_external_data(paths: list[str]) -> set[str]:
    """The files among ``paths`` that an ONNX model among them keeps its weights in (external
    data, often ``weights.bin``): part of that model, not models of their own. Only folders
    holding both are read, and only the models' structure (initlint.loaders.onnx.scan)."""
    folders_with_onnx = {os.path.dirname(p) for p in paths if p.lower().endswith(".onnx")}
    others = {os.path.abspath(p): p for p in paths if not p.lower().endswith(".onnx")}
    if not folders_with_onnx or not any(os.path.dirname(p) in folders_with_onnx for p in others.values()):
        return set()
    try:
        from .loaders.onnx.scan import read_structure
    except ImportError:
        return set()
    found = set()
    for model_path in paths:
        if not model_path.lower().endswith(".onnx"):
            continue
        folder = os.path.dirname(model_path)
        if not any(os.path.dirname(p) == folder for p in others.values()):
            continue
        try:
            structure = read_structure(model_path)
        except Exception:  # an unreadable model is reported when it is linted
            continue
        initializers = list(structure.model.graph.initializer)
        with contextlib.suppress(Exception):
            structure.file.mm.close()
        for tensor in initializers:
            for entry in tensor.external_data:
                if entry.key == "location":
                    match = others.get(os.path.abspath(os.path.join(folder, entry.value)))
                    if match is not None:
                        found.add(match)
    return found


def gitignored(paths: list[str]) -> set[str]:
    """The subset of ``paths`` that the .gitignore files above them ignore.

    The files are read as text and matched with pathspec's git semantics: no ``git`` process
    runs, because git reads the scanned tree's own configuration (a model bundle's
    ``.git/config`` can name commands, e.g. ``core.fsmonitor``). The search for .gitignore files
    stops at the work tree root (the folder holding ``.git``), whose ``info/exclude`` counts too.
    """
    matcher = _IgnoreFiles()
    return {path for path in paths if matcher.ignored(path)}


class _IgnoreFiles:
    """The parsed ignore files of each folder, read once per scan."""

    def __init__(self):
        self._specs: dict[str, list[pathspec.GitIgnoreSpec]] = {}

    def _folder_specs(self, folder: str) -> list[pathspec.GitIgnoreSpec]:
        if folder not in self._specs:
            files = [os.path.join(folder, ".gitignore")]
            if os.path.isdir(os.path.join(folder, ".git")):
                files.insert(0, os.path.join(folder, ".git", "info", "exclude"))
            specs = []
            for name in files:
                try:
                    with open(name, encoding="utf-8", errors="replace") as handle:
                        specs.append(pathspec.GitIgnoreSpec.from_lines(handle.read().splitlines()))
                except (OSError, ValueError):  # absent, unreadable, or a pattern pathspec rejects
                    continue
            self._specs[folder] = specs
        return self._specs[folder]

    def ignored(self, path: str) -> bool:
        absolute = os.path.abspath(path)  # not resolved: a symlink loop must not raise here
        folders = []
        folder = os.path.dirname(absolute)
        while True:
            folders.append(folder)
            if os.path.exists(os.path.join(folder, ".git")):
                break  # the work tree root: ignore files above it do not apply
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
        ignored = False
        # Outermost first, so a deeper file's verdict (including a ``!`` re-include) wins, as in git.
        for folder in reversed(folders):
            relative = os.path.relpath(absolute, folder).replace(os.sep, "/")
            for spec in self._folder_specs(folder):
                verdict = spec.check_file(relative).include
                if verdict is not None:
                    ignored = verdict
        return ignored


def lint_guarded(target: str, options: LintOptions) -> TargetResult:
    """lint_target, where code the model runs (a spec, or a trusted pickle) ending the process
    (``sys.exit``) or raising a BaseException is this target's error, not the end of the run."""
    try:
        return lint_target(target, options)
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:
        return TargetResult(target=target, format=None, error=f"{target}: its code called sys.exit({printable(repr(exc.code))[:80]}) while it was loaded")
    except BaseException as exc:
        detail = printable(" ".join(str(exc).split()))[:200]
        return TargetResult(target=target, format=None, error=f"{target}: its code raised {type(exc).__name__} while it was loaded" + (f" ({detail})" if detail else ""))


def _lint_in_worker(target: str, options: LintOptions) -> TargetResult:
    result = lint_guarded(target, options)
    result.summary = result.model_summary()
    result.graph = None  # lazy tensors do not cross processes; nothing after linting needs them here
    return result


def lint_many(
    targets: list[str],
    options: LintOptions,
    jobs: int | None = None,
    progress: bool | None = None,
    options_for: Callable[[str], LintOptions] | None = None,
) -> list[TargetResult]:
    """Lint every target, in up to ``jobs`` processes (default: the number of cores), in order.

    Specs (``module:callable``) run in this process: they import user code relative to the
    current directory and keep their graph for source locations. ``options_for`` gives a
    target its own options (e.g. its own plot file). While models load, anything they print
    goes to stderr: stdout carries only the report (``--format json`` stays parseable).
    """
    jobs = max(1, jobs or os.cpu_count() or 1)
    if progress is None:
        progress = sys.stderr.isatty() and len(targets) >= PROGRESS_MIN_MODELS
    results: dict[int, TargetResult] = {}
    files = [i for i, t in enumerate(targets) if not is_spec(t)]
    parallel = files if jobs > 1 and len(files) > 1 else []
    options_of = options_for or (lambda target: options)
    with _stdout_to_stderr(), _progress(len(targets), progress) as advance:
        # Workers first: specs import torch here, and forking after that is unsafe.
        if parallel:
            _lint_parallel(targets, parallel, options_of, min(jobs, len(parallel)), results, advance)
        for i, target in enumerate(targets):
            if i not in results:
                results[i] = lint_guarded(target, options_of(target))
                advance()
    return [results[i] for i in range(len(targets))]


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send what user code prints to stderr, from Python (sys.stdout) and from native code and
    worker processes (file descriptor 1), and put both back afterwards."""
    saved_fd = None
    try:
        if sys.stdout is not None and sys.stderr is not None and sys.stdout.fileno() == 1:
            sys.stdout.flush()
            saved_fd = os.dup(1)
            os.dup2(sys.stderr.fileno(), 1)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # no real descriptors (e.g. captured in tests)
        saved_fd = None
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved
        if saved_fd is not None:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


def _pool(jobs: int) -> ProcessPoolExecutor:
    # fork is fast and fine for numpy/onnx; once torch (and its thread pools) is loaded, a forked
    # child may deadlock, so start clean interpreters instead.
    context = multiprocessing.get_context("spawn") if "torch" in sys.modules else None
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context)


def _lint_parallel(targets, pending, options_of, jobs, results, advance) -> None:
    crashed: list[int] = []
    try:
        with _pool(jobs) as pool:
            futures = {i: pool.submit(_lint_in_worker, targets[i], options_of(targets[i])) for i in pending}
            for i, future in futures.items():
                try:
                    results[i] = future.result()
                    advance()
                except BrokenProcessPool:
                    crashed.append(i)
    except BrokenProcessPool:
        crashed = [i for i in pending if i not in results]
    # A worker died (e.g. a crash inside a native reader): retry each unfinished model alone,
    # so only the model that kills its worker is reported as such.
    for i in crashed:
        try:
            with _pool(1) as pool:
                results[i] = pool.submit(_lint_in_worker, targets[i], options_of(targets[i])).result()
        except BrokenProcessPool:
            results[i] = TargetResult(target=targets[i], format=None, error=f"{targets[i]}: the process reading this model crashed")
        advance()


class _progress:
    def __init__(self, total: int, enabled: bool):
        self.bar = click.progressbar(length=total, label="linting", file=sys.stderr) if enabled else None

    def __enter__(self) -> Callable[[], None]:
        if self.bar is None:
            return lambda: None
        self.bar.__enter__()
        return lambda: self.bar.update(1)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def render_summary(results: list[TargetResult]) -> str:
    """One row per model: findings by severity, or why it could not be read."""
    from .engine import Severity

    header = ("model", "errors", "warnings", "info", "status")
    rows = []
    for r in results:
        counts = [sum(1 for f in r.findings if f.severity == s) for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)]
        unchecked = any(status.startswith("failed") for status in r.rules.values())
        status = "unreadable" if r.error else ("fail" if counts[0] else ("unchecked" if unchecked else ("warn" if counts[1] else "ok")))
        rows.append((printable(r.target), *(str(c) for c in counts), status))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.ljust(w) if i in (0, 4) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(tuple("-" * w for w in widths)), *(fmt(row) for row in rows)])
