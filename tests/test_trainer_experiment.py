"""``python -m trainer experiment`` end to end with the smoke preset and tiny settings: it renders with
the fracbuild command, runs a 2 x 2 grid of seeds, writes the report and chart, and does not redo finished
runs; the gpu size's plan, run shrunk; the cpu diagnosis, run shrunk; and, on planted numbers, the
intervals and the words they support (a clear gain, a clear loss, an overlap)."""

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_trainer_data import one_thread  # noqa: F401 (fixture)

from trainer.cli import main
from trainer.data import downstream as datasets
from trainer.errors import TrainerError
from trainer.experiments import Run, diagnose, size_plan
from trainer.experiments import report as experiment_report
from trainer.experiments.stats import ABOVE, BELOW, UNDECIDED, differences, interval
from trainer.experiments.wording import against_paper, claim, points, trend

ROOT = Path(__file__).resolve().parents[1]


def test_the_experiment_runs_a_grid_of_seeds_end_to_end_and_reports(tmp_path):
    args = ["experiment", "--out", tmp_path / "runs", "--report", tmp_path / "report", "--data-dir",
            tmp_path / "shards", "--recipe", ROOT / "manifests" / "1p-frac.json", "--size", "cpu", "--classes", 8,
            "--image-size", 48, "--randaugment", "--seeds", 2, "--finetune-seeds", 2,
            "--pretrain-samples", 64, "--shots", 2, "--digits-epochs", 0.25, "--mnist-epochs", 2, "--probe-blocks",
            "1,2", "--probe-shots", 2, "--probe-epochs", 1, "--preset", "smoke", "--no-progress"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert (tmp_path / "report" / "results.png").read_bytes()[:4] == b"\x89PNG"
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    bodies = [f"{v}-seed{s}" for v in ("delta0.1", "delta0.001", "randaugment") for s in (0, 1)]
    assert runs == sorted([*(f"pretrain-{b}" for b in bodies),
                           *(f"finetune-{d}-{i}-ft{f}" for d in ("mnist5k", "digits") for i in [*bodies, "scratch"]
                             for f in (0, 1)),
                           *(f"probe-K{k}-{i}-ft{f}" for k in (1, 2) for i in ("delta0.1-seed0", "delta0.1-seed1",
                                                                             "scratch") for f in (0, 1))])
    config = json.loads((tmp_path / "runs" / "pretrain-delta0.1-seed1" / "config.json").read_text())
    assert config["seed"] == 1
    tuned = json.loads((tmp_path / "runs" / "finetune-digits-delta0.1-seed0-ft1" / "results.json").read_text())
    assert tuned["settings"]["seed"] == 1 and tuned["init"].endswith("pretrain-delta0.1-seed0/checkpoint.pt")

    def top1(name):
        return json.loads((tmp_path / "runs" / name / "results.json").read_text())["top1"]

    # The digits row of 1p-frac minus scratch: paired by fine-tuning seed, as computed from the runs' files.
    diffs = [[top1(f"finetune-digits-delta0.1-seed{s}-ft{f}") - top1(f"finetune-digits-scratch-ft{f}")
              for f in (0, 1)] for s in (0, 1)]
    row = interval(diffs)
    assert (f"| 1p-frac, Δ = 0.1 − scratch | digits | {points(row.mean)} | {points(row.low)} to {points(row.high)} |"
            in report)
    assert ("`python -m trainer experiment --size cpu --seeds 2 --finetune-seeds 2 --preset smoke --classes 8 "
            "--image-size 48 --pretrain-samples 64 --randaugment --shots 2" in report)
    assert "## In short" in report and "95 % interval" in report and "resamples the pre-training seeds" in report
    assert "loader" not in report  # no history of old runs in a new report
    manifest = json.loads((tmp_path / "shards" / "experiment-L8-48px-delta0.001" / "manifest.json").read_text())
    assert manifest["recipe"]["perturb"]["delta"] == 0.001 and manifest["classes"] == 8
    assert "fracbuild render" in report and "python -m trainer probe --init" in report
    assert "| 1p-frac, Δ = 0.001 | 4 |" in report and "| K = 1 | K = 2 |" in report
    assert "pretrain --data" in report and "--seed 1 --auto-augment rand-m9-mstd0.5-inc1 --samples 64" in report

    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("results.json")}
    again = CliRunner().invoke(main, [str(a) for a in args])
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("results.json")} == before


def test_a_seed_count_below_one_is_one_clear_error(tmp_path):
    for flags in (["--seeds", "0"], ["--finetune-seeds", "0"], ["--diagnose", "--seeds", "0"]):
        result = CliRunner().invoke(main, ["experiment", "--out", str(tmp_path / "runs"), "--report",
                                           str(tmp_path / "report"), "--data-dir", str(tmp_path / "shards"),
                                           "--recipe", str(ROOT / "manifests" / "1p-frac.json"), *flags])
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert result.output.strip().splitlines()[-1].startswith("Error: --") and "at least 1" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


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
            "--classes", 8, "--image-size", 48, "--pretrain-samples", 64, "--shots", 2, "--digits-epochs", 0.25,
            "--mnist-epochs", 0.05, "--probe-blocks", "1,2", "--probe-shots", 2, "--probe-epochs", 1, "--no-progress",
            "--seeds", 2, "--finetune-seeds", 1]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report" / "REPORT-gpu.md").read_text()
    for png in ("results-gpu.png", "pretraining-gpu.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    bodies = [f"{v}-seed{s}" for v in ("delta0.1", "delta0.001") for s in (0, 1)]
    assert runs == sorted([*(f"pretrain-{b}" for b in bodies),
                           *(f"finetune-{d}-{i}-ft0" for d in ("mnist5k-2shot", "mnist5k-full", "digits")
                             for i in [*bodies, "scratch"]),
                           *(f"probe-K{k}-{i}-ft0" for k in (1, 2) for i in ("delta0.1-seed0", "delta0.1-seed1",
                                                                            "scratch"))])
    assert "| pre-training | runs | mnist5k (2-shot) | mnist5k (full) | digits |" in report
    assert "- CIFAR-100: not run (torch/cifar100: cannot load or download it)." in report
    assert "the paper's Table 5 collapse" in report and "GPU scale" in report
    # One fine-tuning seed: every comparison says so, and none states a gain or a loss.
    assert "one fine-tuning seed, so no verdict" in report and " is above " not in report and " is below " not in report
    full = json.loads((tmp_path / "runs" / "finetune-mnist5k-full-scratch-ft0" / "results.json").read_text())
    assert full["dataset"]["train"] == 4000 and full["settings"]["opt"] == "adamw"
    assert f"{full['top1']:.1f} ({full['top1']:.1f}–{full['top1']:.1f})" in report


def test_the_diagnosis_runs_shrunk_and_reports(tmp_path):
    r = diagnose(tmp_path / "runs", report=tmp_path / "report", recipe=str(ROOT / "manifests" / "1p-frac.json"),
                 data_dir=tmp_path / "shards", classes=8, image_size=48, lengths=(32, 64), lrs=(3e-3,),
                 warmups=(0.0,), layer_decays=(0.5,), digits_epochs=0.1, images=16, preset="smoke", progress=False,
                 seeds=1, finetune_seeds=2)
    report = (tmp_path / "report" / "diagnosis-runs.md").read_text()
    assert r["report"] == str(tmp_path / "report" / "diagnosis-runs.md")
    for png in ("diagnosis-length.png", "diagnosis-bodies.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"
    bodies = ("delta0.1-32-seed0", "delta0.1-64-seed0", "delta0.001-32-seed0")
    assert set(r["finetune"]) == {
        *(f"finetune-digits-{b}-ft{f}" for b in [*bodies, "scratch"] for f in (0, 1)),
        *(f"finetune-digits-{i}-ft{f}-{t}" for i in ("delta0.1-32-seed0", "scratch") for f in (0, 1)
          for t in ("lr0.003", "warmup0", "ld0.5"))}
    top = r["finetune"]
    gap = interval([[top[f"finetune-digits-delta0.1-64-seed0-ft{f}"] - top[f"finetune-digits-scratch-ft{f}"]
                     for f in (0, 1)]])
    body = (top["finetune-digits-delta0.1-64-seed0-ft0"] + top["finetune-digits-delta0.1-64-seed0-ft1"]) / 2
    assert f"| {body:.1f} | {points(gap.mean)} | {points(gap.low)} to {points(gap.high)} |" in report
    assert "| delta0.1-64 | 64 |" in report and "one pre-training seed, so no verdict" in report
    decayed = [sum(top[f"finetune-digits-{i}-ft{f}-ld0.5"] for f in (0, 1)) / 2 for i in ("delta0.1-32-seed0",
                                                                                          "scratch")]
    assert f"| ld0.5 | {decayed[0]:.1f} | {decayed[1]:.1f} | {points(decayed[0] - decayed[1])} |" in report
    bodies = json.loads((tmp_path / "report" / "diagnosis-bodies.json").read_text())
    assert len(bodies["models"]) == 5 and "| initialisation |" in report and "| scratch |" in report
    assert "python -m trainer pretrain --data" in report and "--layer-decay 0.5" in report


def test_a_pretraining_counts_as_collapsed_only_while_its_loss_stays_at_chance():
    def run(loss):
        return Run("pretrain", "x", {}, result={"config": {"num_classes": 100}, "metrics": [{"loss": loss}]})

    assert experiment_report.at_chance(run(4.607)) and experiment_report.at_chance(run(4.52))  # ln 100 = 4.605
    assert not experiment_report.at_chance(run(2.98)) and not experiment_report.at_chance(run(4.40))


# Planted numbers: the interval and the words it supports, in each direction and for an overlap. ------------------

GAIN = [[9.0, 11.0, 10.0], [12.0, 8.5, 10.5], [10.0, 9.5, 11.5]]  # every seed's difference about +10
LOSS = [[-v for v in row] for row in GAIN]
OVERLAP = [[8.0, -3.0, 5.0], [-9.0, 2.0, -4.0], [6.0, -7.0, 1.0]]  # seeds disagree on the sign
TABLE2 = (ABOVE, "Table 2")


def test_a_difference_pairs_each_body_with_scratch_of_the_same_fine_tuning_seed():
    body = {(0, 0): 70.0, (0, 1): 60.0, (1, 0): 72.0, (1, 1): 58.0}
    scratch = {0: 65.0, 1: 55.0}
    assert differences(body, scratch, (0, 1), (0, 1)).tolist() == [[5.0, 5.0], [7.0, 3.0]]
    other = {(0, 0): 50.0, (0, 1): 50.0, (1, 0): 60.0, (1, 1): 40.0}  # another body: paired by both seeds
    assert differences(body, other, (0, 1), (0, 1)).tolist() == [[20.0, 10.0], [12.0, 18.0]]


def test_a_clear_gain_is_called_a_gain_and_agrees_with_the_paper():
    c = interval(GAIN)
    # A mean of resampled cells cannot leave the cells' range (8.5 to 12).
    assert c.verdict == ABOVE and 8.5 <= c.low < c.mean < c.high <= 12 and c.mean == pytest.approx(92 / 9)
    sentence = claim("1p-frac", "scratch", "digits", c, TABLE2)
    assert sentence.startswith("On digits, 1p-frac is above scratch: +10.2 points (95 % interval +")
    assert sentence.endswith("; as in the paper (Table 2).") and "not distinguishable" not in sentence


def test_a_clear_loss_is_called_a_loss_and_the_opposite_of_the_paper():
    c = interval(LOSS)
    assert c.verdict == BELOW and c.high < -9
    sentence = claim("1p-frac", "scratch", "digits", c, TABLE2)
    assert "1p-frac is below scratch: −10.2 points" in sentence and "the opposite of the paper (Table 2)" in sentence
    assert against_paper(c, BELOW, "Table 5") == "as in the paper (Table 5)"


def test_an_overlap_is_not_distinguishable_at_this_scale():
    c = interval(OVERLAP)
    assert c.low < 0 < c.high and c.verdict == UNDECIDED
    sentence = claim("1p-frac", "scratch", "digits", c, TABLE2)
    assert "1p-frac and scratch are not distinguishable at this scale" in sentence
    assert "neither agrees nor disagrees with the paper" in sentence
    assert " is above " not in sentence and " is below " not in sentence


def test_one_seed_on_an_axis_gives_no_verdict_however_large_the_difference():
    for grid in ([GAIN[0]], [[row[0]] for row in GAIN]):  # one pre-training seed; one fine-tuning seed
        c = interval(grid)
        assert c.low > 0 and c.verdict == UNDECIDED
        assert "not distinguishable at this scale" in claim("a", "b", "digits", c) and "so no verdict" in claim(
            "a", "b", "digits", c)


def test_the_interval_resamples_fine_tuning_seeds_too_and_is_reproducible():
    # Every pre-training seed has the same mean (+1), but the fine-tuning seeds disagree: scratch's noise.
    grid = [[5.0, -3.0], [5.0, -3.0], [5.0, -3.0]]
    c = interval(grid)
    assert c.low < 0 < c.high and c.verdict == UNDECIDED
    assert interval(grid) == c and interval(OVERLAP, seed=1) != interval(OVERLAP)
    assert interval([[2.0, 2.0], [2.0, 2.0]]) == interval([[2.0, 2.0], [2.0, 2.0]], seed=5)  # no spread, no width
    assert (interval([[2.0, 2.0], [2.0, 2.0]]).low, interval([[2.0, 2.0], [2.0, 2.0]]).high) == (2.0, 2.0)


def test_the_change_across_depths_resamples_the_same_seeds_for_every_depth():
    first = [[0.0, 4.0, -4.0], [6.0, -6.0, 1.0], [-3.0, 3.0, 0.0]]
    last = [[v + 5.0 for v in row] for row in first]  # the same bodies, 5 points more at the last depth
    change = interval([first, last], [-1.0, 1.0])
    assert (change.low, change.mean, change.high) == pytest.approx((5.0, 5.0, 5.0))
    assert change.verdict == ABOVE and "grows from K = 1 to K = 6: +5.0 points" in trend("a", "b", "K = 1", "K = 6",
                                                                                      change)
    assert "is not distinguishable at this scale" in trend("a", "b", "K = 1", "K = 6", interval(OVERLAP))


def _planted(values):
    """A finished grid's runs with planted top-1: values[task][variant] is a [pre-training seed][fine-tuning seed]
    grid (scratch: one row), and the probe's depths 1 and 6 planted alike."""
    runs = {"finetune": [], "probe": []}
    for kind, where in (("finetune", values["tasks"]), ("probe", values["probe"])):
        for label, by_variant in where.items():
            for variant, grid in by_variant.items():
                for s, row in enumerate(grid):
                    for f, top1 in enumerate(row):
                        args = {"blocks": int(label[-1])} if kind == "probe" else {}
                        runs[kind].append(Run(kind, "x", args, label=label, variant=variant,
                                              pretrain_seed=None if variant == "scratch" else s, finetune_seed=f,
                                              result={"top1": top1}))
    return {"seeds": (0, 1, 2), "finetune_seeds": (0, 1, 2), "variants": ["1p-frac", "1p-frac Δ=0.001", "scratch"],
            "tasks": list(values["tasks"]), **runs}


def test_the_report_words_each_comparison_from_its_planted_numbers():
    scratch = [[60.0, 62.0, 61.0]]
    plus = [[s + d for s, d in zip(scratch[0], row, strict=True)] for row in GAIN]
    minus = [[s + d for s, d in zip(scratch[0], row, strict=True)] for row in LOSS]
    mixed = [[s + d for s, d in zip(scratch[0], row, strict=True)] for row in OVERLAP]
    summary = _planted({"tasks": {"digits": {"1p-frac": plus, "1p-frac Δ=0.001": minus, "scratch": scratch},
                                  "mnist5k": {"1p-frac": mixed, "1p-frac Δ=0.001": mixed, "scratch": scratch}},
                        "probe": {"K = 1": {"1p-frac": mixed, "scratch": scratch},
                                  "K = 6": {"1p-frac": plus, "scratch": scratch}}})
    found = experiment_report.compare(summary)
    said = experiment_report.claims(found)
    expect = {"On digits, 1p-frac, Δ = 0.1 is above scratch": "as in the paper (Table 2",
              "On digits, 1p-frac, Δ = 0.001 is below scratch": "as in the paper (Table 5",
              "On digits, 1p-frac, Δ = 0.1 is above 1p-frac, Δ = 0.001": "as in the paper",
              "On mnist5k, 1p-frac, Δ = 0.1 and scratch are not distinguishable at this scale": "neither agrees",
              "On mnist5k, 1p-frac, Δ = 0.001 and scratch are not distinguishable at this scale": "neither agrees",
              "On mnist5k, 1p-frac, Δ = 0.1 and 1p-frac, Δ = 0.001 are not distinguishable at this scale": "neither",
              "On the probe at K = 1, 1p-frac, Δ = 0.1 and scratch are not distinguishable at this scale": "",
              "On the probe at K = 6, 1p-frac, Δ = 0.1 is above scratch": "",
              "The gap of 1p-frac, Δ = 0.1 over scratch grows from K = 1 to K = 6": ""}
    assert len(said) == len(expect) + 1  # and the probe's mean over K
    for start, then in expect.items():
        sentence = next((s for s in said if s.startswith(start)), None)
        assert sentence is not None and then in sentence, (start, said)
    assert not any("paper" in s for s in said if "probe" in s)  # Figure 3 has no scratch row to agree with
    digits = next(f for f in found["finetune"] if f.where == "digits" and f.subject == "1p-frac"
                  and f.baseline == "scratch")
    assert digits.interval.per_seed == tuple(tuple(row) for row in GAIN)


# The hand-written documents quote the generated reports: every interval they give is one a report computed,
# with the same verdict.

QUOTED = re.compile(r"([+−]?\d+\.\d) points \(95 % interval ([+−]?\d+\.\d) to ([+−]?\d+\.\d)")
GENERATED = ("experiments/REPORT.md", "experiments/diagnosis-runs.md")
WRITTEN = ("docs/training.md", "experiments/REPORT-cpu-diagnosis.md")


def _verdicts(text: str) -> dict[tuple[str, str, str], set[str]]:
    """Each quoted interval -> the verdicts of the sentences that quote it (the text before it, back to the
    previous sentence's end)."""
    found: dict[tuple[str, str, str], set[str]] = {}
    for match in QUOTED.finditer(text):
        before = re.split(r"(?<=[.;])\s", text[:match.start()].replace("\n", " "))[-1]
        if "not distinguishable at this scale" in before:
            word = UNDECIDED
        elif " is above " in before or " above " in before:
            word = ABOVE
        elif " is below " in before or " below " in before:
            word = BELOW
        else:
            word = "none"
        found.setdefault(match.groups(), set()).add(word)
    return found


def check_quotes(written: str, generated: str) -> list[str]:
    """What a written text quotes that no generated report computed, or with another verdict."""
    computed = _verdicts(generated)
    wrong = []
    for quote, words in _verdicts(written).items():
        if quote not in computed:
            wrong.append(f"{quote}: in no generated report")
        elif words - {"none"} - computed[quote]:
            wrong.append(f"{quote}: said {sorted(words)}, the report {sorted(computed[quote])}")
    return wrong


def test_the_docs_and_the_diagnosis_quote_only_intervals_a_report_computed_with_its_verdict():
    generated = "\n".join((ROOT / p).read_text() for p in GENERATED)
    for path in WRITTEN:
        text = (ROOT / path).read_text()
        assert QUOTED.search(text), f"{path} gives no interval"
        assert check_quotes(text, generated) == [], path


def test_a_quote_with_another_number_or_verdict_is_caught():
    report = "- On digits, A is above scratch: +5.0 points (95 % interval +1.0 to +9.0)."
    assert check_quotes("A fine-tunes digits above scratch: +5.0 points (95 % interval +1.0 to +9.0).", report) == []
    assert check_quotes("A gains +5.1 points (95 % interval +1.0 to +9.0).", report) != []
    assert check_quotes("A and scratch are not distinguishable at this scale: +5.0 points (95 % interval +1.0 to "
                        "+9.0).", report) != []
    assert check_quotes("A is below scratch: +5.0 points (95 % interval +1.0 to +9.0).", report) != []
