"""Pre-training loss against samples seen for several run directories, on one chart.

    python experiments/loss_curves.py OUT.png RUN_DIR=LABEL [RUN_DIR=LABEL ...]
"""

import json
import sys
from pathlib import Path

from trainer import runs
from trainer.experiments.charts import plot_pretraining


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    out, pairs = Path(sys.argv[1]), [a.split("=", 1) for a in sys.argv[2:]]
    curves, batches = {}, set()
    for where, label in pairs:
        batches.add(json.loads((Path(where) / runs.CONFIG).read_text())["batch_size"])
        curves[label] = runs.read_metrics(Path(where) / runs.METRICS)
    if len(batches) != 1:
        sys.exit(f"runs with different batch sizes: {sorted(map(str, batches))}")
    plot_pretraining(curves, out, batch=batches.pop())


if __name__ == "__main__":
    main()
