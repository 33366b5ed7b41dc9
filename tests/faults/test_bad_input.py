"""Bad input fuzzed with hypothesis: recipes with wrong types, NaN/inf, huge and negative sizes,
unknown keys and wrong sources, malformed JSON, and bad options. Each ends with one line on stderr
and a non-zero exit, no traceback, and nothing written."""

import json
import math

from click.testing import CliRunner
from conftest import CHEAP, COUNTS, SEED, TRIALS
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from test_trainer_data import tiny  # noqa: F401 (fixture)

from fracbuild.cli import main

BAD = st.sampled_from([-1, 0, 10**12, 2**63, 10**30, True, "5", None, [], {}, math.nan, math.inf, -math.inf,
                       1e308, -0.5, "fractal", [[1, 2, 3]]])
KEYS = [("perturb", "classes"), ("perturb", "delta"), ("perturb", "seed"), ("perturb", "mode"), ("render", "size"),
        ("render", "points"), ("render", "instances"), ("render", "shard_size"), ("render", "draw"),
        ("render", "fill_min"), ("render", "flips"), ("render", "sequence"), ("ifs", "maps"), ("ifs", "probs"),
        ("ifs", "sigma"), (None, "name"), (None, "source"), ("render", "no_such_key"), (None, "perturb")]
OPTIONS = ["--classes", "--size", "--points", "--instances", "--shard-size", "--seed", "--delta", "--jobs"]
# Hypothesis drops some examples it draws (about a quarter of the render options), so CHEAP + 3 per trial.
EXAMPLES = max(40, (CHEAP + 3) * TRIALS)


def tiny_recipe():
    from pathlib import Path

    recipe = json.loads((Path(__file__).resolve().parents[2] / "manifests" / "1p-frac.json").read_text())
    recipe["perturb"]["classes"] = 2
    recipe["render"].update(size=16, points=200)
    return recipe


def outcome(result, out) -> bool:
    """True if the command refused cleanly (or the input was valid after all and it succeeded)."""
    if result.exit_code == 0:
        return True
    lines = result.output.strip().splitlines()
    return (isinstance(result.exception, SystemExit) and len(lines) == 1 and lines[0].startswith("Error: ")
            and not out.exists())


def record(ok: bool, kind: str) -> None:
    c = COUNTS[kind]
    c["trials"] += 1
    c["survived"] += ok


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from(KEYS), value=BAD, cut=st.integers(0, 4000), malformed=st.booleans())
def test_fuzzed_recipes(tmp_path_factory, key, value, cut, malformed):
    tmp = tmp_path_factory.mktemp("fuzz")
    recipe = tiny_recipe()
    section, name = key
    (recipe if section is None else recipe[section])[name] = value
    text = json.dumps(recipe)
    if malformed:
        text = text[: cut % len(text)]  # cut short: not JSON any more
    (tmp / "r.json").write_text(text)
    out = tmp / "out"
    result = CliRunner().invoke(main, ["render", str(tmp / "r.json"), "-o", str(out), "--jobs", "1", "--no-preview"])
    ok = outcome(result, out)
    record(ok, "bad input: fuzzed recipe")
    assert ok, (key, value, malformed, result.output, result.exception)


# One bad option, or two (a bad one beside another bad or good one): one option alone has only 8 x 14 values,
# fewer than the 100 trials a long run makes.
BAD_OPTION = st.tuples(st.sampled_from(OPTIONS), st.sampled_from(
    ["-1", "0", "1e12", "1000000000000", "nan", "inf", "-inf", "abc", "", "99999999999999999999", "-0", "2.5",
     "0x10", "1e-9"]))
GOOD_OPTION = st.tuples(st.sampled_from(["--classes", "--size", "--jobs"]), st.sampled_from(["1", "2"]))


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(options=st.tuples(BAD_OPTION, st.none() | BAD_OPTION | GOOD_OPTION))
def test_fuzzed_options(tmp_path_factory, options):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "r.json").write_text(json.dumps(tiny_recipe()))
    out = tmp / "out"
    args = [part for option in options if option is not None for part in option]
    result = CliRunner().invoke(main, ["render", str(tmp / "r.json"), "-o", str(out), "--no-preview", *args])
    ok = outcome(result, out)
    record(ok, "bad input: fuzzed render option")
    assert ok, (args, result.output, result.exception)


def test_refused_commands_leave_nothing(tiny, tmp_path):  # noqa: F811
    """A render refused once its journal is open, and trainer runs refused after their data was read."""
    from trainer.cli import main as trainer_main

    (tmp_path / "r.json").write_text(json.dumps(tiny_recipe()))
    out = tmp_path / "render"
    result = CliRunner().invoke(main, ["render", str(tmp_path / "r.json"), "-o", str(out), "--address", "tcp://x:1"])
    assert outcome(result, out) and result.exit_code != 0 and not out.exists()
    for args in (["--batch-size", "15"], ["--model", "vit_no_such_model"], ["--classes", "5"]):
        out = tmp_path / "run"
        result = CliRunner().invoke(trainer_main, ["pretrain", "--data", str(tiny), "--out", str(out), "--preset",
                                                   "smoke", *args])
        assert outcome(result, out) and result.exit_code != 0, (args, result.output)
    result = CliRunner().invoke(trainer_main, ["finetune", "--init", "scratch", "--dataset", "folder:/nonexistent",
                                               "--out", str(out), "--preset", "smoke"])
    assert outcome(result, out) and result.exit_code != 0, result.output
