"""``make pretrain``'s decisions (trainer/default_run.py): preset, dataset, launcher and resume by GPU count."""

import sys

import pytest
from click.testing import CliRunner

from trainer import default_run
from trainer.cli import main


def test_without_a_gpu_the_cpu_preset_trains_on_the_recipe_rendered_at_its_size(tmp_path):
    chosen = default_run.plan("r.json", tmp_path / "shards" / "1p-frac", tmp_path / "run", gpus=0)
    assert (chosen.preset, chosen.size, chosen.data.name) == ("cpu", 32, "1p-frac-32px")
    assert chosen.command == ["-m", "trainer", "pretrain", "--data", str(chosen.data), "--out",
                              str(tmp_path / "run"), "--preset", "cpu"]


@pytest.mark.parametrize("gpus,launch", [(1, []), (2, ["-m", "trainer.launch", "--standalone",
                                                         "--nproc_per_node", "2"])])
def test_with_gpus_the_paper_preset_trains_on_the_default_dataset_under_torchrun_for_several(tmp_path, gpus, launch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")  # a run there is resumed
    chosen = default_run.plan("r.json", tmp_path / "ds", tmp_path / "run", gpus=gpus)
    assert (chosen.preset, chosen.size, chosen.data) == ("paper", None, tmp_path / "ds")
    assert chosen.command == [*launch, "-m", "trainer", "pretrain", "--data", str(tmp_path / "ds"), "--out",
                              str(tmp_path / "run"), "--preset", "paper", "--resume"]


def test_the_command_becomes_the_planned_pretraining(tmp_path, monkeypatch):
    import torch

    data = tmp_path / "ds-32px"
    data.mkdir()
    (data / "manifest.json").write_text("{}")  # rendered already: nothing to render
    ran = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(default_run.os, "execv", lambda path, args: ran.append(args))
    result = CliRunner().invoke(main, ["pretrain-default", "--data", str(tmp_path / "ds"), "--out",
                                       str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert ran == [[sys.executable, "-m", "trainer", "pretrain", "--data", str(data), "--out", str(tmp_path / "run"),
                    "--preset", "cpu"]]
