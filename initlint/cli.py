"""The ``initlint`` command line.

Exit codes: 0 nothing at or above ``--fail-on``; 1 findings at or above it; 2 a usage error, a
bad config file, or a model that could not be read. With many models, every model is still
linted and reported; the exit code is then 2 if any model could not be read (an unreadable
model must never pass a CI gate silently), else 1 if any has findings at or above ``--fail-on``.
"""

from __future__ import annotations

import dataclasses
import sys

import click
from click.core import ParameterSource

from . import __version__
from .config import resolve as resolve_settings
from .errors import InitlintError
from .engine import registry
from .loaders import LoadOptions
from .report import render_json, render_text
from .probe import ProbeOptions
from .options import LintOptions
from .runner import lint_target

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
@click.option("--trust-pickle", is_flag=True, help="Allow unpickling .pt/.pth files. Unpickling runs arbitrary code from the file: only for files you trust.")
@click.option("--extend-select", multiple=True, help="Rule codes or prefixes to run in addition to --select.")
@click.option("--output", "-o", "output_file", type=click.Path(dir_okay=False, writable=True), help="Write the report to this file instead of stdout.")
@click.option("--baseline", "baseline_file", type=click.Path(dir_okay=False), help="Report only findings not recorded in this baseline file.")
@click.option("--write-baseline", "write_baseline_file", type=click.Path(dir_okay=False, writable=True), help="Record today's findings in this file and exit 0 (2 if a model could not be read).")
@click.option("--exclude", multiple=True, help="Glob of paths to skip when searching directories (repeatable).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Models linted in parallel. [default: number of cores]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Config file (default: the nearest initlint.toml or pyproject.toml with [tool.initlint]).")
@click.pass_context
def check(ctx, targets, output_format, select, ignore, fail_on, quiet, show_fixes, input_shape, input_dtype, probe, seed, probe_timeout, train_steps, plot_file, device, trust_pickle, extend_select, output_file, baseline_file, write_baseline_file, exclude, jobs, config_file):
    """Lint TARGETS: model files (.onnx, .pt2, TorchScript, state dicts), directories of them, or module:callable specs."""
    from .baseline import apply_baseline, load_baseline, write_baseline
    from .discover import expand_targets, lint_many, render_summary

    if plot_file and not plot_file.lower().endswith((".png", ".svg")):
        raise click.BadParameter(f"{plot_file!r}: the plot is written as .png or .svg", param_hint="--plot")
    given = {"select": _split_codes(select) or None, "extend-select": _split_codes(extend_select), "ignore": _split_codes(ignore), "fail-on": fail_on, "probe": probe, "exclude": list(exclude)}
    try:
        settings = resolve_settings(_from_command_line(ctx, given), config_file)
        baseline = load_baseline(baseline_file) if baseline_file else None
    except InitlintError as exc:
        click.echo(f"initlint: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    options = settings.lint_options(LoadOptions(input_shapes=parse_input_shapes(input_shape), input_dtype=input_dtype, trust_pickle=trust_pickle))
    options.probe_options = ProbeOptions(seed=seed, timeout_s=probe_timeout, train_steps=train_steps, plot=plot_file, device=device)
    files = expand_targets(targets, settings["exclude"])
    if not files:
        click.echo(f"initlint: no model files found in {', '.join(targets)}", err=True)
        sys.exit(EXIT_ERROR)
    if plot_file and len(files) > 1:  # one plot per model: FILE-<model>.png
        results = [lint_target(f, _with_plot_for(options, f, len(files))) for f in files]
    else:
        results = lint_many(files, options, jobs)
    if write_baseline_file:
        try:
            count = write_baseline(write_baseline_file, results)
        except InitlintError as exc:
            click.echo(f"initlint: {exc}", err=True)
            sys.exit(EXIT_ERROR)
        click.echo(f"Wrote {count} finding{'s' if count != 1 else ''} of {len(results)} model{'s' if len(results) != 1 else ''} to {write_baseline_file}.")
        for r in results:
            if r.error:
                click.echo(r.error, err=True)
        sys.exit(EXIT_ERROR if any(r.error for r in results) else EXIT_OK)
    if baseline is not None:
        apply_baseline(results, baseline)
    threshold = settings.fail_on
    if output_format == "json":
        report = render_json(results)
    elif output_format in ("sarif", "github", "junit"):
        from .formats import render

        report = render(output_format, results, threshold)
    else:
        report = render_text(results, quiet=quiet, show_fixes=show_fixes, color=sys.stdout.isatty() and not output_file)
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
        click.echo(report)
    if any(r.error for r in results):
        sys.exit(EXIT_ERROR)
    if any(f.severity >= threshold for r in results for f in r.findings):
        sys.exit(EXIT_FINDINGS)
    sys.exit(EXIT_OK)


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


def _with_plot_for(options: LintOptions, target: str, count: int) -> LintOptions:
    """With several targets, --plot FILE.png becomes FILE-<target>.png per target."""
    plot = options.probe_options.plot
    if not plot or count == 1:
        return options
    stem, dot, suffix = plot.rpartition(".")
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in target.rsplit("/", 1)[-1])
    return dataclasses.replace(options, probe_options=dataclasses.replace(options.probe_options, plot=f"{stem}-{name}{dot}{suffix}"))


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
