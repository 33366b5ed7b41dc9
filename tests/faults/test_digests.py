"""The trainer checks what it reads against the manifest: a byte flipped inside a PNG's compressed pixels still
decodes (to other pixels), so only the shard's sha256 shows it. Both inputs must leave such a shard out (the
memory input before keeping any of its samples), count exactly what they left out, and stop under ``strict``."""

import json
import shutil
import struct
import tarfile

import pytest
from conftest import CHEAP, COUNTS, trials
from test_trainer_data import tiny  # noqa: F401 (fixture)


def pixel_offsets(path) -> list[int]:
    """Where the bytes of the IDAT chunks of a shard's PNGs lie."""
    out = []
    with tarfile.open(path) as tar:
        for m in tar:
            if not m.name.endswith(".png"):
                continue
            png = tar.extractfile(m).read()
            at = 8
            while at < len(png):
                length, kind = struct.unpack(">I4s", png[at:at + 8])
                if kind == b"IDAT":
                    out += [m.offset_data + at + 8 + i for i in range(length)]
                at += 12 + length
    return out


def flip_pixels(data, rng):
    """Flip one bit of one PNG's pixel data in a random shard; that shard's path."""
    path = rng.choice(sorted(data.glob("*.tar")))
    raw = bytearray(path.read_bytes())
    raw[rng.choice(pixel_offsets(path))] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(raw))
    return path


def keys_in(path) -> set[str]:
    with tarfile.open(path) as tar:
        return {m.name.split(".")[0] for m in tar if m.name.endswith(".cls")}


def stream_pass(source, passes=1):
    """``passes`` passes of the stream input's reader over ``source``: the (key, pass) of each sample it yields, and
    its problem log."""
    import trainer.data.stream as D
    from trainer.data.shards import Problems

    problems = Problems()
    shards = ({"url": u, "pass": p, "share": None, "shards": len(source.urls)} for p in range(passes)
              for u in source.urls)
    records = {u: (n, sha) for u, n, sha in source.records}
    samples = D.decode_samples(problems)(D.read_samples(problems, records)(shards))
    return [(key, p) for _, _, key, p, *_ in samples], problems


def test_a_flipped_pixel_byte_is_a_damaged_shard_on_both_inputs(tiny, tmp_path, tally, capfd):  # noqa: F811
    import torch

    from trainer.data.memory import decode_source
    from trainer.data.shardlists import resolve_data

    total = json.loads((tiny / "manifest.json").read_text())["samples"]
    for t, rng in enumerate(trials("trainer reads: byte flip in a PNG's pixels", scale=CHEAP)):
        data = shutil.copytree(tiny, tmp_path / str(t))
        bad = flip_pixels(data, rng)
        lost = keys_in(bad)
        source = resolve_data(str(data))
        # The stream hands the shard's samples over before its end shows the damage (all but the last, which
        # waits for the next member): the shard is counted, and the next pass leaves all of its samples out.
        # Every sample is either handed over or counted as left out.
        keys, problems = stream_pass(source, passes=2)
        stream_ok = problems.shards.keys() == {str(bad)} and len(keys) + problems.samples == 2 * total \
            and not {key for key, p in keys if p == 1} & lost
        held = decode_source(source, img_size=64, device=torch.device("cpu"))
        memory_ok = held.corrupt_shards == (str(bad),) and held.samples == total - len(lost) \
            and held.skipped_samples == len(lost)
        tally("trainer reads: byte flip in a PNG's pixels").record(stream_ok and memory_ok,
                                                                   lost=0 if memory_ok else len(lost))
    capfd.readouterr()
    c = COUNTS["trainer reads: byte flip in a PNG's pixels"]
    assert c["survived"] == c["trials"], f"{c['trials'] - c['survived']} of {c['trials']} missed"


def test_the_stream_counts_the_samples_of_a_skipped_shard(tiny, tmp_path, capfd):  # noqa: F811
    from trainer.data.shardlists import resolve_data

    data = shutil.copytree(tiny, tmp_path / "d")
    bad = sorted(data.glob("*.tar"))[2]
    bad.write_bytes(bad.read_bytes()[:700])  # cut inside its first sample: none of its 2 samples is read
    keys, problems = stream_pass(resolve_data(str(data)), passes=3)
    assert len(keys) == 3 * 10 and problems.samples == 3 * 2 and set(problems.shards) == {str(bad)}
    assert not {k for k, _ in keys} & keys_in(tiny / bad.name)
    assert capfd.readouterr().err.count("skipping corrupt shard") == 1


def test_a_shard_record_without_its_digest_is_refused(tiny, tmp_path):  # noqa: F811
    from trainer.data.shardlists import resolve_data
    from trainer.errors import TrainerError

    data = shutil.copytree(tiny, tmp_path / "d")
    manifest = json.loads((data / "manifest.json").read_text())
    del manifest["shards"][3]["sha256"]
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TrainerError, match="shard record 3 has no sha256"):
        resolve_data(str(data))
    with pytest.raises(TrainerError, match="shard record 3 has no sha256"):
        resolve_data(str(data / "1p-frac-{000000..000005}.tar"))


@pytest.mark.parametrize("input_kind", ["memory", "stream"])
def test_training_counts_what_it_left_out_and_strict_stops(tiny, tmp_path, input_kind, capfd):  # noqa: F811
    from click.testing import CliRunner

    from trainer.cli import main

    data = shutil.copytree(tiny, tmp_path / "d")
    bad = sorted(data.glob("*.tar"))[1]
    raw = bytearray(bad.read_bytes())
    raw[pixel_offsets(bad)[5]] ^= 4
    bad.write_bytes(bytes(raw))
    args = ["pretrain", "--data", str(data), "--preset", "smoke", "--samples", "64", "--batch-size", "4",
            "--log-every", "16", "--input", input_kind, "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    last = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    # The memory input leaves the damaged shard's 2 samples out once; the stream hands them over in the pass
    # whose end shows the damage, then leaves them out in every later pass.
    assert last["corrupt_shards"] == 1 and last["skipped_samples"] >= 2
    if input_kind == "memory":
        assert last["skipped_samples"] == 2 and "2 sample(s) left out of memory (10 held)" in result.output
    assert f"1 corrupt shard(s), {last['skipped_samples']} sample(s) skipped" in result.output
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "strict"), "--strict"])
    assert result.exit_code != 0 and result.output.strip().splitlines()[-1].startswith("Error: --strict: 1 damaged")
    assert not (tmp_path / "strict" / "checkpoint.pt").exists()
    capfd.readouterr()
