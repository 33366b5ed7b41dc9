"""``python -m trainer experiment`` end to end with the smoke preset and tiny settings: it renders with
the fracbuild command, runs every step, writes the report and chart, and does not redo finished runs."""

import json
from pathlib import Path

from click.testing import CliRunner
from test_trainer_data import one_thread  # noqa: F401 (fixture)

from trainer.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_experiment_runs_end_to_end_and_reports(tmp_path):
    args = ["experiment", "--out", tmp_path / "runs", "--report", tmp_path / "report", "--data-dir",
            tmp_path / "shards", "--recipe", ROOT / "manifests" / "1p-frac.json", "--classes", 8, "--size", 48,
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
