"""Does the input keep up with a GPU? ViT-Tiny at 224 px, the paper's recipe, on one GPU.

    python benchmarks/gpu_loader.py [--data shards/1p-frac] [--seconds 60] [--batch 256] [--workers N] [--compile]

Timings, each ``--seconds`` long after a warm-up, measured in one run:
  synthetic     training steps on a batch already on the GPU: the model's ceiling
  memory-aug    the memory path's batch preparation alone (crop + flips, RandAugment, erasing), no model
  memory        training steps fed by the memory path, Mixup/CutMix and soft-target CE included
  loader        the stream path's loader alone (decode, augmentation, batching), no model
  real          training steps fed by the stream loader
The target is ``memory`` at >= 90 % of ``synthetic`` (same compile setting). If ``real`` is well below
``synthetic`` while ``loader`` is below it too, the CPU side is the bottleneck.

The stream lines need webdataset (and braceexpand); without them they are skipped with a note, and
the memory lines run on the shards if they can be read, else on random images of the default
dataset's size (1000 images of 512 px: augmentation and training cost do not depend on the pixels).
The memory path needs kornia. On a GPU host whose Python lacks these, bring them as wheels
(pure Python except kornia-rs):

    pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \\
        -d wheels webdataset==1.0.2 braceexpand==0.1.7 kornia==0.9.0 kornia-rs==0.2.0
    # there:
    pip install --no-index --no-deps --target /tmp/site wheels/*.whl && export PYTHONPATH=$PWD:/tmp/site
    python -m fracbuild render manifests/1p-frac.json -o shards/1p-frac   # about 10 s on 16 cores
    python benchmarks/gpu_loader.py --seconds 30 && python benchmarks/gpu_loader.py --seconds 30 --compile
    python -m trainer pretrain --data shards/1p-frac --out /tmp/pt-memory --preset paper --samples 512000 \\
        --input memory --log-every 100 --no-progress      # then samples_per_s in metrics.jsonl
    python -m trainer pretrain --data shards/1p-frac --out /tmp/pt-stream --preset paper --samples 256000 \\
        --input stream --log-every 100 --no-progress

Renders nothing itself. ``--device cpu`` only checks the script, not the speed.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from trainer.data import memory
from trainer.engine import Precision, create_criterion, create_optimizer, train_step
from trainer.models import create_model
from trainer.presets import resolve


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(step, seconds: float, batch: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        step()
    sync()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    sync()
    return n * batch / (time.perf_counter() - start)


def held_data(data: str, img_size: int, device: torch.device) -> tuple[memory.MemoryData, str]:
    """The dataset decoded onto ``device``, or random images of the default dataset's size if it cannot be read."""
    try:
        from trainer.data.shardlists import resolve_data

        return memory.decode_source(resolve_data(data), img_size=img_size, device=device), f"{data}, decoded"
    except Exception as e:  # noqa: BLE001 (webdataset missing, no dataset rendered: fall back, say why)
        why = f"{type(e).__name__}: {e}"
    side = memory.hold_size(512, 512, img_size)[0]
    g = torch.Generator(device).manual_seed(0)
    images = (torch.rand(1000, 1, side, side, generator=g, device=device) < 0.1).to(torch.uint8) * 127
    labels = torch.arange(1000, device=device)
    return memory.MemoryData(images, labels), f"random images, 1000 x {side} px ({why[:120]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="shards/1p-frac")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to check the script itself")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this benchmark measures a GPU against its input")
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    config = resolve("pretrain", "paper")
    held, origin = held_data(args.data, config["img_size"], device)
    classes = int(held.labels.max()) + 1
    model = create_model(config["model"], num_classes=classes, img_size=224, drop_path=0.1).to(device)
    net = torch.compile(model) if args.compile else model
    optimizer = create_optimizer(model, config, 5e-4)
    mixup, criterion = create_criterion(config, classes)
    precision = Precision(device, None)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (script check only)"
    print(f"{name}, torch {torch.__version__}, {precision.name}, batch {args.batch}, compile {args.compile}, "
          f"{os.cpu_count()} CPU cores; memory path on {origin}")

    x = torch.randn(args.batch, 3, 224, 224, device=device)
    y = torch.randint(0, classes, (args.batch,), device=device)
    xs, ys = mixup(x, y)
    synthetic = timed(lambda: train_step(net, xs, ys, criterion, optimizer, precision, None), args.seconds, args.batch)
    print(f"synthetic   {synthetic:,.0f} samples/s (model ceiling)")

    def fed(batches):
        def step():
            b = next(batches)
            images, labels = mixup(b["image"].to(device, non_blocking=True), b["label"].to(device, non_blocking=True))
            train_step(net, images, labels, criterion, optimizer, precision, None)

        return step

    held_batches = iter(memory.create_memory_loader(held, config, batch_size=args.batch, steps=10**9))
    alone = timed(lambda: next(held_batches), args.seconds, args.batch)
    print(f"memory-aug  {alone:,.0f} samples/s (crop + flips, RandAugment, erasing on the device, no model)")
    real = timed(fed(held_batches), args.seconds, args.batch)
    print(f"memory      {real:,.0f} samples/s = {real / synthetic:.0%} of synthetic (target >= 90%)")

    try:
        from trainer.data.shardlists import resolve_data
        from trainer.data.stream import create_loader
        from trainer.data.transforms import create_train_transform

        source = resolve_data(args.data)
    except Exception as e:  # noqa: BLE001
        print(f"loader/real skipped: the stream path cannot read {args.data} here ({type(e).__name__}: {e})")
        return
    batches = iter(create_loader(source, transform=create_train_transform(img_size=224), batch_size=args.batch,
                                 steps=10**6, workers=args.workers, pin_memory=device.type == "cuda"))
    alone = timed(lambda: next(batches), args.seconds, args.batch)
    print(f"loader      {alone:,.0f} samples/s ({args.workers} workers: decode + augmentation + batching, no model)")
    real = timed(fed(batches), args.seconds, args.batch)
    verdict = "keeps up" if real >= 0.9 * synthetic else "is the bottleneck"
    print(f"real        {real:,.0f} samples/s = {real / synthetic:.0%} of synthetic: the stream loader {verdict}")


if __name__ == "__main__":
    main()
