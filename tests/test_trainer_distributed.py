"""Two processes under torchrun on gloo: ranks read disjoint shares of a pass, and a pre-training completes
with one set of files written by rank 0."""

import json
import os
import socket
import subprocess
import sys
import textwrap

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


def run_two_ranks(source: str, tmp_path, *args) -> subprocess.CompletedProcess:
    """``source`` run as a script by a 2-process torchrun on gloo (loopback), with ``args``; must exit 0."""
    script = tmp_path / "two_ranks.py"
    script.write_text(source)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(free_port()), str(script), *map(str, args)],
        capture_output=True, text=True, env=env, timeout=240)
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
