"""``torch/NAME[?root=DIR&download=0|1]``: torchvision's classification sets, by the names timm gives them.

The sets timm's ``create_dataset("torch/NAME")`` knows go through it (it maps ``train`` / ``validation`` to each
set's own split names); the others through their torchvision class, each with its own train and test split
(``SETS`` lists them). ``root`` defaults to ``$TRAINER_DATA_DIR`` (``~/.cache/trainer/datasets``); torchvision
downloads a missing set there unless ``download=0``, except the sets it cannot download (``imagenet``,
``stanford_cars``), which must be in ``root`` already. Images are opened one at a time from the torchvision
dataset, so a large set is never held in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import TrainerError
from .base import Downstream, ImageList, data_dir, flag, split_options

SYNTAX = "torch/NAME"
OPTIONS = {"root": "where the set is, or goes", "download": "1: let torchvision download what is missing"}
TIMM = ({"split": "train"}, {"split": "validation"})  # timm's names for the two splits


def _attribute(name: str) -> Callable[[Any], Sequence[int]]:
    return lambda ds: getattr(ds, name)


def _second(name: str) -> Callable[[Any], Sequence[int]]:
    return lambda ds: [s[1] for s in getattr(ds, name)]


def _pcam_labels(ds: Any) -> Sequence[int]:
    """PCam's labels, read from its targets file at once (its items open the image file as well)."""
    with ds.h5py.File(ds._base_folder / ds._FILES[ds._split]["targets"][0]) as targets:
        return targets["y"][:, 0, 0, 0].tolist()  # shape [images, 1, 1, 1]


@dataclass(frozen=True)
class TorchSet:
    """How to open one set: its torchvision class (None: through timm), the arguments of its train and test
    splits, where its labels are, and its class count (None: ``len(dataset.classes)``)."""

    splits: tuple[dict[str, Any], dict[str, Any]]
    labels: Callable[[Any], Sequence[int]]
    cls: str | None = None
    classes: int | Callable[[Any], int] | None = None
    downloads: bool = True  # torchvision can fetch it
    offset: int = 0  # subtracted from torchvision's labels


SETS: dict[str, TorchSet] = {
    # through timm's create_dataset
    "cifar10": TorchSet(TIMM, _attribute("targets")),
    "cifar100": TorchSet(TIMM, _attribute("targets")),
    "mnist": TorchSet(TIMM, _attribute("targets")),
    "kmnist": TorchSet(TIMM, _attribute("targets")),
    "fashion_mnist": TorchSet(TIMM, _attribute("targets")),
    "qmnist": TorchSet(TIMM, lambda ds: ds.targets[:, 0]),  # the other columns are QMNIST's extra fields
    "places365": TorchSet(TIMM, _attribute("targets")),  # train-standard / val
    "imagenet": TorchSet(TIMM, _attribute("targets"), downloads=False),  # train / val, from the ILSVRC2012 files
    "inaturalist": TorchSet(TIMM, lambda ds: [c for c, _ in ds.index],  # 2021_train / 2021_valid
                            classes=lambda ds: len(ds.all_categories)),
    # their own torchvision class
    "svhn": TorchSet(({"split": "train"}, {"split": "test"}), _attribute("labels"), "SVHN", 10),
    "stl10": TorchSet(({"split": "train"}, {"split": "test"}), _attribute("labels"), "STL10"),
    "usps": TorchSet(({"train": True}, {"train": False}), _attribute("targets"), "USPS", 10),
    "stanford_cars": TorchSet(({"split": "train"}, {"split": "test"}), _second("_samples"), "StanfordCars",
                              downloads=False),
    "flowers102": TorchSet(({"split": "train"}, {"split": "test"}), _attribute("_labels"), "Flowers102", 102),
    "oxford_iiit_pet": TorchSet(({"split": "trainval"}, {"split": "test"}), _attribute("_labels"), "OxfordIIITPet"),
    "fgvc_aircraft": TorchSet(({"split": "trainval"}, {"split": "test"}), _attribute("_labels"), "FGVCAircraft"),
    "food101": TorchSet(({"split": "train"}, {"split": "test"}), _attribute("_labels"), "Food101"),
    "dtd": TorchSet(({"split": "train"}, {"split": "test"}), _attribute("_labels"), "DTD"),
    "gtsrb": TorchSet(({"split": "train"}, {"split": "test"}), _second("_samples"), "GTSRB", 43),
    "country211": TorchSet(({"split": "train"}, {"split": "test"}), _attribute("targets"), "Country211"),
    # PatchCamelyon (VTAB's Camelyon): 96 px patches, 2 classes; needs h5py
    "pcam": TorchSet(({"split": "train"}, {"split": "test"}), _pcam_labels, "PCAM", 2),
    # scenes of 3 to 10 objects, labelled 0 to 7; CLEVR's test split has no labels, so val is the test split
    "clevr_count": TorchSet(({"split": "train"}, {"split": "val"}), _attribute("_labels"), "CLEVRClassification", 8,
                            offset=3),
}


class DatasetImage:
    """Opens image ``i`` of a torchvision dataset built without a transform (picklable, for loader workers)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __call__(self, i: int):
        return self.dataset[i][0]


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _open(name: str, entry: TorchSet, split: int, root: str, download: bool):
    if entry.cls is None:
        from timm.data import create_dataset

        return create_dataset(f"torch/{name}", root=root, download=download, **entry.splits[split])
    import torchvision.datasets

    return getattr(torchvision.datasets, entry.cls)(root, download=download, **entry.splits[split])


def _labels(entry: TorchSet, dataset: Any) -> list[int]:
    try:
        labels = entry.labels(dataset)
    except AttributeError:  # another torchvision keeps them elsewhere: read them through the dataset
        labels = [dataset[i][1] for i in range(len(dataset))]
    return [int(y) - entry.offset for y in labels]


def load(rest: str) -> Downstream:
    """The set ``torch/REST`` names, its two splits opened lazily."""
    spec = f"torch/{rest}"
    name, options = split_options(spec, rest, SYNTAX, OPTIONS)
    name = name.lower()
    if name not in SETS:
        raise TrainerError(f"{spec}: not a torch/ set; expected one of {', '.join(SETS)}")
    entry = SETS[name]
    root = options.get("root") or str(data_dir())
    download = flag(spec, "download", options["download"]) if "download" in options else entry.downloads
    if download and not entry.downloads:
        raise TrainerError(f"{spec}: torchvision cannot download {name}; put it in a directory and give root=DIR")
    splits = []
    for split in (0, 1):
        try:
            if download:
                Path(root).mkdir(parents=True, exist_ok=True)
            splits.append(_open(name, entry, split, root, download))
        except (OSError, RuntimeError, ValueError, AssertionError) as e:  # missing, no network, damaged, unwritable
            if download:
                raise TrainerError(f"{spec}: cannot load or download it into {root} ({one_line(e)}); "
                                   "put the files there and give download=0, or another root=DIR") from None
            how = ("give download=1 to let torchvision download it" if entry.downloads
                   else "torchvision cannot download it: give root=DIR where it is")
            raise TrainerError(f"{spec}: not found in {root} with download=0 ({one_line(e)}); {how}") from None
    train, test = (ImageList(range(len(ds)), _labels(entry, ds), read=DatasetImage(ds)) for ds in splits)
    if entry.classes is None:
        classes = len(splits[0].classes)
    else:
        classes = entry.classes if isinstance(entry.classes, int) else entry.classes(splits[0])
    info = {"source": f"torchvision {entry.cls or 'through timm'}, in {root}",
            "split": "the dataset's own train and test sets"}
    if hasattr(splits[0], "classes"):  # ImageNet's are tuples of synonyms: the first names the class
        info["class_names"] = [str(c[0] if isinstance(c, tuple) else c) for c in splits[0].classes]
    return Downstream(spec, train, test, classes, info)
