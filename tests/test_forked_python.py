"""tests/forked_python.py: a command forked from the preloaded server gives what ``subprocess.run`` gives; and
tests/fork_ranks.py, torchrun with its ranks forked from it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import forked_python
import pytest
from test_trainer_distributed import free_port

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


def test_a_started_command_runs_in_a_session_of_its_own_until_its_group_is_signalled(tmp_path):
    (tmp_path / "wait.py").write_text("import pathlib, time\nprint('started', flush=True)\n"
                                      "pathlib.Path('started').touch()\ntime.sleep(60)\n")
    proc = forked_python.start(["wait.py"], cwd=tmp_path, session=True)
    deadline = time.time() + 30
    while time.time() < deadline and proc.poll() is None and not (tmp_path / "started").exists():
        time.sleep(0.01)
    assert proc.poll() is None and os.getsid(proc.pid) == os.getpgid(proc.pid) == proc.pid != os.getsid(0)
    os.killpg(proc.pid, signal.SIGTERM)
    done = proc.wait(timeout=30)
    assert done.returncode == -signal.SIGTERM and done.stdout == "started\n"


RANKS = """
import os, sys
rank = int(os.environ["RANK"])
print(f"rank {rank} of {os.environ['WORLD_SIZE']}: {' '.join(sys.argv[1:])}", flush=True)
sys.exit(int(sys.argv[1]) if rank == 1 else 0)
"""


def test_torchrun_with_forked_ranks_gives_each_its_rank_and_reports_a_failed_one(tmp_path):
    (tmp_path / "ranks.py").write_text(RANKS)
    launch = [str(Path(__file__).with_name("fork_ranks.py")), "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    done = forked_python.run([*launch, "--master_port", str(free_port()), "ranks.py", "0", "x"], cwd=tmp_path,
                             timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(done.stdout.splitlines()) == ["rank 0 of 2: 0 x", "rank 1 of 2: 0 x"]
    failed = forked_python.run([*launch, "--master_port", str(free_port()), "ranks.py", "3"], cwd=tmp_path,
                               timeout=120)
    assert failed.returncode != 0 and "ChildFailedError" in failed.stderr and "exitcode  : 3" in failed.stderr
