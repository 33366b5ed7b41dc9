"""Training stopped by SIGTERM or SIGINT, to the process or to its whole process group (what
``timeout``, Slurm, ``scancel`` and a terminal's Ctrl-C send), at a random step, alone and under a
2-process torchrun on gloo: one line, a checkpoint at the step reached, and ``--resume`` goes on
from that step."""

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import forked_python
import pytest
import torch
from conftest import trials
from test_trainer_data import one_thread, tiny  # noqa: F401 (fixtures)
from test_trainer_distributed import free_port

import trainer

# Under pytest-xdist, on one worker: the module fixtures are made once.
pytestmark = pytest.mark.xdist_group("faults-training")

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


# Who is signalled, and with what: ``timeout``, Slurm and ``scancel`` send SIGTERM to the process group, a
# terminal's Ctrl-C SIGINT to it, ``kill PID`` SIGTERM to the process alone.
ALONE = [(signal.SIGTERM, True), (signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGINT, False)]
UNDER_TORCHRUN = [(signal.SIGTERM, True), (signal.SIGINT, True), (signal.SIGTERM, False)]


def kind_name(sig, group: bool, alone: bool) -> str:
    whom = ("process group" if group else "process") if alone else ("group" if group else "launcher")
    return f"training{'' if alone else ' under torchrun'}: {signal.Signals(sig).name} to the {whom}"


@pytest.mark.parametrize(("sig", "group"), ALONE, ids=lambda v: getattr(v, "name", str(v)))
def test_signals_alone(tiny, tmp_path, tally, sig, group):  # noqa: F811
    kind = kind_name(sig, group, alone=True)
    failures = []
    for t, rng in enumerate(trials(kind)):
        out = tmp_path / str(t)
        cmd = [sys.executable, "-m", "trainer", "pretrain", "--data", str(tiny), "--out", str(out), *RUN]
        code, err, reached = interrupt(cmd, out, rng, sig, group)
        step = stopped_at(err)
        ok = code == 130 and step is not None and step >= reached and check_resume(tiny, out, step)
        tally(kind).record(ok, lost=0 if ok else 1)
        if not ok:
            failures.append((kind, code, err[-2000:]))
    assert not failures, failures


@pytest.mark.parametrize(("sig", "group"), UNDER_TORCHRUN, ids=lambda v: getattr(v, "name", str(v)))
def test_signals_under_torchrun(tiny, tmp_path, tally, sig, group):  # noqa: F811
    kind = kind_name(sig, group, alone=False)
    failures = []
    for t, rng in enumerate(trials(kind)):
        out = tmp_path / str(t)
        cmd = [sys.executable, "-m", "trainer.launch", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "trainer", "pretrain", "--data", str(tiny), "--out", str(out),
               *RUN]
        code, err, reached = interrupt(cmd, out, rng, sig, group)
        # The ranks' one line and nothing of torchrun's (its traceback, its shutdown warnings).
        step = stopped_at(err)
        lines = [line for line in err.splitlines() if line.strip()]
        alone = len(lines) == 1 and step is not None
        ok = code == 130 and alone and step >= reached and check_resume(tiny, out, step)
        tally(kind).record(ok, lost=0 if ok else 1)
        if not ok:
            failures.append((kind, code, err[-3000:]))
    assert not failures, failures


@pytest.fixture(scope="module")
def stopped(tiny, tmp_path_factory):  # noqa: F811
    """A run stopped by SIGTERM after a checkpoint (saved every 5 steps), and the step it holds."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    cmd = [sys.executable, "-m", "trainer", "pretrain", "--data", str(tiny), "--out", str(out), *RUN,
           "--save-every", "5"]
    code, err, _ = interrupt(cmd, out, random.Random(0), signal.SIGTERM, group=False)
    assert code == 130, err
    return out, torch.load(out / "checkpoint.pt", weights_only=True)["step"]


def resume_cmd(tiny, out) -> list[str]:  # noqa: F811
    return [sys.executable, "-m", "trainer", "pretrain", "--data", str(tiny), "--out", str(out), "--resume",
            "--no-progress", "--workers", "1", "--save-every", "5"]


def debris(out) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def limited_write(cmd, out, stopped_step, tiny, *, fsize=None) -> tuple[bool, str]:  # noqa: F811
    """Resume ``out`` under a write limit: one line naming what could not be written, the checkpoint left as
    it was, no debris; then (the limit gone) --resume goes on from that checkpoint to the end."""
    before = (out / "checkpoint.pt").read_bytes()
    failed = forked_python.run(cmd[1:], env=ENV, timeout=240, fsize=fsize)
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    one_line = failed.returncode == 1 and len(lines) == 1 and "Traceback" not in failed.stderr
    kept = (out / "checkpoint.pt").read_bytes() == before
    clean = debris(out) == []
    return one_line and kept and clean and check_resume(tiny, out, stopped_step), failed.stderr[-1500:]


def test_a_file_size_limit_during_a_checkpoint_write(tiny, stopped, tmp_path, tally):  # noqa: F811
    run, step = stopped
    size = (run / "checkpoint.pt").stat().st_size
    failures = []
    for t, rng in enumerate(trials("training/fsize")):
        out = tmp_path / str(t)
        shutil.copytree(run, out)
        limit = rng.randrange(size // 2, size)  # above metrics.jsonl and config.json, below a checkpoint
        ok, err = limited_write(resume_cmd(tiny, out), out, step, tiny, fsize=limit)
        ok = ok and "File too large" in err and "checkpoint" in err
        tally("training: file-size limit during a checkpoint write").record(ok, lost=0 if ok else 1)
        if not ok:
            failures.append((t, limit, err))
    assert not failures, failures


@contextlib.contextmanager
def small_disk(path, size: int):
    """A tmpfs of ``size`` bytes at ``path`` (needs root; skips where mounting is not allowed)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs to fill: {mounted.stderr.strip()}")
    try:
        yield lambda size: subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_a_full_disk_during_a_checkpoint_write(tiny, stopped, tmp_path, tally):  # noqa: F811
    run, step = stopped
    used = sum(-(-p.stat().st_size // 4096) * 4096 for p in run.iterdir())
    size = (run / "checkpoint.pt").stat().st_size
    failures = []
    for t, rng in enumerate(trials("training/enospc")):
        disk = tmp_path / str(t)
        free = rng.randrange(8 * 4096, size)  # the next checkpoint (written beside the last) does not fit
        with small_disk(disk, used + free) as resize:
            out = disk / "run"
            shutil.copytree(run, out)
            before = (out / "checkpoint.pt").read_bytes()
            failed = forked_python.run(resume_cmd(tiny, out)[1:], env=ENV, timeout=240)
            lines = [line for line in failed.stderr.splitlines() if line.strip()]
            ok = (failed.returncode == 1 and len(lines) == 1 and "No space left on device" in lines[0]
                  and (out / "checkpoint.pt").read_bytes() == before and debris(out) == [])
            resize(used + 4 * size)  # space freed: the run goes on from the checkpoint it kept
            ok = ok and check_resume(tiny, out, step)
        tally("training: disk full during a checkpoint write").record(ok, lost=0 if ok else 1)
        if not ok:
            failures.append((t, free, failed.stderr[-1500:]))
    assert not failures, failures


def test_two_runs_into_one_directory(tiny, tmp_path, tally):  # noqa: F811
    failures = []
    for t, rng in enumerate(trials("training/two")):
        out = tmp_path / str(t)
        first = [sys.executable, "-m", "trainer", "pretrain", "--data", str(tiny), "--out", str(out), *RUN]
        flag = rng.choice(["", "--force", "--resume"])
        second = first + ([flag] if flag else [])
        a = subprocess.Popen(first, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
        time.sleep(rng.uniform(0, 3))
        b = subprocess.Popen(second, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
        results = [(p.wait(timeout=240), p.stderr.read()) for p in (a, b)]
        codes = [code for code, _ in results]
        # One finishes; the other refuses in one line. Or the second came once the first had let go: a --force
        # run replaced it, a --resume found it complete; either way both finish.
        refused = codes.count(0) == 1 and any(code == 1 and len(err.strip().splitlines()) == 1
                                              for code, err in results)
        after = codes == [0, 0] and flag in ("--force", "--resume")
        steps = logged_steps(out)
        whole = (steps == sorted(set(steps)) and steps[-1] == 100 and debris(out) == []
                 and torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 100)
        ok = (refused or after) and whole
        print(f"two runs, trial {t} ({flag or 'fresh'}): {'refused' if refused else 'one after the other'}")
        tally("training: two runs into one directory").record(ok, lost=0 if whole else 1)
        if not ok:
            failures.append((t, flag, [(code, err[-800:]) for code, err in results]))
    assert not failures, failures


def parses(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_a_crash_between_a_checkpoints_write_and_its_rename(tiny, stopped, tmp_path, tally):  # noqa: F811
    run, step = stopped
    failures = []
    for t, rng in enumerate(trials("training/crash")):
        out = tmp_path / str(t)
        shutil.copytree(run, out)
        # What power loss leaves: the next checkpoint half-written under its temporary name, a metrics line torn.
        data = (out / "checkpoint.pt").read_bytes()
        (out / ".checkpoint.pt.tmp").write_bytes(data[: rng.randrange(1, len(data))])
        line = json.dumps({"step": step + 1, "loss": 1.0, "lr": 0.001})
        with open(out / "metrics.jsonl", "a") as f:
            f.write(line[: rng.randrange(1, len(line))])
        lines = (out / "metrics.jsonl").read_text().splitlines() if check_resume(tiny, out, step) else [""]
        ok = all(parses(line) for line in lines) and debris(out) == []
        tally("training: crash between a checkpoint's write and its rename").record(ok, lost=0 if ok else 1)
        if not ok:
            failures.append((t, debris(out)))
    assert not failures, failures


def test_each_run_file_is_on_disk_before_its_rename_and_the_rename_after(tiny, tmp_path, disk_writes):  # noqa: F811
    """fsync of the temporary file, then the rename, then fsync of the directory: what power loss needs for the
    directory to hold the old file or the new one, whole."""
    events = disk_writes
    out = tmp_path / "run"
    trainer.pretrain(str(tiny), out, preset="smoke", samples=160, workers=0, progress=False, save_every=5)
    renames = [i for i, e in enumerate(events) if e[0] == "replace"]
    written = {os.path.basename(events[i][2]) for i in renames}
    assert {"checkpoint.pt", "config.json", "curves.png"} <= written
    for i in renames:
        _, src, dst = events[i]
        assert ("fsync", os.path.abspath(src)) in events[:i], f"{dst} renamed before its bytes were synced"
        assert ("fsync", os.path.dirname(os.path.abspath(dst))) in events[i + 1:], f"{dst}'s rename not synced"
