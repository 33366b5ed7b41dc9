"""The sections of the GPU check (``gpu_check.py`` runs each in a process of its own, up to a deadline).

Each measures through the trainer's own pieces (its presets, ``trainer.models``' resolution of the model,
``trainer.engine``'s training and loop, ``trainer.data.inputs``, the commands; ``gpu_steps`` makes and times them),
so that its figures are those of whatever the trainer does. What fails in a section is reported and the section
goes on with its next figure.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import time
from importlib import metadata
from pathlib import Path

import torch
from common import STOP_S, registry, wheels
from gpu_steps import (
    COMPILE_LEAST_S,
    Check,
    command,
    drawn,
    finetuning,
    preset,
    pretraining,
    sync,
    synthetic_batch,
    timed,
    trainer_steps,
)

from trainer import distributed

ROOT = Path(__file__).resolve().parents[1]
SECTIONS, section = registry()
CLASSES = 1000  # the default dataset's; the synthetic ceiling's head
CEILING_TARGET = 17_000  # samples/s, ViT-Tiny/16 in bf16 on an H100 or H200, compiled


def run(name: str, report, *, out: Path, data: Path, steps: int, device: str, deadline: float) -> bool:
    """Run section ``name``; True when everything in it was measured."""
    d = distributed.setup(device)
    check = Check(report, out, data, steps, d, deadline)
    SECTIONS[name](check)
    return not check.failures


@section
def env(check: Check) -> None:
    d = check.d
    if d.device.type == "cuda":
        props = torch.cuda.get_device_properties(d.device)
        device = (f"{props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability {props.major}.{props.minor}"
                  f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, bf16 "
                  f"{'native' if props.major >= 8 else 'not native'}")
    else:
        device = "CPU (no GPU: the tiny run)"
    check.report.add(f"- device: {device}; {os.cpu_count()} CPU cores ({distributed.usable_cores()} usable)",
                     f"- python {platform.python_version()} on {platform.machine()}, torch {torch.__version__}")
    host = ["timm", "numba", "numpy", "pillow"]
    check.report.add("- the host's: " + ", ".join(f"{name} {version_of(name)}" for name in host), "",
                     "| listed wheel (benchmarks/gpu-wheels.txt) | found | from |", "| --- | --- | --- |")
    missing = []
    for line in wheels():
        name = line.split("==")[0]
        found = version_of(name)
        missing += [name] if found == "missing" else []
        check.report.add(f"| {line} | {found} | {where_from(name)} |")
    if missing:
        raise RuntimeError(f"listed wheels missing on this host: {', '.join(missing)} (make gpu-wheels, carry .whl)")


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


def where_from(dist: str) -> str:
    try:
        path = Path(metadata.distribution(dist).locate_file(""))
    except metadata.PackageNotFoundError:
        return ""
    site = os.environ.get("GPU_CHECK_WHEELS")  # where gpu-check.sh installed the wheels of .whl/
    return ".whl" if site and path.resolve().is_relative_to(Path(site).resolve()) else "the host"


@section
def synthetic(check: Check) -> None:
    config = preset("pretrain", check)
    batch = config["batch_size"]
    check.report.add(f"{config['model']} at {config['img_size']} px, batch {batch}, the paper preset's recipe (mixing, "
                     "loss, optimizer, precision) with one batch held on the device, through `trainer.engine.train`",
                     "", "| variant | precision | samples/s | timed steps |", "| --- | --- | ---: | ---: |")
    for name, compiled in (("eager", False), ("compiled", True)):
        if compiled and check.tiny:  # compiling takes minutes on a CPU
            check.report.add(f"| {name} | | not in the tiny run | |")
            continue
        if not check.part_fits(COMPILE_LEAST_S if compiled else None):
            check.report.add(f"| {name} | | skipped: {check.left():.0f} s left | |")
            continue

        def measure(compiled=compiled):
            training, _ = pretraining({**config, "compile": compiled}, CLASSES, None, check.d)
            batches = itertools.repeat(synthetic_batch(config, CLASSES, batch, check.d))
            return (*timed(check, trainer_steps(training, batches, batch, check.d), batch), training.precision.name)

        result = check.attempt(f"synthetic {name}", measure)
        if result is not None:
            rate, n, precision = result
            check.report.figure(f"synthetic {name}", rate)
            check.report.add(f"| {name} | {precision} | {rate:,.0f} | {n} |")
    figures = check.report.figures()
    best = "compiled" if "synthetic compiled" in figures else "eager"
    if f"synthetic {best}" in figures:
        check.report.add("")
        check.report.target(f"synthetic ceiling ({best}): {figures[f'synthetic {best}']:,.0f} samples/s (target >= "
                            f"{CEILING_TARGET:,} compiled, for ViT-Tiny/16 in bf16 on an H100 or H200)")


@section
def inputs(check: Check) -> None:
    from trainer.data.inputs import StreamInput, create_train_input
    from trainer.data.shardlists import resolve_data

    config = preset("pretrain", check)
    batch = config["batch_size"]
    source = resolve_data(str(check.data))
    classes = source.classes or CLASSES
    check.report.add(f"`{check.data}` ({source.samples} images, {classes} classes), batch {batch}, the paper preset "
                     f"as the trainer sets it (compile {config['compile']}), through `trainer.engine.train`", "",
                     "| input | workers | batches alone, samples/s | training, samples/s | timed steps |",
                     "| --- | ---: | ---: | ---: | ---: |")
    training = check.attempt("the model", lambda: pretraining(config, classes, source.samples, check.d))
    if training is None:
        return
    training, plan = training
    made = {"memory": lambda: create_train_input(source, {**config, "input": "memory"}, check.d,
                                                 num_classes=classes),
            "stream, tail on the device": lambda: create_train_input(source, {**config, "input": "stream"}, check.d,
                                                                     num_classes=classes),
            "stream, tail in the workers": lambda: StreamInput(source, config, check.d, why="comparison",
                                                               num_classes=classes, tail_on_device=False)}
    for name, make in made.items():
        if not check.part_fits():
            check.report.add(f"| {name} | | skipped: {check.left():.0f} s left | | |")
            continue

        def measure(make=make):
            data_input = make()
            distributed.set_threads(data_input.threads)
            batches = data_input.batches(batch_size=batch, steps=10**9, steps_per_epoch=plan.steps_per_epoch)
            training.augment = data_input.augment  # the memory input's batches are augmented in the step
            alone, _ = timed(check, drawn(batches, data_input.augment), batch)
            fed, n = timed(check, trainer_steps(training, batches, batch, check.d), batch)
            return data_input.workers, alone, fed, n

        result = check.attempt(f"pre-training through {name}", measure)
        if result is not None:
            workers, alone, fed, n = result
            check.report.figure(f"pretrain {name}", fed)
            check.report.add(f"| {name} | {workers} | {alone:,.0f} | {fed:,.0f} | {n} |")
    figures = check.report.figures()
    check.report.add("")
    ceiling = next((k for k in ("synthetic compiled", "synthetic eager") if k in figures), None)
    if ceiling and "pretrain memory" in figures:
        check.report.target(f"pre-training through memory: {figures['pretrain memory'] / figures[ceiling]:.0%} of "
                            f"the {ceiling.split()[1]} synthetic ceiling (target >= 90% of the compiled one)")
    device, workers = (figures.get(f"pretrain stream, tail {where}") for where in ("on the device", "in the workers"))
    if device and workers:
        check.report.target(f"the stream with its tail on the device: {device / workers:.2f}x its tail in the "
                            "workers (target > 1)")


@section
def finetune(check: Check) -> None:
    from trainer.data.downstream import load_dataset
    from trainer.data.inputs import create_eval_input, create_train_input
    from trainer.engine import evaluate

    config = preset("finetune", check)
    data = load_dataset("mnist5k")
    made = check.attempt("the model", lambda: finetuning(config, data.classes, len(data.train), check.d))
    if made is None:
        return
    training, plan, config = made
    batch = plan.batch_per_process
    check.report.add(f"{config['model']} at {config['img_size']} px, batch {batch}, the fine-tuning preset as the "
                     f"trainer sets it (compile {config['compile']}); {len(data.train)} training and "
                     f"{len(data.test)} test images", "",
                     "| input | training, samples/s | timed steps | evaluation, images/s |",
                     "| --- | ---: | ---: | ---: |")
    result = check.attempt("synthetic at the fine-tuning batch", lambda: timed(
        check, trainer_steps(training, itertools.repeat(synthetic_batch(config, data.classes, batch, check.d)),
                             batch, check.d), batch))
    if result is not None:
        check.report.figure("synthetic finetune", result[0])
        check.report.add(f"| synthetic (one batch held on the device) | {result[0]:,.0f} | {result[1]} | |")
    for kind in ("memory", "stream"):
        if not check.part_fits():
            check.report.add(f"| {kind} | skipped: {check.left():.0f} s left | | |")
            continue

        def measure(kind=kind):
            settings = {**config, "input": kind}
            train_input = create_train_input(data.train, settings, check.d, num_classes=data.classes)
            distributed.set_threads(train_input.threads)
            batches = train_input.batches(batch_size=batch, steps=10**9, steps_per_epoch=plan.steps_per_epoch)
            training.augment = train_input.augment
            fed, n = timed(check, trainer_steps(training, batches, batch, check.d), batch)
            test = create_eval_input(data.test, settings, check.d, batch_size=batch, like=train_input)
            evaluate(training.model, test, training.precision, check.d, data.classes)  # warm-up
            sync(check.d)
            start = time.perf_counter()
            evaluate(training.model, test, training.precision, check.d, data.classes)
            sync(check.d)
            return train_input.kind, fed, n, len(data.test) / (time.perf_counter() - start)

        result = check.attempt(f"fine-tuning through {kind}", measure)
        if result is not None:
            used, fed, n, evaluated = result
            check.report.figure(f"finetune {used}", fed)
            check.report.add(f"| {used} | {fed:,.0f} | {n} | {evaluated:,.0f} |")
    figures = check.report.figures()
    if "synthetic finetune" in figures and "finetune memory" in figures:
        check.report.add("")
        share = figures["finetune memory"] / figures["synthetic finetune"]
        check.report.target(f"fine-tuning through memory: {share:.0%} of the synthetic ceiling at its batch "
                            "(target >= 90%)")


@section
def chain(check: Check) -> None:
    """The real commands: pre-training in under half of the section's time, for as many samples as half of that
    trains at the rate measured (asked to stop, saving its checkpoint, at its deadline where it runs longer), then
    fine-tuning mnist5k from it and from scratch with one budget, each in half of what is left."""
    from trainer.presets import GPU_EXPERIMENT

    name = "smoke" if check.tiny else "paper"
    config = preset("pretrain", check)
    batch = config["batch_size"]
    figures = check.report.figures()
    rate = next((figures[k] for k in ("pretrain memory", "pretrain stream, tail on the device") if k in figures),
                100.0 if check.tiny else 2000.0)
    until = time.time() + (check.left() - 2 * STOP_S) * 0.45
    # Half the pre-training's share trains (the rest starts the process, decodes the data, compiles); a tiny run is
    # a check of the commands: a few steps.
    samples = batch * (10 if check.tiny else max(20, int(rate * (until - time.time()) * 0.5) // batch))
    pt = check.out / "pretrain"
    check.report.add(f"The {name} preset, {samples:,} samples of pre-training at the {rate:,.0f} samples/s measured",
                     "")
    words = ["pretrain", "--data", str(check.data), "--out", str(pt), "--preset", name, "--samples", str(samples),
             "--log-every", "20", "--no-progress", "--force"]
    ran = check.attempt("chain pre-training", command, words, until)
    if ran is None:
        return
    if not (pt / "checkpoint.pt").is_file():
        check.failures.append("chain pre-training")
        check.report.add(f"- **the pre-training saved no checkpoint** in {ran[0]:.0f} s: {ran[1]}")
        return
    wall, said = ran
    metrics = [json.loads(line) for line in (pt / "metrics.jsonl").read_text().splitlines()]
    run = json.loads((pt / "config.json").read_text())
    check.report.add(f"- `python -m trainer {' '.join(words)}`: {wall:.0f} s; {said}",
                     f"- input {run['input_used']} ({run['input_why']}), {run['precision']}, compile "
                     f"{run.get('compile')}; chance is ln {run['num_classes']} = {math.log(run['num_classes']):.3f}",
                     "", "| step | samples | loss | samples/s |", "| ---: | ---: | ---: | ---: |",
                     *(f"| {m['step']} | {m['step'] * run['batch_size']:,} | {m['loss']:.3f} | "
                       f"{m['samples_per_s']:,.0f} |" for m in metrics[:: max(1, len(metrics) // 10)]),
                     "", "![pre-training](pretrain/curves.png)", "")
    budget = {**GPU_EXPERIMENT["finetune"], "epochs": 0.2 if check.tiny else 2}
    flags = [w for k, v in budget.items()
             for w in ["--" + k.replace("_", "-"), *map(str, v if isinstance(v, (list, tuple)) else [v])]]
    flags.append("--no-compile")  # two epochs would not pay a compilation back
    check.report.add("Fine-tuning budget (`presets.GPU_EXPERIMENT`, shorter, eager): `" + " ".join(flags) + "`", "",
                     "| fine-tuning mnist5k from | best top-1 (%) | last top-1 (%) | seconds |",
                     "| --- | ---: | ---: | ---: |")
    runs = (("the chain's pre-training", str(pt / "checkpoint.pt"), "pretrained"), ("scratch", "scratch", "scratch"))
    for i, (what, init, folder) in enumerate(runs):
        until = time.time() + (check.left() - 2 * STOP_S) / (len(runs) - i)
        where = check.out / f"finetune-{folder}"
        words = ["finetune", "--init", init, "--dataset", "mnist5k", "--out", str(where), "--preset", name, *flags,
                 "--no-progress", "--force"]
        ran = check.attempt(f"fine-tuning from {what}", command, words, until)
        if ran is not None and (where / "results.json").is_file():
            results = json.loads((where / "results.json").read_text())
            check.report.figure(f"top1 {what}", results["top1"])
            check.report.add(f"| {what} | {results['top1']:.2f} | {results['last']['top1']:.2f} | {ran[0]:.0f} |")
        elif ran is not None:
            check.report.add(f"| {what} | stopped at its deadline | | {ran[0]:.0f} |")
