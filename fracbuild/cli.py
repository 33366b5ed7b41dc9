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



@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--classes", type=int, help="Number of perturbation classes L.")
@click.option("--delta", type=float, help="Perturbation strength Δ.")
@click.option("--perturb", type=click.Choice(["multiplicative", "additive"]), help="Perturbation mode.")
@click.option("--instances", type=int, help="Images per class K (differing chaos-game sequences).")
@click.option("--size", type=int, help="Image side in pixels.")
@click.option("--points", type=int, help="Chaos-game points per image.")
@click.option("--draw", type=click.Choice(["point", "patch", "density"]), help="Drawing mode.")
@click.option("--shard-size", type=int, help="Samples per shard.")
@click.option("--seed", type=int, help="Perturbation seed.")
@click.option("--jobs", default=-1, show_default=True, help="Worker processes (-1: all cores).")
@click.option("--backend", type=click.Choice(["loky", "threading", "dask", "ray"]), default="loky",
              show_default=True, help="joblib backend that runs the shard tasks.")
@click.option("--address", help="Scheduler address of an existing Dask or Ray cluster.")
@click.option("--force", is_flag=True, help="Replace a dataset of another recipe in OUT_DIR.")
@click.option("--no-preview", is_flag=True, help="Skip preview.png.")
def render(recipe, out_dir, jobs, backend, address, force, no_preview, **overrides):
    """Render RECIPE's perturbation classes to WebDataset shards in OUT_DIR.

    Re-running into the same OUT_DIR keeps every shard whose checksum matches and renders only
    what is missing or damaged.
    """
    import warnings

    from .rendering import render as run_render

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            manifest = run_render(recipe, out_dir, jobs=jobs, backend=backend, address=address, force=force,
                                  preview=not no_preview, **overrides)
        except KeyboardInterrupt:
            click.echo(f"\nInterrupted: finished shards are kept in {out_dir}; run the same command to resume.",
                       err=True)
            sys.exit(130)
    for w in caught:
        click.echo(f"Warning: {w.message}", err=True)
    run = manifest["run"]
    kept = f", {run['kept']} kept from an earlier run" if run["kept"] else ""
    speed = f" in {run['seconds']:.2f} s: {run['images_per_second']:.0f} images/s" if run["rendered"] else ""
    click.echo(f"{out_dir}: {run['rendered']} images rendered{speed}{kept}; {manifest['samples']} samples, "
               f"{len(manifest['shards'])} shards, {manifest['bytes'] / 1e6:.1f} MB, {manifest['redraws']} redraws")


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--deep", default=0, show_default=True, help="Also re-render this many classes and compare pixels.")
def verify(out_dir, deep):
    """Check every shard's sha256, sample count, keys, labels and decodability. Exit 0 only if all hold."""
    from .dataset import load_manifest
    from .dataset import verify as run_verify

    problems = run_verify(out_dir, deep=deep, progress=None)
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
    from .dataset import info as run_info

    click.echo(run_info(out_dir))


@main.command()
@click.argument("url")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
def fetch(url, out_dir):
    """Download a rendered dataset from an HTTP(S) directory, verifying every shard's sha256.

    Re-running resumes: verified shards are kept and partial downloads continue.
    """
    from .fetch import fetch as run_fetch

    m = run_fetch(url, out_dir)
    run = m["run"]
    click.echo(f"{out_dir}: {run['downloaded']} shards downloaded ({run['transferred'] / 1e6:.1f} MB), "
               f"{run['kept']} kept; {m['samples']} samples, all sha256 verified")
