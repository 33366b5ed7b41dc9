"""What a render guarantees beyond its output bytes: a resume after a kill, Ctrl-C or damage gives the same
shards; one render per directory at a time; every rename durable; each bad output one error. (The randomized
fault campaign, kills and full disks at random moments: ``tests/faults/test_render_faults.py``.)"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_fracbuild_render import shard_bytes

from fracbuild.dataset import verify
from fracbuild.errors import FracbuildError
from fracbuild.rendering import render
from fracbuild.rundir import JOURNAL
from fracbuild.sources import create_source


def test_a_directory_being_rendered_is_refused_untouched(recipe, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    partial = out / f".{recipe['name']}-000000.tar.1.tmp"  # what the render holding the lock is writing
    partial.write_bytes(b"half a shard")
    (out / JOURNAL).write_text("{}\n")
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(FracbuildError, match=f"^{out} is being rendered by another process; wait for it"):
            render(recipe, out, jobs=1, progress=False, preview=False)
    finally:
        os.close(fd)
    assert sorted(p.name for p in out.iterdir()) == sorted([partial.name, JOURNAL])
    assert partial.read_bytes() == b"half a shard" and (out / JOURNAL).read_text() == "{}\n"
    # Once the lock is gone, the same render goes ahead.
    partial.unlink()
    (out / JOURNAL).unlink()
    assert render(recipe, out, jobs=1, progress=False, preview=False)["samples"] == 12


def test_every_rename_is_fsynced_before_and_its_directory_after(recipe, tmp_path, disk_writes):
    """What a power loss could undo: a renamed file whose data never reached the disk, a rename
    itself, a journal line the resumed render relies on."""
    calls = disk_writes
    out = tmp_path / "out"
    m = render(recipe, out, jobs=1, progress=False, preview=False)  # one job: the shards are written here
    replaced = [(i, c[1], c[2]) for i, c in enumerate(calls) if c[0] == "replace"]
    written = sorted(os.path.basename(dst) for _, _, dst in replaced)
    assert written == sorted([*(s["file"] for s in m["shards"]), "manifest.json", "_info.json", "README.md"])
    for i, src, dst in replaced:
        before = [c for c in calls[:i] if c[0] == "fsync"]
        after = [c for c in calls[i + 1:] if c[0] == "fsync"]
        assert ("fsync", src) in before, f"{dst} renamed in from {src}, never fsynced"
        assert after[:1] == [("fsync", str(out))], f"{dst}: its directory not fsynced right after the rename"
    # The journal: its header, then each shard's line as it comes, each durable before the next.
    journal = [i for i, c in enumerate(calls) if c == ("fsync", str(out / JOURNAL))]
    assert len(journal) == 1 + len(m["shards"])
    # and its name in the directory, before the first shard it could record.
    assert ("fsync", str(out)) in calls[journal[0]:replaced[0][0]]


def test_resume_keeps_good_shards_and_rerenders_damaged_ones(recipe, tmp_path):
    render(recipe, tmp_path / "ref", jobs=1, progress=False)
    out = tmp_path / "out"
    render(recipe, out, jobs=1, progress=False)
    (out / "1p-frac-000001.tar").unlink()
    damaged = out / "1p-frac-000002.tar"
    data = bytearray(damaged.read_bytes())
    data[700] ^= 0xFF
    damaged.write_bytes(bytes(data))
    kept_mtime = (out / "1p-frac-000000.tar").stat().st_mtime_ns
    m = render(recipe, out, jobs=1, progress=False)
    assert m["run"]["rendered"] == 7 and m["run"]["kept"] == 5
    assert (out / "1p-frac-000000.tar").stat().st_mtime_ns == kept_mtime
    assert shard_bytes(out) == shard_bytes(tmp_path / "ref")


def test_killed_render_resumes_to_the_same_shards(recipe, tmp_path):
    recipe["perturb"]["classes"] = 400
    recipe["render"].update(shard_size=4, points=20000)
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    cmd = [sys.executable, "-m", "fracbuild", "render", str(tmp_path / "r.json"), "--jobs", "1", "--no-preview"]
    proc = subprocess.Popen([*cmd, "-o", str(tmp_path / "out")], stderr=subprocess.DEVNULL)
    journal = tmp_path / "out" / JOURNAL
    deadline = time.time() + 60
    while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 4):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list((tmp_path / "out").glob("*.tar")))
    assert 3 <= written < 100 and not (tmp_path / "out" / "manifest.json").exists()
    out = subprocess.run([*cmd, "-o", str(tmp_path / "out")], capture_output=True, text=True, check=True).stdout
    assert "kept from an earlier run" in out
    subprocess.run([*cmd, "-o", str(tmp_path / "ref")], capture_output=True, check=True)
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "ref")
    assert not list((tmp_path / "out").glob(".*tmp")) and not journal.exists()


def test_ctrl_c_on_the_process_group_is_one_line_and_resumes(recipe, tmp_path):
    recipe["perturb"]["classes"] = 400
    recipe["render"].update(shard_size=4, points=20000)
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    cmd = [sys.executable, "-m", "fracbuild", "render", str(tmp_path / "r.json"), "--jobs", "2", "--no-preview"]
    # A terminal's Ctrl-C goes to every process of the foreground group: the workers too.
    proc = subprocess.Popen([*cmd, "-o", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    journal = tmp_path / "out" / JOURNAL
    deadline = time.time() + 60
    while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 3):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [f"Interrupted: finished shards are kept in {tmp_path / 'out'}; "
                                        "run the same command to resume."]
    subprocess.run([*cmd, "-o", str(tmp_path / "out")], capture_output=True, check=True)
    subprocess.run([*cmd, "-o", str(tmp_path / "ref")], capture_output=True, check=True)
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "ref")


@pytest.mark.parametrize("backend", ["fork", "loky", "dask"])
def test_local_workers_leave_ctrl_c_to_the_parent(backend):
    from joblib import delayed

    from fracbuild.backends import parallel_backend

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with parallel_backend(backend, jobs=2) as run:
        masks = list(run(delayed(signal.pthread_sigmask)(signal.SIG_BLOCK, []) for _ in range(4)))
    assert all(signal.SIGINT in m for m in masks)  # a worker never sees the terminal's Ctrl-C
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # the parent still does


def test_another_recipe_is_refused_unless_forced(recipe, tmp_path):
    render(recipe, tmp_path, jobs=1, progress=False)
    with pytest.raises(FracbuildError, match=r"another recipe \(differs in perturb.delta\)"):
        render(recipe, tmp_path, jobs=1, progress=False, delta=0.2)
    with pytest.raises(FracbuildError, match=r"differs in perturb.classes, perturb.delta, perturb.seed, "
                                             r"render.draw, render.points and 2 more\)"):
        render(recipe, tmp_path, jobs=1, progress=False, delta=0.2, classes=3, seed=1, points=999, size=40,
               shard_size=2, draw="point")
    with pytest.raises(FracbuildError, match=r"differs in perturb.classes, render.size\)"):
        render(recipe, tmp_path, jobs=1, progress=False, classes=3, size=40)
    recipe["name"] = "other"
    m = render(recipe, tmp_path, jobs=1, progress=False, force=True, classes=6)
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["other-000000.tar", "other-000001.tar"]
    assert m["samples"] == 6 and verify(tmp_path) == []


def test_unwritable_output_is_one_error(recipe, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(FracbuildError, match="not a directory"):
        render(recipe, blocker, jobs=1, progress=False)
    with pytest.raises(FracbuildError, match="cannot create"):
        render(recipe, blocker / "sub", jobs=1, progress=False)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_is_one_error(recipe, tmp_path):
    from fracbuild.shards import write_shard

    target = tmp_path / "x.tar"
    os.symlink("/dev/full", tmp_path / f".{target.name}.{os.getpid()}.tmp")
    sample = create_source(recipe).sample(0, 0)
    with pytest.raises(FracbuildError, match="No space left on device"):
        write_shard(target, iter([(0, *sample)]))
