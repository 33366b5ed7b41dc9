"""Training stopped by SIGTERM or SIGINT, to the process or to its whole process group (what
``timeout``, Slurm, ``scancel`` and a terminal's Ctrl-C send), at a random step, alone and under a
2-process torchrun on gloo: one line, a checkpoint at the step reached, and ``--resume`` goes on
from that step."""

import json
import os
import signal
import subprocess
import sys
import time

import torch
from conftest import trials
from test_trainer_data import one_thread, tiny  # noqa: F401 (fixtures)
from test_trainer_distributed import free_port

import trainer

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
RUN = ["--preset", "smoke", "--samples", "1600", "--workers", "1", "--no-progress"]


def logged_steps(out) -> list[int]:
    path = out / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("}")]


def interrupt(cmd, out, rng, sig, group: bool) -> tuple[int, str, int]:
    """Start ``cmd``, signal it once it logged a random step, and return (exit code, stderr, step logged)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    at = rng.choice([5, 10, 15, 20])
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and max(logged_steps(out), default=0) < at:
        time.sleep(0.05)
    time.sleep(rng.uniform(0, 0.3))  # between logging steps
    reached = max(logged_steps(out), default=0)
    (os.killpg if group else os.kill)(proc.pid, sig)
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err, reached


def check_resume(tiny, out, stopped: int) -> bool:  # noqa: F811
    """The checkpoint holds ``stopped``, and --resume continues from there to the end."""
    if torch.load(out / "checkpoint.pt", weights_only=True)["step"] != stopped:
        return False
    summary = trainer.pretrain(str(tiny), out, resume=True, progress=False, samples=1600, workers=0)
    steps = logged_steps(out)
    return summary["steps"] == 100 and steps == sorted(set(steps)) and stopped in steps


def stopped_at(err: str) -> int | None:
    """The step of the one 'Interrupted at step S' line, if stderr has exactly that (and nothing of ours else)."""
    lines = [line for line in err.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("Interrupted at step")]
    if len(ours) != 1 or "DataLoader worker" in err or "/trainer/" in err:
        return None
    return int(ours[0].split()[3])


def test_signals_alone(tiny, tmp_path, tally):  # noqa: F811
    failures = []
    for t, rng in enumerate(trials("training/alone")):
        # The first trial is always what `timeout` and Slurm send: SIGTERM to the whole group.
        sig, group = (signal.SIGTERM, True) if t == 0 else (rng.choice([signal.SIGTERM, signal.SIGINT]),
                                                             rng.random() < 0.5)
        out = tmp_path / str(t)
        cmd = [sys.executable, "-m", "trainer", "pretrain", "--data", str(tiny), "--out", str(out), *RUN]
        code, err, reached = interrupt(cmd, out, rng, sig, group)
        step = stopped_at(err)
        ok = code == 130 and step is not None and step >= reached and check_resume(tiny, out, step)
        kind = f"training: {signal.Signals(sig).name} to the {'process group' if group else 'process'}"
        tally(kind).record(ok, lost=0 if ok else 1)
        if not ok:
            failures.append((kind, code, err[-2000:]))
    assert not failures, failures


def test_signals_under_torchrun(tiny, tmp_path, tally):  # noqa: F811
    failures = []
    for t, rng in enumerate(trials("training/torchrun", scale=0.5)):
        sig, group = (signal.SIGTERM, True) if t == 0 else (rng.choice([signal.SIGTERM, signal.SIGINT]),
                                                             rng.random() < 0.5)
        out = tmp_path / str(t)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "trainer", "pretrain", "--data", str(tiny), "--out", str(out),
               *RUN]
        code, err, reached = interrupt(cmd, out, rng, sig, group)
        # torchrun itself reports the signal it got (its own log lines and traceback); the ranks say one line.
        step = stopped_at(err)
        ok = step is not None and step >= reached and check_resume(tiny, out, step)
        kind = f"training under torchrun: {signal.Signals(sig).name} to the {'group' if group else 'launcher'}"
        tally(kind).record(ok, lost=0 if ok else 1)
        if not ok:
            failures.append((kind, code, err[-3000:]))
    assert not failures, failures
