"""Damaged datasets: single-byte flips at random offsets, truncations at random lengths, deleted and
extra shards, a damaged manifest. ``verify`` must catch every one; the trainer's reader must skip
and count what it cannot read, and never hand over a sample with a wrong label."""

import shutil
import tarfile

import pytest
from conftest import CHEAP, trials
from test_trainer_data import labels_in, tiny  # noqa: F401 (fixture)

from fracbuild.dataset import verify
from fracbuild.errors import FracbuildError
from fracbuild.manifest import MANIFEST

KINDS = ("byte flip in a shard", "byte flip in a label", "shard truncated", "shard deleted", "extra shard",
         "byte flip in the manifest")


def label_offsets(path) -> list[int]:
    """Where the ``.cls`` bytes of a shard lie: one flipped there is a wrong label, unless caught."""
    with tarfile.open(path) as tar:
        return [m.offset_data + i for m in tar if m.name.endswith(".cls") for i in range(m.size)]


def damage(kind: str, rng, data) -> None:
    shards = sorted(data.glob("*.tar"))
    if kind in ("byte flip in a shard", "byte flip in a label"):
        path = rng.choice(shards)
        raw = bytearray(path.read_bytes())
        where = rng.choice(label_offsets(path)) if kind == "byte flip in a label" else rng.randrange(len(raw))
        raw[where] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(raw))
    elif kind == "shard truncated":
        path = rng.choice(shards)
        raw = path.read_bytes()
        path.write_bytes(raw[: rng.randrange(len(raw))])
    elif kind == "shard deleted":
        rng.choice(shards).unlink()
    elif kind == "extra shard":
        shutil.copy(rng.choice(shards), data / f"1p-frac-{len(shards) + rng.randrange(5):06d}.tar")
    else:
        path = data / MANIFEST
        raw = bytearray(path.read_bytes())
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(raw))


def caught(data) -> bool:
    try:
        return bool(verify(data))
    except FracbuildError:  # a manifest that no longer reads is caught too
        return True


@pytest.mark.parametrize("kind", KINDS)
def test_verify_catches_every_damage(tiny, tmp_path, tally, kind):  # noqa: F811
    for t, rng in enumerate(trials(f"verify/{kind}", scale=CHEAP)):
        data = shutil.copytree(tiny, tmp_path / str(t))
        damage(kind, rng, data)
        tally(f"verify: {kind}").record(caught(data), lost=0)
    from conftest import COUNTS

    c = COUNTS[f"verify: {kind}"]
    assert c["survived"] == c["trials"], f"verify missed {c['trials'] - c['survived']} of {c['trials']}"


def read_all(urls):
    """One pass of the trainer's reader over ``urls``: (key, label) of every sample it yields, and its problem log."""
    import trainer.data.stream as D
    from trainer.data.shards import Problems

    problems = Problems()
    shards = ({"url": u, "pass": 0, "share": None, "shards": len(urls)} for u in urls)
    samples = D.decode_samples(problems)(D.read_samples(problems)(shards))
    return [(key, label) for _, label, key, *_ in samples], problems


@pytest.mark.parametrize("kind", ["byte flip in a shard", "byte flip in a label", "shard truncated"])
def test_the_trainer_never_reads_a_wrong_label(tiny, tmp_path, tally, kind, capfd):  # noqa: F811
    truth = labels_in(sorted(tiny.glob("*.tar")))
    wrong = uncounted = 0
    for t, rng in enumerate(trials(f"trainer/{kind}", scale=CHEAP)):
        data = shutil.copytree(tiny, tmp_path / str(t))
        damage(kind, rng, data)
        damaged = [p for p in sorted(data.glob("*.tar")) if p.read_bytes() != (tiny / p.name).read_bytes()]
        got, problems = read_all([str(p) for p in sorted(data.glob("*.tar"))])
        bad = sum(truth.get(key) != label for key, label in got)
        missing = len(set(truth) - {key for key, _ in got})
        silent = missing and not any(str(p) in problems.shards for p in damaged)
        wrong += bad
        uncounted += bool(silent)
        tally(f"trainer reads: {kind}").record(not bad and not silent, lost=bad)
    capfd.readouterr()  # the skipped shards' warnings
    assert wrong == 0, f"{wrong} samples read with a wrong label"
    assert uncounted == 0, f"{uncounted} damaged shards lost samples without being counted"
