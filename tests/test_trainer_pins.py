"""The trainer learns what it learnt before its input and loop were restructured: for a fixed seed, smoke
pre-training through each input, fine-tuning and a probe give the recorded per-step losses and final
weights (``tests/trainer_pins.py`` made ``tests/data/trainer-pins.json``)."""

import json
from pathlib import Path

import pytest
import torch
from trainer_pins import run_all

PINS = json.loads((Path(__file__).parent / "data" / "trainer-pins.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if PINS["torch"] != torch.__version__:
        pytest.skip(f"pinned with torch {PINS['torch']}; float results of another build differ")
    threads = torch.get_num_threads()
    try:
        return run_all(tmp_path_factory.mktemp("pins"))
    finally:
        torch.set_num_threads(threads)


# The same build on two CPU models gave losses apart by at most 1e-5 over these runs; a change in what a run
# draws or computes moves them by 1e-2 or more.
LOSS_TOLERANCE, NORM_TOLERANCE, TOP1_TOLERANCE = 1e-3, 1e-3, 0.5


@pytest.mark.parametrize("name", sorted(PINS["runs"]))
def test_a_run_gives_the_pinned_losses_and_weights(runs, name):
    got, pinned = runs[name], PINS["runs"][name]
    assert got["losses"] == pytest.approx(pinned["losses"], abs=LOSS_TOLERANCE)
    assert sorted(got["weights"]) == sorted(pinned["weights"])
    assert got["weights"] == pytest.approx(pinned["weights"], rel=NORM_TOLERANCE)
    assert got.get("top1") == pytest.approx(pinned.get("top1"), abs=TOP1_TOLERANCE)
