"""One training step as a GPU would run it, checked on a CPU: no op in it makes the host wait (the step audit of
benchmarks/step_audit.py), and the compiled step (one graph: augmentation, mixing, forward, loss, and their
backward) trains as the eager one does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import step_audit  # noqa: E402
import test_trainer_data  # noqa: E402

import trainer  # noqa: E402
from trainer import engine  # noqa: E402
from trainer.errors import TrainerError  # noqa: E402

one_thread, tiny = test_trainer_data.one_thread, test_trainer_data.tiny  # fixtures


def test_a_pretraining_step_on_the_memory_input_blocks_the_host_nowhere(tiny, tmp_path):
    """The paper's recipe (RandAugment, erasing, Mixup/CutMix, drop path, AdamW): 0 blocking ops in a step that
    logs nothing, and the augmentation's ops counted apart."""
    report = step_audit.pretrain_step(str(tiny), tmp_path / "run", batch=8, img_size=32)
    assert report["blocking"] == 0, report["blocking_at"]
    assert report["augment"] > 0 and report["mixing_loss"] > 0 and report["model_optim"] > 0
    assert report["augment_written_gib"] > 0


def test_the_audit_sees_a_planted_item_in_the_step(tiny, tmp_path, monkeypatch):
    forward_loss = engine.Training._forward_loss

    def reads_the_loss(self, *args):
        loss = forward_loss(self, *args)
        loss.item()  # the planted host sync
        return loss

    monkeypatch.setattr(engine.Training, "_forward_loss", reads_the_loss)
    report = step_audit.pretrain_step(str(tiny), tmp_path / "run", batch=8, img_size=32)
    assert report["blocking"] == 1
    assert report["blocking_at"][0][0].startswith("_local_scalar_dense")


def test_the_augmentation_dispatches_as_many_ops_for_any_batch_and_shows_them_by_line(capsys):
    """Every op runs once per batch (no loop over samples), and --by-line's table adds up to the count."""
    small = step_audit.augment_batch("pretrain", 4, 32, 1, 48, by_line=3)
    rows = capsys.readouterr().out.splitlines()
    large = step_audit.augment_batch("pretrain", 12, 32, 1, 48)
    assert small["ops"] == large["ops"] > 0 and small["blocking"] == large["blocking"] == 0
    assert len(rows) == 5 and rows[-1].split()[2] == str(small["ops"])
    assert all(":" in row.split()[2] for row in rows[1:4])  # file:line of each of the top three


def test_a_fine_tuning_step_and_its_evaluation_block_the_host_nowhere(tmp_path):
    """ImageNet normalisation (mean, std and fill per channel) on 3 channels, and the evaluation's transform on the
    device: 0 blocking ops in a step and in every evaluation batch after the first (which makes cached constants)."""
    report = step_audit.finetune_step("digits", tmp_path / "run", batch=256, img_size=32)
    assert report["blocking"] == 0, report["blocking_at"]
    assert report["eval_batches"] >= 2 and report["eval_ops_per_batch"] > 0
    assert report["eval_blocking_per_later_batch"] == 0, report["eval_blocking_at"]


def losses(run: Path) -> list[float]:
    return [m["loss"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in m]


def test_the_compiled_step_is_one_graph_and_trains_as_the_eager_step(tiny, tmp_path):
    """fullgraph=True: a graph break anywhere in augmentation, mixing, forward or loss would raise. The aot_eager
    backend traces the same graphs as inductor (dynamo, then AOTAutograd for the backward) without generating
    kernels, which would take minutes on a CPU."""
    torch._dynamo.reset()
    common = dict(preset="paper", input="memory", batch_size=8, img_size=32, samples=20 * 8, log_every=1,
                  force=True, progress=False, seed=3)
    trainer.pretrain(str(tiny), tmp_path / "eager", compile=False, **common)
    trainer.pretrain(str(tiny), tmp_path / "compiled", compile=True, compile_backend="aot_eager", **common)
    eager, compiled = losses(tmp_path / "eager"), losses(tmp_path / "compiled")
    assert len(eager) == len(compiled) == 20
    assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-5)
    assert len(set(eager)) > 1  # the losses move: the runs trained


def test_an_unknown_compile_backend_is_one_line(tiny, tmp_path):
    with pytest.raises(TrainerError, match="unknown --compile-backend 'nope'"):
        trainer.pretrain(str(tiny), tmp_path / "run", preset="smoke", input="memory", compile=True,
                         compile_backend="nope", samples=16, force=True, progress=False)
