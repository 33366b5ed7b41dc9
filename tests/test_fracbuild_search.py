import json

import numpy as np
import pytest

import fracbuild
from fracbuild import ifs
from fracbuild.jsonfile import save_json
from fracbuild.kernels import fill_rate, map_choices, random_sequence, render_image
from fracbuild.recipe import load_recipe, validate_recipe

SMALL = {"size": 64, "points": 5000}


def test_search_is_reproducible_and_seed_dependent():
    a = fracbuild.search(sigma=3.5, seed=3, render=SMALL)
    b = fracbuild.search(sigma=3.5, seed=3, render=SMALL)
    c = fracbuild.search(sigma=3.5, seed=4, render=SMALL)
    assert json.dumps(a) == json.dumps(b)
    assert a["ifs"]["maps"] != c["ifs"]["maps"]


def test_search_result_meets_its_settings():
    r = fracbuild.search(sigma=4.0, maps=3, tolerance=0.05, seed=1, fill_min=0.1, render=SMALL)
    maps = np.array(r["ifs"]["maps"])
    assert maps.shape == (3, 6)
    assert abs(ifs.sigma_factor(maps) - 4.0) <= 0.05 + 1e-9
    assert r["ifs"]["sigma"] == pytest.approx(ifs.sigma_factor(maps))
    assert r["search"]["fill"] > 0.1
    # The recorded fill is the fill of the system rendered with the recipe's own settings.
    uniforms, masks = random_sequence(SMALL["points"], np.random.default_rng([1, 1]))
    image = render_image(maps, map_choices(np.array(r["ifs"]["probs"]), uniforms), masks, 64, "patch")
    assert fill_rate(image) == pytest.approx(r["search"]["fill"])


def test_search_keeps_only_a_fill_above_fill_min():
    first = fracbuild.search(seed=5, fill_min=0.0, render=SMALL)
    again = fracbuild.search(seed=5, fill_min=first["search"]["fill"], render=SMALL)
    assert again["search"]["tries"] > first["search"]["tries"] and again["ifs"] != first["ifs"]
    assert again["search"]["fill"] > first["search"]["fill"]


def test_search_records_the_paper_defaults():
    r = fracbuild.search(seed=0, render=SMALL)
    assert r["perturb"] == {"mode": "multiplicative", "delta": 0.1, "classes": 1000, "seed": 0}
    assert r["render"]["draw"] == "patch" and r["render"]["fill_min"] == 0.05
    assert r["render"]["instances"] == 1


def test_unreachable_fill_fails_with_one_line():
    with pytest.raises(fracbuild.FracbuildError, match="in 5 tries"):
        fracbuild.search(fill_min=0.99, max_tries=5, render=SMALL)


def test_recipe_round_trips_through_a_file(tmp_path):
    r = fracbuild.search(seed=2, render=SMALL)
    path = save_json(r, tmp_path / "r.json")
    assert load_recipe(path) == r
    with pytest.raises(fracbuild.FracbuildError, match="exists"):
        save_json(r, path)


def test_shipped_recipe_is_what_the_documented_search_makes():
    shipped = load_recipe("manifests/1p-frac.json")
    assert shipped == fracbuild.search(sigma=3.5, seed=0)


def base_recipe():
    return {"name": "x", "ifs": {"maps": [[0.5, 0, 0, 0.5, 0, 0], [0.5, 0, 0, 0.5, 0.5, 0]]}}


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda r: r.pop("ifs"), "needs 'ifs'"),
        (lambda r: r["ifs"].update(maps=[[1, 2, 3]]), "ifs.maps"),
        (lambda r: r["ifs"].update(maps=[["a"] * 6]), "ifs.maps"),
        (lambda r: r["ifs"].update(probs=[0.9, 0.9]), "ifs.probs"),
        (lambda r: r["ifs"].update(sigma=1.0), "does not match"),
        (lambda r: r.update(name="a.b"), "name"),
        (lambda r: r.update(perturb={"mode": "sideways"}), "perturb.mode"),
        (lambda r: r.update(perturb={"delta": -1}), "perturb.delta"),
        (lambda r: r.update(perturb={"classes": 0}), "perturb.classes"),
        (lambda r: r.update(perturb={"classes": 2.5}), "perturb.classes"),
        (lambda r: r.update(perturb={"colour": 1}), "unknown key"),
        (lambda r: r.update(render={"size": 8}), "render.size"),
        (lambda r: r.update(render={"draw": "ink"}), "render.draw"),
        (lambda r: r.update(render={"fill_min": 2}), "render.fill_min"),
        (lambda r: r.update(render="big"), "must be an object"),
    ],
)
def test_malformed_recipes_raise_one_line(edit, message):
    r = base_recipe()
    edit(r)
    with pytest.raises(fracbuild.FracbuildError, match=message) as err:
        validate_recipe(r)
    assert "\n" not in str(err.value)


def test_valid_recipe_gets_defaults_and_probabilities():
    r = validate_recipe(base_recipe())
    assert r["ifs"]["probs"] == [0.5, 0.5]
    assert r["ifs"]["sigma"] == pytest.approx(3.0)
    assert r["render"]["size"] == 512 and r["perturb"]["classes"] == 1000


def test_bad_json_file_is_one_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(fracbuild.FracbuildError, match="not valid JSON"):
        load_recipe(p)
    with pytest.raises(fracbuild.FracbuildError, match="cannot read"):
        load_recipe(tmp_path / "missing.json")
