import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fracbuild.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, message):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output


def test_search_writes_a_recipe(tmp_path):
    out = tmp_path / "r.json"
    result = run("search", "--sigma", 3.5, "--seed", 5, "--name", "demo", "-o", out)
    assert result.exit_code == 0, result.output
    recipe = json.loads(out.read_text())
    assert recipe["name"] == "demo" and recipe["search"]["seed"] == 5
    assert "sigma" in result.output and "tries" in result.output and "fill" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sigma", 0], "sigma must lie in (0, 6)"),
        (["--sigma", 6.5], "sigma must lie in (0, 6)"),
        (["--maps", 0], "maps must be at least 1"),
        (["--tolerance", -0.1], "tolerance must be a non-negative"),
        (["--name", "bad.name"], "name must be"),
        (["--fill-min", 1.5], "fill_min must lie"),
    ],
)
def test_search_errors_are_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "r.json"
    result = run("search", *args, "-o", out)
    assert_one_line_error(result, message)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("keep me")
    assert_one_line_error(run("search", "-o", out), "exists; pass --force")
    assert out.read_text() == "keep me"
    assert run("search", "-o", out, "--force").exit_code == 0
    assert json.loads(out.read_text())["name"] == "1p-frac"


def test_unwritable_output_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(run("search", "-o", blocker / "r.json"), "cannot write")
    assert_one_line_error(run("search", "-o", tmp_path), "is a directory")


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fracbuild", "search", "--sigma", "-1", "-o", str(tmp_path / "r.json")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Error: sigma must lie in (0, 6) for 2 map(s), got -1.0"
    assert "Traceback" not in proc.stderr


def test_usage_errors_are_one_line_too(tmp_path):
    assert_one_line_error(run("search", "--sigma", "abc", "-o", tmp_path / "r.json"), "'abc' is not a valid float")
    assert_one_line_error(run("search"), "Missing option '-o'")
    assert_one_line_error(run("nonsense"), "No such command 'nonsense'")


def test_render_verify_preview_info(recipe_file, tmp_path):
    out = tmp_path / "ds"
    result = run("render", recipe_file, "-o", out, "--classes", 6, "--jobs", 1)
    assert result.exit_code == 0, result.output
    assert "6 images rendered" in result.output and "images/s" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["samples"] == 6 and manifest["recipe"]["perturb"]["classes"] == 6
    result = run("verify", out, "--deep", 2)
    assert result.exit_code == 0 and "OK" in result.output and "2 classes re-rendered" in result.output
    assert run("preview", out, "-o", tmp_path / "p.png", "--n", 4).exit_code == 0
    assert (tmp_path / "p.png").stat().st_size > 0
    assert "6 samples" in run("info", out).output


def test_progress_bars_show_when_asked(recipe_file, tmp_path):
    # Off by default where stderr is not a terminal; --progress forces the bars of render and verify.
    quiet = subprocess.run([sys.executable, "-m", "fracbuild", "render", recipe_file, "-o", tmp_path / "a",
                            "--jobs", "1", "--no-preview"], capture_output=True, text=True, check=True)
    assert "render 1p-frac" not in quiet.stderr
    shown = subprocess.run([sys.executable, "-m", "fracbuild", "render", recipe_file, "-o", tmp_path / "b",
                            "--jobs", "1", "--no-preview", "--progress"], capture_output=True, text=True, check=True)
    assert "render 1p-frac" in shown.stderr and "12/12" in shown.stderr
    checked = subprocess.run([sys.executable, "-m", "fracbuild", "verify", tmp_path / "b", "--progress"],
                             capture_output=True, text=True, check=True)
    assert "%|" in checked.stderr


def test_render_overrides_reach_the_manifest(recipe_file, tmp_path):
    out = tmp_path / "ds"
    args = ["--classes", 4, "--delta", 0.05, "--perturb", "additive", "--instances", 2, "--size", 32,
            "--points", 1000, "--draw", "density", "--shard-size", 3, "--seed", 7]
    assert run("render", recipe_file, "-o", out, "--jobs", 1, *args).exit_code == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["recipe"]["perturb"] == {"mode": "additive", "delta": 0.05, "classes": 4, "seed": 7}
    r = m["recipe"]["render"]
    assert (r["instances"], r["size"], r["points"], r["draw"], r["shard_size"]) == (2, 32, 1000, "density", 3)
    assert m["samples"] == 8 and len(m["shards"]) == 3


def test_render_zero_delta_warns(recipe_file, tmp_path):
    result = run("render", recipe_file, "-o", tmp_path / "ds", "--delta", 0, "--classes", 2, "--jobs", 1)
    assert result.exit_code == 0 and "Warning: delta is 0" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--classes", 0], "perturb.classes must be >= 1"),
        (["--delta", -0.5], "perturb.delta must be >= 0"),
        (["--size", 8], "render.size must be >= 16"),
        (["--points", 0], "render.points must be >= 1"),
        (["--instances", 0], "render.instances must be >= 1"),
        (["--shard-size", 0], "render.shard_size must be >= 1"),
        (["--perturb", "sideways"], "Invalid value for '--perturb'"),
        (["--jobs", "many"], "Invalid value for '--jobs'"),
    ],
)
def test_render_option_errors_are_one_line(recipe_file, tmp_path, args, message):
    assert_one_line_error(run("render", recipe_file, "-o", tmp_path / "ds", *args), message)
    assert not (tmp_path / "ds").exists()


def test_render_recipe_and_directory_errors(recipe_file, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x"}')
    assert_one_line_error(run("render", tmp_path / "none.json", "-o", tmp_path / "a"), "cannot read recipe")
    assert_one_line_error(run("render", bad, "-o", tmp_path / "a"), "needs 'ifs'")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(run("render", recipe_file, "-o", blocker), "is a file")
    out = tmp_path / "ds"
    assert run("render", recipe_file, "-o", out, "--classes", 2, "--jobs", 1).exit_code == 0
    assert_one_line_error(run("render", recipe_file, "-o", out, "--classes", 3), "another recipe")


def test_verify_reports_each_problem_and_fails(recipe_file, tmp_path):
    out = tmp_path / "ds"
    run("render", recipe_file, "-o", out, "--jobs", 1)
    (out / "1p-frac-000001.tar").unlink()
    result = run("verify", out)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["1p-frac-000001.tar: missing", f"Error: {out}: 1 problem(s) found"]


@pytest.mark.parametrize("command", ["verify", "preview", "info"])
def test_reading_commands_on_a_non_dataset(command, tmp_path):
    assert_one_line_error(run(command, tmp_path), "has no manifest.json")


def test_render_options_signature_and_overrides_come_from_one_definition(recipe_file):
    """Each render setting is a command-line option and a keyword of ``fracbuild.render`` with the same default;
    each one with a recipe key sets that key, and a name render() does not take is a TypeError."""
    import inspect

    from fracbuild.rendering import effective_recipe, render
    from fracbuild.settings import RENDER

    options = {p.name: p for p in main.commands["render"].params}
    signature = inspect.signature(render).parameters
    for setting in RENDER:
        assert options[setting.name].default == signature[setting.name].default == setting.default, setting.name
        assert tuple(getattr(options[setting.name].type, "choices", ())) == (setting.choices or ())
    values = {"classes": 3, "delta": 0.25, "perturb": "additive", "instances": 2, "size": 40, "points": 500,
              "draw": "point", "shard_size": 5, "seed": 9}
    recipe = effective_recipe(recipe_file, **values)
    assert {s.name: recipe[s.key[0]][s.key[1]] for s in RENDER if s.key} == values
    with pytest.raises(TypeError, match="colour"):
        render(recipe_file, "unused", colour=1)


def test_every_command_shows_each_warning_as_one_line_once_it_succeeds(monkeypatch):
    import warnings

    import fracbuild.manifest
    from fracbuild.errors import FracbuildError

    def info(out_dir):
        for _ in range(2):
            warnings.warn("planted", stacklevel=1)
        return "summary"

    monkeypatch.setattr(fracbuild.manifest, "info", info)
    result = run("info", "anywhere")
    assert result.exit_code == 0 and result.output.count("Warning: planted\n") == 2, result.output

    def failing(out_dir):  # a command that fails says its one line alone
        warnings.warn("planted", stacklevel=1)
        raise FracbuildError("broken")

    monkeypatch.setattr(fracbuild.manifest, "info", failing)
    assert_one_line_error(run("info", "anywhere"), "broken")
