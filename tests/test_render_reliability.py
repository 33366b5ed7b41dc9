"""What a render guarantees beyond its output bytes: one render per directory at a time."""

import fcntl
import os

import pytest

from fracbuild.errors import FracbuildError
from fracbuild.rendering import JOURNAL, render


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
