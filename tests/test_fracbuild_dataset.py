import json

import numpy as np
import pytest
from PIL import Image

from fracbuild.dataset import preview, verify
from fracbuild.errors import FracbuildError
from fracbuild.manifest import info, manifest_digest
from fracbuild.rendering import render


@pytest.fixture
def dataset(recipe, tmp_path):
    out = tmp_path / "ds"
    render(recipe, out, jobs=1, progress=False)
    return out


def test_sound_dataset_verifies_deeply(dataset):
    assert verify(dataset, deep=4) == []


def test_verify_catches_a_flipped_byte(dataset):
    path = dataset / "1p-frac-000001.tar"
    data = bytearray(path.read_bytes())
    data[3000] ^= 0x01
    path.write_bytes(bytes(data))
    problems = verify(dataset)
    assert any("1p-frac-000001.tar: sha256 does not match" in p for p in problems)


def test_verify_catches_a_truncated_shard(dataset):
    path = dataset / "1p-frac-000000.tar"
    path.write_bytes(path.read_bytes()[:5000])
    problems = verify(dataset)
    assert any("1p-frac-000000.tar" in p and "bytes, manifest says" in p for p in problems)
    assert any("1p-frac-000000.tar" in p and "samples, manifest says 5" in p for p in problems)


def test_verify_catches_a_missing_shard(dataset):
    (dataset / "1p-frac-000002.tar").unlink()
    assert verify(dataset) == ["1p-frac-000002.tar: missing"]


def test_verify_deep_catches_pixels_that_no_longer_match_the_recipe(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["recipe"]["perturb"]["seed"] = 99  # shards are intact, but not what this recipe renders
    manifest["digest"] = manifest_digest(manifest)  # consistent, so only the re-render can tell
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    # Only the card, whose digest is the old manifest's, notices; without it, only the re-render can tell.
    assert [p.split(";")[0] for p in verify(dataset)] == ["README.md: its manifest digest no longer matches the "
                                                          "manifest"]
    (dataset / "README.md").unlink()
    assert verify(dataset) == []
    problems = verify(dataset, deep=3)
    assert len(problems) == 3 and all("re-rendered pixels differ" in p for p in problems)


def test_verify_catches_a_label_out_of_range(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["classes"] = 4
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    problems = verify(dataset)
    assert any("label 4 outside [0, 4)" in p for p in problems)


def test_preview_is_a_grid_of_classes(dataset, tmp_path):
    path = preview(dataset, tmp_path / "p.png", n=4, tile=100)
    with Image.open(path) as im:
        assert im.size == (200, 2 * 114)
        sheet = np.asarray(im)
    assert (sheet > 100).any()  # fractal strokes are drawn
    with pytest.raises(FracbuildError, match="at least 1"):
        preview(dataset, tmp_path / "q.png", n=0)


def test_info_summarises(dataset):
    text = info(dataset)
    assert "12 samples, 12 classes x 1 instances, 3 shards" in text
    assert "sigma 3.5274" in text and "multiplicative delta 0.1" in text


def test_reading_a_directory_without_manifest_is_one_error(tmp_path):
    for fn in (verify, info, preview):
        with pytest.raises(FracbuildError, match="has no manifest.json"):
            fn(tmp_path)
