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
