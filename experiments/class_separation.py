"""How different the classes of a rendered dataset are at the size the model sees them.

    python experiments/class_separation.py shards/experiment-L100-128px [more datasets] [--size 32]

Prints, per dataset and at the rendered size and at ``--size`` (bicubic, as the transforms resize):
the mean ink (pixel value / 255), the fill rate (pixels above 0.02) and the RMS pixel difference
between images of different classes (mean and minimum over all pairs).
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def images(dataset: Path) -> list[Image.Image]:
    shards = [s["file"] for s in json.loads((dataset / "manifest.json").read_text())["shards"]]
    out = []
    for shard in shards:
        with tarfile.open(dataset / shard) as tar:
            out += [Image.open(io.BytesIO(tar.extractfile(m).read())).convert("L")
                    for m in tar.getmembers() if m.name.endswith(".png")]
    return out


def separation(stack: np.ndarray) -> dict[str, float]:
    flat = stack.reshape(len(stack), -1).astype(np.float64)
    sq = (flat**2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None] - 2 * flat @ flat.T, 0) / flat.shape[1]  # without an N x N x P array
    rms = np.sqrt(d2)[~np.eye(len(flat), dtype=bool)]
    return {"ink": float(flat.mean()), "fill": float((flat > 0.02).mean()), "between_class_rms": float(rms.mean()),
            "min_rms": float(rms.min())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    for dataset in args.datasets:
        ims = images(dataset)
        for label, stack in (("rendered", [np.asarray(i, np.float32) / 255 for i in ims]),
                             (f"{args.size} px", [np.asarray(i.resize((args.size,) * 2, Image.BICUBIC), np.float32)
                                                  / 255 for i in ims])):
            s = separation(np.stack(stack))
            print(f"{dataset} {label}: ink {s['ink']:.3f}, fill {s['fill']:.3f}, between-class RMS "
                  f"{s['between_class_rms']:.4f} (min {s['min_rms']:.4f})")


if __name__ == "__main__":
    main()
