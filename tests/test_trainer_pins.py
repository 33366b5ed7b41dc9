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


@pytest.mark.parametrize("name", sorted(PINS["runs"]))
def test_a_run_gives_the_pinned_losses_and_weights(runs, name):
    assert runs[name]["losses"] == PINS["runs"][name]["losses"]
    assert runs[name]["weights"] == PINS["runs"][name]["weights"]
    assert runs[name].get("top1") == PINS["runs"][name].get("top1")
