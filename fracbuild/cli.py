"""The ``fracbuild`` command line: a thin click layer over the library's functions."""

from __future__ import annotations

import sys
import time

import click

from .errors import FracbuildError


class _Group(click.Group):
    """Turns every user-caused error, usage errors included, into one line on stderr."""

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
            return super().invoke(ctx)
        except FracbuildError as e:
            raise click.ClickException(str(e)) from None
        except OSError as e:  # a full disk or a vanished directory, met mid-way
            where = f"{e.filename}: " if e.filename else ""
            raise click.ClickException(f"{where}{e.strerror or e}") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fracbuild")
def main() -> None:
    """Formula-driven pre-training data: search an IFS, render its perturbation classes."""


@main.command()
@click.option("--sigma", default=3.5, show_default=True, help="Target σ-factor (small = complex).")
@click.option("--maps", default=2, show_default=True, help="Number of affine maps N.")
@click.option("--tolerance", default=0.1, show_default=True, help="Target σ drawn from σ ± tolerance.")
@click.option("--seed", default=0, show_default=True, help="Seed of every random draw.")
@click.option("--fill-min", default=0.05, show_default=True, help="Least fill rate of the rendered system.")
@click.option("--max-tries", default=10_000, show_default=True, help="Give up after this many systems.")
@click.option("--name", default="1p-frac", show_default=True, help="Dataset name (shard prefix).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Recipe JSON to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing recipe.")
def search(sigma, maps, tolerance, seed, fill_min, max_tries, name, output, force):
    """Find an IFS with a target σ-factor and write its recipe."""
    from .recipe import check_output, save_json
    from .searching import search as run_search

    check_output(output, force)
    start = time.perf_counter()
    recipe = run_search(sigma=sigma, maps=maps, tolerance=tolerance, seed=seed,
                        fill_min=fill_min, name=name, max_tries=max_tries)
    seconds = time.perf_counter() - start
    save_json(recipe, output, force=force)
    found = recipe["search"]
    click.echo(f"{output}: sigma {recipe['ifs']['sigma']:.4f} (target {sigma} ± {tolerance}), "
               f"fill {found['fill']:.3f}, {found['tries']} tries, {seconds:.3f} s")

