"""tests/forked_python.py: a command forked from the preloaded server gives what ``subprocess.run`` gives."""

import os
import subprocess
import sys

import forked_python
import pytest

SCRIPT = """
import os, sys, torch
print(os.getcwd(), os.environ.get("FORKED_CHECK"), torch.get_num_threads(), sys.argv[1:])
print("to stderr", file=sys.stderr)
if len(sys.argv) > 2:
    with open("big", "wb") as f:
        f.write(bytes(int(sys.argv[2])))
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("args", [["--help"], ["pretrain", "--data", "d", "--out", "o", "--mixup", "-1"]])
def test_a_trainer_command_prints_and_exits_as_in_a_fresh_process(args, tmp_path):
    fresh = subprocess.run([sys.executable, "-m", "trainer", *args], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    forked = forked_python.run(["-m", "trainer", *args], cwd=tmp_path, timeout=120)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert fresh.stdout or fresh.stderr


def test_a_script_gets_its_directory_environment_threads_exit_code_and_limit(tmp_path):
    (tmp_path / "check.py").write_text(SCRIPT)
    env = {**os.environ, "FORKED_CHECK": "yes", "OMP_NUM_THREADS": "2"}
    done = forked_python.run(["check.py", "3"], cwd=tmp_path, env=env, timeout=60)
    assert done.returncode == 3 and done.stderr == "to stderr\n"
    assert done.stdout == f"{tmp_path} yes 2 ['3']\n"
    limited = forked_python.run(["check.py", "0", "5000"], cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"},
                                timeout=60, fsize=4096)
    assert limited.returncode == 1 and "File too large" in limited.stderr.splitlines()[-1]
    assert limited.stdout.split()[2] == "1" and (tmp_path / "big").stat().st_size <= 4096


def test_a_command_past_its_timeout_is_killed(tmp_path):
    (tmp_path / "wait.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        forked_python.run(["wait.py"], cwd=tmp_path, timeout=2)
    assert caught.value.output == "started\n"
