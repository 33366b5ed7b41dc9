"""The ecosystem's dataset names for ``--dataset``: ``hfds/`` through the real Hugging Face ``datasets`` on
datasets the tests save, ``torch/`` through the real torchvision classes on roots laid out as torchvision
lays them, ``in100:`` / ``places30:`` over ImageNet- and Places365-shaped trees; and their one-line errors.
Nothing here reaches a network."""

import hashlib
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_trainer_data import one_thread  # noqa: F401 (fixture)
from test_trainer_pretrain import assert_one_line_error

import trainer
from trainer.cli import main
from trainer.data.downstream import load_dataset
from trainer.data.downstream.subsets import SUBSETS
from trainer.errors import TrainerError

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def no_hub(tmp_path, monkeypatch):
    """Hugging Face offline, its cache in the test's directory."""
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    datasets.disable_progress_bars()


def pictures(n, seed, size=(12, 12)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def hub_dict(train=9, test=6, classes=("ant", "bee", "cat")):
    """A DatasetDict as Hub image datasets hold one: an Image column, a ClassLabel and another integer column."""
    features = datasets.Features({"img": datasets.Image(), "fine": datasets.ClassLabel(names=list(classes)),
                                  "coarse": datasets.Value("int64")})
    splits = {}
    for split, n, seed in (("train", train, 0), ("test", test, 1)):
        splits[split] = datasets.Dataset.from_dict(
            {"img": [Image.fromarray(a) for a in pictures(n, seed)], "fine": [i % len(classes) for i in range(n)],
             "coarse": [i % 2 for i in range(n)]}, features=features)
    return datasets.DatasetDict(splits)


def test_an_hfds_spec_reads_a_dataset_saved_to_disk_and_fine_tunes(tmp_path):
    saved = tmp_path / "saved"
    hub_dict().save_to_disk(str(saved))
    data = load_dataset(f"hfds/{saved}")
    assert (data.classes, len(data.train), len(data.test)) == (3, 9, 6)
    assert data.info["columns"] == {"image": "img", "label": "fine"}
    assert data.info["class_names"] == ["ant", "bee", "cat"]
    assert data.test.labels == [0, 1, 2, 0, 1, 2]
    assert np.array_equal(np.asarray(data.test.image(4)), pictures(6, 1)[4])
    results = trainer.finetune("scratch", f"hfds/{saved}", tmp_path / "run", preset="smoke", epochs=1, batch_size=4,
                               progress=False)
    assert results["dataset"]["classes"] == 3 and results["dataset"]["train"] == 9 and results["dataset"]["test"] == 6


def test_an_hfds_spec_reads_parquet_files_with_its_columns_and_splits_given(tmp_path):
    saved = hub_dict(train=8, test=4)
    (tmp_path / "pq").mkdir()
    saved["train"].to_parquet(str(tmp_path / "pq" / "train-00000-of-00001.parquet"))
    saved["test"].to_parquet(str(tmp_path / "pq" / "validation-00000-of-00001.parquet"))
    data = load_dataset(f"hfds/{tmp_path / 'pq'}?label=coarse&image=img", shots=2)
    # An integer label column: the classes are counted from 0; no test split: validation is the test split.
    assert (data.classes, len(data.train), len(data.test)) == (2, 4, 4) and data.info["split"] == "train / validation"
    assert data.train.labels == [0, 1, 0, 1] and "class_names" not in data.info
    assert np.array_equal(np.asarray(data.train.image(3)), pictures(8, 0)[3])


def test_an_hfds_spec_reads_an_image_folder(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for c in ("dog", "emu"):
            (tmp_path / "f" / split / c).mkdir(parents=True)
            for i, a in enumerate(pictures(n, hash((split, c)) % 100)):
                Image.fromarray(a).save(tmp_path / "f" / split / c / f"{i}.png")
    data = load_dataset(f"hfds/{tmp_path / 'f'}")  # datasets' imagefolder: the folder names are a ClassLabel
    assert (data.classes, len(data.train), len(data.test)) == (2, 6, 4) and data.info["class_names"] == ["dog", "emu"]
    assert sorted(data.test.labels) == [0, 0, 1, 1] and data.test.image(0).size == (12, 12)


@pytest.mark.parametrize("options,message", [
    ("?label=nothing", "no column 'nothing' for label= (columns: img (Image), fine (ClassLabel), coarse (int64))"),
    ("?image=fine", "column 'fine' holds ClassLabel"),
    ("?test=dev", "no split 'dev' (splits: train, test); give test=SPLIT"),
    ("?colour=1", "unknown option 'colour'; hfds/NAME[:CONFIG] takes image= (the image column), label="),
    ("?label", "options are key=value after '?', got 'label'"),
])
def test_bad_hfds_options_are_one_clear_error(tmp_path, options, message):
    hub_dict().save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(TrainerError) as e:
        load_dataset(f"hfds/{tmp_path / 'saved'}{options}")
    assert str(e.value).startswith(f"hfds/{tmp_path / 'saved'}{options}: ") and message in str(e.value)


def test_hfds_columns_that_cannot_be_found_are_one_clear_error(tmp_path):
    two = hub_dict().cast_column("coarse", datasets.ClassLabel(names=["even", "odd"]))
    two.save_to_disk(str(tmp_path / "two"))
    with pytest.raises(TrainerError, match=r"2 \(fine, coarse\) ClassLabel columns; give label=COL"):
        load_dataset(f"hfds/{tmp_path / 'two'}")
    assert load_dataset(f"hfds/{tmp_path / 'two'}?label=coarse").info["class_names"] == ["even", "odd"]
    none = hub_dict().cast_column("fine", datasets.Value("string"))
    none.save_to_disk(str(tmp_path / "none"))
    with pytest.raises(TrainerError, match="no ClassLabel columns; give label=COL for the labels"):
        load_dataset(f"hfds/{tmp_path / 'none'}")
    with pytest.raises(TrainerError, match="label column 'fine' holds .*string.*; expected a ClassLabel or integers"):
        load_dataset(f"hfds/{tmp_path / 'none'}?label=fine")
    hub_dict()["train"].save_to_disk(str(tmp_path / "one"))
    with pytest.raises(TrainerError, match="holds one split saved with save_to_disk"):
        load_dataset(f"hfds/{tmp_path / 'one'}")
    unlabelled = hub_dict()
    unlabelled["test"] = unlabelled["test"].cast_column("fine", datasets.Value("int64")).map(lambda r: {"fine": -1})
    unlabelled["train"] = unlabelled["train"].cast_column("fine", datasets.Value("int64"))
    unlabelled.save_to_disk(str(tmp_path / "unlabelled"))
    with pytest.raises(TrainerError, match="split 'test' has unlabelled rows"):
        load_dataset(f"hfds/{tmp_path / 'unlabelled'}?label=fine")


def test_an_hfds_hub_name_that_cannot_be_reached_is_one_error(tmp_path):
    result = CliRunner().invoke(main, ["finetune", "--init", "scratch", "--dataset", "hfds/someone/nothing:small",
                                       "--out", str(tmp_path / "run"), "--preset", "smoke", "--epochs", "1"])
    assert_one_line_error(result, "hfds/someone/nothing:small: cannot load it with datasets (ConnectionError: "
                                  "Couldn't reach 'someone/nothing' on the Hub")
    assert not (tmp_path / "run").exists()


# torch/ -----------------------------------------------------------------------------------------------


def make_stanford_cars(root, per_class=(4, 2), names=("Audi A", "BMW B", "Fiat C")):
    """torchvision's StanfordCars layout: devkit .mat files with 1-based classes, and the image folders."""
    import scipy.io

    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(names, dtype=object)})
    images = {}
    for (split, annotations, folder), n in zip(
            (("train", base / "devkit" / "cars_train_annos.mat", base / "cars_train"),
             ("test", base / "cars_test_annos_withlabels.mat", base / "cars_test")), per_class, strict=True):
        folder.mkdir()
        rows = np.zeros(len(names) * n, dtype=[("fname", "O"), ("class", "O")])
        images[split] = pictures(len(rows), len(split), size=(20, 30))
        for i, picture in enumerate(images[split]):
            Image.fromarray(picture).save(folder / f"{i:05d}.png")
            rows[i] = (f"{i:05d}.png", len(names) - i % len(names))  # classes 3, 2, 1, 3, ...
        scipy.io.savemat(annotations, {"annotations": rows})
    return images


def test_a_new_torch_name_reads_its_root_and_fine_tunes(tmp_path):
    images = make_stanford_cars(tmp_path / "cars")
    spec = f"torch/stanford_cars?root={tmp_path / 'cars'}"
    data = load_dataset(spec)
    assert (data.classes, len(data.train), len(data.test)) == (3, 12, 6)
    assert data.info["class_names"] == ["Audi A", "BMW B", "Fiat C"]
    assert data.train.labels[:4] == [2, 1, 0, 2] and data.test.labels == [2, 1, 0] * 2
    assert np.array_equal(np.asarray(data.test.image(5)), images["test"][5])
    results = trainer.finetune("scratch", spec, tmp_path / "run", preset="smoke", epochs=1, batch_size=4,
                               progress=False)
    assert results["dataset"]["spec"] == spec and results["dataset"]["classes"] == 3


def test_torch_imagenet_reads_a_local_root_through_timm(tmp_path):
    import torch

    wnids = ["n01440764", "n01443537"]
    torch.save(({w: (f"class {w}",) for w in wnids}, []), tmp_path / "meta.bin")  # what torchvision writes
    for split, n in (("train", 3), ("val", 2)):
        for w in wnids:
            (tmp_path / split / w).mkdir(parents=True)
            for i, a in enumerate(pictures(n, 0)):
                Image.fromarray(a).save(tmp_path / split / w / f"{w}_{i}.JPEG", format="PNG")
    data = load_dataset(f"torch/imagenet?root={tmp_path}")
    assert (data.classes, len(data.train), len(data.test)) == (2, 6, 4)
    assert data.test.labels == [0, 0, 1, 1] and data.info["class_names"] == ["class n01440764", "class n01443537"]


@pytest.mark.parametrize("spec,message", [
    ("torch/stanford_cars", "torch/stanford_cars: not found in {data} with download=0 (Dataset not found.); "
                            "torchvision cannot download it: give root=DIR where it is"),
    ("torch/stanford_cars?download=1", "torchvision cannot download stanford_cars; put it in a directory"),
    ("torch/imagenet?root={tmp}", "torch/imagenet?root={tmp}: not found in {tmp} with download=0 (The archive "
                                  "ILSVRC2012_devkit_t12.tar.gz is not present"),
    ("torch/svhn?download=0&root={tmp}", "torch/svhn?download=0&root={tmp}: not found in {tmp} with download=0 "
                                         "(Dataset not found or corrupted. You can use download=True to download "
                                         "it); give download=1 to let torchvision download it"),
    ("torch/svhn?download=maybe", "download= takes 1 or 0, got 'maybe'"),
    ("torch/svhn?size=1", "unknown option 'size'; torch/NAME takes root= (where the set is, or goes), download="),
    ("torch/caltech101", "not a torch/ set; expected one of cifar10, cifar100, mnist"),
])
def test_bad_torch_specs_name_the_root_and_the_download_flag(tmp_path, monkeypatch, spec, message):
    monkeypatch.setenv("TRAINER_DATA_DIR", str(tmp_path / "data"))
    spec, message = (s.format(tmp=tmp_path, data=tmp_path / "data") for s in (spec, message))
    with pytest.raises(TrainerError) as e:
        load_dataset(spec)
    assert message in str(e.value) and "\n" not in str(e.value)


# in100: and places30: -------------------------------------------------------------------------------------


def test_the_pinned_imagenet100_list_is_cmcs_file_as_published():
    subset = SUBSETS["in100"]
    from importlib import resources

    text = (resources.files("trainer.data.downstream") / "classlists" / subset.pinned).read_bytes()
    wnids = text.decode().split()
    assert hashlib.sha256(text).hexdigest() == subset.sha256 and "HobbitLong/CMC" in subset.source
    assert len(wnids) == len(set(wnids)) == 100 and all(w.startswith("n") and len(w) == 9 for w in wnids)


def imagenet_tree(root, wnids, per_class=(2, 1)):
    for split, n in zip(("train", "val"), per_class, strict=True):
        for w in wnids:
            (root / split / w).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (int(w[-2:]), i, 0)).save(root / split / w / f"{w}_{i}.JPEG", format="PNG")


def test_in100_takes_cmcs_100_classes_of_an_imagenet_copy(tmp_path):
    from importlib import resources

    cmc = (resources.files("trainer.data.downstream") / "classlists" / "imagenet100.txt").read_text().split()
    imagenet_tree(tmp_path / "in", [*cmc, "n00000001", "n99999999"])  # and two classes not in the list
    data = load_dataset(f"in100:{tmp_path / 'in'}")
    assert (data.classes, len(data.train), len(data.test)) == (100, 200, 100)
    assert data.info["class_names"] == sorted(cmc) and "bc687a26de7ae350d98f671d25d164b65336b8c2" in data.info[
        "classes_from"]
    first = sorted(cmc)[0]
    assert data.test.labels == list(range(100)) and data.test.images[0].endswith(f"val/{first}/{first}_0.JPEG")
    shutil.rmtree(tmp_path / "in" / "val" / sorted(cmc)[7])
    with pytest.raises(TrainerError, match=f"no folder val/{sorted(cmc)[7]} in {tmp_path / 'in'}; expected an "
                                           "ImageNet copy with train/WNID/ and val/WNID/"):
        load_dataset(f"in100:{tmp_path / 'in'}")


def places365_tree(root, categories=("/a/abbey", "/b/bakery/shop", "/c/creek", "/e/escalator/indoor")):
    """torchvision's Places365 layout: the category and file lists, the 256 px train folders, a flat val folder."""
    root.mkdir()
    (root / "categories_places365.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(categories)))
    train, val = [], []
    for i, c in enumerate(categories):
        (root / "data_256_standard" / c.strip("/")).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (8, 8), (i, k, 0)).save(root / "data_256_standard" / c.strip("/") / f"{k:08d}.jpg")
            train.append(f"{c}/{k:08d}.jpg {i}\n")
    (root / "val_256").mkdir()
    for n in range(8):
        Image.new("RGB", (8, 8), (n, 0, 9)).save(root / "val_256" / f"Places365_val_{n:08d}.jpg")
        val.append(f"Places365_val_{n:08d}.jpg {n % len(categories)}\n")
    (root / "places365_train_standard.txt").write_text("".join(train))
    (root / "places365_val.txt").write_text("".join(val))


def test_places30_has_no_pinned_list_and_takes_one_from_a_file(tmp_path):
    places365_tree(tmp_path / "p")
    with pytest.raises(TrainerError, match="no published list was found in FractalDB's public repositories, so none "
                                           r"is pinned: give the 30 Places365 classes with \?classes=FILE"):
        load_dataset(f"places30:{tmp_path / 'p'}")
    (tmp_path / "three.txt").write_text("# three of them\ncreek\n/e/escalator/indoor\n/a/abbey\n")
    data = load_dataset(f"places30:{tmp_path / 'p'}?classes={tmp_path / 'three.txt'}")
    assert data.info["class_names"] == ["abbey", "creek", "escalator/indoor"]
    assert (data.classes, len(data.train), len(data.test)) == (3, 6, 6)
    assert data.train.labels == [0, 0, 1, 1, 2, 2] and data.test.labels == [0, 1, 2, 0, 1, 2]
    assert data.test.image(1).getpixel((0, 0))[0] in (1, 2, 3)  # val image 2 (creek) after val image 0 (abbey)
    (tmp_path / "bad.txt").write_text("creek\nvolcano\n")
    with pytest.raises(TrainerError, match="'volcano' is not a Places365 category"):
        load_dataset(f"places30:{tmp_path / 'p'}?classes={tmp_path / 'bad.txt'}")
    with pytest.raises(TrainerError, match="no categories_places365.txt in"):
        load_dataset(f"places30:{tmp_path}?classes={tmp_path / 'three.txt'}")


@pytest.mark.parametrize("command,spec,message", [
    ("finetune", "in100:{tmp}/nowhere", "in100:{tmp}/nowhere: no directory {tmp}/nowhere (a local ImageNet copy)"),
    ("probe", "places30:", "unknown dataset 'places30:' (one of digits, mnist5k, folder:PATH, wds:DATA, torch/NAME, "
                           "hfds/NAME[:CONFIG], in100:ROOT, places30:ROOT)"),
    ("finetune", "hfds/{tmp}/nowhere", "hfds/{tmp}/nowhere: no directory {tmp}/nowhere"),
    ("finetune", "torch/stl100", "torch/stl100: not a torch/ set"),
])
def test_bad_specs_are_one_line_on_the_command_line(tmp_path, command, spec, message):
    spec, message = spec.format(tmp=tmp_path), message.format(tmp=tmp_path)
    extra = ["--blocks", "1"] if command == "probe" else []
    result = CliRunner().invoke(main, [command, "--init", "scratch", "--dataset", spec, "--out", str(tmp_path / "run"),
                                       "--preset", "smoke", "--epochs", "1", *extra])
    assert_one_line_error(result, message)


def test_inspect_measures_on_an_hfds_sets_test_images(tmp_path):
    import json

    hub_dict(train=4, test=8).save_to_disk(str(tmp_path / "saved"))
    result = CliRunner().invoke(main, ["inspect", "scratch", "--dataset", f"hfds/{tmp_path / 'saved'}", "--images",
                                       "20", "--preset", "smoke", "--json", str(tmp_path / "inspect.json")])
    assert result.exit_code == 0, result.output
    measured = json.loads((tmp_path / "inspect.json").read_text())
    assert measured["dataset"] == f"hfds/{tmp_path / 'saved'}" and measured["images"] == 8  # all of the test split
    assert set(measured["models"]) == {"scratch"}
