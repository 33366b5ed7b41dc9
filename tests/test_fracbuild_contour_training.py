"""The shipped RCDB and VisualAtom forms train through the trainer, which reads their shards as any user would."""

import json
from pathlib import Path

import numpy as np
import pytest

import trainer
from fracbuild.dataset import verify
from fracbuild.recipe import load_recipe
from fracbuild.rendering import render

ROOT = Path(__file__).resolve().parents[1]
FORMS = [f"paper/{source}-{form}.json" for source in ("rcdb", "visualatom") for form in ("1m", "1k", "lpce")]


@pytest.mark.parametrize("name", FORMS)
def test_each_form_renders_verifies_previews_and_pretrains(name, tmp_path):
    recipe = load_recipe(ROOT / "manifests" / name)
    data = tmp_path / "data"
    m = render(recipe, data, classes=4, instances=min(recipe["render"]["instances"], 2), size=32, shard_size=2,
               jobs=1, progress=False)
    assert verify(data, deep=2) == [] and (data / "preview.png").is_file()
    summary = trainer.pretrain(str(data), tmp_path / "run", preset="smoke", samples=32, workers=0, progress=False)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["num_classes"] == 4 and config["dataset"]["samples"] == m["samples"]
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses and np.isfinite(losses).all() and summary is not None
