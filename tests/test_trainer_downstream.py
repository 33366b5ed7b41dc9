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
    for n in range(len(categories)):  # one per category, in category order
        Image.new("RGB", (8, 8), (n, 0, 9)).save(root / "val_256" / f"Places365_val_{n:08d}.jpg")
        val.append(f"Places365_val_{n:08d}.jpg {n % len(categories)}\n")
    (root / "places365_train_standard.txt").write_text("".join(train))
    (root / "places365_val.txt").write_text("".join(val))


def pinned_places30():
    from importlib import resources

    text = (resources.files("trainer.data.downstream") / "classlists" / "places30.txt").read_text()
    return [line for line in text.splitlines() if line.startswith("/")]


def test_places30_takes_its_pinned_30_classes_and_refuses_a_list_of_another_length(tmp_path):
    pinned = pinned_places30()
    assert len(pinned) == len(set(pinned)) == 30 and SUBSETS["places30"].pinned == "places30.txt"
    from importlib import resources

    text = (resources.files("trainer.data.downstream") / "classlists" / "places30.txt").read_bytes()
    assert hashlib.sha256(text).hexdigest() == SUBSETS["places30"].sha256
    places365_tree(tmp_path / "p", ["/a/airfield", *pinned])  # and one class not in the list
    data = load_dataset(f"places30:{tmp_path / 'p'}")
    names = sorted(n.split("/", 2)[2] for n in pinned)
    assert (data.classes, len(data.train), len(data.test)) == (30, 60, 30) and data.info["class_names"] == names
    assert data.train.labels == [i // 2 for i in range(60)] and "organize_places-30.py" in data.info["classes_from"]
    first_val = data.test.images[0]  # val image n has category n: 0 is airfield, 1 the first pinned
    assert first_val.endswith("Places365_val_00000001.jpg") and data.test.labels[0] == names.index(pinned[0][3:])
    (tmp_path / "three.txt").write_text("# three of them\ncreek\n/e/escalator/indoor\n/a/amphitheater\n")
    with pytest.raises(TrainerError, match=f"the class list {tmp_path / 'three.txt'} has 3 classes; places30 is 30 "
                                           "classes of Places365"):
        load_dataset(f"places30:{tmp_path / 'p'}?classes={tmp_path / 'three.txt'}")
    (tmp_path / "thirty.txt").write_text("\n".join(["/a/airfield", *pinned[1:]]))
    data = load_dataset(f"places30:{tmp_path / 'p'}?classes={tmp_path / 'thirty.txt'}")
    assert "airfield" in data.info["class_names"] and data.info["classes_from"] == str(tmp_path / "thirty.txt")
    (tmp_path / "bad.txt").write_text("\n".join(["volcano2", *pinned[1:]]))
    with pytest.raises(TrainerError, match="'volcano2' is not a Places365 category"):
        load_dataset(f"places30:{tmp_path / 'p'}?classes={tmp_path / 'bad.txt'}")
    with pytest.raises(TrainerError, match="no categories_places365.txt in"):
        load_dataset(f"places30:{tmp_path}")


@pytest.mark.parametrize("command,spec,message", [
    ("finetune", "in100:{tmp}/nowhere", "in100:{tmp}/nowhere: no directory {tmp}/nowhere (a local ImageNet copy)"),
    ("probe", "places30:", "unknown dataset 'places30:' (one of digits, mnist5k, folder:PATH, wds:DATA, torch/NAME, "
                           "hfds/NAME[:CONFIG], in100:ROOT, places30:ROOT, voc12:ROOT, vtab/NAME)"),
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


# voc12: and vtab/ -------------------------------------------------------------------------------------------


def voc_tree(root, images):
    """VOC 2012's layout (``VOCdevkit/VOC2012``): one annotation XML and one JPEG per image, the image sets.
    ``images``: split -> [(image id, [(class, difficult, (xmin, ymin, xmax, ymax)), ...]), ...]."""
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    for split, entries in images.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{name}\n" for name, _ in entries))
        for name, objects in entries:
            pixels = np.arange(40 * 30 * 3, dtype=np.uint32).reshape(30, 40, 3) % 251
            Image.fromarray(pixels.astype(np.uint8)).save(voc / "JPEGImages" / f"{name}.jpg", quality=100)
            boxes = "".join(
                f"<object><name>{c}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult>"
                f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                for c, d, (x0, y0, x1, y1) in objects)
            (voc / "Annotations" / f"{name}.xml").write_text(
                f"<annotation><folder>VOC2012</folder><filename>{name}.jpg</filename><size><width>40</width>"
                f"<height>30</height><depth>3</depth></size><segmented>0</segmented>{boxes}</annotation>")
    return voc


def test_voc12_crops_each_object_box_and_labels_it_with_its_class(tmp_path):
    voc = voc_tree(tmp_path / "voc", {
        "train": [("2008_000001", [("dog", 0, (1, 1, 10, 20)), ("person", 1, (5, 5, 40, 30))]),
                  ("2008_000002", [("aeroplane", 0, (11, 2, 30, 12))])],
        "val": [("2008_000003", [("tvmonitor", 0, (3, 4, 7, 9)), ("dog", 0, (1, 1, 40, 30))])]})
    data = load_dataset(f"voc12:{tmp_path / 'voc'}")
    assert (data.classes, len(data.train), len(data.test)) == (20, 2, 2)
    names = data.info["class_names"]
    assert names[:3] == ["aeroplane", "bicycle", "bird"] and names[19] == "tvmonitor"
    assert data.train.labels == [11, 0] and data.test.labels == [19, 11]  # dog, aeroplane; tvmonitor, dog
    photo = np.asarray(Image.open(voc / "JPEGImages" / "2008_000002.jpg"))
    crop, label = data.train[1]
    assert crop.size == (20, 11) and label == 0  # columns 11..30 and rows 2..12 of VOC's 1-based pixels
    np.testing.assert_array_equal(np.asarray(crop), photo[1:12, 10:30])
    assert data.test[1][0].size == (40, 30)
    every = load_dataset(f"voc12:{tmp_path / 'voc'}?difficult=1")
    assert every.train.labels == [11, 14, 0] and "difficult ones too" in every.info["split"]


@pytest.mark.parametrize("spec,message", [
    ("voc12:{tmp}/none", "voc12:{tmp}/none: no VOC 2012 train set in {tmp}/none/VOCdevkit/VOC2012 (Dataset not found "
                         "or corrupted"),
    ("voc12:{tmp}/voc?download=2", "download= takes 1 or 0, got '2'"),
    ("voc12:{tmp}/voc?year=2007", "unknown option 'year'; voc12:ROOT takes download="),
    ("voc12:{tmp}/odd", "names an object outside VOC's 20 classes: 'unicorn'"),
])
def test_bad_voc12_copies_are_one_clear_error(tmp_path, spec, message):
    voc_tree(tmp_path / "voc", {s: [(f"{s}_1", [("cat", 0, (1, 1, 5, 5))])] for s in ("train", "val")})
    voc_tree(tmp_path / "odd", {s: [(f"{s}_1", [("unicorn", 0, (1, 1, 5, 5))])] for s in ("train", "val")})
    with pytest.raises(TrainerError) as e:
        load_dataset(spec.format(tmp=tmp_path))
    assert message.format(tmp=tmp_path) in str(e.value) and "\n" not in str(e.value)


def vtab_copy(root, labels):
    """A local copy of one of clip-benchmark's VTAB repositories: ``train/0.tar`` and ``test/0.tar`` of
    webdataset samples, ``KEY.webp`` and ``KEY.cls``."""
    import io
    import tarfile

    for split, ys in labels.items():
        (root / split).mkdir(parents=True)
        with tarfile.open(root / split / "0.tar", "w") as tar:
            for i, (y, picture) in enumerate(zip(ys, pictures(len(ys), len(split)), strict=True)):
                webp = io.BytesIO()
                Image.fromarray(picture).save(webp, format="WEBP", lossless=True)
                for ext, data in (("webp", webp.getvalue()), ("cls", str(y).encode())):
                    info = tarfile.TarInfo(f"{i:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def test_vtab_names_stand_for_torch_and_hub_sets_with_their_labels_pinned(tmp_path):
    from trainer.data.downstream.vtab import SETS, resolve

    assert [(n, s.classes) for n, s in SETS.items()] == [
        ("retinopathy", 5), ("resisc45", 45), ("camelyon", 2), ("clevr_count", 8), ("snorb_azimuth", 18)]
    assert resolve("camelyon?root=/data")[0] == "torch/pcam?root=/data"
    assert resolve("clevr_count")[0] == "torch/clevr_count"
    assert resolve("snorb_azimuth")[0] == "hfds/clip-benchmark/wds_vtab-smallnorb_label_azimuth?label=cls"
    assert resolve(f"resisc45?from={tmp_path}")[0] == f"hfds/{tmp_path}?label=cls"
    vtab_copy(tmp_path / "norb", {"train": list(range(18)) * 2, "test": [17, 0, 5]})
    data = load_dataset(f"vtab/snorb_azimuth?from={tmp_path / 'norb'}")
    assert (data.classes, len(data.train), len(data.test)) == (18, 36, 3) and data.test.labels == [17, 0, 5]
    assert data.info["columns"] == {"image": "webp", "label": "cls"} and data.info["vtab"]["column"] == "sNORB-A"
    assert np.asarray(data.test.image(0)).shape == (12, 12, 3)
    vtab_copy(tmp_path / "category", {"train": [0, 1, 2, 3, 4], "test": [4, 0]})  # smallNORB's 5 categories
    with pytest.raises(TrainerError, match=f"vtab/snorb_azimuth\\?from={tmp_path / 'category'}: hfds/.* gives 5 "
                                           r"classes; sNORB-A has 18 \(camera azimuth"):
        load_dataset(f"vtab/snorb_azimuth?from={tmp_path / 'category'}")


def norb_dict():
    """smallNORB as Hub copies hold it: two cameras' images and five labels, two of them ClassLabels."""
    features = datasets.Features({"image_lt": datasets.Image(), "category": datasets.ClassLabel(num_classes=5),
                                  "azimuth": datasets.ClassLabel(num_classes=18), "lighting": datasets.Value("int32")})
    return datasets.DatasetDict({split: datasets.Dataset.from_dict(
        {"image_lt": [Image.fromarray(a) for a in pictures(n, n)], "category": [i % 5 for i in range(n)],
         "azimuth": [i % 18 for i in range(n)], "lighting": [0] * n}, features=features)
        for split, n in (("train", 18), ("test", 4))})


def test_an_hfds_set_with_two_label_columns_is_refused_until_one_is_named(tmp_path):
    norb_dict().save_to_disk(str(tmp_path / "norb"))
    with pytest.raises(TrainerError, match=r"2 \(category, azimuth\) ClassLabel columns; give label=COL"):
        load_dataset(f"hfds/{tmp_path / 'norb'}")
    assert load_dataset(f"hfds/{tmp_path / 'norb'}?label=category").classes == 5
    data = load_dataset(f"vtab/snorb_azimuth?from={tmp_path / 'norb'}&label=azimuth")
    assert data.classes == 18 and data.info["columns"] == {"image": "image_lt", "label": "azimuth"}


@pytest.mark.parametrize("spec,message", [
    ("vtab/norb", "vtab/norb: not a vtab/ set; expected one of retinopathy, resisc45, camelyon, clevr_count, "
                  "snorb_azimuth"),
    ("vtab/camelyon?from=/data", "vtab/camelyon?from=/data: from= takes a local copy of a Hub set; camelyon is "
                                 "torch/pcam: give root=DIR"),
    ("vtab/clevr_count?root={tmp}&download=0", "torch/clevr_count?root={tmp}&download=0: not found in {tmp} with "
                                               "download=0"),
])
def test_bad_vtab_specs_are_one_clear_error(tmp_path, spec, message):
    with pytest.raises(TrainerError) as e:
        load_dataset(spec.format(tmp=tmp_path))
    assert message.format(tmp=tmp_path) in str(e.value) and "\n" not in str(e.value)


def test_mnist5k_is_parsed_once_and_each_load_gets_its_own_arrays():
    from trainer.data.downstream import builtin

    first = builtin.load_mnist5k()
    original = first.train.images[0].copy()
    first.train.images[0][:] = 255  # a caller's change in place stays in its own copy
    again = builtin.load_mnist5k()
    assert builtin._mnist5k_table.cache_info().currsize == 1
    assert np.array_equal(again.train.images[0], original) and original.min() < 255
    assert len(again.train) == 4000 and len(again.test) == 1000
