"""The RCDB and VisualAtom sources: the originals' pixels, their draws, the three forms, reproducibility."""

import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from fracbuild.cli import main
from fracbuild.dataset import verify
from fracbuild.manifest import load_manifest
from fracbuild.recipe import load_recipe, new_recipe, validate_recipe
from fracbuild.rendering import render
from fracbuild.shards import decode_sample, read_shard
from fracbuild.sources import create_source
from fracbuild.sources.common import NOISE, sequence_seed
from fracbuild.sources.contour import RANGES, category_seed, draw, draw_category
from fracbuild.sources.contour_kernels import perlin1

DATA = Path(__file__).resolve().parent / "data" / "originals"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import contour_originals  # noqa: E402 (the bench's restatement of the originals, beside the bench)

#: ``make_VisualAtom.sh``'s parameters, and ``render_VisualAtom.py``'s own defaults where they differ.
SCRIPT = {"perlin": (0, 4), "line_width": 0.1, "radius": 10}
FILE_DEFAULTS = {"perlin": (2, 6), "line_width": 0.01, "radius": 0}


def line_draws(rnd, lines, vertices, top):
    """A contour line's draws in the originals' order: its gray level, then the x and the y inputs."""
    gray, inputs = [], []
    for _ in range(lines):
        gray.append(rnd.randint(0, top))
        inputs.append([[rnd.uniform(0, 10000) for _ in range(vertices)] for _ in range(2)])
    return np.array(gray), np.array(inputs)


def centre(rnd, size, offset):
    """The originals' centre: the row's coordinate drawn first, then the column's."""
    y = (size + rnd.randint(-offset, offset)) / 2
    return {"centre_y": y, "centre_x": (size + rnd.randint(-offset, offset)) / 2}


def fracbuild_paint(source, size):
    """An instance as fracbuild draws it, from the originals' draws for it."""
    def paint(p, rnd):
        gray, inputs = line_draws(rnd, p["lines"], p["vertices"], size // 2 if source == "rcdb" else 255)
        return draw(source, p, inputs, gray, size, size)
    return paint


def restated_paint(source, size):
    """An instance as ``benchmarks/contour_originals.py`` (the bench's "original" column) draws it."""
    def paint(p, rnd):
        image = np.asarray(contour_originals.draw_image(source, p, rnd, size))
        assert (image[..., 0] == image[..., 2]).all()
        return image[..., 0]
    return paint


def original_rcdb(seed, categories, instances, paint, size=512):
    """``make_rcdb.py``'s draws from Python's ``random`` seeded ``seed``, each image painted by ``paint``."""
    rnd = random.Random(seed)
    for c in range(categories):
        while True:
            n = int(rnd.expovariate(1 / 100))
            if 2 < n <= 200:
                break
        p = {"vertices": n, "lines": rnd.randint(1, 200), "perlin": rnd.uniform(0, 4),
             "line_width": rnd.uniform(0.0, 0.1), "radius": rnd.randint(0, 100), "oval_x": rnd.uniform(1, 2),
             "oval_y": rnd.uniform(1, 2), **centre(rnd, size, 400)}
        for i in range(instances):
            yield c, i, paint(p, rnd)
            p.update(oval_x=rnd.uniform(1, 2), oval_y=rnd.uniform(1, 2), radius=rnd.randint(0, 100))
            p.update(centre(rnd, size, 400))


def original_visualatom(seed, categories, instances, size, perlin, line_width, radius, paint):
    """``render_VisualAtom.py``'s draws (``start_pos`` = ``size``), each image painted by ``paint``."""
    rnd = random.Random(seed)
    for c in range(categories):
        n = rnd.randint(200, 1000)
        p = {"vertices": n, "lines": rnd.randint(1, 200), "perlin": rnd.uniform(*perlin),
             "line_width": rnd.uniform(0.0, line_width), "radius": rnd.randint(radius, radius + 50),
             "wave1": rnd.randint(0, 20)}
        while True:
            p["wave2"] = rnd.randint(0, 20)
            if p["wave1"] != p["wave2"] or p["wave1"] == 0:
                break
        p.update(oval_x=rnd.uniform(1, 2), oval_y=rnd.uniform(1, 2), **centre(rnd, size, size))
        for i in range(instances):
            yield c, i, paint(p, rnd)
            p.update(centre(rnd, size, size))


def stored(name):
    return np.asarray(Image.open(DATA / f"{name}.png"))


#: The runs of data/originals/README.md: source, image size, replay arguments, images stored.
RUNS = {
    "rcdb-512": ("rcdb", 512, (1, 6, 3), {}, 5),
    "visualatom-512": ("visualatom", 512, (1, 1, 2), SCRIPT, 1),
    "visualatom-128": ("visualatom", 128, (1, 3, 2), SCRIPT, 6),
    "visualatom-defaults-128": ("visualatom", 128, (1, 2, 1), FILE_DEFAULTS, 2),
}


def compare_with_stored(run, painter):
    """Replay ``run``, paint each image with ``painter(source, size)`` and compare the stored ones."""
    source, size, args, ranges, count = RUNS[run]
    replay = original_rcdb if source == "rcdb" else original_visualatom
    extra = {} if source == "rcdb" else {"size": size, **ranges}
    compared = 0
    for c, i, image in replay(*args, paint=painter(source, size), **extra):
        path = DATA / f"{run}-c{c}-i{i}.png"
        if path.exists():
            np.testing.assert_array_equal(image, stored(path.stem), err_msg=path.name)
            compared += 1
    assert compared == count


@pytest.mark.parametrize("run", RUNS)
def test_pixels_equal_the_originals(run):
    """Fed the originals' parameters and random draws (their Python ``random`` replayed), fracbuild
    draws the images the originals drew (data/originals/README.md says how they were made)."""
    compare_with_stored(run, fracbuild_paint)


@pytest.mark.parametrize("run", ["rcdb-512", "visualatom-128"])
def test_the_benchs_restatement_of_the_originals_draws_their_pixels(run):
    """``make bench``'s "original" column times a restatement of the originals; it draws their pixels."""
    compare_with_stored(run, restated_paint)


def test_contour_update_moves_each_vertex_along_its_ray():
    """Line l moves vertex v by ``-(cos, sin)(angle v) * (noise - offset)``, noise from its own x or y
    input: RCDB's ``2 c pnoise1 - c``, VisualAtom's ``c pnoise1 - c`` less the two half sines of
    ``angle v`` times its frequencies; stated here in plain Python and drawn with Pillow."""
    n, radius, ox, oy, offset, c = 6, 20, 1.5, 1.0, -3.0, 2.5
    params = {"vertices": n, "lines": 2, "perlin": c, "line_width": offset, "radius": radius, "oval_x": ox,
              "oval_y": oy, "centre_x": 40.0, "centre_y": 32.0, "wave1": 2, "wave2": 5}
    inputs, gray = np.random.default_rng(3).random((2, 2, n)) * 10000, np.array([255, 90])
    pnoise = np.empty(inputs.size)
    perlin1(inputs.ravel(), pnoise)  # equal to noise.pnoise1: test_fracbuild_contour_kernels.py
    pnoise = pnoise.reshape(inputs.shape)
    step = 2 * math.pi / n
    for source, background in (("rcdb", 255), ("visualatom", 0)):
        expected = Image.new("L", (80, 80), background)
        x = [math.cos(step * v) * radius * ox for v in range(n)]
        y = [math.sin(step * v) * radius * oy for v in range(n)]
        for line in range(2):
            for v in range(n):
                if source == "rcdb":
                    noise = [p * c * 2 - c for p in pnoise[line, :, v]]
                else:
                    noise = [p * c - c - 0.5 * math.sin(step * v * 2) - 0.5 * math.sin(step * v * 5)
                             for p in pnoise[line, :, v]]
                x[v] -= math.cos(step * v) * (noise[0] - offset)
                y[v] -= math.sin(step * v) * (noise[1] - offset)
            points = [(x[v] + 40.0, y[v] + 32.0) for v in range(n)]
            ImageDraw.Draw(expected).line([*points, points[0]], fill=int(gray[line]), width=1)
        assert (np.asarray(expected) != background).sum() > 100
        np.testing.assert_array_equal(draw(source, params, inputs, gray, 80, 80), np.asarray(expected), err_msg=source)


def category_draws(source, count=3000):
    return [draw_category(source, RANGES[source], np.random.default_rng(category_seed(7, c)))
            for c in range(count)]


def test_rcdb_category_draws_are_the_originals_ranges_and_distributions():
    drawn = category_draws("rcdb")
    column = {k: np.array([c[k] for c in drawn]) for k in drawn[0]}
    n = column["vertices"]
    assert n.min() >= 3 and n.max() <= 200
    # int(expovariate(1/100)) kept in (2, 200]: P(n = k) ∝ e^{-k/100} - e^{-(k+1)/100}.
    k = np.arange(3, 201)
    p = np.exp(-k / 100) - np.exp(-(k + 1) / 100)
    mean, sd = (k * p).sum() / p.sum(), np.sqrt(((k - (k * p).sum() / p.sum()) ** 2 * p).sum() / p.sum())
    assert abs(n.mean() - mean) < 4 * sd / np.sqrt(len(n))
    for key, lo, hi in (("lines", 1, 200), ("radius", 0, 100)):
        values = column[key]
        assert values.dtype.kind == "i" and values.min() == lo and values.max() == hi
        assert abs(values.mean() - (lo + hi) / 2) < 4 * (hi - lo) / np.sqrt(12 * len(values))
    for key, lo, hi in (("perlin", 0, 4), ("line_width", 0, 0.1), ("oval_x", 1, 2), ("oval_y", 1, 2)):
        values = column[key]
        assert lo <= values.min() and values.max() < hi and abs(values.mean() - (lo + hi) / 2) < 0.03 * (hi - lo)
    for key in ("centre_x", "centre_y"):  # (512 + U{-400..400}) / 2
        twice = 2 * column[key]
        assert (twice == np.round(twice)).all() and twice.min() >= 112 and twice.max() <= 912
        assert abs(column[key].mean() - 256) < 4 * 231 / 2 / np.sqrt(len(twice))


def test_visualatom_category_draws_are_the_originals_ranges_and_distributions():
    drawn = category_draws("visualatom")
    column = {k: np.array([c[k] for c in drawn]) for k in drawn[0]}
    for key, lo, hi in (("vertices", 200, 1000), ("lines", 1, 200), ("radius", 10, 60), ("wave1", 0, 20)):
        values = column[key]
        assert values.dtype.kind == "i" and values.min() == lo and values.max() == hi, key
        assert abs(values.mean() - (lo + hi) / 2) < 4 * (hi - lo) / np.sqrt(12 * len(values)), key
    w1, w2 = column["wave1"], column["wave2"]
    assert ((w1 != w2) | (w1 == 0)).all() and ((w1 == 0) & (w2 == 0)).any()  # equal only when the first is 0
    assert (column["perlin"] < 4).all() and (column["line_width"] < 0.1).all()
    twice = 2 * column["centre_x"]
    assert twice.min() >= 0 and twice.max() <= 1024 and (twice == np.round(twice)).all()


def small(source, delta=None, classes=3, instances=2, size=64):
    recipe = new_recipe(source, classes=classes, seed=5, delta=delta, instances=instances)
    recipe["render"].update(size=size, shard_size=3)
    return validate_recipe(recipe)


def stream_key(entropy):
    """numpy's SeedSequence hashes a seed list (words below 2**32) padded with zeros to its pool of
    four words: two lists give one stream exactly when their padded forms are equal."""
    assert len(entropy) <= 4 and all(0 <= word < 2**32 for word in entropy)
    return (*entropy, *(0,) * (4 - len(entropy)))


def sample_seeds(recipe, cls, instance):
    """Every seed list sample (cls, instance) of ``recipe`` draws from, as ``meta["seeds"]`` records them."""
    seed, lpce = recipe["perturb"]["seed"], recipe["perturb"]["delta"] is not None
    draws = sequence_seed(seed, "shared" if lpce else "per-class", cls, instance)
    return [draws, [seed, NOISE, cls]] if lpce else [draws]


def test_stream_key_is_when_numpy_gives_one_stream():
    pool = lambda entropy: tuple(np.random.SeedSequence(entropy).pool)  # noqa: E731
    assert stream_key([0, 2, 5]) == stream_key([0, 2, 5, 0]) and pool([0, 2, 5]) == pool([0, 2, 5, 0])
    keys = [[s, t, c, i][:n] for s in (0, 1) for t in range(4) for c in range(3) for i in range(3) for n in (3, 4)]
    assert len({stream_key(k) for k in keys}) == len({pool(k) for k in keys})


@pytest.mark.parametrize("name", [f"{s}-{form}" for s in ("rcdb", "visualatom") for form in ("1m", "1k", "lpce")])
def test_no_category_stream_is_a_sample_stream(name):
    """A category's draws in ``new_recipe`` share no stream with any sample's draws of the shipped
    recipe: with one shared, category c's vertex count would follow class 0's c-th centre."""
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "manifests" / "paper" / f"{name}.json")
    classes, instances = recipe["perturb"]["classes"], recipe["render"]["instances"]
    src = create_source({**recipe, "render": {**recipe["render"], "size": 32}})
    for cls, instance in ((0, 0), (classes - 1, instances - 1)):  # the seeds below are those the source records
        assert sorted(src.sample(cls, instance)[1]["seeds"].values()) == sorted(sample_seeds(recipe, cls, instance))
    categories = {stream_key(category_seed(recipe["search"]["seed"], c)) for c in range(recipe["search"]["classes"])}
    samples = {stream_key(seed) for cls in range(classes) for instance in range(instances)
               for seed in sample_seeds(recipe, cls, instance)}
    assert len(samples) >= classes * instances and not categories & samples


def test_instances_redraw_what_the_originals_redraw():
    for source, redrawn in (("rcdb", {"radius", "oval_x", "oval_y", "centre_x", "centre_y"}),
                            ("visualatom", {"centre_x", "centre_y"})):
        recipe = small(source, instances=3)
        source_ = create_source(recipe)
        category = {k: v[1] for k, v in recipe["categories"].items()}
        first, second = (source_.sample(1, i)[1] for i in (0, 1))
        assert {k: first[k] for k in category} == category  # instance 0 is the category as drawn
        assert {k for k in category if second[k] != category[k]} == redrawn
        assert first["seeds"]["draws"] != second["seeds"]["draws"]


def test_lpce_classes_are_one_category_with_its_radius_perturbed():
    for source in ("rcdb", "visualatom"):
        recipe = small(source, delta=0.1, classes=6, instances=1, size=128)
        assert len(recipe["categories"]["radius"]) == 1 and recipe["perturb"]["classes"] == 6
        assert recipe["categories"]["centre_x"] == recipe["categories"]["centre_y"] == [256.0]
        src = create_source(recipe)
        metas = [src.sample(c, 0)[1] for c in range(6)]
        base = recipe["categories"]["radius"][0]
        radii = [m["radius"] for m in metas]
        assert all(0.9 * base <= r <= 1.1 * base for r in radii) and len(set(radii)) == 6
        assert {json.dumps(m["seeds"]["draws"]) for m in metas} == {json.dumps(metas[0]["seeds"]["draws"])}
        recipe["perturb"]["delta"] = 0.0  # the draws are shared: without a perturbation every class is one image
        src = create_source(recipe)
        images = [src.sample(c, 0)[0] for c in range(3)]
        assert all(np.array_equal(images[0], image) for image in images) and (images[0] != images[0][0, 0]).any()


def shard_bytes(out_dir):
    return {p.name: p.read_bytes() for p in sorted(out_dir.glob("*.tar"))}


@pytest.mark.parametrize("source,delta", [("rcdb", None), ("visualatom", None), ("visualatom", 0.1)])
def test_renders_are_byte_reproducible_for_any_jobs_and_backend(source, delta, tmp_path):
    recipe = small(source, delta=delta, classes=4, instances=1 if delta else 3)
    runs = [("one", 1, "loky"), ("two", 2, "loky"), ("threads", 2, "threading")]
    for name, jobs, backend in runs:
        render(recipe, tmp_path / name, jobs=jobs, backend=backend, progress=False, preview=False)
    shards = shard_bytes(tmp_path / "one")
    assert len(shards) >= 2 and all(shard_bytes(tmp_path / name) == shards for name, _, _ in runs)
    assert verify(tmp_path / "one", deep=2) == []
    m = load_manifest(tmp_path / "one")
    stored = [decode_sample(s) for r in m["shards"] for s in read_shard(tmp_path / "one" / r["file"])]
    index = len(stored) - 2
    image, meta = create_source(recipe).sample(*divmod(index, m["instances"]))  # a fresh source, alone
    np.testing.assert_array_equal(image, stored[index][0])
    assert meta == stored[index][2]
    assert meta["fill"] == np.mean(image != (255 if source == "rcdb" else 0)) > 0


def test_render_size_scales_the_canvas():
    recipe = small("rcdb", delta=0.0, classes=1, instances=1, size=512)
    full = create_source(recipe).sample(0, 0)[0]
    recipe["render"]["size"] = 128
    quarter = create_source(recipe).sample(0, 0)[0]
    ink_full, ink_quarter = np.argwhere(full < 255), np.argwhere(quarter < 255)
    # The ink's extent, not its mean: 1 px lines crowd together at a quarter size, which moves the mean.
    middle = lambda ink: (ink.min(axis=0) + ink.max(axis=0)) / 2  # noqa: E731
    np.testing.assert_allclose(middle(ink_quarter) * 4, middle(ink_full), atol=4)
    np.testing.assert_allclose(np.ptp(ink_quarter, axis=0) * 4, np.ptp(ink_full, axis=0), atol=6)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, message):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output


@pytest.mark.parametrize("edit,message", [
    (lambda r: r["ranges"].update(colour=3), "recipe 'ranges' has unknown key(s) for source 'rcdb': colour"),
    (lambda r: r["ranges"].update(lines=[5, 2]), "ranges.lines[1] must be >= 5, got 2"),
    (lambda r: r["ranges"].update(gray=[0, 300]), "ranges.gray[1] must be at most 256"),
    (lambda r: r["ranges"].update(vertices=[3, 20000]), "ranges.vertices x ranges.lines must be at most"),
    (lambda r: r["categories"]["radius"].append(3), "lists of one and the same length"),
    (lambda r: r["categories"].pop("perlin"), "recipe needs 'categories': an object of lists vertices, lines"),
    (lambda r: r["categories"]["vertices"].__setitem__(0, 2.5), "categories.vertices[0] must be an integer"),
    (lambda r: r["categories"]["oval_x"].__setitem__(1, 0), "categories.oval_x[1] must be > 0"),
    (lambda r: r["perturb"].update(classes=9), "perturb.classes must be <= the recipe's 3 categories"),
    (lambda r: r["perturb"].update(delta=-1), "perturb.delta must be >= 0 and <= 1e+06, got -1"),
    (lambda r: r["perturb"].update(mode="sideways"), "perturb.mode must be one of multiplicative"),
    (lambda r: r["ranges"].update(oval=[0, 2]), "ranges.oval[0] must be > 0, got 0"),
    (lambda r: r["render"].update(points=5), "recipe 'render' has unknown key(s) for source 'rcdb': points"),
])
def test_bad_keys_and_values_end_in_one_line(edit, message, tmp_path):
    recipe = small("rcdb")
    edit(recipe)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(recipe))
    assert_one_line_error(run("render", path, "-o", tmp_path / "ds"), message)
    assert not (tmp_path / "ds").exists()


def test_search_makes_each_form_and_refuses_what_does_not_apply(tmp_path):
    result = run("search", "--source", "visualatom", "--classes", 5, "--instances", 1, "--seed", 3,
                 "-o", tmp_path / "va.json")
    assert result.exit_code == 0 and "5 visualatom categories (seed 3), 1 instance each" in result.output
    recipe = json.loads((tmp_path / "va.json").read_text())
    assert recipe["render"]["instances"] == 1 and len(recipe["categories"]["wave1"]) == 5
    eight = new_recipe("visualatom", classes=8, seed=3)["categories"]  # categories are drawn one by one
    assert recipe["categories"] == {k: v[:5] for k, v in eight.items()}
    result = run("search", "--source", "rcdb", "--delta", 0.2, "--classes", 7, "-o", tmp_path / "lpce.json")
    assert "1 rcdb category (seed 0), 7 classes perturbing its radius (multiplicative, delta 0.2)" in result.output
    for args, message in [(["--sigma", 3], "--sigma does not apply to --source rcdb"),
                          (["--classes", 0], "classes must be >= 1, got 0"),
                          (["--seed", -2], "seed must be a non-negative integer, got -2"),
                          (["--instances", 0], "render.instances must be >= 1, got 0")]:
        assert_one_line_error(run("search", "--source", "rcdb", *args, "-o", tmp_path / "x.json"), message)
    assert_one_line_error(run("search", "--source", "fractal", "--instances", 2, "-o", tmp_path / "x.json"),
                          "--instances does not apply to --source fractal")
    assert not (tmp_path / "x.json").exists()


def test_info_and_preview_describe_a_contour_dataset(tmp_path):
    render(small("visualatom"), tmp_path, jobs=1, progress=False)
    out = run("info", tmp_path).output
    assert "source: visualatom" in out and "categories: 3 (vertices" in out and "instances 2" in out
    with Image.open(tmp_path / "preview.png") as sheet:
        assert sheet.size[0] >= 160 and np.asarray(sheet).std() > 10
