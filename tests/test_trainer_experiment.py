"""``python -m trainer experiment`` end to end with the smoke preset and tiny settings: it renders with
the fracbuild command, runs every step, writes the report and chart, and does not redo finished runs;
the gpu size's plan, run shrunk; and the cpu diagnosis, run shrunk."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_trainer_data import one_thread  # noqa: F401 (fixture)

from trainer.cli import main
from trainer.data import downstream as datasets
from trainer.errors import TrainerError
from trainer.experiments import diagnose, size_plan

ROOT = Path(__file__).resolve().parents[1]


def test_the_experiment_runs_end_to_end_and_reports(tmp_path):
    args = ["experiment", "--out", tmp_path / "runs", "--report", tmp_path / "report", "--data-dir",
            tmp_path / "shards", "--recipe", ROOT / "manifests" / "1p-frac.json", "--size", "cpu", "--classes", 8,
            "--image-size", 48,
            "--pretrain-samples", 64, "--shots", 2, "--digits-epochs", 1, "--mnist-epochs", 2, "--probe-blocks",
            "1,2", "--probe-shots", 2, "--probe-epochs", 1, "--preset", "smoke", "--no-progress"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert (tmp_path / "report" / "results.png").read_bytes()[:4] == b"\x89PNG"
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == sorted(["pretrain-delta0.1", "pretrain-delta0.001", "pretrain-randaugment",
                           *(f"finetune-{d}-{i}" for d in ("mnist5k", "digits")
                             for i in ("1p-frac", "delta0.001", "randaugment", "scratch")),
                           *(f"probe-K{k}-{i}" for k in (1, 2) for i in ("1p-frac", "scratch"))])
    for name in runs:  # the table shows what the runs wrote
        if name.startswith("finetune"):
            top1 = json.loads((tmp_path / "runs" / name / "results.json").read_text())["top1"]
            assert f"{top1:.1f} (" in report
    manifest = json.loads((tmp_path / "shards" / "experiment-L8-48px-delta0.001" / "manifest.json").read_text())
    assert manifest["recipe"]["perturb"]["delta"] == 0.001 and manifest["classes"] == 8
    assert "fracbuild render" in report and "python -m trainer probe --init" in report
    assert "| 1p-frac, Δ = 0.001 |" in report and "| K = 1 | K = 2 |" in report
    assert "pretrain --data" in report and "--auto-augment rand-m9-mstd0.5-inc1 --samples 64" in report

    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("results.json")}
    again = CliRunner().invoke(main, [str(a) for a in args])
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("results.json")} == before


def test_the_gpu_plan_is_the_papers_recipe_at_224_px_with_every_downstream_set():
    plan = size_plan("gpu")
    assert plan["preset"] == "paper" and plan["classes"] is None and plan["size"] is None  # the recipe's L and size
    assert plan["probe_blocks"] == tuple(range(1, 13)) and plan["report"] == "REPORT-gpu.md"
    assert plan["pretrain"]["samples"] >= 100_000 and not plan["randaugment"]
    specs = [(t.label, t.spec, t.args.get("shots"), t.optional) for t in plan["tasks"]]
    assert specs == [("mnist5k (10-shot)", "mnist5k", 10, False), ("mnist5k (full)", "mnist5k", None, False),
                     ("digits", "digits", None, False), ("CIFAR-100", "torch/cifar100", None, True),
                     ("CIFAR-10", "torch/cifar10", None, True)]
    assert len({t.slug for t in plan["tasks"]}) == len(plan["tasks"])  # one run directory each
    from trainer.presets import resolve

    tuned = resolve("finetune", plan["preset"], **plan["finetune"])
    assert tuned["img_size"] == 224 and tuned["model"] is None and tuned["mixup"] == 0.0
    with pytest.raises(TrainerError, match="unknown experiment size"):
        size_plan("tpu")


def test_the_cpu_plan_renders_at_the_size_its_model_sees_and_pretrains_without_crops():
    from trainer.presets import resolve

    plan = size_plan("cpu")
    pretraining = resolve("pretrain", plan["preset"], **plan["pretrain"])
    assert plan["size"] == pretraining["img_size"] == 32  # a larger render is averaged away when resized
    assert tuple(pretraining["scale"]) == (1.0, 1.0) and pretraining["vflip"] == pretraining["hflip"] == 0.5


def test_the_gpu_plan_runs_shrunk_and_skips_what_cannot_be_downloaded(tmp_path, monkeypatch):
    def offline(name):
        raise TrainerError(f"torch/{name}: cannot load or download it")

    monkeypatch.setattr(datasets, "load_torch", offline)
    args = ["experiment", "--size", "gpu", "--preset", "smoke", "--out", tmp_path / "runs", "--report",
            tmp_path / "report", "--data-dir", tmp_path / "shards", "--recipe", ROOT / "manifests" / "1p-frac.json",
            "--classes", 8, "--image-size", 48, "--pretrain-samples", 64, "--shots", 2, "--digits-epochs", 1,
            "--mnist-epochs", 0.05, "--probe-blocks", "1,2", "--probe-shots", 2, "--probe-epochs", 1, "--no-progress"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report" / "REPORT-gpu.md").read_text()
    for png in ("results-gpu.png", "pretraining-gpu.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == sorted(["pretrain-delta0.1", "pretrain-delta0.001",
                           *(f"finetune-{d}-{i}" for d in ("mnist5k-2shot", "mnist5k-full", "digits")
                             for i in ("1p-frac", "delta0.001", "scratch")),
                           *(f"probe-K{k}-{i}" for k in (1, 2) for i in ("1p-frac", "scratch"))])
    assert "| pre-training | mnist5k (2-shot) | mnist5k (full) | digits |" in report
    assert "- CIFAR-100: not run (torch/cifar100: cannot load or download it)." in report
    assert "reproduced" in report and "GPU scale" in report
    full = json.loads((tmp_path / "runs" / "finetune-mnist5k-full-scratch" / "results.json").read_text())
    assert full["dataset"]["train"] == 4000 and full["settings"]["opt"] == "adamw"
    assert f"{full['top1']:.1f} (" in report


def test_the_diagnosis_runs_shrunk_and_reports(tmp_path):
    r = diagnose(tmp_path / "runs", report=tmp_path / "report", recipe=str(ROOT / "manifests" / "1p-frac.json"),
                 data_dir=tmp_path / "shards", classes=8, image_size=48, lengths=(32, 64), lrs=(3e-3,),
                 warmups=(0.0,), layer_decays=(0.5,), digits_epochs=0.1, images=16, preset="smoke", progress=False)
    report = (tmp_path / "report" / "diagnosis-runs.md").read_text()
    assert r["report"] == str(tmp_path / "report" / "diagnosis-runs.md")
    for png in ("diagnosis-length.png", "diagnosis-bodies.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"
    assert set(r["finetune"]) == {
        "finetune-digits-delta0.1-32", "finetune-digits-delta0.1-64", "finetune-digits-delta0.001-32",
        "finetune-digits-scratch",
        *(f"finetune-digits-{i}-{t}" for i in ("delta0.1-32", "scratch") for t in ("lr0.003", "warmup0", "ld0.5"))}
    scratch = r["finetune"]["finetune-digits-scratch"]
    body = r["finetune"]["finetune-digits-delta0.1-64"]
    assert "| delta0.1-64 | 64 |" in report and f"| {body:.1f} | {body - scratch:+.1f} |" in report
    decayed = (r["finetune"]["finetune-digits-delta0.1-32-ld0.5"], r["finetune"]["finetune-digits-scratch-ld0.5"])
    assert f"| ld0.5 | {decayed[0]:.1f} | {decayed[1]:.1f} | {decayed[0] - decayed[1]:+.1f} |" in report
    bodies = json.loads((tmp_path / "report" / "diagnosis-bodies.json").read_text())
    assert len(bodies["models"]) == 5 and "| initialisation |" in report and "| scratch |" in report
    assert "python -m trainer pretrain --data" in report and "--layer-decay 0.5" in report


def test_a_pretraining_counts_as_collapsed_only_while_its_loss_stays_at_chance():
    from trainer.experiments import Run, _at_chance

    def run(loss):
        return Run("pretrain", "x", {}, result={"config": {"num_classes": 100}, "metrics": [{"loss": loss}]})

    assert _at_chance(run(4.607)) and _at_chance(run(4.52))  # ln 100 = 4.605
    assert not _at_chance(run(2.98)) and not _at_chance(run(4.40))
