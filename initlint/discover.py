"""Many models at once: expand directories into model files and lint them in parallel.

A directory is searched recursively for files with a model suffix (loaders.MODEL_SUFFIXES),
skipping hidden directories, paths matching an ``--exclude`` glob and paths ignored by git
(``.gitignore``, via ``git check-ignore`` inside a work tree, else by reading the .gitignore
files). Files and specs named explicitly are always linted. Each model is linted in its own
worker process, so one model that crashes its reader does not stop the others.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable, Iterable

import click

from .loaders import MODEL_SUFFIXES, is_spec
from .options import LintOptions
from .runner import TargetResult, lint_target

# Below this many models a progress bar is more noise than help.
PROGRESS_MIN_MODELS = 5


def _excluded(path: str, patterns: Iterable[str]) -> bool:
    """An exclude glob matches the path, any of its parent directories, or a path component."""
    try:
        posix = Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
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
                if Path(name).suffix.lower() in MODEL_SUFFIXES and not _excluded(path, exclude):
                    found.append(path)
        if respect_gitignore and found:
            ignored = gitignored(found)
            found = [path for path in found if path not in ignored]
        expanded.extend(found)
    return list(dict.fromkeys(expanded))


def gitignored(paths: list[str]) -> set[str]:
    """The subset of ``paths`` that git ignores."""
    if not paths:
        return set()
    if shutil.which("git"):
        try:
            # Run from the first path's directory: a work tree is found from there, whatever the cwd.
            cwd = os.path.dirname(os.path.abspath(paths[0]))
            inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=cwd, capture_output=True, text=True, timeout=30)
            if inside.returncode == 0 and inside.stdout.strip() == "true":
                absolute = {os.path.abspath(p): p for p in paths}
                run = subprocess.run(
                    ["git", "check-ignore", "--stdin", "-z"], cwd=cwd, input="\0".join(absolute) + "\0", capture_output=True, text=True, timeout=60
                )
                if run.returncode in (0, 1):  # 1: nothing ignored
                    return {absolute[p] for p in run.stdout.split("\0") if p in absolute}
        except (OSError, subprocess.SubprocessError):
            pass
    return {p for p in paths if _ignored_by_files(p)}


def _ignored_by_files(path: str) -> bool:
    """Fallback outside a git work tree: the .gitignore files of the path's directories (the
    common subset of the syntax: globs, ``dir/``, leading ``/`` anchors, ``**``, ``!`` negation)."""
    absolute = Path(os.path.abspath(path))
    ignored = False
    for folder in reversed(absolute.parents):
        ignore_file = folder / ".gitignore"
        if not ignore_file.is_file():
            continue
        relative = absolute.relative_to(folder).as_posix()
        try:
            lines = ignore_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:] if negate else line
            if _gitignore_match(relative, pattern):
                ignored = not negate
    return ignored


def _gitignore_match(relative: str, pattern: str) -> bool:
    directory_only = pattern.endswith("/")
    pattern = pattern.rstrip("/")
    anchored = "/" in pattern
    pattern = pattern.lstrip("/")
    parts = relative.split("/")
    # A directory pattern matches a parent directory; other patterns the file or a parent.
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts) - (1 if directory_only else 0))]
    for candidate in candidates:
        if anchored:
            if fnmatchcase(candidate, pattern) or fnmatchcase(candidate, pattern.replace("**/", "")):
                return True
        elif fnmatchcase(candidate.rsplit("/", 1)[-1], pattern):
            return True
    return False


def _lint_in_worker(target: str, options: LintOptions) -> TargetResult:
    result = lint_target(target, options)
    result.graph = None  # lazy tensors do not cross processes; nothing after linting needs them here
    return result


def lint_many(
    targets: list[str], options: LintOptions, jobs: int | None = None, progress: bool | None = None
) -> list[TargetResult]:
    """Lint every target, in up to ``jobs`` processes (default: the number of cores), in order.

    Specs (``module:callable``) run in this process: they import user code relative to the
    current directory and keep their graph for source locations.
    """
    jobs = max(1, jobs or os.cpu_count() or 1)
    if progress is None:
        progress = sys.stderr.isatty() and len(targets) >= PROGRESS_MIN_MODELS
    results: dict[int, TargetResult] = {}
    files = [i for i, t in enumerate(targets) if not is_spec(t)]
    parallel = files if jobs > 1 and len(files) > 1 else []
    with _progress(len(targets), progress) as advance:
        # Workers first: specs import torch here, and forking after that is unsafe.
        if parallel:
            _lint_parallel(targets, parallel, options, min(jobs, len(parallel)), results, advance)
        for i, target in enumerate(targets):
            if i not in results:
                results[i] = lint_target(target, options)
                advance()
    return [results[i] for i in range(len(targets))]


def _pool(jobs: int) -> ProcessPoolExecutor:
    # fork is fast and fine for numpy/onnx; once torch (and its thread pools) is loaded, a forked
    # child may deadlock, so start clean interpreters instead.
    context = multiprocessing.get_context("spawn") if "torch" in sys.modules else None
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context)


def _lint_parallel(targets, pending, options, jobs, results, advance) -> None:
    crashed: list[int] = []
    try:
        with _pool(jobs) as pool:
            futures = {i: pool.submit(_lint_in_worker, targets[i], options) for i in pending}
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
                results[i] = pool.submit(_lint_in_worker, targets[i], options).result()
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
        status = "unreadable" if r.error else ("fail" if counts[0] else ("warn" if counts[1] else "ok"))
        rows.append((r.target, *(str(c) for c in counts), status))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.ljust(w) if i in (0, 4) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(tuple("-" * w for w in widths)), *(fmt(row) for row in rows)])
