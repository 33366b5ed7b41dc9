"""The sources other than 1p-frac (FractalDB, OFDB, noise, one real image) and the shipped recipes."""

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fracbuild import ifs
from fracbuild.cli import main
from fracbuild.dataset import verify
from fracbuild.errors import FracbuildError
from fracbuild.jsonfile import to_json
from fracbuild.kernels import fill_rate, map_choices, random_sequence, render_image
from fracbuild.manifest import load_manifest
from fracbuild.recipe import counts, load_recipe, new_recipe, validate_recipe
from fracbuild.rendering import render
from fracbuild.shards import decode_sample, read_shard
from fracbuild.sources import SOURCES, create_source
from fracbuild.sources import image as image_source
from fracbuild.sources import noise as noise_source
from fracbuild.sources.fractal import search
from fracbuild.sources.fractaldb import FILL_CHECK, WEIGHT_ROW, import_categories, scale_table, search_categories

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.relative_to(ROOT / "manifests").as_posix() for p in (ROOT / "manifests").rglob("*.json"))


def shipped(name):
    return load_recipe(ROOT / "manifests" / name)


def small(recipe, classes=2, instances=None, size=48):
    """A recipe shrunk to a fraction of a second: few classes, small images, few points."""
    r = json.loads(json.dumps(recipe))
    r["perturb"]["classes"] = classes
    r["render"].update(size=size, shard_size=3)
    if instances is not None:
        r["render"]["instances"] = instances
    if "points" in r["render"]:
        r["render"]["points"] = 2000
    return validate_recipe(r)


def samples(out_dir):
    m = load_manifest(out_dir)
    return [decode_sample(s) for r in m["shards"] for s in read_shard(out_dir / r["file"])]


def shard_bytes(out_dir):
    return {p.name: p.read_bytes() for p in sorted(out_dir.glob("*.tar"))}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, message):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output


def test_every_source_has_a_shipped_recipe():
    sources = {shipped(name)["source"] for name in RECIPES}
    assert sources == set(SOURCES)
    assert {"fractaldb-1k.json", "ofdb-1k.json", "fractaldb-1k-original.json", "ofdb-1k-original.json",
            "noise-gaussian.json", "noise-uniform.json", "real-canny-affine.json",
            "real-canny-elastic.json", "real-canny-polynomial.json"} <= set(RECIPES)
    paper = {name for name in RECIPES if name.startswith("paper/")}
    assert paper == {f"paper/delta-{d}.json" for d in ("0.001", "0.01", "0.05", "0.1", "0.2", "1.0")} | {
        f"paper/sigma-{s}.json" for s in ("3.5", "4.0", "4.5", "5.0", "6.0")} | {
        f"paper/classes-{n}.json" for n in (16, 64, 512, 1000)} | {
        f"paper/{s}-{form}.json" for s in ("rcdb", "visualatom") for form in ("1m", "1k", "lpce")}


@pytest.mark.parametrize("name", RECIPES)
def test_every_shipped_recipe_renders_at_small_size(name, tmp_path):
    recipe = shipped(name)
    instances = min(recipe["render"]["instances"], 8)  # FractalDB's, RCDB's, VisualAtom's 1000 cut to 8
    m = render(small(recipe, instances=instances), tmp_path, jobs=1, progress=False, preview=False)
    classes, per_class = counts(m["recipe"])
    assert m["samples"] == classes * per_class == len(samples(tmp_path))
    assert [label for _, label, _ in samples(tmp_path)] == [c for c in range(classes) for _ in range(per_class)]
    assert all(image.shape == (48, 48) for image, _, _ in samples(tmp_path))
    assert verify(tmp_path, deep=2) == []


@pytest.mark.parametrize("name", RECIPES)
def test_every_shipped_recipe_is_what_its_recorded_search_makes(name):
    """A pinned recipe is reproducible from what it records: seed, settings and perturbation."""
    recipe = shipped(name)
    source, found, perturb = recipe["source"], recipe["search"], recipe["perturb"]
    if source == "fractal":
        settings = {k: found[k] for k in ("sigma", "tolerance", "maps", "seed", "fill_min")}
        assert search(name=recipe["name"], perturb=perturb, **settings) == recipe
    elif "from" in found:  # read from FractalDB's parameter files: see test_original_categories_*
        assert found["files"] == perturb["classes"] == len(recipe["categories"]) == 1000
        assert recipe["render"] == validate_recipe({**recipe, "render": {}})["render"]  # the source's defaults
    elif source in ("fractaldb", "ofdb"):
        # Categories are independent: the first 3 of a search for 3 are the first 3 of a search for 1000.
        settings = {"method": found["method"], "maps": tuple(found["maps"]), "fill_min": found["fill_min"],
                    "seed": found["seed"]}
        again = search_categories(classes=3, source=source, name=recipe["name"], jobs=1, progress=False, **settings)
        assert again["categories"] == recipe["categories"][:3]
        assert found["classes"] == perturb["classes"] == len(recipe["categories"]) == 1000
        assert again["render"] == recipe["render"] and again["perturb"] == {**perturb, "classes": 3}
    else:
        options = {"classes": perturb["classes"], "seed": perturb["seed"], "delta": perturb["delta"]}
        if source == "image":
            options.update(image=recipe["image"]["path"], convert=recipe["image"]["convert"], warp=perturb["warp"])
        if source in ("rcdb", "visualatom"):
            options.update(seed=found["seed"], instances=recipe["render"]["instances"])
        assert new_recipe(source, name=recipe["name"], **options) == recipe


def test_paper_ablations_vary_only_their_own_setting():
    base = shipped("1p-frac.json")
    for name in RECIPES:
        if not name.startswith(("paper/delta-", "paper/sigma-", "paper/classes-")):
            continue
        recipe = shipped(name)
        kind, _, value = name.removeprefix("paper/").removesuffix(".json").partition("-")
        if kind == "sigma":
            assert abs(recipe["ifs"]["sigma"] - float(value)) <= 0.1 and recipe["perturb"] == base["perturb"]
        else:
            setting = {"delta": float(value)} if kind == "delta" else {"classes": int(value)}
            assert recipe["ifs"] == base["ifs"] and recipe["perturb"] == {**base["perturb"], **setting}
        assert recipe["render"] == base["render"] and recipe["name"] == f"1p-frac-{kind}-{value.replace('.', 'p')}"


@pytest.mark.parametrize("name", ["fractaldb-1k.json", "ofdb-1k.json", "noise-gaussian.json", "noise-uniform.json",
                                  "real-canny-elastic.json", "real-gray-affine.json"])
def test_sources_are_reproducible_and_render_any_sample_alone(name, tmp_path):
    recipe = small(shipped(name), classes=3, instances=8 if name.startswith("fractaldb") else None)
    render(recipe, tmp_path / "a", jobs=1, progress=False, preview=False)
    render(recipe, tmp_path / "b", jobs=2, progress=False, preview=False)
    a = shard_bytes(tmp_path / "a")
    assert a == shard_bytes(tmp_path / "b") and len(a) >= 1
    stored = samples(tmp_path / "a")
    index = len(stored) - 2
    _, per_class = counts(recipe)
    image, meta = create_source(recipe).sample(*divmod(index, per_class))  # a fresh source, nothing cached
    np.testing.assert_array_equal(image, stored[index][0])
    assert meta == stored[index][2]
    images = [image for image, _, _ in stored]
    assert not np.array_equal(images[0], images[-1])  # classes differ


def test_noise_is_dense_and_fractals_are_sparse():
    def fills(name):
        source = create_source(small(shipped(name), classes=12, size=96))
        return [fill_rate(source.sample(c, 0)[0]) for c in range(12)]

    for name in ("noise-gaussian.json", "noise-uniform.json"):
        assert min(fills(name)) >= 0.9, name  # almost every pixel lit
    for name in ("1p-frac.json", "fractaldb-1k.json", "ofdb-1k.json", "paper/sigma-6.0.json"):
        assert max(fills(name)) <= 0.7, name  # a large share of background


def test_noise_classes_perturb_the_distribution_over_a_shared_sequence():
    recipe = small(shipped("noise-gaussian.json"), classes=40, size=64)
    source = create_source(recipe)
    params = [source.sample(c, 0)[1]["noise"] for c in range(40)]
    means = np.array([p["mean"] for p in params])
    assert np.abs(means - 0.5).max() <= 0.05 and means.std() > 0.01  # additive U(-Δ/2, Δ/2), Δ = 0.1
    # With a shared sequence, two classes' images are one standard-normal field shifted and scaled.
    (a, pa), (b, pb) = [source.sample(c, 0) for c in (0, 1)]
    za = (a / 255.0 - pa["noise"]["mean"]) / np.sqrt(pa["noise"]["variance"])
    zb = (b / 255.0 - pb["noise"]["mean"]) / np.sqrt(pb["noise"]["variance"])
    inside = (a > 0) & (a < 255) & (b > 0) & (b < 255)
    assert np.abs(za - zb)[inside].max() < 0.05
    recipe["render"]["sequence"] = "per-class"
    source = create_source(recipe)
    assert np.corrcoef(source.sample(0, 0)[0].ravel(), source.sample(1, 0)[0].ravel())[0, 1] < 0.1


def test_fractaldb_instances_are_its_scales_patch_renders_and_flips():
    table = scale_table([0.2, 0.6, 1.4, 1.8])
    # FractalDB's weights_0.4.csv: a x 0.2, 0.6, 1 (the system itself), 1.4, 1.8, then b ... f x 0.2 ... 1.8.
    assert table.shape == (25, 6) and (table[2] == 1).all() and table[0].tolist() == WEIGHT_ROW
    assert table[:5, 0].tolist() == [0.2, 0.6, 1.0, 1.4, 1.8] and table[5:9, 1].tolist() == [0.2, 0.6, 1.4, 1.8]
    assert sorted(np.prod(table, axis=1)) == sorted([1.0] + [0.2, 0.6, 1.4, 1.8] * 6)  # one parameter per row
    recipe = small(shipped("fractaldb-1k.json"), classes=1, instances=1000)
    source = create_source(recipe)
    layout = [source.layout(i) for i in range(1000)]
    assert len(set(layout)) == 1000  # FractalDB's 25 systems x 10 patch renders x 4 flips
    assert {row for row, _, _ in layout[:100]} == set(range(25))  # the first 100 already cover every scale
    first = [source.sample(0, i) for i in range(4)]
    assert [meta["flip"] for _, meta in first] == ["none", "horizontal", "vertical", "both"]
    np.testing.assert_array_equal(first[1][0], first[0][0][:, ::-1])
    base = np.array(recipe["categories"][0])
    np.testing.assert_allclose(source.sample(0, 4)[1]["maps"], base * table[1])
    # Patch render 1 draws the same points with other masks: the same shape, other pixels.
    same, other = source.sample(0, 0)[0], source.sample(0, 100)[0]
    assert source.layout(100) == (0, 1, "none") and not np.array_equal(same, other)
    assert abs(fill_rate(same) - fill_rate(other)) < 0.2 * fill_rate(same)


def test_fractaldb_classes_are_the_first_categories(tmp_path):
    recipe = shipped("fractaldb-1k.json")
    assert counts(recipe) == (1000, 1000) and counts(shipped("ofdb-1k.json")) == (1000, 1)
    with pytest.raises(FracbuildError, match="perturb.classes must be <= the recipe's 1000 categories"):
        validate_recipe({**recipe, "perturb": {"classes": 1001}})
    with pytest.raises(FracbuildError, match=r"categories\[1\]"):
        validate_recipe({**recipe, "categories": [recipe["categories"][0], [[1, 2]]]})


def test_category_search_is_seeded_and_independent_of_jobs():
    one = search_categories(classes=5, seed=3, jobs=1, progress=False)
    assert search_categories(classes=5, seed=3, jobs=2, progress=False) == one
    assert search_categories(classes=2, seed=3, jobs=1, progress=False)["categories"] == one["categories"][:2]
    assert search_categories(classes=5, seed=4, jobs=1, progress=False)["categories"] != one["categories"]
    uniforms, masks = random_sequence(FILL_CHECK["points"], np.random.default_rng([3, 1]))
    for maps in map(np.array, one["categories"]):
        assert 2 <= len(maps) <= 7 and np.abs(maps).max() <= 1
        image = render_image(maps, map_choices(ifs.map_probabilities(maps), uniforms), masks, 512, "point")
        assert fill_rate(image) >= 0.2  # what the search checked is what the recipe pins


def test_ofdb_renders_each_category_with_its_weight_row():
    recipe = small(shipped("ofdb-1k.json"), classes=2)
    assert recipe["perturb"]["weight_row"] == WEIGHT_ROW == [0.2, 1, 1, 1, 1, 1]  # OFDB's generator: a x 0.2
    image, meta = create_source(recipe).sample(1, 0)
    np.testing.assert_allclose(meta["maps"], np.array(recipe["categories"][1]) * WEIGHT_ROW)
    assert meta["flip"] == "none"
    recipe["perturb"]["weight_row"] = [1.0] * 6  # the system as found: another image
    as_found, meta = create_source(recipe).sample(1, 0)
    assert meta["maps"] == recipe["categories"][1] and not np.array_equal(image, as_found)
    with pytest.raises(FracbuildError, match="perturb.weight_row must be 6 numbers"):
        validate_recipe({**recipe, "perturb": {"weight_row": [0.2]}})


def write_parameter_files(folder, systems, probs=None):
    """FractalDB's layout: NNNNN.csv files spread over csvK subfolders, rows a, b, c, d, e, f, p."""
    for c, maps in enumerate(systems):
        p = ifs.map_probabilities(maps) if probs is None else probs
        path = folder / f"csv{(len(systems) - c) % 2}" / f"{c:05d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(path, np.column_stack([maps, p]), delimiter=",")


def test_categories_read_from_fractaldb_parameter_files(tmp_path):
    rng = np.random.default_rng(0)
    systems = [rng.uniform(-1, 1, size=(n, 6)) for n in (3, 2, 5)]
    write_parameter_files(tmp_path / "csv", systems)
    r = import_categories(tmp_path / "csv", source="ofdb", name="mine")
    assert r["categories"] == [maps.tolist() for maps in systems]  # in category order, exactly
    assert r["search"]["files"] == r["perturb"]["classes"] == 3 and len(r["search"]["sha256"]) == 64
    result = run("search", "--source", "fractaldb", "--from", tmp_path / "csv", "--classes", 2,
                 "-o", tmp_path / "r.json")
    assert result.exit_code == 0 and "3 categories read from" in result.output
    written = load_recipe(tmp_path / "r.json")
    assert written["categories"] == r["categories"] and counts(written)[0] == 2
    write_parameter_files(tmp_path / "bad", systems[:1], probs=[0.5, 0.3, 0.2])
    for args, message in [
        ((tmp_path / "bad",), "the probabilities are not |det| / Σ |det| of the maps"),
        ((tmp_path / "none",), "is not a directory"),
        ((tmp_path / "csv", "--method", "sigma"), "--method does not apply with --from"),
    ]:
        out = tmp_path / "x.json"
        assert_one_line_error(run("search", "--source", "fractaldb", "--from", *args, "-o", out), message)
        assert not out.exists()


def original_search(categories, rate=0.2, points=100_000, size=512):
    """FractalDB's category search, replayed on its own random stream (numpy's legacy generator,
    seed 1): 2-7 maps, parameters U(-1, 1), probabilities |det| / Σ |det|, then that many uniforms
    for the chaos game; kept when the single-pixel render fills at least ``rate``."""
    rs = np.random.RandomState(1)
    found = []
    while len(found) < categories:
        n = rs.randint(2, 8)
        maps = np.array([rs.uniform(-1.0, 1.0, 6) for _ in range(n)])
        uniforms = rs.random_sample(points)
        choices = map_choices(ifs.map_probabilities(maps), uniforms)
        if fill_rate(render_image(maps, choices, np.ones(points, dtype=np.uint16), size, "point")) >= rate:
            found.append(maps.tolist())
    return found


@pytest.mark.parametrize("name", ["fractaldb-1k-original.json", "ofdb-1k-original.json"])
def test_original_categories_are_what_fractaldbs_own_search_finds(name):
    """The published categories come from FractalDB's search with seed 1: replaying it with this
    project's kernels finds the same first systems, so the renderer places points as FractalDB's."""
    recipe = shipped(name)
    assert original_search(3) == recipe["categories"][:3]


def test_category_search_by_sigma_factor():
    r = search_categories(classes=6, method="sigma", maps=(2, 4), fill_min=0.05, seed=1, source="ofdb", jobs=1,
                          progress=False)
    assert r["source"] == "ofdb" and r["search"]["method"] == "sigma" and counts(r) == (6, 1)
    for maps in map(np.array, r["categories"]):
        n = len(maps)
        assert 2 <= n <= 4 and (5 + n) / 2 - 1e-4 <= ifs.sigma_factor(maps) <= (6 + n) / 2 + 1e-4


@pytest.mark.parametrize("warp", image_source.WARPS)
def test_image_warps_stay_within_the_image(warp, tmp_path):
    """A white photograph stays white under any warp, however strong: no pixel comes from outside."""
    Image.new("L", (80, 60), 255).save(tmp_path / "white.png")
    recipe = small(image_source.new_recipe(image=str(tmp_path / "white.png"), convert="gray", warp=warp, delta=1.0),
                   classes=4, size=64)
    source = create_source(recipe)
    for cls in range(4):
        assert (source.sample(cls, 0)[0] == 255).all()
    coords = image_source.source_coordinates(warp, np.zeros((2, 64, 64)) + 5.0 if warp == "elastic" else
                                             image_source.IDENTITY[warp] * 3.0, 64, 1.0, 0.05)
    assert coords.min() >= 0 and coords.max() <= 63


@pytest.mark.parametrize("warp", image_source.WARPS)
def test_image_warps_differ_by_class_and_vanish_with_delta(warp):
    recipe = small(image_source.new_recipe(warp=warp), classes=4, size=64)
    source = create_source(recipe)
    images = [source.sample(c, 0)[0] for c in range(4)]
    assert all(not np.array_equal(images[i], images[j]) for i in range(4) for j in range(i))
    assert all(not np.array_equal(image, source.base) for image in images)
    recipe["perturb"]["delta"] = 0.0
    np.testing.assert_array_equal(create_source(recipe).sample(0, 0)[0], source.base)  # the identity warp


def test_image_canny_edges_are_sparse_white_lines():
    recipe = small(shipped("real-canny-affine.json"), size=128)
    base = create_source(recipe).base
    assert set(np.unique(base)) == {0, 255} and 0.01 < (base > 0).mean() < 0.3
    gray = create_source(small(shipped("real-gray-affine.json"), size=128)).base
    assert len(np.unique(gray)) > 100


def test_image_rgb_keeps_the_colours_and_warps_them_as_the_gray_levels(tmp_path):
    """``--convert rgb`` (Table 11's RGB row): shards hold RGB PNGs of the colour photograph, each class
    the warp a gray recipe applies, to every channel alike: channel k is the class of channel k alone."""
    out = tmp_path / "rgb.json"
    result = run("search", "--source", "image", "--image", "skimage:coffee", "--convert", "rgb", "--warp", "polynomial",
                 "--classes", 3, "-o", out)
    assert result.exit_code == 0, result.output
    recipe = small(load_recipe(out), classes=3, size=64)
    assert recipe["name"] == "real-rgb-polynomial" and recipe["image"]["convert"] == "rgb"
    render(recipe, tmp_path / "ds", jobs=1, progress=False, preview=True)
    assert verify(tmp_path / "ds") == []
    shard = next((tmp_path / "ds").glob("*.tar"))
    with Image.open(io.BytesIO(next(read_shard(shard))["png"])) as im:
        assert im.mode == "RGB" and im.size == (64, 64)
    planes = []  # each channel of the photograph as a gray photograph, under the same warps
    with Image.open(image_source.image_file("skimage:coffee")) as photo:
        for k, band in enumerate(photo.convert("RGB").split()):
            band.save(tmp_path / f"{k}.png")
            planes.append(create_source(small(image_source.new_recipe(
                image=str(tmp_path / f"{k}.png"), convert="gray", warp="polynomial"), classes=3, size=64)))
    for image, cls, meta in samples(tmp_path / "ds"):
        assert image.shape == (64, 64, 3) and meta["fill"] == np.mean(image.max(axis=2) > 0)
        assert np.abs(image.astype(int) - image[..., :1]).mean() > 5  # coloured, not three equal channels
        for k, plane in enumerate(planes):
            np.testing.assert_array_equal(image[..., k], plane.sample(cls, 0)[0])
    with Image.open(tmp_path / "ds" / "preview.png") as im:
        assert im.mode == "RGB"


def test_image_instances_need_flips():
    recipe = shipped("real-canny-affine.json")
    with pytest.raises(FracbuildError, match="render.instances must be <= 4 with render.flips"):
        validate_recipe({**recipe, "render": {"instances": 2}})
    r = validate_recipe({**recipe, "render": {"instances": 4, "flips": True, "size": 32}})
    images = [create_source(r).sample(0, i)[0] for i in range(4)]
    np.testing.assert_array_equal(images[3], images[0][::-1, ::-1])


def test_a_changed_image_is_refused(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("L", (40, 40), 7).save(path)
    recipe = image_source.new_recipe(image=str(path))
    Image.new("L", (40, 40), 8).save(path)
    with pytest.raises(FracbuildError, match="has changed"):
        validate_recipe(recipe)


def test_fractal_sources_need_no_scikit_image(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "skimage", None)  # every import of it now fails
    for name in ("1p-frac.json", "fractaldb-1k.json"):
        render(small(shipped(name)), tmp_path / name, jobs=1, progress=False, preview=False)
    with pytest.raises(FracbuildError, match=r"needs scikit-image: pip install '\.\[image\]' in fracbuild's checkout"):
        shipped("real-canny-affine.json")


def test_cli_search_makes_a_recipe_of_every_source(tmp_path):
    for source in SOURCES:
        out = tmp_path / f"{source}.json"
        result = run("search", "--source", source, "--classes", 2, "--name", "x", "-o", out)
        assert result.exit_code == 0, result.output
        recipe = load_recipe(out)
        assert recipe["source"] == source and counts(recipe)[0] == 2 and recipe["name"] == "x"
    result = run("search", "--source", "fractaldb", "--classes", 3, "--maps", "3-4", "--method", "sigma",
                 "--fill-min", 0.1, "--jobs", 1, "-o", tmp_path / "c.json")
    assert "3 categories (sigma, 3-4 maps, fill >= 0.1)" in result.output
    assert {len(m) for m in load_recipe(tmp_path / "c.json")["categories"]} <= {3, 4}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--source", "noise-gaussian", "--sigma", 3], "--sigma does not apply to --source noise-gaussian"),
        (["--source", "image", "--method", "fill", "--jobs", 2], "--jobs, --method do not apply to --source image"),
        (["--source", "fractal", "--maps", "2-4"], "--source fractal takes one number of maps"),
        (["--source", "fractaldb", "--flips"], "--flips does not apply to --source fractaldb"),
        (["--source", "ofdb", "--maps", "x"], "'x' is not a number N or a range MIN-MAX"),
        (["--source", "pictures"], "Invalid value for '--source'"),
        (["--source", "fractal", "--seed", -1], "seed must be a non-negative integer, got -1"),
        (["--source", "ofdb", "--seed", -1], "seed must be a non-negative integer, got -1"),
        (["--source", "image", "--image", "missing.png"], "image missing.png not found"),
        (["--source", "image", "--image", "skimage:none"], "no built-in image 'skimage:none'; scikit-image bundles"),
    ],
)
def test_cli_search_errors_are_one_line(args, message, tmp_path):
    assert_one_line_error(run("search", *args, "-o", tmp_path / "r.json"), message)
    assert not (tmp_path / "r.json").exists()


def test_cli_render_errors_name_the_source_and_the_image(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "source": "pictures"}))
    result = run("render", bad, "-o", tmp_path / "ds")
    assert_one_line_error(result, "unknown source 'pictures'; expected one of fractal, fractaldb, ofdb, noise-gaussian,"
                                  " noise-uniform, image")
    recipe = json.loads((ROOT / "manifests" / "real-canny-affine.json").read_text())
    recipe["image"].update(path=str(tmp_path / "gone.png"), sha256=None)
    bad.write_text(json.dumps(recipe))
    assert_one_line_error(run("render", bad, "-o", tmp_path / "ds"), f"image {tmp_path / 'gone.png'} not found")
    noise = ROOT / "manifests" / "noise-uniform.json"
    assert_one_line_error(run("render", noise, "-o", tmp_path / "ds", "--draw", "point"),
                          "recipe 'render' has unknown key(s) for source 'noise-uniform': draw")
    assert not (tmp_path / "ds").exists()


def test_cli_search_image_flips_makes_four_flipped_instances(tmp_path):
    out = tmp_path / "img.json"
    assert run("search", "--source", "image", "--flips", "-o", out).exit_code == 0
    assert counts(load_recipe(out))[1] == 4 and load_recipe(out)["render"]["flips"] is True


def test_cli_render_refuses_instances_that_ofdb_does_not_have(tmp_path):
    result = run("render", ROOT / "manifests" / "ofdb-1k.json", "-o", tmp_path / "ds", "--classes", 2,
                 "--instances", 3)
    assert_one_line_error(result, "render.instances must be 1 for ofdb (one image per category), got 3")
    assert not (tmp_path / "ds").exists()


def test_cli_render_classes_and_instances_for_categories(tmp_path):
    out = tmp_path / "ds"
    args = ["--classes", 3, "--instances", 5, "--size", 32, "--points", 500, "--jobs", 1]
    result = run("render", ROOT / "manifests" / "fractaldb-1k.json", "-o", out, *args)
    assert result.exit_code == 0, result.output
    m = load_manifest(out)
    assert (m["classes"], m["instances"], m["samples"]) == (3, 5, 15)
    assert "source: fractaldb" in run("info", out).output


def test_recipes_are_saved_compactly_and_read_back_exactly():
    obj = {"a": [[0.1, -2e-7, 3], [4, 5, 6]], "b": {"c": [], "d": {}, "e": ["x", None, True]}, "f": 1.5}
    text = to_json(obj)
    assert json.loads(text) == obj
    assert '[0.1, -2e-07, 3]' in text and len(text.splitlines()) == 12
    size = (ROOT / "manifests" / "fractaldb-1k.json").stat().st_size
    assert size < 400_000  # 1000 categories at 6 decimals, one map a line


def test_noise_recipe_checks_its_parameters():
    recipe = shipped("noise-uniform.json")
    with pytest.raises(FracbuildError, match="noise.low must be < noise.high"):
        validate_recipe({**recipe, "noise": {"low": 0.6, "high": 0.4}})
    with pytest.raises(FracbuildError, match="unknown key.*noise-uniform.*mean"):
        validate_recipe({**recipe, "noise": {"mean": 0.5}})
    with pytest.raises(FracbuildError, match="noise.variance must be >= 0"):
        noise_source.new_recipe("noise-gaussian", noise={"variance": -1})


def test_a_dataset_rendered_before_recipes_named_their_source_resumes(recipe, tmp_path):
    render(recipe, tmp_path, jobs=1, progress=False, preview=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["recipe"]["source"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    m = render(recipe, tmp_path, jobs=1, progress=False, preview=False)
    assert m["run"]["kept"] == 12 and m["run"]["rendered"] == 0
