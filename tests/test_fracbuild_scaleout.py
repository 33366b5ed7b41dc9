"""Rendering on a dask.distributed cluster and sharing datasets over HTTP, on loopback only."""

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fracbuild.dataset import verify
from fracbuild.errors import FracbuildError
from fracbuild.fetching import fetch
from fracbuild.rendering import render
from fracbuild.rundir import JOURNAL

# Under pytest-xdist, on one worker: the dask cluster (a module fixture) starts once.
pytestmark = pytest.mark.xdist_group("scaleout")

distributed = pytest.importorskip("distributed")


def shard_bytes(out_dir):
    return {p.name: p.read_bytes() for p in sorted(Path(out_dir).glob("*.tar"))}


@pytest.fixture(scope="module")
def cluster():
    """A scheduler and two single-threaded worker processes on 127.0.0.1."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield cluster.scheduler_address, client


def test_dask_cluster_renders_the_same_shards_as_a_local_render(recipe, tmp_path, cluster):
    address, client = cluster
    local = render(recipe, tmp_path / "local", jobs=1, progress=False, preview=False)
    with distributed.get_task_stream(client) as stream:
        remote = render(recipe, tmp_path / "dask", backend="dask", address=address, progress=False, preview=False)
    assert shard_bytes(tmp_path / "dask") == shard_bytes(tmp_path / "local") and len(local["shards"]) == 3
    assert remote["shards"] == local["shards"]
    # The shard tasks ran on the cluster's workers.
    workers = set(client.scheduler_info()["workers"])
    assert len(stream.data) >= 3 and {task["worker"] for task in stream.data} <= workers


def test_killed_worker_loses_nothing(recipe, tmp_path, cluster):
    address, client = cluster
    recipe["perturb"]["classes"] = 240
    recipe["render"].update(shard_size=4, points=30000, size=96)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recipe))
    cmd = [sys.executable, "-m", "fracbuild", "render", str(path), "--no-preview", "--backend", "dask",
           "--address", address]
    out = tmp_path / "out"
    proc = subprocess.Popen([*cmd, "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / JOURNAL
    deadline = time.time() + 120
    while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 6):
        time.sleep(0.02)
    assert proc.poll() is None, "the render finished before a worker could be killed"
    victim = next(iter(client.run(os.getpid).values()))
    os.kill(victim, signal.SIGKILL)
    proc.communicate(timeout=300)
    # Whether or not the first run survived the kill, running it again completes the dataset.
    again = subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    render(recipe, tmp_path / "ref", jobs=1, progress=False, preview=False)
    assert shard_bytes(out) == shard_bytes(tmp_path / "ref")
    assert verify(out) == [] and not list(out.glob(".*"))


@pytest.fixture
def served(recipe, tmp_path):
    """A rendered dataset served by `python -m http.server` on 127.0.0.1."""
    root = tmp_path / "www"
    render(recipe, root / "ds", jobs=1, progress=False)
    proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                             "--directory", str(root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port NNNNN (http://127.0.0.1:NNNNN/) ..."
    port = int(line.split(" port ")[1].split()[0])
    yield f"http://127.0.0.1:{port}/ds/", root / "ds"
    proc.terminate()
    proc.wait()


def test_fetch_downloads_and_verifies(served, tmp_path):
    url, source = served
    m = fetch(url, tmp_path / "copy", progress=False)
    assert m["run"] == {"transferred": sum(s["bytes"] for s in m["shards"]), "downloaded": 3, "kept": 0}
    assert shard_bytes(tmp_path / "copy") == shard_bytes(source)
    for extra in ("_info.json", "README.md"):  # the dataset card travels with the shards
        assert (tmp_path / "copy" / extra).read_bytes() == (source / extra).read_bytes()
    assert verify(tmp_path / "copy") == []
    again = fetch(url, tmp_path / "copy", progress=False)
    assert again["run"] == {"transferred": 0, "downloaded": 0, "kept": 3}


def test_fetch_completes_a_half_download_from_a_server_without_ranges(served, tmp_path):
    url, source = served
    out = tmp_path / "copy"
    out.mkdir()
    shard = source / "1p-frac-000001.tar"
    (out / ".1p-frac-000001.tar.part").write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    fetch(url, out, progress=False)
    assert shard_bytes(out) == shard_bytes(source) and not list(out.glob(".*"))


def test_fetch_rejects_a_tampered_shard(served, tmp_path):
    url, source = served
    shard = source / "1p-frac-000002.tar"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(FracbuildError, match="1p-frac-000002.tar: sha256 does not match the manifest"):
        fetch(url, tmp_path / "copy", progress=False)
    assert not (tmp_path / "copy" / "1p-frac-000002.tar").exists()
    assert not (tmp_path / "copy" / "manifest.json").exists()


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static server that honours `Range: bytes=N-`, as nginx or an object store does."""

    sent = 0

    def send_head(self):
        spec = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not spec or not path.is_file():
            return super().send_head()
        start = int(spec.removeprefix("bytes=").rstrip("-"))
        size = path.stat().st_size
        f = open(path, "rb")  # noqa: SIM115 (closed by the base class after copying)
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return f

    def copyfile(self, source, outputfile):
        data = source.read()
        type(self).sent += len(data)
        outputfile.write(data)

    def log_message(self, *args):
        pass


def test_fetch_resumes_with_range_requests(recipe, tmp_path):
    root = tmp_path / "www"
    render(recipe, root, jobs=1, progress=False)
    handler = type("Handler", (RangeHandler,), {"sent": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = tmp_path / "copy"
        out.mkdir()
        shard = root / "1p-frac-000000.tar"
        half = shard.stat().st_size // 2
        (out / ".1p-frac-000000.tar.part").write_bytes(shard.read_bytes()[:half])
        m = fetch(f"http://127.0.0.1:{server.server_port}", out, progress=False)
        total = sum(s["bytes"] for s in m["shards"])
        assert m["run"]["transferred"] == total - half
        assert shard_bytes(out) == shard_bytes(root)
    finally:
        server.shutdown()


def test_fetch_errors_are_one_line(served, tmp_path):
    url, _ = served
    with pytest.raises(FracbuildError, match="HTTP 404"):
        fetch(url + "nothing/", tmp_path / "a", progress=False)
    with pytest.raises(FracbuildError, match="needs an http"):
        fetch("ftp://example.org/x/", tmp_path / "a", progress=False)
    with pytest.raises(FracbuildError, match="cannot fetch http://127.0.0.1:9/"):
        fetch("http://127.0.0.1:9/", tmp_path / "a", progress=False)


def test_unsafe_manifest_names_are_refused(served, tmp_path):
    url, source = served
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["shards"][0]["file"] = "../escape.tar"
    (source / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FracbuildError, match="unsafe file name"):
        fetch(url, tmp_path / "a", progress=False)


def test_backend_errors(recipe, tmp_path):
    with pytest.raises(FracbuildError, match="--address needs --backend dask or ray"):
        render(recipe, tmp_path, address="tcp://127.0.0.1:1", progress=False)
    with pytest.raises(FracbuildError, match="cannot reach the dask scheduler"):
        render(recipe, tmp_path / "b", backend="dask", address="tcp://127.0.0.1:9", progress=False)


def test_ray_backend_without_ray_is_one_error(recipe, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray sees
    with pytest.raises(FracbuildError, match="backend ray needs Ray"):
        render(recipe, tmp_path, backend="ray", progress=False)


def test_local_ray_renders_the_same_shards_as_a_local_render(recipe, tmp_path):
    ray = pytest.importorskip("ray")
    recipe["render"]["shard_size"] = 2  # 6 shards: more than one round of tasks per worker
    local = render(recipe, tmp_path / "local", jobs=1, progress=False, preview=False)
    remote = render(recipe, tmp_path / "ray", backend="ray", jobs=2, progress=False, preview=False)
    assert shard_bytes(tmp_path / "ray") == shard_bytes(tmp_path / "local") and len(local["shards"]) == 6
    assert remote["shards"] == local["shards"]
    assert not ray.is_initialized()  # the Ray started for the render is stopped after it
    with pytest.raises(FracbuildError, match="cannot reach the Ray cluster at 127.0.0.1:9"):
        render(recipe, tmp_path / "unreachable", backend="ray", address="127.0.0.1:9", progress=False)
