"""Two processes under torchrun on gloo: ranks read disjoint shares of a pass, a pre-training completes
with one set of files written by rank 0, and one cut twice and resumed trains as the uncut one.

torchrun runs from the preloaded fork server and forks its ranks (``fork_ranks.py``), so that no rank spends
seconds importing torch; the launcher's own tests and the fault campaign start real ``torchrun`` processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import forked_python
import pytest
import torch
from test_trainer_data import labels_in, one_thread, tiny  # noqa: F401 (fixtures)

from trainer.data.shardlists import resolve_data

# Each rank records the keys its loader yields (one pass of its share), then both run the command
# line's pretrain together in the process group torchrun set up.
SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from trainer import distributed
    from trainer.cli import main
    from trainer.data.stream import create_loader
    from trainer.data.shardlists import resolve_data
    from trainer.data.transforms import create_eval_transform

    data, out, keys_file = sys.argv[1:4]
    torch.set_num_threads(1)
    d = distributed.setup("cpu")
    loader = create_loader(resolve_data(data), transform=create_eval_transform(img_size=8), batch_size=2,
                           steps=3, workers=1, rank=d.rank, world=d.world, shuffle_buffer=1)
    keys = [k for batch in loader for k in batch["key"]]
    everyone = distributed.gather({"rank": d.rank, "world": d.world, "keys": keys}, d)
    if d.main:
        with open(keys_file, "w") as f:
            json.dump(everyone, f)
    code = 0
    try:
        main(["pretrain", "--data", data, "--out", out, "--preset", "smoke", "--samples", "320", "--workers", "1",
              "--no-progress"])
    except SystemExit as e:
        code = e.code
    distributed.teardown(distributed.Dist(owns_group=True))
    sys.exit(code)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FORK_RANKS = Path(__file__).with_name("fork_ranks.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}


def torchrun(*args) -> list[str]:
    """The arguments of a 2-process torchrun on gloo (loopback) running ``args``, its ranks forked."""
    return [FORK_RANKS, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", free_port(), *args]


def run_two_ranks(source: str, tmp_path, *args) -> subprocess.CompletedProcess:
    """``source`` run as a script by a 2-process torchrun on gloo (loopback), with ``args``; must exit 0."""
    script = tmp_path / "two_ranks.py"
    script.write_text(source)
    result = forked_python.run(torchrun(script, *args), env=ENV, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_on_gloo_read_disjoint_shards_and_pretrain(tiny, tmp_path):  # noqa: F811
    out, keys_file = tmp_path / "run", tmp_path / "keys.json"
    result = run_two_ranks(SCRIPT, tmp_path, tiny, out, keys_file)

    ranks = json.loads(keys_file.read_text())
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    urls = resolve_data(str(tiny)).urls
    for r in ranks:  # 6 shards over 2 ranks: each rank reads 3 whole shards of the pass, each sample once
        assert len(r["keys"]) == len(set(r["keys"])) == 6 and len({int(k) // 2 for k in r["keys"]}) == 3
    assert sorted(ranks[0]["keys"] + ranks[1]["keys"]) == sorted(labels_in(urls))

    assert result.stdout.count("20 steps, final loss") == 1  # rank 0 alone prints
    config = json.loads((out / "config.json").read_text())
    assert config["processes"] == 2 and config["batch_per_process"] == 8 and config["total_steps"] == 20
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(5, 21, 5))  # one line per logged step: only rank 0 writes
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 20
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "curves.png", "metrics.jsonl"]


def logged_steps(out) -> list[int]:
    path = out / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("}")]


def stopped_once_past(args, out, step: int) -> int:
    """Run ``args``, SIGTERM its process group (what Slurm and ``timeout`` send) once ``out`` logged ``step``;
    returns the step its checkpoint was saved at."""
    proc = forked_python.start(args, env=ENV, session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and max(logged_steps(out), default=0) < step:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    err = proc.wait(timeout=240).stderr
    assert "Interrupted at step" in err, err[-3000:]
    return torch.load(out / "checkpoint.pt", weights_only=True)["step"]


@pytest.mark.parametrize("path", [["--input", "stream", "--workers", "1", "--shuffle-buffer", "5"],
                                  ["--input", "memory"]], ids=["stream-1", "memory"])
def test_two_processes_cut_twice_and_resumed_train_exactly_as_uncut(tiny, tmp_path, path):  # noqa: F811
    # Each rank's augmentation, Mixup, drop path and share of the data continue from its own saved state.
    run = ["-m", "trainer", "pretrain", "--data", str(tiny), "--preset", "smoke", "--samples", "960",
           "--drop-path", "0.1", "--no-progress", *path]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = forked_python.run(torchrun(*run, "--out", whole), env=ENV, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    first = stopped_once_past(torchrun(*run, "--out", cut), cut, 10)
    second = stopped_once_past(torchrun(*run, "--out", cut, "--resume"), cut, first + 15)
    assert 10 <= first < second < 60
    done = forked_python.run(torchrun(*run, "--out", cut, "--resume"), env=ENV, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    losses = [{json.loads(line)["step"]: json.loads(line)["loss"] for line in (out / "metrics.jsonl").open()
               if json.loads(line)["step"] > second} for out in (cut, whole)]
    assert losses[0] == losses[1] and losses[0]
    a, b = (torch.load(out / "checkpoint.pt", weights_only=True)["state_dict"] for out in (cut, whole))
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_the_launcher_keeps_torchruns_report_of_a_rank_that_failed(tmp_path):
    """trainer.launch quiets only a stop signal (the fault trials); a rank's failure keeps torchrun's report."""
    failed = subprocess.run([sys.executable, "-m", "trainer.launch", "--nproc_per_node", "1", "--master_addr",
                             "127.0.0.1", "--master_port", str(free_port()), "-m", "trainer", "pretrain", "--data",
                             str(tmp_path / "missing"), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, env=ENV, timeout=240)
    assert failed.returncode not in (0, 130)
    assert "ChildFailedError" in failed.stderr and "does not exist" in failed.stderr
