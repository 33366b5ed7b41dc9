"""trainer's figures: the augmentation pipeline per core against timm's folder loader, training samples/s of
the smoke and cpu presets, the two inputs side by side for pre-training and fine-tuning, and the stream's
worker time with its tail (normalisation, random erasing) in the workers and on the device."""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
import time
from pathlib import Path

from common import RECIPE

SECTIONS = {}


def section(fn):
    """Register a section; it says so and returns if the training extras are not installed."""

    def run(args: argparse.Namespace) -> None:
        try:
            import timm  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            print(f"{fn.__name__:7s} skipped: needs the training extras (make setup-train)")
            return
        fn(args)

    SECTIONS[fn.__name__] = run
    return fn


def _dataset(tmp: str, classes: int = 1000) -> Path:
    """The default recipe (512 px, 100k points) with ``classes`` classes, rendered into ``tmp``."""
    from fracbuild.rendering import render

    out = Path(tmp) / "1p-frac"
    render(RECIPE, out, classes=classes, progress=False, preview=False)
    return out


def _extract(data: Path, folder: Path) -> int:
    """The shards' PNGs as an ImageFolder tree (one sub-folder per class)."""
    n = 0
    for shard in sorted(data.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: m for m in tar}
            for name, m in members.items():
                if name.endswith(".png"):
                    key = name.split(".")[0]
                    label = int(tar.extractfile(members[key + ".cls"]).read())
                    (folder / f"{label:05d}").mkdir(parents=True, exist_ok=True)
                    (folder / f"{label:05d}" / name).write_bytes(tar.extractfile(m).read())
                    n += 1
    return n


def _rate(batches, samples: int, warmup: int = 2) -> float:
    """Samples/s over ``samples`` samples of an iterator of batches, after ``warmup`` batches."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    seen, start = 0, time.perf_counter()
    while seen < samples:
        batch = next(it)
        seen += len(batch["label"] if isinstance(batch, dict) else batch[1])
    return seen / (time.perf_counter() - start)


@section
def loader(args: argparse.Namespace) -> None:
    """The paper's augmentation at 224 px, one process, one thread: trainer's shard pipeline against
    timm's ImageDataset (folder) with the same transform over the same PNGs."""
    import torch
    from timm.data import ImageDataset, create_transform
    from torch.utils.data import DataLoader

    from trainer.data.shardlists import resolve_data
    from trainer.data.stream import create_pipeline
    from trainer.data.transforms import ImageTransform, create_train_transform, patch_posterize

    torch.set_num_threads(1)
    recipe = dict(input_size=224, is_training=True, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, vflip=0.5,
                  auto_augment="rand-m9-mstd0.5-inc1", interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3,
                  re_prob=0.5, re_mode="pixel", re_count=1)
    n = LOADER_SAMPLES
    with tempfile.TemporaryDirectory() as tmp:
        data = _dataset(tmp)
        count = _extract(data, Path(tmp) / "folder")
        timm_tf = create_transform(**recipe)
        patch_posterize(timm_tf)  # else RandAugment's 0-bit posterize raises under Pillow 13 now and then
        folder = ImageDataset(str(Path(tmp) / "folder"), transform=timm_tf)
        timm_loader = DataLoader(folder, batch_size=32, shuffle=True, num_workers=0)
        ours = create_train_transform(img_size=224)
        urls = resolve_data(str(data)).urls

        def pipeline(transform):
            return create_pipeline(urls, transform=transform, batch_size=32, shuffle_buffer=1000)

        rates = {}
        for _ in range(LOADER_ROUNDS):  # interleaved rounds: the machine is shared, load drifts
            rates.setdefault("timm", []).append(_rate(timm_loader, n))
            rates.setdefault("ours", []).append(_rate(pipeline(ours), n))
            rates.setdefault("ours_rgb", []).append(_rate(pipeline(ImageTransform(ours.rgb, None)), n))
        best = {k: max(v) for k, v in rates.items()}
        print(f"loader  paper augmentation at 224 px from {count} PNGs of 512 px, 1 process, 1 thread, best of "
              f"{LOADER_ROUNDS} x {n} samples: trainer shards {best['ours']:.1f} samples/s per core, timm "
              f"ImageDataset (folder, same transform) {best['timm']:.1f} -> {best['ours'] / best['timm']:.2f}x "
              f"(target >= 1.0x); trainer with the RGB route {best['ours_rgb']:.1f} "
              f"({best['ours_rgb'] / best['timm']:.2f}x: the shards alone)")


@section
def train(args: argparse.Namespace) -> None:
    """Training samples/s of the smoke and cpu presets on the default dataset (L = 1000, 512 px)."""
    import trainer

    with tempfile.TemporaryDirectory() as tmp:
        data = _dataset(tmp)
        for preset, samples in (("smoke", 800), ("cpu", CPU_SAMPLES)):
            out = Path(tmp) / preset
            start = time.perf_counter()
            trainer.pretrain(str(data), out, preset=preset, samples=samples, progress=False)
            wall = time.perf_counter() - start
            metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            config = json.loads((out / "config.json").read_text())
            steady = metrics[1:] or metrics  # the first interval holds start-up and the shuffle buffer's fill
            rate = sum(m["samples_per_s"] for m in steady) / len(steady)
            wait = sum(m["data_wait"] for m in steady) / len(steady)
            print(f"train   {preset}: {config['model']} {config['model_kwargs']} at {config['img_size']} px, batch "
                  f"{config['batch_size']}, {config['workers_per_process']} loader worker(s), {config['threads']} "
                  f"thread(s): {rate:.1f} samples/s ({wait:.0%} of the time waiting for data); {samples} samples in "
                  f"{wall:.1f} s wall including start-up; the preset's full {trainer_preset_samples(preset)} samples "
                  f"take about {trainer_preset_samples(preset) / rate:.0f} s")


@section
def paths(args: argparse.Namespace) -> None:
    """The two inputs side by side on the default dataset: the paper's augmentation alone at 224 px
    (one thread), and ``cpu``-preset training through each (interleaved rounds, best kept)."""
    import torch

    import trainer
    from trainer.data.inputs import create_train_input
    from trainer.data.shardlists import resolve_data
    from trainer.distributed import Dist
    from trainer.presets import resolve

    with tempfile.TemporaryDirectory() as tmp:
        data = _dataset(tmp)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        start = time.perf_counter()
        held = create_train_input(resolve_data(str(data)), resolve("pretrain", "paper", input="memory"), Dist())
        decode = time.perf_counter() - start
        rate = _rate(held.batches(batch_size=32, steps=10**6), LOADER_SAMPLES)
        torch.set_num_threads(threads)
        kept = held.describe()["held_in_memory"]
        print(f"paths   memory input: {kept['samples']} images decoded once in {decode:.1f} s, held at "
              f"{kept['width']} px ({kept['bytes'] / 2**20:.0f} MiB); the paper's augmentation at 224 px "
              f"on those batches, 1 thread: {rate:.1f} samples/s (compare 'loader' above, per core)")
        rates: dict[str, list[float]] = {}
        for _ in range(PATH_ROUNDS):  # interleaved: the machine is shared, load drifts
            for path in ("stream", "memory"):
                out = Path(tmp) / f"cpu-{path}"
                trainer.pretrain(str(data), out, preset="cpu", samples=PATH_SAMPLES, input=path, force=True,
                                 progress=False)
                metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
                steady = metrics[1:] or metrics
                rates.setdefault(path, []).append(sum(m["samples_per_s"] for m in steady) / len(steady))
                config = json.loads((out / "config.json").read_text())
                rates.setdefault(f"{path} plan", [f"{config['workers_per_process']} worker(s), "
                                                  f"{config['threads']} thread(s)"])
        best = {k: max(v) for k, v in rates.items() if "plan" not in k}
        print(f"paths   cpu preset, {PATH_SAMPLES} samples, best of {PATH_ROUNDS}: stream {best['stream']:.1f} "
              f"samples/s ({rates['stream plan'][0]}), memory {best['memory']:.1f} ({rates['memory plan'][0]}) -> "
              f"memory/stream {best['memory'] / best['stream']:.2f}x (target >= 1.0x)")


@section
def finetune(args: argparse.Namespace) -> None:
    """Fine-tuning digits and mnist5k with the cpu preset through each input (interleaved rounds, best kept)."""
    import trainer

    with tempfile.TemporaryDirectory() as tmp:
        rates: dict[tuple[str, str], list[float]] = {}
        for _ in range(PATH_ROUNDS):  # interleaved: the machine is shared, load drifts
            for spec, epochs in (("digits", 2), ("mnist5k", 1)):
                for kind in ("stream", "memory"):
                    out = Path(tmp) / f"{spec}-{kind}"
                    trainer.finetune("scratch", spec, out, preset="cpu", epochs=epochs, input=kind, force=True,
                                     progress=False)
                    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
                    steady = [m for m in metrics if "loss" in m][1:]
                    rates.setdefault((spec, kind), []).append(sum(m["samples_per_s"] for m in steady) / len(steady))
        for spec in ("digits", "mnist5k"):
            stream, memory = max(rates[(spec, "stream")]), max(rates[(spec, "memory")])
            print(f"finetune cpu preset on {spec}, best of {PATH_ROUNDS}: stream {stream:.1f} samples/s, memory "
                  f"{memory:.1f} -> memory/stream {memory / stream:.2f}x (target >= 1.0x)")


@section
def tail(args: argparse.Namespace) -> None:
    """The stream's per-sample work at 224 px from the default dataset's PNGs (the paper's recipe, one thread): in
    the workers with the whole transform, in the workers up to uint8 and on the device for the tail."""
    import random

    import torch

    from trainer.data.shardlists import resolve_data
    from trainer.data.shards import image_and_label, open_image, shard_samples
    from trainer.data.transforms import stack_images, train_tail, train_transform
    from trainer.presets import resolve

    config = resolve("pretrain", "paper")
    with tempfile.TemporaryDirectory() as tmp:
        data = _dataset(tmp, classes=200)
        images = [open_image(image_and_label(s)[0]) for u in resolve_data(str(data)).urls for s in shard_samples(u)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    whole, half, rest = train_transform(config), train_transform(config, use_prefetcher=True), train_tail(
        config, torch.device("cpu"))
    seconds: dict[str, list[float]] = {}
    for _ in range(LOADER_ROUNDS):
        for name, transform in (("whole", whole), ("uint8", half)):
            random.seed(0)
            start = time.perf_counter()
            out = [transform(im) for im in images]
            seconds.setdefault(name, []).append((time.perf_counter() - start) / len(images))
        batches = [stack_images(out[i:i + 32]) for i in range(0, len(out) - 31, 32)]
        start = time.perf_counter()
        for b in batches:
            rest(b)
        seconds.setdefault("tail", []).append((time.perf_counter() - start) / (32 * len(batches)))
    torch.set_num_threads(threads)
    best = {k: min(v) * 1e6 for k, v in seconds.items()}
    print(f"tail    the paper's augmentation at 224 px, {len(images)} images, 1 thread, best of {LOADER_ROUNDS}: "
          f"a worker spends {best['whole']:.0f} us per sample with the whole transform, {best['uint8']:.0f} us up to "
          f"uint8 ({best['uint8'] / best['whole']:.2f}x); the tail then costs {best['tail']:.0f} us per sample on the "
          "device (here the CPU)")


def trainer_preset_samples(preset: str) -> int:
    from trainer.presets import PRETRAIN_PRESETS

    return PRETRAIN_PRESETS[preset]["samples"]


# bench.py's command line has no options for these sections; their sizes are fixed here.
LOADER_SAMPLES = 384  # samples per loader timing
LOADER_ROUNDS = 2  # interleaved rounds of loader timings (the best is kept: the machine is shared)
CPU_SAMPLES = 3200  # samples of the cpu preset's timing (50 steps)
PATH_ROUNDS = 2  # interleaved rounds of the two inputs' cpu-preset timings
PATH_SAMPLES = 1920  # samples of each of those timings (30 steps: the first 20 are start-up)


# The tree before the augmentation, mixing and step took one path on every device: audited beside this one.
AUDIT_BEFORE = "7fb3e7e"


def _audit(tree: Path, *args: str) -> dict:
    """step_audit.py's report of ``tree``'s trainer (its own process: the two trees' modules share names)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "step_audit.py"), *args], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@section
def audit(args: argparse.Namespace) -> None:
    """The step audit (benchmarks/step_audit.py) of the paper's pre-training on the memory input (224 px, batch 256,
    a training step) and of its fine-tuning augmentation (3 channels, batch 768, images held at 32 px: the step
    itself does not fit in this machine's memory), this tree beside the tree before the single-path step. That
    tree took another branch on a CPU than on a GPU (it picked each op's samples with nonzero): its figures here
    are its CPU branch's."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        before.mkdir()
        try:
            archive = subprocess.run(["git", "-C", str(root), "archive", AUDIT_BEFORE, "trainer"], check=True,
                                     capture_output=True).stdout
        except (OSError, subprocess.CalledProcessError):
            archive = None
            print(f"audit   (no git history here: commit {AUDIT_BEFORE} is not audited beside this tree)")
        if archive:
            subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        data = _dataset(tmp, classes=256)
        trees = {"now": root, **({"before": before} if archive else {})}
        runs = {"pretrain step, batch 256": ["pretrain", "--data", str(data), "--batch", "256"],
                "pretrain augmentation, batch 64": ["augment-pretrain", "--batch", "64"],
                "finetune augmentation, batch 768": ["augment-finetune", "--batch", "768", "--channels", "3",
                                                     "--held", "32"]}
        for what, run in runs.items():
            for name, tree in trees.items():
                r = _audit(tree, *run)
                parts = (f" (augmentation {r['augment']}, mixing and loss {r['mixing_loss']}, model and optimizer "
                         f"{r['model_optim']})") if "augment" in r else ""
                print(f"audit   {what}, {name:6s}: {r['ops']} ops{parts}, {r['blocking']} blocking, augmentation "
                      f"writes {r['augment_written_gib']:.2f} GiB")
                if r["blocking_at"]:
                    print(f"        blocking: {r['blocking_at']}")
        print("audit   targets: 0 blocking; augmentation <= 250 ops a batch whatever its size, <= 4 GiB at batch 256")
