"""The ``initlint`` command line.

Exit codes: 0 nothing at or above ``--fail-on``; 1 findings at or above it; 2 a usage error, a
bad config file, a model that could not be read, or a model a rule failed on (it could not be
checked fully). With many models, every model is still linted and reported; the exit code is
then 2 if any model could not be read or checked (neither must pass a CI gate silently), else 1
if any has findings at or above ``--fail-on``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from . import __version__
from .config import resolve as resolve_settings
from .errors import InitlintError
from .engine import registry
from .loaders import MODEL_SUFFIXES, LoadOptions
from .report import printable, render_json, render_text
from .probe import ProbeOptions
from .options import LintOptions

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def parse_input_shapes(values: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """``2,3,64,64`` (the only input) or ``NAME=2,3,64,64`` per input."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, _, dims = value.rpartition("=")
        pieces = [d.strip() for d in dims.split(",")]
        if not all(piece.isdigit() for piece in pieces):
            raise click.BadParameter(f"{value!r} is not a shape like 2,3,64,64 or NAME=2,3,64,64", param_hint="--input-shape")
        shape = tuple(int(piece) for piece in pieces)
        if any(d <= 0 for d in shape):
            raise click.BadParameter(f"{value!r}: dimensions must be positive integers", param_hint="--input-shape")
        shapes[name.strip()] = shape
    return shapes


def _split_codes(values: tuple[str, ...]) -> list[str]:
    codes = [code.strip() for value in values for code in value.split(",") if code.strip()]
    reg = registry()
    for code in codes:
        try:
            reg.validate_selector(code)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return codes


class _DefaultToCheck(click.Group):
    """``initlint TARGET...`` lints; ``initlint rules`` and ``initlint rule CODE`` are subcommands."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["check", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToCheck, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="initlint")
def main():
    """Lint the weight initialization of neural networks.

    \b
    initlint model.onnx                 lint a model (see `initlint check --help`)
    initlint package.module:build_model lint the model a callable builds
    initlint rules                      list every rule
    initlint rule IL101                 print one rule's documentation
    initlint config                     print the resolved settings and their origin
    """


@main.command("check")
@click.argument("targets", nargs=-1, required=True)
@click.option("--format", "output_format", type=click.Choice(["text", "json", "sarif", "github", "junit"]), default="text", show_default=True)
@click.option("--select", multiple=True, help="Rule codes or prefixes to run (e.g. IL1,IL301); default: all.")
@click.option("--ignore", multiple=True, help="Rule codes or prefixes to skip.")
@click.option("--fail-on", type=click.Choice(["error", "warning", "info"]), default="error", show_default=True, help="Lowest severity that makes the exit code 1.")
@click.option("--quiet", "-q", is_flag=True, help="Print findings and errors only.")
@click.option("--show-fixes", is_flag=True, help="Print each finding's fix hint under it.")
@click.option("--input-shape", multiple=True, help="Example input shape: 2,3,64,64 or NAME=2,3,64,64 per input.")
@click.option("--input-dtype", default=None, help="Example input dtype, e.g. float32 or int64 (token ids).")
@click.option("--probe", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True, help="When to run the dynamic gradient-flow probe.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the probe's batches and labels.")
@click.option("--probe-timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True, help="Seconds the probe may run; past it, its verdicts are inconclusive.")
@click.option("--train-steps", type=click.IntRange(min=0), default=0, show_default=True, help="Plain-SGD steps the probe runs on its batch to see whether the loss moves.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), default=None, help="Draw the probe's per-layer forward and backward signal to FILE (.png or .svg).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "mps"]), default="cpu", show_default=True, help="Where the probe runs the model.")
@click.option("--trust-code", "--trust-pickle", "trust_pickle", is_flag=True, help="Allow loading that can run code the file carries: unpickling .pt/.pth files, TorchScript archives (their scripted code runs on load), pickled parts of .pt2 archives, running a .pt2 program for the probe, Keras' unsafe mode (Lambda layers). Only for files you trust. --trust-pickle is the old name.")
@click.option("--extend-select", multiple=True, help="Rule codes or prefixes to run in addition to --select.")
@click.option("--allow-empty", is_flag=True, help="Accept a model in which no weighted layer was read, or whose structure is only a module-order guess (otherwise: could not check, exit 2).")
@click.option("--output", "-o", "output_file", type=click.Path(dir_okay=False, writable=True), help="Write the report to this file instead of stdout.")
@click.option("--baseline", "baseline_file", type=click.Path(dir_okay=False), help="Report only findings not recorded in this baseline file.")
@click.option("--write-baseline", "write_baseline_file", type=click.Path(dir_okay=False, writable=True), help="Record today's findings in this file and exit 0 (2 if a model could not be read).")
@click.option("--exclude", multiple=True, help="Glob of paths to skip when searching directories (repeatable).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Models linted in parallel. [default: number of cores]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Config file (default: the nearest initlint.toml or pyproject.toml with [tool.initlint]).")
@click.pass_context
def check(ctx, targets, output_format, select, ignore, fail_on, quiet, show_fixes, input_shape, input_dtype, probe, seed, probe_timeout, train_steps, plot_file, device, trust_pickle, extend_select, allow_empty, output_file, baseline_file, write_baseline_file, exclude, jobs, config_file):
    """Lint TARGETS: model files (.onnx, .pt2, TorchScript, state dicts), directories of them, or module:callable specs."""
    from .baseline import apply_baseline, load_baseline, write_baseline
    from .discover import expand_targets, lint_many, render_summary

    if plot_file and not plot_file.lower().endswith((".png", ".svg")):
        raise click.BadParameter(f"{plot_file!r}: the plot is written as .png or .svg", param_hint="--plot")
    if plot_file and not os.path.isdir(os.path.dirname(os.path.abspath(plot_file))):
        click.echo(f"initlint: {plot_file}: cannot write the plot (no such directory: {os.path.dirname(plot_file)})", err=True)
        sys.exit(EXIT_ERROR)
    given = {"select": _split_codes(select) or None, "extend-select": _split_codes(extend_select), "ignore": _split_codes(ignore), "fail-on": fail_on, "probe": probe, "exclude": list(exclude)}
    try:
        settings = resolve_settings(_from_command_line(ctx, given), config_file)
        baseline = load_baseline(baseline_file) if baseline_file else None
    except InitlintError as exc:
        click.echo(f"initlint: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    options = settings.lint_options(LoadOptions(input_shapes=parse_input_shapes(input_shape), input_dtype=input_dtype, trust_pickle=trust_pickle))
    options.probe_options = ProbeOptions(seed=seed, timeout_s=probe_timeout, train_steps=train_steps, plot=plot_file, device=device)
    options.allow_empty = allow_empty
    files = expand_targets(targets, settings["exclude"])
    if not files:
        click.echo(f"initlint: no model files found in {', '.join(targets)}", err=True)
        sys.exit(EXIT_ERROR)
    plots = plot_paths(plot_file, files) if plot_file else {}
    for flag, path in (("--output", output_file), ("--write-baseline", write_baseline_file), *(("--plot", p) for p in plots.values())):
        refusal = _would_overwrite_a_model(path, files)
        if refusal:
            click.echo(f"initlint: {path}: {refusal}; {flag} writes nothing over a model", err=True)
            sys.exit(EXIT_ERROR)
    options_for = (lambda target: _with_plot(options, plots[target])) if len(plots) > 1 else None
    results = lint_many(files, options, jobs, options_for=options_for)
    _note_what_was_not_applied(results, settings["probe"], plot_file)
    if write_baseline_file:
        try:
            count = write_baseline(write_baseline_file, results)
        except InitlintError as exc:
            click.echo(f"initlint: {exc}", err=True)
            sys.exit(EXIT_ERROR)
        _emit(f"Wrote {count} finding{'s' if count != 1 else ''} of {len(results)} model{'s' if len(results) != 1 else ''} to {write_baseline_file}.")
        for r in results:
            if r.error:
                click.echo(printable(r.error), err=True)
        _say_unchecked(results)
        sys.exit(EXIT_ERROR if any(r.error or failed_rules(r) for r in results) else EXIT_OK)
    if baseline is not None:
        apply_baseline(results, baseline)
    threshold = settings.fail_on
    if output_format == "json":
        report = render_json(results)
    elif output_format in ("sarif", "github", "junit"):
        from .formats import render

        report = render(output_format, results, threshold)
    else:
        color = not output_file and sys.stdout is not None and sys.stdout.isatty()
        report = render_text(results, quiet=quiet, show_fixes=show_fixes, color=color)
        if len(results) > 1 and not quiet:
            report = f"{report}\n\n{render_summary(results)}" if report else render_summary(results)
    if output_file:
        try:
            with open(output_file, "w", encoding="utf-8") as handle:
                handle.write(report + "\n")
        except OSError as exc:
            click.echo(f"initlint: {output_file}: cannot write the report ({exc.strerror or exc})", err=True)
            sys.exit(EXIT_ERROR)
    elif report:
        _emit(report)
    if _say_unchecked(results) or any(r.error for r in results):
        sys.exit(EXIT_ERROR)
    if any(f.severity >= threshold for r in results for f in r.findings):
        sys.exit(EXIT_FINDINGS)
    sys.exit(EXIT_OK)


def _emit(text: str) -> None:
    """Print to stdout. A closed or full stdout (``>&-``, ``> /dev/full``) is one error line on
    stderr and exit 2: the report did not reach anyone, so the run must not pass."""
    try:
        if sys.stdout is None:
            raise OSError("stdout is closed")
        click.echo(text, file=sys.stdout)
        sys.stdout.flush()
    except (OSError, ValueError) as exc:  # ValueError: a closed file object
        try:  # whatever is still buffered must not fail again when the interpreter exits
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):
            sys.stdout = None
        click.echo(f"initlint: cannot write the report to stdout ({getattr(exc, 'strerror', None) or exc})", err=True)
        sys.exit(EXIT_ERROR)


def _would_overwrite_a_model(path: str | None, files: list[str]) -> str | None:
    """Why writing ``path`` would destroy a model (one of the inputs, or any model file), or None."""
    if not path or not os.path.lexists(path):
        return None
    for target in files:
        try:
            if os.path.exists(target) and os.path.samefile(path, target):
                return "is an input model"
        except OSError:
            continue
    if Path(path).suffix.lower() in MODEL_SUFFIXES:
        return "is an existing model file"
    return None


def plot_paths(plot: str, files: list[str]) -> dict[str, str]:
    """The plot file of each target: FILE itself for one target; with several, FILE-<target>.png,
    where <target> is the target's path made file-name safe, numbered when two still collide."""
    if len(files) == 1:
        return {files[0]: plot}
    stem, dot, suffix = plot.rpartition(".")
    paths: dict[str, str] = {}
    taken: set[str] = set()
    for target in files:
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in os.path.normpath(target).lstrip(os.sep + "."))
        candidate, n = f"{stem}-{name}{dot}{suffix}", 1
        while candidate in taken:
            n += 1
            candidate = f"{stem}-{name}-{n}{dot}{suffix}"
        taken.add(candidate)
        paths[target] = candidate
    return paths


def _with_plot(options: LintOptions, plot: str) -> LintOptions:
    return dataclasses.replace(options, probe_options=dataclasses.replace(options.probe_options, plot=plot))


def _note_what_was_not_applied(results, probe_mode: str, plot_file: str | None) -> None:
    """--probe always and --plot say why they did nothing for a model, instead of passing over it."""
    for r in results:
        if r.error or r.probe is not None:
            continue
        summary = r.model_summary() or {}
        if not summary.get("has_structure", True):
            why = "the file holds weights only, with no structure to run (lint a module:callable spec or an exported graph to probe it)"
            if probe_mode == "always":
                r.notes.append(f"--probe always was not applied: {why}")
        elif probe_mode == "never":
            why = "--probe never"
        else:
            continue  # the probe stage noted why it did not run
        if plot_file:
            r.notes.append(f"--plot drew nothing for this model: {why}")


def failed_rules(result) -> list[str]:
    """The rules that raised on this model: it was not checked by them, so it cannot pass."""
    return result.failed_rules()


def _say_unchecked(results) -> bool:
    """One line on stderr per model some rule failed on; True if there is any."""
    unchecked = [(r.target, failed_rules(r)) for r in results if not r.error and failed_rules(r)]
    for target, codes in unchecked:
        click.echo(f"initlint: {target}: could not be checked by {', '.join(codes)} (the rule failed; see the notes)", err=True)
    return bool(unchecked)


def _from_command_line(ctx: click.Context, values: dict) -> dict:
    """The settings the user gave as flags (not click's defaults): these override the config file."""
    params = {"select": "select", "extend-select": "extend_select", "ignore": "ignore", "fail-on": "fail_on", "probe": "probe", "exclude": "exclude"}
    given = {}
    for key, param in params.items():
        source = ctx.get_parameter_source(param)
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT) and values[key] not in (None, [], ()):
            given[key] = values[key]
    return given


@main.command("config")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Config file (default: the nearest one from the current directory).")
@click.option("--select", multiple=True)
@click.option("--extend-select", multiple=True)
@click.option("--ignore", multiple=True)
@click.option("--fail-on", type=click.Choice(["error", "warning", "info"]))
@click.option("--probe", type=click.Choice(["auto", "always", "never"]))
@click.option("--exclude", multiple=True)
@click.pass_context
def show_config(ctx, config_file, select, extend_select, ignore, fail_on, probe, exclude):
    """Print the resolved settings and where each came from (default, config file, command line)."""
    given = {"select": _split_codes(select) or None, "extend-select": _split_codes(extend_select), "ignore": _split_codes(ignore), "fail-on": fail_on, "probe": probe, "exclude": list(exclude)}
    try:
        settings = resolve_settings(_from_command_line(ctx, given), config_file)
    except InitlintError as exc:
        click.echo(f"initlint: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(settings.describe())


@main.command("rules")
def list_rules():
    """List every rule with its code, name, default severity and summary."""
    reg = registry()
    rows = [(r.code, r.name, str(r.severity), r.summary()) for r in reg]
    width = max((len(name) for _, name, _, _ in rows), default=10)
    for code, name, severity, summary in rows:
        click.echo(f"{code}  {name:<{width}}  {severity:<7}  {summary}")
    for module, error in reg.broken.items():
        click.echo(f"note: rule module {module} could not be loaded: {error}", err=True)


@main.command("rule")
@click.argument("code")
def show_rule(code):
    """Print the documentation of one rule (by code or name)."""
    rule = registry().get(code)
    if rule is None:
        click.echo(f"initlint: unknown rule {code!r} (see `initlint rules`)", err=True)
        sys.exit(EXIT_ERROR)
    from .docs import render_rule

    click.echo(render_rule(rule), nl=False)
