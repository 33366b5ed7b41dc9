"""Does the shard loader keep up with a GPU? ViT-Tiny at 224 px, the paper's recipe, on one GPU.

    python benchmarks/gpu_loader.py [--data shards/1p-frac] [--seconds 60] [--batch 256] [--workers N]

Three timings, each ``--seconds`` long after a warm-up (about 4 minutes in all):
  synthetic  training steps on a batch already on the GPU: the model's ceiling
  loader     the trainer's loader alone (decode, augmentation, batching), no model
  real       training steps fed by the loader, Mixup/CutMix and soft-target CE included
If ``real`` is well below ``synthetic`` while ``loader`` is below ``synthetic`` too, the CPU side is
the bottleneck (add workers, or cores). Needs a CUDA GPU; renders nothing (run ``make run`` first).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from trainer.data import create_loader
from trainer.engine import Precision, create_criterion, create_optimizer, train_step
from trainer.models import create_model
from trainer.presets import resolve
from trainer.sources import resolve_data
from trainer.transforms import create_train_transform


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
        raise SystemExit("no CUDA GPU: this benchmark measures a GPU against its loader")
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    config = resolve("pretrain", "paper")
    source = resolve_data(args.data)
    model = create_model(config["model"], num_classes=source.classes, img_size=224, drop_path=0.1).to(device)
    net = torch.compile(model) if args.compile else model
    optimizer = create_optimizer(model, config, 5e-4)
    mixup, criterion = create_criterion(config, source.classes)
    precision = Precision(device, None)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (script check only)"
    print(f"{name}, {precision.name}, batch {args.batch}, {args.workers} loader workers, "
          f"{os.cpu_count()} CPU cores, data {args.data} ({source.samples} images)")

    x = torch.randn(args.batch, 3, 224, 224, device=device)
    y = torch.randint(0, source.classes, (args.batch,), device=device)
    xs, ys = mixup(x, y)
    synthetic = timed(lambda: train_step(net, xs, ys, criterion, optimizer, precision, None), args.seconds, args.batch)
    print(f"synthetic  {synthetic:,.0f} samples/s (model ceiling)")

    transform = create_train_transform(img_size=224)
    steps = 10**6
    batches = iter(create_loader(source, transform=transform, batch_size=args.batch, steps=steps,
                                 workers=args.workers, pin_memory=device.type == "cuda"))
    alone = timed(lambda: next(batches), args.seconds, args.batch)
    print(f"loader     {alone:,.0f} samples/s (decode + augmentation + batching, no model)")

    def real_step():
        b = next(batches)
        images, labels = mixup(b["image"].to(device, non_blocking=True), b["label"].to(device, non_blocking=True))
        train_step(net, images, labels, criterion, optimizer, precision, None)

    real = timed(real_step, args.seconds, args.batch)
    verdict = "keeps up" if real >= 0.9 * synthetic else "is the bottleneck"
    print(f"real       {real:,.0f} samples/s = {real / synthetic:.0%} of synthetic: the loader {verdict}")


if __name__ == "__main__":
    main()
