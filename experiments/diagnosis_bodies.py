"""The body table, JSON and figure of REPORT-cpu-diagnosis.md: ``trainer.analysis`` on the runs it names,
with short labels (``python -m trainer inspect`` prints the same table labelled by path).

    PYTHONPATH=. python experiments/diagnosis_bodies.py INIT...   # a subset of the keys of ``bodies``
"""
import sys

import torch

from trainer import analysis
from trainer.runs import write_json

bodies = {
    "runs/diagnosis/pretrain-delta0.1-15k/checkpoint.pt": "Δ = 0.1, 15k samples",
    "runs/diagnosis/pretrain-delta0.001-15k/checkpoint.pt": "Δ = 0.001, 15k samples",
    "runs/dev/pre15k/checkpoint.pt": "Δ = 0.1, OR-ed drawing, step 193 of 235",
    "init:runs/diagnosis/pretrain-delta0.1-15k/checkpoint.pt": "initialisation (seed 0)",
    "scratch": "scratch (fine-tuning's fresh model)",
}
bodies = {k: v for k, v in bodies.items() if k in sys.argv[1:]}
for k in bodies:
    path = k.removeprefix("init:")
    if path != "scratch":
        saved = torch.load(path, map_location="cpu", weights_only=True)
        print(k, "step", saved.get("step"), "of", saved["config"].get("samples"), "samples", file=sys.stderr)
result = analysis.inspect(list(bodies), dataset="digits", images=256, preset="cpu")
for k, m in result["models"].items():
    if "keys" in m:
        print(k, {n: len(v) for n, v in m["keys"].items()}, m["keys"]["fresh"], m["keys"]["resampled"])
write_json("experiments/diagnosis-bodies.json", result)
analysis.plot(result, "experiments/diagnosis-bodies.png", labels=bodies)
print(analysis.markdown_table(result, bodies))
