"""``trainer experiment --table N``: every paper table's plan prints at every size with its schedules, needs and
hours; the smallest size runs Tables 2, 5, 7 and 9 end to end (smoke preset, tiny renders, a few steps), writes
their reports beside the paper's numbers and does not redo finished runs."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_trainer_data import one_thread  # noqa: F401 (fixture)

from trainer.cli import main
from trainer.experiments import reproduce, tables
from trainer.experiments.report import table_findings
from trainer.experiments.stats import ABOVE

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("number", tables.TABLES)
def test_every_table_prints_a_plan_at_every_size(number, monkeypatch):
    monkeypatch.chdir(ROOT)  # the plans name the shipped recipes from the project root
    for size in reproduce.SIZES:
        result = CliRunner().invoke(main, ["experiment", "--table", number, "--size", size, "--dry-run"])
        assert result.exit_code == 0, result.output
        text = result.output
        assert text.startswith(f"# Table {number}:") and "-hours for" in text and "estimate" in text
        table = tables.load(number)
        made = [r for r in table.rows if r.recipe and not r.external and Path(r.recipe).is_file()
                and not reproduce._unmet(r.needs)]
        for row in made:
            assert f"pretrain-{reproduce.slug(row.label)}-seed0" in text
        for row in table.rows:
            if row.external or row.same_as or row not in made and not row.scratch:
                assert f"# not run: {row.label}: " in text
        if size == "paper":
            assert "python -m trainer.launch --nproc_per_node 8 -m trainer pretrain" in text or not made


def test_the_paper_size_gives_each_row_its_schedule():
    def samples(number, label):
        planned = reproduce.build(number, "paper", out="runs", data_dir="shards")
        return planned.pretrain[label][0].args["samples"]

    # One image per class: the same steps for every L (not 80,000 epochs, which gave L = 16 a third of them).
    assert samples("7", "L = 16") == samples("7", "L = 1000") == tables.ONE_IMAGE_STEPS * 256
    # A million images: the 1k scripts' 300 epochs, not 80,000.
    assert samples("2", "FractalDB (1M)") == tables.MILLION_IMAGE_EPOCHS * 1000 * 1000
    assert samples("8", "1p-frac (L = 21,000)") == 15_238 * 21_000
    t8 = reproduce.build("8", "paper", out="runs", data_dir="shards")
    assert t8.pretrain["1p-frac (L = 21,000)"][0].args["model"] == "vit_base_patch16_224"
    assert ("manifests/1p-frac.json", Path("shards/1p-frac-L21000-1i-512px"), ["--classes", "21000"]) in t8.renders
    scratch = next(r for r in t8.downstream if r.init == "scratch")
    assert scratch.args["model"] == "vit_base_patch16_224" and scratch.args["epochs"] == 300


def test_the_hours_follow_the_stated_rates(monkeypatch):
    planned = reproduce.build("4", "paper", out="runs", data_dir="shards")
    monkeypatch.setitem(tables.RATES, "vit_tiny_patch16_224", tables.RATES["vit_tiny_patch16_224"] / 2)
    assert reproduce.build("4", "paper", out="runs", data_dir="shards").hours == pytest.approx(2 * planned.hours)
    # 3 pre-trainings of 240,000 x 256 samples, 4 x 2 fine-tunings of 1000 epochs (C100 50,000, IN100 126,689).
    expected = (3 * tables.ONE_IMAGE_STEPS * 256 + 4 * 1000 * (50_000 + 126_689)) / 2293.54 / 3600
    assert planned.hours == pytest.approx(expected)


def test_rows_that_need_a_missing_setting_are_declared_and_said(monkeypatch):
    planned = reproduce.build("9", "paper", out="runs", data_dir="shards")
    args = planned.pretrain["w/o Random Aug."][0].args
    assert args["color_jitter"] == 0.4 and args["auto_augment"] == "none" and "w/o Random Aug." not in planned.skipped
    assert planned.skipped["w/o Color Jittering"].startswith("trains as Baseline")
    from trainer import settings

    monkeypatch.delitem(settings.BY_NAME, "color_jitter")  # without the setting, the row is left out and said
    planned = reproduce.build("9", "paper", out="runs", data_dir="shards")
    assert "color_jitter" in planned.skipped["w/o Random Aug."] and "w/o Random Aug." not in planned.pretrain


def test_a_set_the_user_supplies_is_named_by_a_variable(monkeypatch):
    monkeypatch.delenv("IMAGENET", raising=False)
    planned = reproduce.build("2", "gpu", out="runs", data_dir="shards", expand=True)
    assert [t.label for t in planned.tasks] == ["C100"] and "IMAGENET" in planned.skipped["IN100"]
    monkeypatch.setenv("IMAGENET", "/data/imagenet")
    planned = reproduce.build("2", "gpu", out="runs", data_dir="shards", expand=True)
    assert [t.spec for t in planned.tasks] == ["torch/cifar100", "in100:/data/imagenet"]


def test_an_unknown_table_or_a_table_option_is_one_clear_error():
    for args in (["--table", "10", "--dry-run"], ["--table", "2", "--size", "paper", "--probe-blocks", "1"],
                 ["--size", "paper"], ["--table", "5", "--rows", "delta-9", "--dry-run"]):
        result = CliRunner().invoke(main, ["experiment", *args])
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert result.output.strip().splitlines()[-1].startswith("Error: ")


def test_the_smallest_size_runs_tables_2_5_7_and_9_end_to_end(tmp_path, monkeypatch, one_thread):  # noqa: F811
    monkeypatch.chdir(ROOT)
    common = ["--size", "cpu", "--preset", "smoke", "--out", None, "--report", tmp_path / "report", "--data-dir",
              tmp_path / "shards", "--classes", 4, "--image-size", 32, "--pretrain-samples", 16, "--shots", 2,
              "--mnist-epochs", 1, "--digits-epochs", 0.02, "--seeds", 1, "--finetune-seeds", 1, "--no-progress"]
    # Every row of Table 2; Tables 5, 7 and 9 by a few rows each, which keeps the test to about a minute of CPU.
    rows = {"5": ["--rows", "delta-0-001,delta-0-1"], "7": ["--rows", "l-16,l-1000"],
            "9": ["--rows", "baseline,w-o-random-aug,w-o-random-crop,w-o-mixup-cutmix"]}
    for number in ("2", "5", "7", "9"):
        args = [str(tmp_path / f"runs-{number}") if a is None else str(a) for a in common]
        result = CliRunner().invoke(main, ["experiment", "--table", number, *rows.get(number, []), *args])
        assert result.exit_code == 0, result.output
        report = (tmp_path / "report" / f"REPORT-table-{number}-cpu.md").read_text()
        table = tables.load(number)
        assert "## The paper's numbers" in report and "95 % interval" in report
        first = next(r for r in table.rows if r.recipe)
        assert f"| {first.label} | " + " | ".join(f"{first.paper[c]:.1f}" if first.paper[c] is not None else "–"
                                                 for c in table.columns) + " |" in report
        assert f"| {first.label} − Scratch | digits |" in report
    # Table 7 keeps every L at the cpu size (but --classes 4 caps it here), Table 9's rows change the recipe's
    # augmentation, which its cpu size puts back.
    config = json.loads((tmp_path / "runs-9" / "pretrain-w-o-mixup-cutmix-seed0" / "config.json").read_text())
    assert config["mixup"] == config["cutmix"] == 0.0 and config["re_prob"] == 0.5
    crop = json.loads((tmp_path / "runs-9" / "pretrain-w-o-random-crop-seed0" / "config.json").read_text())
    assert crop["scale"] == [1.0, 1.0] and crop["mixup"] == 0.8
    jitter = json.loads((tmp_path / "runs-9" / "pretrain-w-o-random-aug-seed0" / "config.json").read_text())
    assert jitter["auto_augment"] is None and jitter["color_jitter"] == 0.4 and crop["color_jitter"] is None
    report9 = (tmp_path / "report" / "REPORT-table-9-cpu.md").read_text()
    assert "| Baseline − Scratch | digits |" in report9 and "w/o Flipping" not in report9.split("## Ours")[1]
    assert sorted(p.name for p in (tmp_path / "runs-7").glob("pretrain-*")) == ["pretrain-l-1000-seed0",
                                                                                 "pretrain-l-16-seed0"]
    manifest = json.loads((tmp_path / "shards" / "delta-0.001-L4-1i-32px" / "manifest.json").read_text())
    assert manifest["recipe"]["perturb"]["delta"] == 0.001 and manifest["classes"] == 4
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs-5").rglob("results.json")}
    args = [str(tmp_path / "runs-5") if a is None else str(a) for a in common]
    assert CliRunner().invoke(main, ["experiment", "--table", "5", *rows["5"], *args]).exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs-5").rglob("results.json")} == before


def test_the_paper_direction_comes_from_the_papers_own_numbers():
    planned = reproduce.build("5", "gpu", out="runs", data_dir="shards")
    for run in planned.downstream:
        run.result = {"top1": 50.0 + (run.pretrain_seed or 0) + run.finetune_seed}
    found = {(f.subject, f.where): f for f in table_findings(planned)}
    assert found[("Δ = 0.1", "C100")].paper == (ABOVE, "Table 5: 84.2 against scratch's 64.2 on C100")
    assert found[("Δ = 0.001", "C100")].paper[0] != ABOVE  # 1.2 against 64.2
    assert found[("Δ = 0.01", "IN100")].paper is None  # the paper gives no IN100 figure for Δ = 0.01


def test_the_training_page_table_names_every_plan_and_its_rows(monkeypatch):
    """docs/training.md: 'paper row -> command'. Every table's command names a plan, and its rows column lists
    exactly the rows that plan runs (by --rows name), so the table cannot drift from the plans."""
    import re

    monkeypatch.chdir(ROOT)
    text = (ROOT / "docs" / "training.md").read_text()
    lines = [line for line in text.splitlines() if re.match(r"^\| (Table \d+|Figure 3)", line)]
    seen = set()
    for line in lines:
        paper, listed, _, command = [c.strip() for c in line.strip("|").split(" | ")]
        match = re.search(r"--table (\w+)", command)
        if match is None:
            assert paper.startswith("Table 10"), line  # construction time: a render, timed
            continue
        number = match.group(1)
        seen.add(number)
        planned = reproduce.build(number, "paper", out="runs", data_dir="shards")
        assert {reproduce.slug(label) for label in planned.pretrain} == set(re.findall(r"`([^`]+)`", listed)), line
    assert seen == set(tables.TABLES)
