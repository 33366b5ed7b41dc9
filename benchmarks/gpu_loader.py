"""Does the input keep up with a GPU? ViT-Tiny at 224 px, the paper's recipe, on one GPU.

    python benchmarks/gpu_loader.py [--data shards/1p-frac] [--steps 200] [--batch 256] [--workers N] [--compile]

Every line trains through the trainer's own loop (``trainer.engine.train``) on batches from one source,
``--steps`` steps (rounded up to tens) after a warm-up of 10, in one run:
  synthetic     one batch already on the GPU, again and again: the model's ceiling
  memory-aug    the memory input's batches alone (crop + flips, RandAugment, erasing on the device), no model
  memory        training fed by the memory input, Mixup/CutMix and soft-target CE included
  loader        the stream input's batches alone (decode, augmentation, batching in CPU workers), no model
  stream        training fed by the stream input
The target is ``memory`` at >= 90 % of ``synthetic`` (same compile setting). If ``stream`` is well below
``synthetic`` while ``loader`` is below it too, the CPU side is the bottleneck.

The stream lines need webdataset (and braceexpand); without them they are skipped with a note, and the
memory lines run on random images of the default dataset's size (1000 images of 512 px: augmentation and
training cost do not depend on the pixels) when the shards cannot be read. The memory input needs kornia.
On a GPU host whose Python lacks these, bring them as wheels (pure Python except kornia-rs):

    pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \\
        -d wheels webdataset==1.0.2 braceexpand==0.1.7 kornia==0.9.0 kornia-rs==0.2.0
    # there:
    pip install --no-index --no-deps --target /tmp/site wheels/*.whl && export PYTHONPATH=$PWD:/tmp/site
    python -m fracbuild render manifests/1p-frac.json -o shards/1p-frac   # about 10 s on 16 cores
    python benchmarks/gpu_loader.py && python benchmarks/gpu_loader.py --compile

Renders nothing itself. ``--device cpu`` only checks the script, not the speed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import torch

from trainer.data.inputs import MemoryInput, create_train_input
from trainer.data.memory import MemoryData, hold_size
from trainer.distributed import Dist
from trainer.engine import Steps, create_training, train
from trainer.models import create_model
from trainer.optim import plan_run
from trainer.presets import resolve

WARMUP = 10  # steps before timing starts (cudnn autotuning, compilation, loader start-up)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def trained(training, batches, steps: int, batch: int, d: Dist) -> float:
    """Samples/s of the trainer's loop over ``steps`` steps of ``batches`` after ``WARMUP`` steps."""
    records: list[dict] = []
    total = WARMUP * (1 + -(-steps // WARMUP))  # the timed steps, rounded up to whole logging intervals
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


def memory_input(data: str, config: dict, d: Dist) -> tuple[MemoryInput, str]:
    """The memory input over ``data``, or over random images of the default dataset's size if it cannot be read."""
    try:
        from trainer.data.shardlists import resolve_data

        return create_train_input(resolve_data(data), {**config, "input": "memory"}, d), f"{data}, decoded"
    except Exception as e:  # noqa: BLE001 (webdataset missing, no dataset rendered: fall back, say why)
        why = f"{type(e).__name__}: {e}"
    side = hold_size(512, 512, config["img_size"])[0]
    g = torch.Generator(d.device).manual_seed(0)
    images = (torch.rand(1000, 1, side, side, generator=g, device=d.device) < 0.1).to(torch.uint8) * 127
    held = MemoryData(images, torch.arange(1000, device=d.device))
    return MemoryInput(held, config, d, why="random images"), f"random images, 1000 x {side} px ({why[:120]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="shards/1p-frac")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per line (after a warm-up of 10)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to check the script itself")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this benchmark measures a GPU against its input")
    d = Dist(device=torch.device(args.device))
    torch.backends.cuda.matmul.allow_tf32 = True
    config = resolve("pretrain", "paper", batch_size=args.batch, compile=args.compile, workers=args.workers)
    held, origin = memory_input(args.data, config, d)
    classes = int(held.held.labels.max()) + 1
    plan = plan_run({**config, "samples": (WARMUP + args.steps) * args.batch}, held.samples, 1)
    model = create_model(config["model"], num_classes=classes, img_size=224, drop_path=0.1).to(d.device)
    training = create_training(model, config, plan, num_classes=classes, d=d)
    name = torch.cuda.get_device_name() if d.device.type == "cuda" else "CPU (script check only)"
    print(f"{name}, torch {torch.__version__}, {training.precision.name}, batch {args.batch}, compile {args.compile}, "
          f"{os.cpu_count()} CPU cores; memory input on {origin}")

    x = torch.randn(args.batch, 3, 224, 224, device=d.device)
    y = torch.randint(0, classes, (args.batch,), device=d.device)
    synthetic = trained(training, itertools.repeat({"image": x, "label": y}), args.steps, args.batch, d)
    print(f"synthetic   {synthetic:,.0f} samples/s (model ceiling)")
    endless = 10**9
    alone = drawn(held.batches(batch_size=args.batch, steps=endless), args.steps, args.batch)
    print(f"memory-aug  {alone:,.0f} samples/s (crop + flips, RandAugment, erasing on the device, no model)")
    fed = trained(training, held.batches(batch_size=args.batch, steps=endless), args.steps, args.batch, d)
    print(f"memory      {fed:,.0f} samples/s = {fed / synthetic:.0%} of synthetic (target >= 90%)")

    try:
        from trainer.data.shardlists import resolve_data

        stream = create_train_input(resolve_data(args.data), {**config, "input": "stream"}, d)
    except Exception as e:  # noqa: BLE001
        print(f"loader/stream skipped: the stream input cannot read {args.data} here ({type(e).__name__}: {e})")
        return
    per_epoch = max(1, stream.samples // args.batch)
    alone = drawn(stream.batches(batch_size=args.batch, steps=endless, steps_per_epoch=per_epoch), args.steps,
                  args.batch)
    print(f"loader      {alone:,.0f} samples/s ({stream.workers} workers: decode + augmentation + batching, no model)")
    fed = trained(training, stream.batches(batch_size=args.batch, steps=endless, steps_per_epoch=per_epoch),
                  args.steps, args.batch, d)
    verdict = "keeps up" if fed >= 0.9 * synthetic else "is the bottleneck"
    print(f"stream      {fed:,.0f} samples/s = {fed / synthetic:.0%} of synthetic: the stream input {verdict}")


if __name__ == "__main__":
    main()
