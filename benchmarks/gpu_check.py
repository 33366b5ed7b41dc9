"""The GPU check behind ``make gpu-check``: everything a few minutes on one GPU can measure, in one run, written
to one markdown file (``OUT/gpu-check.md``, default ``gpu-check/``).

    python benchmarks/gpu_check.py [--out gpu-check] [--chain-seconds 150] [--steps 60]   # about 7-8 minutes

1. renders the default dataset (``manifests/1p-frac.json``) if ``shards/1p-frac`` lacks it;
2. the model's synthetic ceiling, ViT-Tiny at 224 px, batch 256: eager, ``torch.compile`` (default mode) and
   with CUDA graphs (``mode="reduce-overhead"``), fused AdamW off and on;
3. pre-training through the memory input and through the stream input (its tail on the device, and in the
   workers as before), each through the trainer's own loop (``trainer.engine.train``);
4. fine-tuning ``mnist5k`` at 224 px through memory and through the stream, beside the synthetic ceiling at the
   fine-tuning batch; evaluation throughput through each;
5. one chain through the real commands: ``python -m trainer pretrain --preset paper`` on the default dataset for
   as many samples as ``--chain-seconds`` allow at the measured rate, then ``finetune`` on ``mnist5k`` from it
   and from scratch with one budget; both top-1s and the pre-training loss curve.

Every step is time-boxed and a failed step is reported, not fatal. The host needs torch, timm and numba; the
wheels of what else the project imports are listed in ``benchmarks/gpu-wheels.txt`` (``make gpu-wheels``
downloads them into ``.whl/``; ``benchmarks/gpu-check.sh`` puts them on the path). Without a GPU (``--device
cpu``, or no CUDA) it runs at a tiny size: a check of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 10  # steps before timing starts (cudnn autotuning, compilation, loader start-up)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Report:
    """The markdown file, written again after every step so that a cut run keeps what it measured."""

    def __init__(self, path: Path):
        self.path, self.lines = path, []

    def add(self, *lines: str) -> None:
        self.lines += lines
        print(*lines, sep="\n", flush=True)
        self.path.write_text("\n".join(self.lines) + "\n")

    def step(self, title: str, fn, *args, **kwargs):
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 (a failed step is a finding: say it, go on)
            self.add(f"- **{title} failed** after {time.perf_counter() - start:.0f} s: `{type(e).__name__}: "
                     f"{str(e).splitlines()[0][:300] if str(e) else ''}`", "", "```",
                     *traceback.format_exc().splitlines()[-8:], "```")
            return None
        return result


def trained(training, batches, steps: int, batch: int, d) -> float:
    """Samples/s of the trainer's loop over ``steps`` steps of ``batches`` after ``WARMUP`` steps."""
    from trainer.engine import Steps, train

    records: list[dict] = []
    total = WARMUP * (1 + -(-steps // WARMUP))
    train(training, batches, Steps(total, log_every=WARMUP), d=d, global_batch=batch, log=records.append,
          progress=False)
    return sum(r["samples_per_s"] for r in records[1:]) / len(records[1:])


def drawn(batches, steps: int, batch: int) -> float:
    """Samples/s of an input's batches alone (no model) after ``WARMUP`` batches."""
    for _ in range(WARMUP):
        next(batches)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        next(batches)
    sync()
    return steps * batch / (time.perf_counter() - start)


def model_and_training(config: dict, classes: int, d, *, compile_mode: str | None = None, fused: bool = False,
                       samples: int = 10**9):
    from timm.utils import random_seed

    from trainer.engine import create_training
    from trainer.models import create_model
    from trainer.optim import create_optimizer, create_scheduler, plan_run

    random_seed(0)
    net = create_model(config["model"], num_classes=classes, img_size=config["img_size"],
                       drop_path=config["drop_path"], model_kwargs=config["model_kwargs"]).to(d.device)
    plan = plan_run({**config, "samples": samples, "epochs": None}, 1000, 1)
    training = create_training(net, {**config, "compile": False}, plan, num_classes=classes, d=d)
    if fused:
        training.optimizer = create_optimizer(net, config, plan.lr, fused=True)
        training.scheduler = create_scheduler(training.optimizer, plan)
    if compile_mode is not None:
        training.model = torch.compile(net, mode=None if compile_mode == "default" else compile_mode)
    return training


def synthetic(config: dict, classes: int, batch: int, steps: int, d, **variant) -> float:
    training = model_and_training(config, classes, d, **variant)
    x = torch.randn(batch, 3, config["img_size"], config["img_size"], device=d.device)
    y = torch.randint(0, classes, (batch,), device=d.device)
    return trained(training, itertools.repeat({"image": x, "label": y}), steps, batch, d)


def render(out: Path, tiny: bool) -> str:
    if (out / "manifest.json").exists():
        return f"`{out}` already rendered"
    words = [sys.executable, "-m", "fracbuild", "render", str(ROOT / "manifests" / "1p-frac.json"), "-o", str(out),
             "--no-progress", "--no-preview"] + (["--classes", "20", "--size", "64"] if tiny else [])
    start = time.perf_counter()
    done = subprocess.run(words, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "render failed")
    return f"rendered `{out}` in {time.perf_counter() - start:.1f} s: {done.stdout.strip()}"


def command(words: list[str], timeout: float) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "trainer", *words], capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError((done.stderr.strip().splitlines() or ["failed"])[-1])
    return time.perf_counter() - start, done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu-check", help="where gpu-check.md and the runs go")
    parser.add_argument("--data", default="shards/1p-frac", help="the default dataset (rendered if missing)")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per throughput line (after 10)")
    parser.add_argument("--chain-seconds", type=float, default=240, help="the chain's pre-training length, in s")
    parser.add_argument("--device", default=None, help="cuda (default where there is one) or cpu")
    args = parser.parse_args()
    from trainer.distributed import Dist, usable_cores

    cuda = torch.cuda.is_available() if args.device is None else args.device.startswith("cuda")
    tiny = not cuda
    d = Dist(device=torch.device("cuda" if cuda else "cpu"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out / "gpu-check.md")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("timm", "numba", "PIL", "webdataset", "kornia"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            versions[name] = "missing"
    gpu = (f"{torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB), "
           f"CUDA {torch.version.cuda}") if cuda else "no GPU: a tiny run that checks the script, not a measurement"
    report.add(f"# GPU check, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
               f"- device: {gpu}; {os.cpu_count()} CPU cores ({usable_cores()} usable)",
               "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
               f"- wheels a host without internet needs: {', '.join(wheels())} (`make gpu-wheels`)", "")
    started = time.perf_counter()
    data = Path(args.data) if not tiny else out / "tiny-1p-frac"
    rendered = report.step("render", render, data, tiny)
    if rendered:
        report.add(f"- {rendered}")
    steps = max(WARMUP, args.steps if not tiny else WARMUP)
    figures: dict[str, float] = {}
    measure_synthetic(report, figures, steps, tiny, d)
    measure_inputs(report, figures, data, steps, tiny, d)
    measure_finetuning(report, figures, steps, tiny, d)
    chain(report, figures, data, out, args.chain_seconds if not tiny else 2, tiny)
    verdicts(report, figures)
    report.add("", f"The whole check took {time.perf_counter() - started:.0f} s.")


def wheels() -> list[str]:
    return [line.split("#")[0].strip() for line in (ROOT / "benchmarks" / "gpu-wheels.txt").read_text().splitlines()
            if line.split("#")[0].strip()]


def presets(tiny: bool) -> tuple[dict, dict]:
    from trainer.presets import resolve

    preset = "smoke" if tiny else "paper"
    return resolve("pretrain", preset), resolve("finetune", preset)


def measure_synthetic(report: Report, figures: dict, steps: int, tiny: bool, d) -> None:
    pre, _ = presets(tiny)
    batch = pre["batch_size"]
    report.add("", f"## Synthetic ceiling ({pre['model']}, {pre['img_size']} px, batch {batch}, one batch already on "
               "the device, the trainer's loop)", "", "| variant | samples/s |", "| --- | ---: |")
    variants = {"eager": {}, "eager, fused AdamW": {"fused": True}, "torch.compile": {"compile_mode": "default"},
                "torch.compile, fused AdamW": {"compile_mode": "default", "fused": True},
                "torch.compile + CUDA graphs (reduce-overhead), fused AdamW": {"compile_mode": "reduce-overhead",
                                                                              "fused": True}}
    if tiny:  # compiling takes minutes on a CPU: the script check skips it
        variants = {k: v for k, v in variants.items() if "compile_mode" not in v}
    for name, variant in variants.items():
        rate = report.step(f"synthetic {name}", synthetic, pre, 1000, batch, steps, d, **variant)
        if rate is not None:
            figures[f"synthetic {name}"] = rate
            report.add(f"| {name} | {rate:,.0f} |")


def measure_inputs(report: Report, figures: dict, data: Path, steps: int, tiny: bool, d) -> None:
    from trainer.data.inputs import StreamInput, create_train_input
    from trainer.data.shardlists import resolve_data

    pre, _ = presets(tiny)
    batch = pre["batch_size"]
    report.add("", f"## Pre-training inputs ({data}, batch {batch}, eager; the trainer's loop)", "",
               "| input | batches alone, samples/s | training, samples/s |", "| --- | ---: | ---: |")
    source = report.step("resolve the data", resolve_data, str(data))
    if source is None:
        return
    endless, per_epoch = 10**9, max(1, (source.samples or batch) // batch)
    made = {"memory": lambda: create_train_input(source, {**pre, "input": "memory"}, d),
            "stream, tail on the device": lambda: create_train_input(source, {**pre, "input": "stream"}, d),
            "stream, tail in the workers": lambda: StreamInput(source, pre, d, why="comparison",
                                                               tail_on_device=False)}
    for name, make in made.items():
        def measure(make=make):
            data_input = make()
            alone = drawn(data_input.batches(batch_size=batch, steps=endless, steps_per_epoch=per_epoch), steps,
                          batch)
            training = model_and_training(pre, source.classes or 1000, d)
            fed = trained(training, data_input.batches(batch_size=batch, steps=endless, steps_per_epoch=per_epoch),
                          steps, batch, d)
            return alone, fed, data_input.workers

        result = report.step(f"pre-training through {name}", measure)
        if result is not None:
            alone, fed, workers = result
            figures[f"pretrain {name}"] = fed
            report.add(f"| {name} ({workers} workers) | {alone:,.0f} | {fed:,.0f} |")


def measure_finetuning(report: Report, figures: dict, steps: int, tiny: bool, d) -> None:
    from trainer.data.downstream import load_dataset
    from trainer.data.inputs import create_eval_input, create_train_input
    from trainer.engine import evaluate

    _, ft = presets(tiny)
    batch = ft["batch_size"]
    data = report.step("load mnist5k", load_dataset, "mnist5k")
    if data is None:
        return
    report.add("", f"## Fine-tuning mnist5k at {ft['img_size']} px (batch {batch}, the fine-tuning recipe, eager)",
               "", "| input | training, samples/s | evaluation, images/s |", "| --- | ---: | ---: |")
    rate = report.step("synthetic at the fine-tuning batch", synthetic, ft, 10, batch, steps, d)
    if rate is not None:
        figures["synthetic finetune"] = rate
        report.add(f"| synthetic (one batch on the device) | {rate:,.0f} | |")
    for kind in ("memory", "stream"):
        def measure(kind=kind):
            config = {**ft, "input": kind}
            train_input = create_train_input(data.train, config, d, num_classes=10)
            training = model_and_training(ft, 10, d)
            fed = trained(training, train_input.batches(batch_size=batch, steps=10**9,
                                                        steps_per_epoch=len(data.train) // batch), steps, batch, d)
            test = create_eval_input(data.test, config, d, batch_size=batch, like=train_input)
            evaluate(training.model, test, training.precision, d, 10)  # warm-up
            sync()
            start = time.perf_counter()
            evaluate(training.model, test, training.precision, d, 10)
            sync()
            return fed, len(data.test) / (time.perf_counter() - start), train_input.kind

        result = report.step(f"fine-tuning through {kind}", measure)
        if result is not None:
            fed, evaluated, used = result
            figures[f"finetune {used}"] = fed
            report.add(f"| {used} | {fed:,.0f} | {evaluated:,.0f} |")


def chain(report: Report, figures: dict, data: Path, out: Path, seconds: float, tiny: bool) -> None:
    """The real commands: pre-train for about ``seconds`` at the measured memory rate, fine-tune from it and
    from scratch with one budget."""
    from trainer.presets import GPU_EXPERIMENT

    rate = figures.get("pretrain memory", 1000.0)
    batch = 16 if tiny else 256
    samples = max(batch * 20, int(rate * seconds) // batch * batch)
    preset = "smoke" if tiny else "paper"
    pt = out / "pretrain"
    report.add("", f"## Chain: the real commands ({preset} preset)", "")
    words = ["pretrain", "--data", str(data), "--out", str(pt), "--preset", preset, "--samples", str(samples),
             "--log-every", "20", "--no-progress", "--force"]
    result = report.step("chain pre-training", command, words, timeout=seconds * 3 + 180)
    if result is None:
        return
    wall, said = result
    metrics = [json.loads(line) for line in (pt / "metrics.jsonl").read_text().splitlines()]
    config = json.loads((pt / "config.json").read_text())
    report.add(f"- `python -m trainer {' '.join(words)}`: {wall:.0f} s; {said}",
               f"- input {config['input_used']} ({config['input_why']}), {config['precision']}; chance is "
               f"ln {config['num_classes']} = {__import__('math').log(config['num_classes']):.3f}", "",
               "| step | samples | loss | samples/s |", "| ---: | ---: | ---: | ---: |",
               *(f"| {m['step']} | {m['step'] * config['batch_size']:,} | {m['loss']:.3f} | {m['samples_per_s']:,.0f} |"
                 for m in metrics[:: max(1, len(metrics) // 10)]), "", "![pre-training](pretrain/curves.png)", "")
    budget = {**GPU_EXPERIMENT["finetune"], "epochs": 1 if tiny else 10}
    flags = [w for k, v in budget.items()
             for w in ["--" + k.replace("_", "-"), *map(str, v if isinstance(v, (list, tuple)) else [v])]]
    report.add("| fine-tuning mnist5k from | best top-1 (%) | last top-1 (%) | seconds |",
               "| --- | ---: | ---: | ---: |")
    for name, init in (("the chain's pre-training", str(pt / "checkpoint.pt")), ("scratch", "scratch")):
        where = out / f"finetune-{'scratch' if init == 'scratch' else 'pretrained'}"
        words = ["finetune", "--init", init, "--dataset", "mnist5k", "--out", str(where), "--preset", preset,
                 *flags, "--no-progress", "--force"]
        result = report.step(f"fine-tuning from {name}", command, words, timeout=600)
        if result is not None:
            results = json.loads((where / "results.json").read_text())
            figures[f"top1 {name}"] = results["top1"]
            report.add(f"| {name} | {results['top1']:.2f} | {results['last']['top1']:.2f} | {result[0]:.0f} |")
    report.add("", "Fine-tuning budget (`presets.GPU_EXPERIMENT`): `" + " ".join(flags) + "`")


def verdicts(report: Report, figures: dict) -> None:
    ceiling = figures.get("synthetic eager")
    report.add("", "## Targets", "")
    if ceiling and "pretrain memory" in figures:
        share = figures["pretrain memory"] / ceiling
        report.add(f"- pre-training through memory: {share:.0%} of the eager synthetic ceiling (target >= 90%)")
    if "synthetic finetune" in figures and "finetune memory" in figures:
        share = figures["finetune memory"] / figures["synthetic finetune"]
        report.add(f"- fine-tuning through memory: {share:.0%} of the ceiling at its batch (target >= 90%)")
    device, workers = figures.get("pretrain stream, tail on the device"), figures.get("pretrain stream, tail in the "
                                                                                      "workers")
    if device and workers:
        report.add(f"- the stream with its tail on the device: {device / workers:.2f}x the tail in the workers")


if __name__ == "__main__":
    main()
