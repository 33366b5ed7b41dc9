"""trainer's data side: what --data accepts, the split over ranks and workers, labels, corrupt shards,
streaming over HTTP, and the grayscale transform."""

import contextlib
import functools
import http.server
import io
import itertools
import json
import random
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from mixing import batch_mixing_stats
from PIL import Image

import trainer.data.shards as S
import trainer.data.stream as D
from fracbuild.rendering import render
from trainer.data.rebatch import END, Rebatch, consumed, taken
from trainer.data.shardlists import ShardList, resolve_data
from trainer.data.transforms import create_eval_transform, create_train_transform
from trainer.errors import TrainerError


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster on one thread, and much faster than two on a machine others share."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def render_tiny(recipe, out: Path, **overrides) -> Path:
    """A tiny rendered dataset (12 classes, 64 px, 2 samples per shard unless overridden)."""
    settings = {"shard_size": 2, **overrides}
    render(recipe, out, jobs=1, progress=False, preview=False, **settings)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """12 classes in 6 shards of 2 samples."""
    from fracbuild.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "manifests" / "1p-frac.json")
    recipe["perturb"]["classes"] = 12
    recipe["render"].update(size=64, points=3000)
    return render_tiny(recipe, tmp_path_factory.mktemp("data") / "tiny")


def labels_in(paths) -> dict[str, int]:
    """KEY -> cls read straight from the tars."""
    out = {}
    for path in paths:
        with tarfile.open(path) as tar:
            for m in tar:
                if m.name.endswith(".cls"):
                    out[m.name.split(".")[0]] = int(tar.extractfile(m).read())
    return out


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """python -m http.server's handler, without its request log on stderr."""

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """``directory`` over HTTP on 127.0.0.1, at the URL this yields."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(tiny):
    """The tiny dataset's parent directory over HTTP."""
    with serve(tiny.parent) as url:
        yield url


# --data forms -------------------------------------------------------------------------------------------


def test_a_directory_resolves_through_its_manifest(tiny):
    s = resolve_data(str(tiny))
    manifest = json.loads((tiny / "manifest.json").read_text())
    assert s.samples == manifest["samples"] == 12 and s.classes == 12 and s.name == "1p-frac"
    assert [Path(u).name for u in s.urls] == [r["file"] for r in manifest["shards"]] and len(s.urls) == 6


def test_a_brace_pattern_takes_its_counts_from_the_manifest_beside_it(tiny):
    s = resolve_data(f"{tiny}/1p-frac-{{000000..000002}}.tar")
    assert len(s.urls) == 3 and s.samples == 6 and s.classes == 12


def test_a_pattern_without_manifest_is_scanned(tiny, tmp_path):
    for name in ("1p-frac-000004.tar", "1p-frac-000005.tar"):
        shutil.copy(tiny / name, tmp_path / name)
    s = resolve_data(f"{tmp_path}/1p-frac-{{000004..000005}}.tar")
    assert s.samples == 4 and s.classes == max(labels_in(s.urls).values()) + 1 == 12


def test_a_dataset_url_reads_the_manifest_over_http(tiny, served):
    s = resolve_data(f"{served}/tiny/")
    assert s.samples == 12 and s.classes == 12 and all(u.startswith(served) for u in s.urls)
    pattern = resolve_data(f"{served}/tiny/1p-frac-{{000000..000001}}.tar")
    assert pattern.samples == 4 and pattern.classes == 12


@pytest.mark.parametrize("damage,message", [
    ("nothing-there", "does not exist"),
    ("no-manifest", "has no manifest.json"),
    ("shard-missing", "shard"),
    ("bad-manifest", "not a dataset manifest"),
])
def test_bad_data_is_one_clear_error(tiny, tmp_path, damage, message):
    data = tmp_path / "d"
    if damage != "nothing-there":
        shutil.copytree(tiny, data)
    if damage == "no-manifest":
        (data / "manifest.json").unlink()
    elif damage == "shard-missing":
        (data / "1p-frac-000003.tar").unlink()
    elif damage == "bad-manifest":
        (data / "manifest.json").write_text('{"samples": 3}')
    with pytest.raises(TrainerError, match=message) as e:
        resolve_data(str(data))
    assert "\n" not in str(e.value)
    if damage == "shard-missing":
        assert "1p-frac-000003.tar is missing" in str(e.value)


def test_a_missing_url_is_one_clear_error(served):
    with pytest.raises(TrainerError, match="no manifest.json at"):
        resolve_data(f"{served}/nothing/")


def test_a_hub_dataset_is_read_where_the_hub_keeps_its_files(tiny, tmp_path, monkeypatch):
    import trainer

    files = tmp_path / "hub" / "datasets" / "someone" / "frac" / "resolve"
    files.mkdir(parents=True)
    shutil.copytree(tiny, files / "main")
    shutil.copytree(tiny, files / "v1.0")
    with serve(tmp_path / "hub") as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        s = resolve_data("hf://datasets/someone/frac")
        assert s.samples == 12 and s.classes == 12 and len(s.urls) == 6
        assert s.urls[0] == f"{endpoint}/datasets/someone/frac/resolve/main/1p-frac-000000.tar"
        assert resolve_data("hf://datasets/someone/frac@v1.0").urls[0].startswith(f"{endpoint}/datasets/someone/"
                                                                                   "frac/resolve/v1.0/")
        r = trainer.pretrain("hf://datasets/someone/frac", tmp_path / "run", preset="smoke", samples=32,
                             batch_size=16, input="stream", workers=0, progress=False)
        assert r["steps"] == 2 and r["corrupt_shards"] == 0


@pytest.mark.parametrize("data,message", [
    ("hf://someone/frac", "hf://someone/frac: expected hf://datasets/OWNER/NAME[@REVISION] (a dataset repository)"),
    ("hf://datasets/someone", "expected hf://datasets/OWNER/NAME"),
    ("hf://datasets/someone/frac", "cannot reach http://127.0.0.1:9/datasets/someone/frac/resolve/main/manifest.json"),
])
def test_a_hub_dataset_that_cannot_be_had_is_one_line(monkeypatch, data, message):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens there
    with pytest.raises(TrainerError) as e:
        resolve_data(data)
    assert message in str(e.value) and "\n" not in str(e.value)


# splitting over ranks and workers ----------------------------------------------------------------------


def one_pass(urls, rank, world, worker, workers, monkeypatch) -> list[str]:
    """Keys that consumer (rank, worker) reads in pass 0 of its stream."""
    monkeypatch.setattr(D, "worker_slot", lambda: (worker, workers))
    stream = D.EpochShards(urls, seed=3, rank=rank, world=world)
    shards = itertools.takewhile(lambda s: s["pass"] == 0, stream)
    return [s["__key__"] for s in D._read_samples(shards, S.Problems())]


@pytest.mark.parametrize("world,workers", [(1, 1), (2, 1), (2, 3), (3, 2), (4, 2), (1, 4), (6, 1)])
def test_consumers_split_a_pass_without_overlap_or_gaps(tiny, monkeypatch, world, workers):
    urls = resolve_data(str(tiny)).urls
    seen = {(r, w): one_pass(urls, r, world, w, workers, monkeypatch) for r in range(world) for w in range(workers)}
    keys = [k for ks in seen.values() for k in ks]
    assert sorted(keys) == sorted(labels_in(urls)) and len(keys) == len(set(keys)) == 12
    if 6 % world == 0:  # an even split by shards: ranks read different shards
        shards = {r: {int(k) // 2 for w in range(workers) for k in seen[(r, w)]} for r in range(world)}
        assert all(not (shards[a] & shards[b]) for a in range(world) for b in range(a + 1, world))


def test_the_shard_order_changes_from_pass_to_pass(tiny, monkeypatch):
    urls = resolve_data(str(tiny)).urls
    monkeypatch.setattr(D, "worker_slot", lambda: (0, 1))
    visits = [s["url"] for s in itertools.islice(D.EpochShards(urls, seed=0), 18)]
    passes = [visits[i:i + 6] for i in (0, 6, 12)]
    assert all(sorted(p) == sorted(urls) for p in passes)
    assert passes[0] != passes[1] != passes[2]
    again = [s["url"] for s in itertools.islice(D.EpochShards(urls, seed=0), 18)]
    assert again == visits  # seeded: the same run reads the same order


# batches that mix the whole dataset ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def thousand(tmp_path_factory) -> ShardList:
    """1000 tiny images in 10 shards of 100, in order; sample i has label i (1000 classes), like the
    paper's dataset (one image per class) at 4 x 4 px."""
    root = tmp_path_factory.mktemp("thousand")
    urls = []
    for shard in range(10):
        path = root / f"t-{shard:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(shard * 100, shard * 100 + 100):
                png = io.BytesIO()
                Image.fromarray(np.full((4, 4), i % 251, np.uint8)).save(png, format="png")
                for ext, data in (("png", png.getvalue()), ("cls", str(i).encode())):
                    info = tarfile.TarInfo(f"{i:09d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        urls.append(str(path))
    return ShardList(urls=tuple(urls), samples=1000, classes=1000, name="t")


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32))[None]


def label_batches(source, **kwargs) -> list[list[int]]:
    loader = D.create_loader(source, transform=as_tensor, seed=5, **kwargs)
    batches = [b["label"].tolist() for b in loader]
    assert len(batches) == kwargs["steps"]  # exactly the steps asked for
    return batches


MANY_WORKERS = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


@MANY_WORKERS
@pytest.mark.parametrize("workers", [0, 2, 4, 8])
def test_every_batch_is_drawn_from_the_whole_dataset(thousand, workers):
    # The paper's batch: 3 batches of 256 per pass (the other 232 images are dropped, as in the reference).
    stats = batch_mixing_stats(label_batches(thousand, batch_size=256, steps=9, workers=workers),
                               num_samples=1000, pass_size=768)
    assert stats["distinct"] == [256] * 9 and stats["out_of_range"] == 0
    assert min(stats["residue_p"].values()) > 1e-4, stats["residue_p"]
    assert stats["pass_distinct"] == [768] * 3


@MANY_WORKERS
@pytest.mark.parametrize("workers", [0, 3, 8])
def test_every_sample_comes_once_in_every_pass(thousand, workers):
    batches = label_batches(thousand, batch_size=250, steps=12, workers=workers)
    stats = batch_mixing_stats(batches, num_samples=1000)
    assert stats["pass_distinct"] == [1000] * 3 and stats["out_of_range"] == 0
    assert min(stats["distinct"]) == 250 and min(stats["residue_p"].values()) > 1e-4
    passes = [sum(batches[i:i + 4], []) for i in (0, 4, 8)]
    assert passes[0] != passes[1] != passes[2]  # a new order every pass


def test_two_ranks_draw_disjoint_shares_of_every_pass(thousand):
    # Global batch 200 = 100 per rank; 5 steps per pass, nothing dropped.
    ranks = [label_batches(thousand, batch_size=100, steps=10, workers=2, rank=r, world=2) for r in (0, 1)]
    for p in (0, 1):
        shares = [set(sum(batches[5 * p:5 * p + 5], [])) for batches in ranks]
        assert len(shares[0]) == len(shares[1]) == 500 and not shares[0] & shares[1]
    for batches in ranks:
        stats = batch_mixing_stats(batches, num_samples=1000, pass_size=500)
        assert stats["pass_distinct"] == [500, 500] and min(stats["residue_p"].values()) > 1e-4
    first = [set(sum(batches[:5], [])) for batches in ranks]
    second = [set(sum(batches[5:], [])) for batches in ranks]
    assert first[0] != second[0]  # the shares are drawn anew every pass


@pytest.mark.parametrize("workers", [0, 2])
def test_a_stream_started_at_a_later_pass_continues_the_same_sequence(thousand, workers):
    whole = label_batches(thousand, batch_size=256, steps=6, workers=workers)
    resumed = label_batches(thousand, batch_size=256, steps=3, workers=workers, start_pass=1)
    assert resumed == whole[3:]


def worker_streams(shares: list[list[int]], small: int) -> list[list[dict]]:
    """Each worker's small batches of passes 0, 1, ... (``shares[pass][worker]`` samples each, keyed
    "pass/worker/order"), then the marker of its end."""
    streams = [[] for _ in shares[0]]
    for p, sizes in enumerate(shares):
        for w, size in enumerate(sizes):
            for start in range(0, size, small):
                orders = list(range(start, min(size, start + small)))
                streams[w].append({"image": torch.tensor(orders, dtype=torch.float32)[:, None],
                                   "label": torch.tensor(orders), "key": [f"{p}/{w}/{r}" for r in orders],
                                   "order": orders, "pass": p, "problems": {"worker": w, "shards": (), "samples": 0}})
    for w, stream in enumerate(streams):
        stream.append({"image": None, "label": None, "key": [], "order": [], "pass": END,
                       "problems": {"worker": w, "shards": (), "samples": 0}})
    return streams


def delivered(streams, rng=None) -> list[dict]:
    """The workers' small batches in turn (as the DataLoader delivers them), or, with ``rng``, in a random order
    that keeps each worker's own order."""
    streams = [list(s) for s in streams]
    out = []
    while any(streams):
        ready = [s for s in streams if s]
        for s in [rng.choice(ready)] if rng else ready:
            out.append(s.pop(0))
    return out


def cut(small_batches, **kwargs) -> list[list[str]]:
    return [b["key"] for b in Rebatch(**kwargs)(iter(small_batches))]


# Unequal shares and passes, one smaller than a batch (carried into the next): 3 workers, small batches of 3.
SHARES = [[9, 4, 7], [5, 8, 6], [2, 1, 3], [7, 7, 7]]


@pytest.mark.parametrize("batch_size", [5, 8, 25])
def test_batches_do_not_depend_on_when_each_worker_delivered(batch_size):
    streams = worker_streams(SHARES, small=3)
    expected = cut(delivered(streams), batch_size=batch_size, workers=3, small=3)
    assert expected and all(len(keys) == len(set(keys)) == batch_size for keys in expected)
    for seed in range(20):
        assert cut(delivered(streams, random.Random(seed)), batch_size=batch_size, workers=3, small=3) == expected
    # Within a pass the order is the workers' small batches in turn.
    if batch_size == 5:
        assert expected[0] == ["0/0/0", "0/0/1", "0/0/2", "0/1/0", "0/1/1"]


@pytest.mark.parametrize("batch_size", [5, 8, 25])
def test_a_rebatch_started_at_its_position_cuts_the_batches_that_came_next(batch_size):
    streams = worker_streams(SHARES, small=3)
    whole = cut(delivered(streams), batch_size=batch_size, workers=3, small=3)
    for k in range(1, len(whole)):
        rebatch = Rebatch(batch_size, 3, 3)
        cutter = rebatch(iter(delivered(streams)))
        for _ in range(k):
            next(cutter)
        position = rebatch.position()
        # The workers start again at its pass and skip what it says was taken (``skip_consumed``).
        rest = [[dict(b, key=[key for key, r in zip(b["key"], b["order"], strict=True)
                              if r >= consumed(position, b["pass"], w)],
                      order=[r for r in b["order"] if r >= consumed(position, b["pass"], w)])
                 for b in stream if b["pass"] >= position["pass"]] for w, stream in enumerate(streams)]
        rest = [[dict(b, image=torch.tensor(b["order"], dtype=torch.float32)[:, None] if b["order"] else None)
                 for b in stream if b["key"] or b["pass"] == END] for stream in rest]
        assert cut(delivered(rest), batch_size=batch_size, workers=3, small=3, position=position) == whole[k:], k


def same_samples_every_pass(n: int, workers: int, small: int, passes: int) -> list[list[dict]]:
    """Small batches of ``passes`` passes over the same ``n`` samples (keys "0".."n-1"), dealt to the workers
    in turn and shuffled anew every pass, as the stream's workers send them."""
    rng = random.Random(4)
    shares = []
    for _ in range(passes):
        keys = rng.sample(range(n), n)
        shares.append([keys[w::workers] for w in range(workers)])
    streams = [[] for _ in range(workers)]
    for p, share in enumerate(shares):
        for w, keys in enumerate(share):
            for start in range(0, len(keys), small):
                chunk = keys[start:start + small]
                streams[w].append({"image": torch.tensor(chunk, dtype=torch.float32)[:, None],
                                   "label": torch.tensor(chunk), "key": [str(k) for k in chunk],
                                   "order": list(range(start, start + len(chunk))), "pass": p,
                                   "problems": {"worker": w, "shards": (), "samples": 0}})
    for w, stream in enumerate(streams):
        stream.append({"image": None, "label": None, "key": [], "order": [], "pass": END,
                       "problems": {"worker": w, "shards": (), "samples": 0}})
    return streams


@pytest.mark.parametrize("n,batch_size", [(100, 64), (30, 8), (21, 20)])
def test_passes_that_continue_fill_the_last_batch_from_the_next_with_no_sample_twice(n, batch_size):
    streams = same_samples_every_pass(n, workers=3, small=3, passes=12)
    batches = cut(delivered(streams), batch_size=batch_size, workers=3, small=3, pass_end="continue")
    assert len(batches) == 12 * n // batch_size  # nothing dropped
    assert all(len(set(keys)) == batch_size for keys in batches)
    flat = [int(k) for keys in batches for k in keys]
    for p in range(len(flat) // n):
        assert sorted(flat[p * n:(p + 1) * n]) == list(range(n))
    assert cut(delivered(streams, random.Random(1)), batch_size=batch_size, workers=3, small=3,
               pass_end="continue") == batches
    dropped = cut(delivered(streams), batch_size=batch_size, workers=3, small=3)
    assert len(dropped) == 12 * (n // batch_size)


@pytest.mark.parametrize("n,batch_size", [(100, 64), (30, 8), (21, 20)])
def test_passes_that_continue_resume_at_a_position_with_the_batches_that_came_next(n, batch_size):
    streams = same_samples_every_pass(n, workers=3, small=3, passes=6)
    whole = cut(delivered(streams), batch_size=batch_size, workers=3, small=3, pass_end="continue")
    waited = 0
    for k in range(1, len(whole)):
        rebatch = Rebatch(batch_size, 3, 3, pass_end="continue")
        cutter = rebatch(iter(delivered(streams)))
        for _ in range(k):
            position = next(cutter)["position"]
        waited += "deferred" in position
        # The workers start again at its pass and skip what it says was taken (``skip_consumed``).
        rest = [[dict(b, key=[key for key, r in zip(b["key"], b["order"], strict=True)
                              if not taken(position, b["pass"], w, r)],
                      order=[r for r in b["order"] if not taken(position, b["pass"], w, r)])
                 for b in stream if b["pass"] >= position["pass"]] for w, stream in enumerate(streams)]
        rest = [[dict(b, image=torch.tensor([int(k) for k in b["key"]], dtype=torch.float32)[:, None]
                      if b["order"] else None) for b in stream if b["key"] or b["pass"] == END] for stream in rest]
        assert cut(delivered(rest), batch_size=batch_size, workers=3, small=3, position=position,
                   pass_end="continue") == whole[k:], k
    if n == 100:  # some cuts fell where samples of the next pass waited for the batch after
        assert waited


@pytest.mark.parametrize("n,batch_size", [(12, 16), (5, 16), (9, 10)])
def test_passes_smaller_than_a_batch_that_continue_still_make_every_batch(n, batch_size):
    """Samples of the next pass that a batch already holds wait for the next batch; when the pass is smaller
    than a batch, more wait than the batch has room for. Each batch is full, and every sample is taken once per
    pass (the stream's end cuts the last)."""
    passes = 6
    batches = cut(delivered(same_samples_every_pass(n, workers=3, small=3, passes=passes)), batch_size=batch_size,
                  workers=3, small=3, pass_end="continue")
    assert len(batches) == n * passes // batch_size
    assert all(len(b) == batch_size for b in batches)
    seen = [key for b in batches for key in b]
    assert all(abs(seen.count(str(k)) - len(seen) / n) <= 1 for k in range(n))


@MANY_WORKERS
@pytest.mark.parametrize("workers", [0, 3])
def test_a_loader_made_at_a_position_continues_with_the_next_batches(thousand, workers):
    kwargs = dict(transform=as_tensor, seed=5, batch_size=256, workers=workers, shuffle_buffer=50)
    whole = [b["key"] for b in D.create_loader(thousand, steps=8, **kwargs)]
    for k in (2, 3, 7):  # inside a pass, at its end, inside a later one
        first = D.create_loader(thousand, steps=k, **kwargs)
        assert [b["key"] for b in first] == whole[:k]
        resumed = D.create_loader(thousand, steps=8 - k, position=first.rebatch.position(), **kwargs)
        assert [b["key"] for b in resumed] == whole[k:], k


def test_the_mixing_statistics_see_a_stream_by_position_mod_n():
    # Four consumers keeping the samples at positions = their id (mod 4), each batch from one consumer.
    shares = [[i for i in range(1000) if i % 4 == c] for c in range(4)]
    batches = [(shares[c] * 2)[:256] for c in range(4)]
    stats = batch_mixing_stats(batches, num_samples=1000)
    assert stats["distinct"] == [250] * 4 and stats["residue_p"][4] < 1e-10 and stats["pass_distinct"][0] < 1000


# labels, batches, corrupt shards -------------------------------------------------------------------------


def test_loader_batches_carry_each_samples_own_cls(tiny):
    source = resolve_data(str(tiny))
    truth = labels_in(source.urls)
    orders = {}
    for buffer in (1, 6):
        loader = D.create_loader(source, transform=create_eval_transform(img_size=16), batch_size=4, steps=9,
                                 shuffle_buffer=buffer, seed=1)
        batches = list(loader)
        assert len(batches) == 9 and len(loader) == 9
        for b in batches:
            assert b["image"].shape == (4, 3, 16, 16) and b["image"].dtype == torch.float32
            assert b["label"].tolist() == [truth[k] for k in b["key"]]
        orders[buffer] = [k for b in batches for k in b["key"]]
    # Without a buffer the first pass is every sample once, shard by shard in shuffled order.
    first = orders[1][:12]
    assert sorted(first) == sorted(truth) and first != sorted(first)
    assert all(int(a) // 2 == int(b) // 2 for a, b in zip(first[::2], first[1::2], strict=True))
    # The buffer mixes samples across shards: pairs from one shard no longer come together.
    mixed = orders[6][:12]
    assert sum(int(a) // 2 == int(b) // 2 for a, b in zip(mixed[::2], mixed[1::2], strict=True)) < 6


def test_a_corrupt_shard_is_skipped_with_a_warning_and_counted(tiny, tmp_path, capfd):
    data = shutil.copytree(tiny, tmp_path / "d")
    bad = data / "1p-frac-000002.tar"
    bad.write_bytes(bad.read_bytes()[:700] + b"\x00garbage" * 200)
    source = resolve_data(str(data))
    loader = D.create_loader(source, transform=create_eval_transform(img_size=16), batch_size=2, steps=15,
                             shuffle_buffer=1)
    log = D.ProblemLog()
    keys = []
    for b in loader:
        log.update(b["problems"])
        keys += b["key"]
    assert log.shards == {str(bad)}
    assert "000000004" not in keys or "000000005" not in keys  # the damaged shard's samples are not all there
    assert {"000000000", "000000011"} <= set(keys)
    err = capfd.readouterr().err
    assert err.count(f"skipping corrupt shard {bad}") == 1  # warned once, not every pass


# the transform -------------------------------------------------------------------------------------------


def fractal_like(size=96, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size), np.uint8)
    image[rng.integers(0, size, 900), rng.integers(0, size, 900)] = 127
    return Image.fromarray(image)


def test_the_one_channel_path_equals_timms_rgb_transform():
    gray = fractal_like()
    transform = create_train_transform(img_size=32)
    for seed in range(60):
        random.seed(seed)
        torch.manual_seed(seed)
        np.random.seed(seed)
        a = transform.rgb(gray.convert("RGB"))
        random.seed(seed)
        torch.manual_seed(seed)
        np.random.seed(seed)
        b = transform(gray)
        assert torch.equal(a, b), seed
    assert transform(gray).shape == (3, 32, 32)


def test_posterize_at_the_top_magnitude_gives_black_instead_of_raising():
    transform = create_train_transform(img_size=24, auto_augment="rand-m10-n1-mstd0-inc1", hflip=0, vflip=0,
                                       re_prob=0)
    for compose in (transform.gray, transform.rgb):
        ops = [op for t in compose.transforms for op in getattr(t, "ops", ()) if op.name == "PosterizeIncreasing"]
        assert len(ops) == 1
        for image in (fractal_like(), fractal_like().convert("RGB")):
            out = ops[0].aug_fn(image, 0)  # what m10 asks for: 0 bits kept
            assert out.mode == image.mode and out.size == image.size and not np.asarray(out).any()
    for seed in range(40):  # and the whole transform runs at m10
        random.seed(seed)
        assert transform(fractal_like(seed=seed)).shape == (3, 24, 24)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_dataset_of_corrupt_shards_ends_the_stream_instead_of_spinning(tiny, tmp_path, workers):
    data = shutil.copytree(tiny, tmp_path / "d")
    for shard in data.glob("*.tar"):
        shard.write_bytes(b"\x00garbage" * 200)
    loader = D.create_loader(resolve_data(str(data)), transform=create_eval_transform(img_size=16), batch_size=2,
                             steps=5, workers=workers)
    assert list(loader) == []
