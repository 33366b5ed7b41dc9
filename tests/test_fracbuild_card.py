"""The dataset card (README.md): the real Hugging Face ``datasets`` loads a rendered directory from it with no
other argument, for every source; its front matter is the YAML the Hub reads; rendering again writes the same
card; ``verify`` reports a card whose statements about the data no longer hold, and only those."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from test_fracbuild_sources import RECIPES, shipped, small

from fracbuild.card import CARD, front_matter, json_feature, size_category
from fracbuild.cli import main
from fracbuild.dataset import verify
from fracbuild.manifest import load_manifest
from fracbuild.rendering import render
from fracbuild.shards import decode_sample, read_shard

datasets = pytest.importorskip("datasets")
yaml = pytest.importorskip("yaml")

# One shipped recipe of each source.
BY_SOURCE = {}
for name in RECIPES:
    BY_SOURCE.setdefault(shipped(name)["source"], name)


@pytest.fixture(autouse=True)
def no_hub(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    datasets.disable_progress_bars()


def stored(out_dir):
    m = load_manifest(out_dir)
    return [(s["__key__"], *decode_sample(s)) for r in m["shards"] for s in read_shard(out_dir / r["file"])]


def front(out_dir):
    text = (out_dir / CARD).read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.mark.parametrize("source", sorted(BY_SOURCE))
def test_datasets_loads_a_rendered_directory_as_it_is(source, tmp_path, caplog):
    recipe = shipped(BY_SOURCE[source])
    render(small(recipe, classes=3, instances=4 if source == "fractaldb" else None), tmp_path / "d", jobs=1,
           progress=False)
    with caplog.at_level("WARNING", logger="datasets"):
        rows = datasets.load_dataset(str(tmp_path / "d"), split="train")  # the card alone says how
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("datasets")]  # nothing it ignored
    m = load_manifest(tmp_path / "d")
    assert list(rows.features) == ["png", "cls", "json", "__key__"] and rows.features["cls"].num_classes == 3
    assert isinstance(rows.features["png"], datasets.Image) and len(rows) == m["samples"]
    for row, (key, image, label, meta) in zip(rows, stored(tmp_path / "d"), strict=True):
        assert row["__key__"] == key and row["cls"] == label
        assert row["json"] == meta  # every value as written, floats to the last bit
        assert np.array_equal(np.asarray(row["png"]), image)


def test_the_front_matter_is_the_yaml_the_hub_reads(tmp_path):
    from huggingface_hub import DatasetCard

    out = tmp_path / "d"
    render(small(shipped("1p-frac.json"), classes=4), out, jobs=1, progress=False)
    m = load_manifest(out)
    parsed = front(out)
    assert parsed == front_matter(m, [meta for *_, meta in stored(out)[:3]])  # the writer's YAML reads back as made
    card = DatasetCard.load(out / CARD)
    assert card.data.task_categories == ["image-classification"] and card.data.license == "mit"
    assert card.data.size_categories == ["n<1K"]
    assert card.data.configs[0]["data_files"][0]["path"] == [s["file"] for s in m["shards"]]
    names = parsed["dataset_info"]["features"][1]["dtype"]["class_label"]["names"]
    assert names == {str(c): str(c) for c in range(4)}
    text = (out / CARD).read_text()
    assert f"`{m['digest']}`" in text and "**4 images in 4 classes**" in text and "![" in text
    assert "Scaling Backwards: Minimal Synthetic Pre-training?" in text and "fractal" in text


def test_rendering_again_writes_the_same_card_and_the_command_that_made_it(tmp_path, recipe_file):
    args = ["render", str(recipe_file), "-o", str(tmp_path / "d"), "--classes", "4", "--size", "32", "--jobs", "1"]
    assert CliRunner().invoke(main, args).exit_code == 0
    first = (tmp_path / "d" / CARD).read_bytes()
    assert f"fracbuild render {recipe_file} -o {tmp_path / 'd'} --classes 4 --size 32\n" in first.decode()
    (tmp_path / "d" / CARD).unlink()
    again = CliRunner().invoke(main, [*args[:-1], "2", "--no-progress"])  # other jobs: the same output
    assert again.exit_code == 0, again.output
    assert (tmp_path / "d" / CARD).read_bytes() == first
    render(recipe_file, tmp_path / "lib", classes=4, size=32, jobs=1, progress=False, preview=False)
    from_python = (tmp_path / "lib" / CARD).read_text()
    assert "fracbuild.render(recipe, out_dir)" in from_python and "preview.png" not in from_python


def edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_verify_reports_a_card_that_no_longer_matches_and_lets_the_rest_be_edited(tmp_path):
    out = tmp_path / "d"
    render(small(shipped("1p-frac.json"), classes=4), out, jobs=1, progress=False)
    m = load_manifest(out)
    card = out / CARD
    original = card.read_text()
    # Free to edit: the license, tags, the name, prose.
    edit(card, "license: mit", "license: cc-by-4.0")
    edit(card, "## Recipe", "Our notes on it.\n\n## Recipe")
    assert verify(out) == []
    cases = [
        (f"    - '{m['shards'][1]['file']}'\n", "", "README.md: its configs no longer matches the manifest"),
        ("          '3': '3'\n", "", "README.md: its dataset_info no longer matches the manifest"),
        ("    dtype: float64", "    dtype: float32", "README.md: its dataset_info no longer matches the manifest"),
        ("- n<1K", "- 1K<n<10K", "README.md: its size_categories no longer matches the manifest"),
        ("**4 images in 4 classes**", "**5 images in 4 classes**", "README.md: its line of counts no longer matches"),
        (m["digest"][:12], "0" * 12, "README.md: its manifest digest no longer matches the manifest"),
    ]
    for old, new, message in cases:
        card.write_text(original)
        edit(card, old, new)
        problems = verify(out)
        assert problems == [f"{message}{'' if message.endswith('manifest') else ' the manifest'}; render again "
                            "with the same command to rewrite it"], (old, problems)
    card.write_text(original.split("---\n", 2)[2])
    assert verify(out) == ["README.md: no YAML front matter; render again with the same command to rewrite it"]


def test_a_readme_that_is_not_a_card_is_left_alone(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / CARD).write_text("# my notes\n")
    with pytest.warns(UserWarning, match="is not a fracbuild dataset card: left as it is"):
        render(small(shipped("1p-frac.json"), classes=2), out, jobs=1, progress=False)
    assert (out / CARD).read_text() == "# my notes\n" and verify(out) == []


def test_a_card_follows_its_manifest_when_a_shard_changes(tmp_path):
    out = tmp_path / "d"
    render(small(shipped("1p-frac.json"), classes=4), out, jobs=1, progress=False)
    shutil.copy(out / CARD, tmp_path / "old.md")
    render(small(shipped("1p-frac.json"), classes=7), out, jobs=1, progress=False, force=True)
    assert front(out)["configs"][0]["data_files"][0]["path"] == [f"1p-frac-00000{i}.tar" for i in range(3)]
    shutil.copy(tmp_path / "old.md", out / CARD)  # the card of the dataset that was there before
    assert {p.split(":")[1].split(" no longer")[0] for p in verify(out)} == {
        " its configs", " its dataset_info", " its line of counts", " its manifest digest"}


def test_size_categories_and_json_features():
    assert [size_category(n) for n in (1, 999, 1000, 9999, 10_000, 999_999, 1_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M"]
    assert json_feature([{"a": 1, "b": [1.5]}, {"a": 2.5, "b": [], "c": True}]) == {"struct": [
        {"name": "a", "dtype": "float64"}, {"name": "b", "list": "float64"}, {"name": "c", "dtype": "bool"}]}
    assert json_feature([{"m": [[1, 2]], "s": [{"x": "u"}]}]) == {"struct": [
        {"name": "m", "list": {"list": "int64"}}, {"name": "s", "list": [{"name": "x", "dtype": "string"}]}]}
    # datasets reads the same features from that YAML form.
    spec = [{"name": "j", **json_feature([{"m": [[1, 2]], "s": [{"x": "u"}], "f": 0.5}])}]
    features = datasets.Features._from_yaml_list(spec)
    assert features["j"]["m"] == datasets.List(datasets.List(datasets.Value("int64")))
    assert features["j"]["s"] == datasets.List({"x": datasets.Value("string")})
