import json

import numpy as np
import pytest

from fracbuild import ifs
from fracbuild.dataset import verify
from fracbuild.manifest import load_manifest
from fracbuild.rendering import render
from fracbuild.rundir import JOURNAL
from fracbuild.shards import decode_sample, read_shard
from fracbuild.sources import create_source


def shard_bytes(out_dir):
    return {p.name: p.read_bytes() for p in sorted(out_dir.glob("*.tar"))}


def all_samples(out_dir):
    m = load_manifest(out_dir)
    return [decode_sample(s) for r in m["shards"] for s in read_shard(out_dir / r["file"])]


def test_render_writes_the_dataset_files(recipe, tmp_path):
    m = render(recipe, tmp_path, jobs=1, progress=False)
    assert m["samples"] == 12 and m["classes"] == 12 and len(m["shards"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "1p-frac-000000.tar", "1p-frac-000001.tar", "1p-frac-000002.tar", "README.md", "_info.json",
        "manifest.json", "preview.png"]
    assert [r["samples"] for r in m["shards"]] == [5, 5, 2]
    info = json.loads((tmp_path / "_info.json").read_text())
    assert info["splits"]["train"]["num_samples"] == 12
    assert info["splits"]["train"]["shard_lengths"] == [5, 5, 2]
    assert m["recipe"]["render"]["size"] == 64 and "numpy" in m["versions"]
    samples = all_samples(tmp_path)
    assert [label for _, label, _ in samples] == list(range(12))
    for image, label, meta in samples:
        assert image.shape == (64, 64) and image.dtype == np.uint8
        assert meta["class"] == label and meta["instance"] == 0
        assert np.array(meta["maps"]).shape == (2, 6)
        assert (image > 0).mean() > recipe["render"]["fill_min"]
    assert verify(tmp_path) == []


def test_shards_read_back_with_webdataset(recipe, tmp_path):
    import webdataset as wds

    render(recipe, tmp_path, jobs=1, progress=False, preview=False)
    urls = str(tmp_path / "1p-frac-{000000..000002}.tar")
    ds = wds.WebDataset(urls, shardshuffle=False).decode("l").to_tuple("png", "cls", "json")
    rows = list(ds)
    assert [int(cls) for _, cls, _ in rows] == list(range(12))
    assert all(meta["class"] == int(cls) and np.asarray(img).shape == (64, 64) for img, cls, meta in rows)


def test_shards_read_back_with_timm(recipe, tmp_path):
    from timm.data import create_dataset

    render(recipe, tmp_path, jobs=1, progress=False, preview=False)
    ds = create_dataset("wds/1p-frac", root=str(tmp_path), split="train", is_training=False, batch_size=1)
    rows = list(ds)
    assert sorted(t for _, t in rows) == list(range(12))
    img, _ = rows[0]
    assert img.size == (64, 64) and img.mode == "RGB"
    stored = {label: image for image, label, _ in all_samples(tmp_path)}
    for img, target in rows:
        np.testing.assert_array_equal(np.asarray(img)[:, :, 0], stored[target])


def test_output_is_byte_identical_across_runs_and_jobs(recipe, tmp_path):
    render(recipe, tmp_path / "a", jobs=1, progress=False)
    render(recipe, tmp_path / "b", jobs=2, progress=False)
    a, b = shard_bytes(tmp_path / "a"), shard_bytes(tmp_path / "b")
    assert a == b and len(a) == 3
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    render(recipe, tmp_path / "c", jobs=1, progress=False, seed=1)
    assert shard_bytes(tmp_path / "c") != a


def test_one_class_renders_alone(recipe, tmp_path):
    render(recipe, tmp_path, jobs=1, progress=False)
    stored = all_samples(tmp_path)
    image, meta = create_source(recipe).sample(7, 0)  # a fresh source, no earlier classes drawn
    np.testing.assert_array_equal(image, stored[7][0])
    assert meta == stored[7][2]


@pytest.mark.parametrize("mode", ["multiplicative", "additive"])
def test_perturbations_have_the_stated_ranges(recipe, mode):
    base = np.array(recipe["ifs"]["maps"])
    rng = np.random.default_rng(0)
    draws = np.array([ifs.perturb_maps(base, mode, 0.2, rng) for _ in range(2000)])
    if mode == "multiplicative":
        ratio = draws / base
        assert ratio.min() >= 0.8 and ratio.max() <= 1.2
        assert ratio.min() < 0.81 and ratio.max() > 1.19  # the whole range is used
    else:
        diff = draws - base
        assert diff.min() >= -0.1 and diff.max() <= 0.1
        assert diff.min() < -0.099 and diff.max() > 0.099


def test_classes_use_their_mode(recipe):
    base = np.array(recipe["ifs"]["maps"])
    recipe["perturb"].update(mode="additive", delta=0.05)
    recipe["render"]["fill_min"] = 0.0
    maps = np.array(create_source(recipe).sample(3, 0)[1]["maps"])
    assert np.abs(maps - base).max() <= 0.025 and not np.allclose(maps, base)


def test_fill_rejection_redraws_deterministically(recipe, tmp_path):
    recipe["render"]["fill_min"] = 0.07  # about half of this recipe's first draws fill less
    m = render(recipe, tmp_path, jobs=1, progress=False, preview=False)
    samples = all_samples(tmp_path)
    redraws = [meta["redraws"] for _, _, meta in samples]
    assert sum(redraws) == m["redraws"] > 0
    assert all((image > 0).mean() > 0.07 for image, _, _ in samples)
    # A redrawn class's maps are the class generator's draw number redraws + 1.
    cls = int(np.argmax(redraws))
    rng = np.random.default_rng([recipe["perturb"]["seed"], 0, cls])
    base = np.array(recipe["ifs"]["maps"])
    for _ in range(redraws[cls] + 1):
        expected = ifs.perturb_maps(base, "multiplicative", recipe["perturb"]["delta"], rng)
    np.testing.assert_array_equal(np.array(samples[cls][2]["maps"]), expected)


def test_zero_delta_warns_and_gives_identical_classes(recipe, tmp_path):
    recipe["perturb"]["delta"] = 0.0
    with pytest.warns(UserWarning, match="delta is 0"):
        render(recipe, tmp_path, jobs=1, progress=False, preview=False)
    images = [image for image, _, _ in all_samples(tmp_path)]
    assert all(np.array_equal(images[0], im) for im in images)


def test_instances_differ_and_flip(recipe, tmp_path):
    recipe["perturb"]["classes"] = 3
    recipe["render"].update(instances=4, flips=True)
    render(recipe, tmp_path, jobs=1, progress=False, preview=False)
    samples = all_samples(tmp_path)
    assert [(meta["class"], meta["instance"]) for _, _, meta in samples] == [(c, i) for c in range(3) for i in range(4)]
    assert [meta["flip"] for _, _, meta in samples[:4]] == ["none", "horizontal", "vertical", "both"]
    first = [image for image, _, _ in samples[:4]]
    assert not any(np.array_equal(first[0], im) for im in first[1:])
    # Instances share their class's maps; instance i's sequence is shared by every class.
    assert samples[0][2]["maps"] == samples[3][2]["maps"] != samples[4][2]["maps"]
    assert samples[1][2]["seeds"]["sequence"] == samples[5][2]["seeds"]["sequence"]


def test_per_class_sequence_option(recipe):
    recipe["render"]["sequence"] = "per-class"
    source = create_source(recipe)
    assert source.sample(0, 0)[1]["seeds"]["sequence"] != source.sample(1, 0)[1]["seeds"]["sequence"]


def test_a_source_tree_without_package_metadata_keeps_its_render(recipe, tmp_path, monkeypatch):
    import importlib.metadata as metadata

    real = metadata.version

    def version(name):
        if name == "fracbuild":  # what a checkout run without `pip install` looks like
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    m = render(recipe, tmp_path, jobs=1, progress=False, preview=False)
    assert m["versions"]["fracbuild"] == "unknown" and m["versions"]["numpy"] == real("numpy")
    assert verify(tmp_path) == [] and not (tmp_path / JOURNAL).exists()
