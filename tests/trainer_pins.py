"""Short smoke runs whose per-step losses and final weights are pinned in ``tests/data/trainer-pins.json``.

The values there hold the trainer to what it learnt when they were recorded (``tests/test_trainer_pins.py``,
within float noise: a different CPU model gives the same build's losses to about 1e-5):
first before its input and loop were restructured; again when the stream input's normalisation and random
erasing moved onto the device and fine-tuning got the memory input (the pre-training memory run kept its
values); the stream input's run again when its augmentation came to draw by sample and step (seeded, for an
exact resume), which changes its draws and nothing else; all of them again when Mixup/CutMix came to draw on
the device with torch's generator (no longer numpy's), the memory input's crop to resize as PIL does, and the
``smoke`` preset to run passes on into each other (``pass_end`` ``continue``: fine-tuning's epochs then hold
one more step); the runs with augmentation on the device again when a batch's parameters came to be drawn as one
tensor of uniforms. To record them again (only for a change that is meant
to alter what a run learns):

    .venv/bin/python tests/trainer_pins.py > tests/data/trainer-pins.json

The data is built here, not rendered by fracbuild: 12 classes of 32 px noise-and-shape images in six
tar shards, the same bytes whatever fracbuild's renderer does.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLASSES, PER_SHARD, SIZE = 12, 2, 32


def write_shards(out: Path) -> Path:
    """Six shards of two grayscale PNGs each, with ``cls`` labels and a manifest."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shards = []
    for s in range(CLASSES // PER_SHARD):
        name = f"pins-{s:06d}.tar"
        with tarfile.open(out / name, "w", format=tarfile.USTAR_FORMAT) as tar:
            for c in range(s * PER_SHARD, (s + 1) * PER_SHARD):
                pixels = (rng.random((SIZE, SIZE)) < 0.15 + 0.05 * (c % 4)).astype(np.uint8) * 127
                pixels[c % SIZE, :] = 255  # a line whose row tells the class
                png = io.BytesIO()
                Image.fromarray(pixels).save(png, format="PNG")
                for ext, data in (("png", png.getvalue()), ("cls", str(c).encode())):
                    info = tarfile.TarInfo(f"{c:06d}.{ext}")
                    info.size, info.mtime = len(data), 0
                    tar.addfile(info, io.BytesIO(data))
        shards.append({"file": name, "samples": PER_SHARD,
                       "sha256": hashlib.sha256((out / name).read_bytes()).hexdigest()})
    (out / "manifest.json").write_text(json.dumps({"name": "pins", "samples": CLASSES, "classes": CLASSES,
                                                   "shards": shards}))
    return out


def weight_norms(path: Path) -> dict[str, float]:
    """The L2 norm of each tensor of a checkpoint's weights: compared within a tolerance, since the last bits
    of a float result differ between CPU models (vector units, thread blocking) for the same build."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {key: round(float(state[key].detach().double().norm()), 7) for key in sorted(state)}


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in line]


def run_all(tmp: Path) -> dict[str, dict]:
    """The pinned runs: smoke pre-training through each input, then fine-tuning and a probe from it."""
    import trainer

    data = write_shards(tmp / "data")
    torch.set_num_threads(1)
    runs: dict[str, dict] = {}
    for kind in ("stream", "memory"):
        out = tmp / f"pretrain-{kind}"
        trainer.pretrain(str(data), out, preset="smoke", samples=480, log_every=1, progress=False,
                         input=kind)
        runs[f"pretrain-{kind}"] = {"losses": losses(out), "weights": weight_norms(out / "checkpoint.pt")}
    init = tmp / "pretrain-memory" / "checkpoint.pt"
    for kind in ("stream", "memory"):
        out = tmp / f"finetune-{kind}"
        trainer.finetune(str(init), "digits", out, preset="smoke", shots=10, epochs=3, log_every=1, progress=False,
                         input=kind)
        runs[f"finetune-digits-{kind}"] = {"losses": losses(out), "weights": weight_norms(out / "checkpoint.pt"),
                                           "top1": json.loads((out / "results.json").read_text())["top1"]}
        out = tmp / f"probe-{kind}"
        trainer.probe(str(init), "digits", out, blocks=1, preset="smoke", shots=10, epochs=2, log_every=1,
                      progress=False, input=kind)
        runs[f"probe-digits-{kind}"] = {"losses": losses(out), "weights": weight_norms(out / "checkpoint.pt"),
                                        "top1": json.loads((out / "results.json").read_text())["top1"]}
    return runs


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = {"torch": torch.__version__, "runs": run_all(Path(tmp))}
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
