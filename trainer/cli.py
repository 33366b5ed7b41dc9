"""``python -m trainer``: a thin click layer over ``trainer.pretrain``, ``finetune``, ``probe``, ``experiment``.

The options of each command are made from its library function's keyword arguments (names,
defaults) and ``trainer.settings`` (types, choices, help), so the command line and the functions agree.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

import click

from .data.downstream import SPECS
from .errors import TrainerError
from .experiments import diagnose as diagnose_run
from .experiments import experiment as experiment_run
from .experiments.reproduce import SIZES as TABLE_SIZES
from .finetuning import finetune as finetune_run
from .finetuning import probe as probe_run
from .presets import PRESET_NAMES
from .pretraining import pretrain as pretrain_run
from .runs import no_debris
from .settings import BY_NAME, KV, PAIR, RENAMED

# Options that are not run settings: (type or "flag", help).
EXTRA = {
    "preset": (click.Choice(PRESET_NAMES), "Preset the other settings start from (auto: paper with a GPU, else cpu)."),
    "resume": ("flag", "Continue the run in OUT from its checkpoint."),
    "force": ("flag", "Replace a run already in OUT."),
    "device": (str, "Device, e.g. cpu, cuda, cuda:1 (default: this rank's GPU if any, else cpu)."),
    "progress": (bool, "Show a progress bar (default: on a terminal)."),
    "init": (str, "A pre-training checkpoint, or 'scratch' for random weights."),
    "dataset": (str, f"One of {SPECS}; options after '?' (docs/training.md: the --dataset table)."),
    "blocks": (int, "Frozen transformer blocks K; the classifier reads block K's output."),
    "report": (str, "Where REPORT.md and the chart go."),
}


# The experiment's arguments: (type, help); their defaults are experiment()'s.
EXPERIMENT = {
    "report": (click.Path(file_okay=False), "Where the report and charts go."),
    "recipe": (str, "fracbuild recipe to render."),
    "data_dir": (str, "Where the rendered datasets go."),
    "classes": (int, "Perturbation classes L (default: cpu 100, gpu the recipe's)."),
    "image_size": (int, "Rendered image size in px (default: cpu 32, the size its model sees; gpu the recipe's)."),
    "pretrain_samples": (int, "Pre-training length in samples (default: the size's)."),
    "collapse": (bool, "Also pre-train on Δ = 0.001."),
    "randaugment": (bool, "Also pre-train with the recipe's RandAugment added to the preset (default: off)."),
    "shots": (int, "mnist5k few-shot training images per class (default 10)."),
    "digits_epochs": (float, "Fine-tuning epochs on digits (default: cpu 10, gpu 30)."),
    "mnist_epochs": (float, "Fine-tuning epochs on mnist5k (cpu: 10-shot, default 100; gpu: full, default 10; "
                            "10-shot 20x)."),
    "cifar_epochs": (float, "Fine-tuning epochs on CIFAR (gpu only; default 1)."),
    "probe_shots": (int, "mnist5k training images per class for probes."),
    "probe_epochs": (int, "Probe epochs."),
    "preset": (click.Choice(PRESET_NAMES[1:]),
               "Preset of every run instead of the size's (smoke: a quick check of the whole chain)."),
    "seed": (int, "First seed: pre-training seeds are SEED.., fine-tuning and probe seeds SEED.. too."),
    "seeds": (int, "Pre-training seeds per variant (default: cpu 3, gpu 3; with --diagnose 1)."),
    "finetune_seeds": (int, "Fine-tuning (and probe) seeds per body and for scratch (default 3)."),
    "progress": (bool, "Progress bars (default: on a terminal)."),
}


def _kv(ctx, param, values: tuple[str, ...]) -> dict[str, Any] | None:
    """``KEY=VALUE`` pairs as a dict; values are read as JSON where they parse (numbers, true/false)."""
    if not values:
        return None
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _setting_option(name: str) -> Callable:
    setting = BY_NAME[name]
    flag, text = setting.flag, setting.help
    if setting.type is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", default=None, help=text)
    if setting.type == KV:
        return click.option(flag, multiple=True, callback=_kv, metavar="KEY=VALUE", help=text)
    return click.option(flag, type=_click_type(setting), default=None, help=text)


def _click_type(setting) -> Any:
    if setting.type == PAIR:
        return (float, float)
    return click.Choice(setting.choices) if setting.choices else setting.type


def _renamed(old: str, new: str) -> Callable:
    """A hidden option under a setting's old name: taken, with a one-line warning, as the new one."""

    def take(ctx, param, value):
        if value is not None:
            click.echo(f"Warning: {param.opts[0]} is deprecated; use {BY_NAME[new].flag}", err=True)
        return value

    return click.option("--" + old.replace("_", "-"), type=_click_type(BY_NAME[new]), default=None, hidden=True,
                        callback=take)


def _click_option(name: str, default: Any, own: Mapping[str, tuple[Any, str]]) -> Callable:
    if name in BY_NAME and name not in own:
        return _setting_option(name)
    flag = "--" + name.replace("_", "-")
    kind, text = own[name] if name in own else EXTRA[name]
    if kind == "flag":
        return click.option(flag, is_flag=True, default=default, help=text)
    if kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", default=default, show_default=default is not None, help=text)
    if default is inspect.Parameter.empty:
        return click.option(flag, type=kind, required=True, help=text)
    return click.option(flag, type=kind, default=default, show_default=default is not None, help=text)


def options_of(func: Callable, *, skip: tuple[str, ...] = (), own: Mapping[str, tuple[Any, str]] = {}) -> Callable:
    """Decorate a click command with one option per keyword-only argument of ``func`` (and a hidden one per
    old name of a setting it takes), its default the argument's. ``own``: the (type or "flag", help) of
    arguments that are not run settings, or that mean something else here than the setting of that name."""
    params = [p for p in inspect.signature(func).parameters.values()
              if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in skip]
    names = {p.name for p in params}

    renamed = {old: new for old, new in RENAMED.items() if new in names}

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def take_old_names(*args, **kwargs):
            for old, new in renamed.items():
                value = kwargs.pop(old)
                if kwargs.get(new) is None:
                    kwargs[new] = value
            return command(*args, **kwargs)

        for p in reversed(params):
            take_old_names = _click_option(p.name, p.default, own)(take_old_names)
        for old, new in renamed.items():
            take_old_names = _renamed(old, new)(take_old_names)
        return take_old_names

    return decorate


class _Group(click.Group):
    """Turns every user-caused error, usage errors included, into one line on stderr."""

    def main(self, args=None, prog_name=None, **extra):
        extra.pop("standalone_mode", None)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.ClickException as e:
            click.echo(f"Error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except (click.Abort, KeyboardInterrupt):
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TrainerError as e:
            raise click.ClickException(str(e)) from None
        except RuntimeError as e:  # torch's OutOfMemoryError, where a run has loaded torch (not click's Exit)
            torch = sys.modules.get("torch")
            if torch is not None and isinstance(e, torch.OutOfMemoryError):
                raise click.ClickException("out of memory: lower --batch-size or --img-size") from None
            raise
        except OSError as e:  # a full disk or a vanished directory, met mid-way
            where = f"{e.filename}: " if e.filename else ""
            raise click.ClickException(f"{where}{e.strerror or e}") from None


def _echo_main(text: str) -> None:
    """Print on rank 0 only."""
    import os

    if os.environ.get("RANK", "0") == "0":
        click.echo(text)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="fracbuild")
def main() -> None:
    """Pre-train on rendered shards, fine-tune and probe on downstream data."""


@main.command()
@click.option("--data", required=True, help="Dataset directory, shard pattern (local or http) or dataset URL.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@options_of(pretrain_run)
def pretrain(data, out, **kwargs):
    """Pre-train a timm model on rendered shards (the paper's LPCE)."""
    with no_debris(out):
        r = pretrain_run(data, out, **kwargs)
    if r["loss"] is None:
        _echo_main(f"{out}: already complete at step {r['steps']}; {r['checkpoint']}")
        return
    _echo_main(f"{out}: {r['steps']} steps, final loss {r['loss']:.4f}, {r['samples_per_s']:.1f} samples/s; "
               f"{r['checkpoint']}" + (f"; {r['corrupt_shards']} corrupt shard(s), {r['skipped_samples']} "
                                       "sample(s) skipped" if r["corrupt_shards"] or r["skipped_samples"] else ""))


def _echo_results(out: str, r: dict[str, Any]) -> None:
    top5 = f", top-5 {r['top5']:.2f}" if "top5" in r else ""
    _echo_main(f"{out}: best top-1 {r['top1']:.2f}% (epoch {r['best']['epoch']}){top5}; last top-1 "
               f"{r['last']['top1']:.2f}% (epoch {r['last']['epoch']}) on {r['dataset']['spec']} "
               f"({r['dataset']['train']} train / {r['dataset']['test']} test images)")


def _downstream(name: str, func: Callable, doc: str) -> None:
    """``finetune`` and ``probe``: the same command shape over their library functions."""

    def command(init, dataset, out, **kwargs):
        with no_debris(out):
            results = func(init, dataset, out, **kwargs)
        _echo_results(out, results)

    command.__doc__ = doc
    command = options_of(func)(command)
    command = click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")(command)
    command = click.option("--dataset", required=True, help=EXTRA["dataset"][1])(command)
    command = click.option("--init", required=True, help=EXTRA["init"][1])(command)
    main.command(name)(command)


_downstream("finetune", finetune_run, "Fine-tune a pre-trained checkpoint (or scratch) on a downstream dataset.")
_downstream("probe", probe_run, "Linear probe on the frozen patch embedding and first K blocks (the paper's Figure 3).")


@main.command()
@click.option("--table", "table", help="A paper table's plan instead (2-9, 11-14, fig3): its rows and sets at --size "
              "(docs/training.md: paper row -> command).")
@click.option("--rows", help="With --table: only these rows (their run-name parts, comma-separated) and scratch.")
@click.option("--dry-run", is_flag=True, help="With --table: print the commands and the estimated hours; run nothing.")
@click.option("--size", "size", default="auto", show_default=True, type=click.Choice(["auto", *TABLE_SIZES]),
              help="cpu: about two hours on 2 cores; gpu: the paper's recipe, one GPU (auto: gpu where there is one); "
                   "paper (with --table): the paper's schedules, for a cluster.")
@click.option("--out", type=click.Path(file_okay=False), help="Where the runs go (default: runs/experiment[-gpu]).")
@click.option("--probe-blocks", help="Probe depths K, comma-separated (default: cpu 1,3,6; gpu 1..12).")
@options_of(experiment_run, skip=("size", "probe_blocks"), own=EXPERIMENT)
@click.option("--diagnose", is_flag=True,
              help="Instead: the cpu diagnosis (pre-training lengths, fine-tuning budget, what the body holds), "
                   "its figures written to diagnosis-runs.md.")
@click.option("--lengths", default=",".join(map(str, inspect.signature(diagnose_run).parameters["lengths"].default)),
              show_default=True,
              help="With --diagnose: pre-training lengths in samples, comma-separated.")
def experiment(table, rows, dry_run, size, out, probe_blocks, diagnose, lengths, **kwargs):
    """The paper's Table 2: pre-train on one fractal, fine-tune and probe vs scratch (at cpu or gpu size);
    with --table, any paper table's plan."""
    from .presets import preset_name

    if table is not None:
        _table(table, rows, dry_run, size, out, probe_blocks, diagnose, kwargs)
        return
    if dry_run or rows or size == "paper":
        raise click.UsageError(f"{'--dry-run' if dry_run else '--rows' if rows else '--size paper'} needs --table")
    if diagnose:
        try:
            samples = tuple(int(n) for n in lengths.split(","))
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers, got {lengths!r}") from None
        keep = ("report", "recipe", "data_dir", "seed", "progress")
        given = {k: kwargs[k] for k in ("preset", "seeds", "finetune_seeds") if kwargs[k] is not None}
        r = diagnose_run(*[out] if out else [], lengths=samples, **{k: kwargs[k] for k in keep}, **given)
        click.echo(r["report"])
        return
    if size == "auto":
        size = "gpu" if preset_name("auto") == "paper" else "cpu"
    blocks = None
    if probe_blocks:
        try:
            blocks = tuple(int(k) for k in probe_blocks.split(","))
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers, got {probe_blocks!r}") from None
    out = out or ("runs/experiment-gpu" if size == "gpu" else "runs/experiment")
    r = experiment_run(out, size=size, probe_blocks=blocks, **kwargs)
    click.echo(f"{r['report']}, {r['chart']}")


def _table(table, rows, dry_run, size, out, probe_blocks, diagnose, kwargs) -> None:
    """``experiment --table``: the options a table plan takes; the Table 2 grid's own are refused."""
    from .experiments.reproduce import run_table
    from .presets import preset_name

    own = {"--probe-blocks": probe_blocks, "--diagnose": diagnose or None, "--randaugment": kwargs["randaugment"],
           "--cifar-epochs": kwargs["cifar_epochs"], "--no-collapse": None if kwargs["collapse"] else True}
    given = [flag for flag, value in own.items() if value is not None]
    if given:
        raise click.UsageError(f"{given[0]} is not an option of --table (the table's plan sets it)")
    if size == "auto":
        size = "gpu" if preset_name("auto") == "paper" else "cpu"
    keep = ("preset", "seed", "seeds", "finetune_seeds", "pretrain_samples", "image_size", "classes", "shots",
            "digits_epochs", "mnist_epochs")
    r = run_table(table, size, rows=tuple(rows.split(",")) if rows else None, out=out, report=kwargs["report"],
                  data_dir=kwargs["data_dir"], dry=dry_run,
                  progress=kwargs["progress"], **{k: kwargs[k] for k in keep})
    click.echo(r["text"] if dry_run else r["report"])


@main.command("pretrain-default")
@click.option("--recipe", default="manifests/1p-frac.json", show_default=True, help="fracbuild recipe to render.")
@click.option("--data", default="shards/1p-frac", show_default=True,
              help="Where the dataset is rendered (without a GPU: DATA-32px, at the cpu preset's size).")
@click.option("--out", default="runs/pretrain", show_default=True, type=click.Path(file_okay=False),
              help="Run directory; a run already there is resumed.")
def pretrain_default(recipe, data, out):
    """What `make pretrain` runs: the paper preset on the default dataset with GPUs (under trainer.launch on
    several), else the cpu preset on it rendered at the cpu model's size; each dataset rendered once."""
    from .default_run import main as run_default

    run_default(recipe, data, out)


@main.command("inspect")
@click.argument("inits", nargs=-1, required=True)
@click.option("--dataset", default="digits", show_default=True, help="Downstream images to measure features on.")
@click.option("--images", default=256, show_default=True, help="How many of its test images.")
@click.option("--preset", default="cpu", show_default=True, type=click.Choice(PRESET_NAMES[1:]),
              help="Fine-tuning preset whose image size the models are built at.")
@click.option("--img-size", type=int, help="Image size (default: the preset's).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write every figure to this file.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also draw the per-block figure to this PNG.")
def inspect_command(inits, dataset, images, preset, img_size, json_out, plot):
    """What a body holds: weight norms, LayerNorm gains, attention entropy and feature rank per block.

    INITS: checkpoints, 'scratch', or 'init:CHECKPOINT' (the weights that pre-training run started from).
    """
    from . import inspection

    result = inspection.inspect(list(inits), dataset=dataset, images=images, preset=preset, img_size=img_size)
    for name, m in result["models"].items():
        if "keys" in m:
            k = m["keys"]
            click.echo(f"{name}: {len(k['loaded'])} keys loaded unchanged, {len(k['resampled'])} resampled "
                       f"({', '.join(k['resampled']) or '-'}), fresh: {', '.join(k['fresh']) or '-'}; "
                       f"dropped: {', '.join(k['dropped']) or '-'}")
    click.echo(inspection.markdown_table(result))
    if json_out:
        from .runs import write_json

        write_json(json_out, result)
    if plot:
        inspection.plot(result, plot)
