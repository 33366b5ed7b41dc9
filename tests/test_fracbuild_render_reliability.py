"""What a render guarantees beyond its output bytes: one render per directory at a time."""

import fcntl
import os

import pytest

from fracbuild.errors import FracbuildError
from fracbuild.rendering import render
from fracbuild.rundir import JOURNAL


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
