"""The ``fracbuild`` command line: a thin click layer over the library's functions."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator

import click

from . import __version__
from .errors import FracbuildError
from .settings import DIR, MAPS, OVERRIDES, RENDER, SEARCH, Setting
from .sources import DEFAULT_SOURCE, SOURCES


class _Group(click.Group):
    """Turns every user-caused error, usage errors included, into one line on stderr, and every warning too.

    The library warns through ``warnings`` only (a notebook can filter or record them); the command line
    shows each as a ``Warning:`` line once the command has done its work. A command that fails or is
    interrupted shows its one line alone (joblib warns of the tasks it cancels when a render is stopped).
    """

    def main(self, args=None, prog_name=None, **extra):
        extra.pop("standalone_mode", None)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.ClickException as e:
            click.echo(f"Error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                result = super().invoke(ctx)
        except FracbuildError as e:
            raise click.ClickException(str(e)) from None
        except OSError as e:  # a full disk or a vanished directory, met mid-way
            where = f"{e.filename}: " if e.filename else ""
            raise click.ClickException(f"{where}{e.strerror or e}") from None
        for w in caught:
            click.echo(f"Warning: {w.message}", err=True)
        return result


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fracbuild")  # not from metadata: a source tree has none
def main() -> None:
    """Formula-driven pre-training data: search an IFS, render its perturbation classes."""


class _Maps(click.ParamType):
    """``N`` (a fractal's maps) or ``MIN-MAX`` (the range a category's maps are drawn from)."""

    name = "N|MIN-MAX"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, tuple)):
            return value
        lo, sep, hi = str(value).partition("-")
        try:
            return (int(lo), int(hi)) if sep else int(lo)
        except ValueError:
            self.fail(f"{value!r} is not a number N or a range MIN-MAX", param, ctx)


def _click_option(setting: Setting) -> Callable:
    flag = setting.option
    if setting.type is bool:
        return click.option(flag, setting.name, is_flag=True, default=None, help=setting.help)
    kind = {MAPS: _Maps(), DIR: click.Path(file_okay=False)}.get(setting.type, setting.type)
    if setting.choices:
        kind = click.Choice(setting.choices)
    return click.option(flag, setting.name, type=kind, default=setting.default,
                        show_default=setting.default is not None, help=setting.help)


def options_of(settings: tuple[Setting, ...]) -> Callable[[Callable], Callable]:
    """Decorate a command with one option per setting, in their order."""

    def decorate(command: Callable) -> Callable:
        for setting in reversed(settings):
            command = _click_option(setting)(command)
        return command

    return decorate


class _Search(click.Command):
    """``search --help`` names, after each option, the sources that take it (their modules' ``OPTIONS``)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from .recipe import COMMON_OPTIONS
        from .sources import source_module

        takes: dict[str, list[str]] = {}
        for source in SOURCES:
            for option in source_module(source).OPTIONS[source]:
                takes.setdefault(option, []).append(source)
        for param in self.params:
            if isinstance(param, click.Option) and param.name in takes and param.name not in COMMON_OPTIONS:
                base = param.__dict__.setdefault("base_help", param.help)  # help may be asked twice
                param.help = f"{base} [{', '.join(takes[param.name])}]"
        super().format_help(ctx, formatter)


@main.command(cls=_Search)
@click.option("--source", default=DEFAULT_SOURCE, show_default=True, type=click.Choice(list(SOURCES)),
              help="What the recipe renders.")
@options_of(SEARCH)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Recipe JSON to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing recipe.")
def search(source, output, force, **options):
    """Write a new recipe of --source: an IFS with a target σ-factor (fractal), categories searched in
    parallel, or a recipe with nothing to search. Only the options given are passed on; the others
    keep the source's defaults (in parentheses). The sources that take an option follow it in
    brackets; the others refuse it."""
    from .jsonfile import check_output, save_json
    from .recipe import new_recipe
    from .sources import source_module

    check_output(output, force)
    start = time.perf_counter()
    recipe = new_recipe(source, **{k: v for k, v in options.items() if v is not None})
    seconds = time.perf_counter() - start
    save_json(recipe, output, force=force)
    click.echo(f"{output}: {source_module(source).describe(recipe, seconds)}")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, taken as Ctrl-C is: joblib stops the workers and the finished shards are kept."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """``kill``, ``timeout`` and Slurm stop a render with SIGTERM: end it as Ctrl-C does, not silently (the
    default) leaving loky's semaphores and folders for its resource tracker to report as leaked. Sent to the
    whole group, it reaches the render alone: loky's workers keep it blocked (``backends._start_workers``), and
    the render stops them, ends in the one line and removes their partial shards."""

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the render is stopping: a second one must not cut that short
        raise _Terminated

    try:
        old = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


_progress = click.option("--progress/--no-progress", default=None,
                         help="Show a progress bar (default: on a terminal).")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@options_of(RENDER)
@click.option("--force", is_flag=True, help="Replace a dataset of another recipe in OUT_DIR.")
@click.option("--no-preview", is_flag=True, help="Skip preview.png.")
@_progress
def render(recipe, out_dir, force, no_preview, progress, **settings):
    """Render RECIPE's perturbation classes to WebDataset shards in OUT_DIR.

    Re-running into the same OUT_DIR keeps every shard whose checksum matches and renders only
    what is missing or damaged.
    """
    from .card import render_command
    from .rendering import render as run_render

    overrides = {name: settings[name] for name in OVERRIDES}
    try:
        with _sigterm_as_interrupt():
            manifest = run_render(recipe, out_dir, force=force, preview=not no_preview, progress=progress,
                                  **settings, command=render_command(recipe, out_dir, overrides,
                                                                     preview=not no_preview))
    except KeyboardInterrupt as e:
        click.echo(f"\nInterrupted: finished shards are kept in {out_dir}; run the same command to resume.",
                   err=True)
        sys.exit(143 if isinstance(e, _Terminated) else 130)  # 128 + the signal, as the shell reports it
    run = manifest["run"]
    kept = f", {run['kept']} kept from an earlier run" if run["kept"] else ""
    speed = f" in {run['seconds']:.2f} s: {run['images_per_second']:.0f} images/s" if run["rendered"] else ""
    click.echo(f"{out_dir}: {run['rendered']} images rendered{speed}{kept}; {manifest['samples']} samples, "
               f"{len(manifest['shards'])} shards, {manifest['bytes'] / 1e6:.1f} MB, {manifest['redraws']} redraws")


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--deep", default=0, show_default=True, help="Also re-render this many classes and compare pixels.")
@_progress
def verify(out_dir, deep, progress):
    """Check every shard's sha256, sample count, keys, labels and decodability. Exit 0 only if all hold."""
    from .dataset import verify as run_verify
    from .manifest import load_manifest

    problems = run_verify(out_dir, deep=deep, progress=progress)
    if problems:
        for p in problems:
            click.echo(p, err=True)
        raise FracbuildError(f"{out_dir}: {len(problems)} problem(s) found")
    m = load_manifest(out_dir)
    deep_note = f", {deep} classes re-rendered identically" if deep else ""
    click.echo(f"{out_dir}: OK, {len(m['shards'])} shards, {m['samples']} samples{deep_note}")


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="PNG to write (default OUT_DIR/preview.png).")
@click.option("--n", default=16, show_default=True, help="Number of classes shown.")
def preview(out_dir, output, n):
    """Write a contact sheet of N classes spread over the dataset."""
    from .dataset import preview as run_preview

    click.echo(str(run_preview(out_dir, output, n=n)))


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
def info(out_dir):
    """Summarise a rendered dataset."""
    from .manifest import info as run_info

    click.echo(run_info(out_dir))


@main.command()
@click.argument("url")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@_progress
def fetch(url, out_dir, progress):
    """Download a rendered dataset from an HTTP(S) directory, verifying every shard's sha256.

    Re-running resumes: verified shards are kept and partial downloads continue.
    """
    from .fetching import fetch as run_fetch

    m = run_fetch(url, out_dir, progress=progress)
    run = m["run"]
    click.echo(f"{out_dir}: {run['downloaded']} shards downloaded ({run['transferred'] / 1e6:.1f} MB), "
               f"{run['kept']} kept; {m['samples']} samples, all sha256 verified")
