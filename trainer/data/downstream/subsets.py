"""``in100:ROOT`` and ``places30:ROOT``: the paper's fixed class lists over a user's own ImageNet / Places365.

``in100`` is ImageNet-100, the 100 classes of CMC (Tian et al.): its list is pinned in ``classlists/`` as
published (``SUBSETS`` records where). ROOT is an ImageNet copy with ``train/WNID/`` and ``val/WNID/`` folders
(the layout torchvision's ``ImageNet`` leaves); the test split is ImageNet's validation set.

``places30`` is FractalDB's Places-30, 30 classes of Places365-Standard. FractalDB's public repositories
publish no list; the one pinned in ``classlists/places30.txt`` is the list of FractalDB's supplementary material
as a public preparation script restates it (the file's header says so; it is not checked against the
supplementary). ROOT is a Places365 copy in torchvision's layout (``categories_places365.txt``,
``places365_train_standard.txt``, ``places365_val.txt`` and the image folders); the test split is Places365's
validation set.

Either takes ``classes=FILE`` to use another list of as many classes (one per line; Places365 names with or
without the ``/a/`` prefix); a list of another length is refused, as it would be another dataset. Labels follow
the sorted class names, as an ImageFolder of the subset would number them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ...errors import TrainerError
from .base import Downstream, ImageList, split_options

OPTIONS = {"classes": "a file of class names, one per line"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # ImageFolder's

Split = tuple[list[str], list[int]]  # image paths and labels


@dataclass(frozen=True)
class NamedSubset:
    """A fixed list of classes of a larger dataset, and how to read them from a copy of it."""

    syntax: str
    of: str
    size: int  # classes in the list
    pinned: str | None  # the list's file in classlists/, None where no published list was found
    source: str  # where the pinned list was published (or why there is none)
    sha256: str | None  # of the pinned file
    read: Callable[[str, Path, list[str]], tuple[Split, Split]]  # (spec, root, class names) -> train, test


def _imagenet(spec: str, root: Path, wnids: list[str]) -> tuple[Split, Split]:
    splits = []
    for split in ("train", "val"):
        paths, labels = [], []
        for label, wnid in enumerate(wnids):
            folder = root / split / wnid
            if not folder.is_dir():
                raise TrainerError(f"{spec}: no folder {split}/{wnid} in {root}; expected an ImageNet copy with "
                                   f"train/WNID/ and val/WNID/ (torch/imagenet?root={root} makes them from the "
                                   "ILSVRC2012 archives)")
            files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise TrainerError(f"{spec}: {folder} holds no images")
            paths += files
            labels += [label] * len(files)
        splits.append((paths, labels))
    return splits[0], splits[1]


def _category(name: str) -> str:
    """A Places365 category without its letter folder: ``/a/abbey`` -> ``abbey``, ``/e/escalator/indoor`` ->
    ``escalator/indoor``."""
    parts = name.strip().strip("/").split("/")
    return "/".join(parts[1:] if len(parts) > 1 and len(parts[0]) == 1 else parts)


def _places365(spec: str, root: Path, names: list[str]) -> tuple[Split, Split]:
    def lines(file: str) -> list[list[str]]:
        path = root / file
        if not path.is_file():
            raise TrainerError(f"{spec}: no {file} in {root}; expected a Places365 copy in torchvision's layout "
                               "(categories_places365.txt, places365_train_standard.txt, places365_val.txt, "
                               "data_256_standard/, val_256/)")
        return [line.split() for line in path.read_text().splitlines() if line.strip()]

    index = {_category(name): int(i) for name, i in lines("categories_places365.txt")}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise TrainerError(f"{spec}: {unknown[0]!r} is not a Places365 category (categories_places365.txt)")
    label_of = {index[n]: label for label, n in enumerate(names)}
    splits = []
    for file, folders in (("places365_train_standard.txt", ("data_256_standard", "data_256", "data_large_standard",
                                                             "data_large")),
                          ("places365_val.txt", ("val_256", "val_large"))):
        folder = next((root / f for f in folders if (root / f).is_dir()), None)
        if folder is None:
            raise TrainerError(f"{spec}: no image folder for {file} in {root} (one of {', '.join(folders)})")
        picked = [(str(folder / image.lstrip("/")), label_of[int(i)]) for image, i in lines(file)
                  if int(i) in label_of]
        splits.append(([p for p, _ in picked], [y for _, y in picked]))
    return splits[0], splits[1]


SUBSETS: dict[str, NamedSubset] = {
    "in100": NamedSubset(
        "in100:ROOT", "ImageNet", 100, "imagenet100.txt",
        "imagenet100.txt of github.com/HobbitLong/CMC, commit bc687a26de7ae350d98f671d25d164b65336b8c2",
        "79f3f1552ccc478ce24bd934b4573625db584ddc1f4643ae23c994a94cb11397", _imagenet),
    "places30": NamedSubset(
        "places30:ROOT", "Places365", 30, "places30.txt",
        "places30.txt: FractalDB's supplementary Table 2 as a public preparation script (organize_places-30.py) "
        "restates it, not checked against the supplementary",
        "72f3984974ece6a738e16f142c19a8fd29a61d1cb0514d446cb5e298563ebb00", _places365),
}


def class_names(spec: str, subset: NamedSubset, file: str | None) -> tuple[list[str], str]:
    """The subset's class names, sorted, and where they came from."""
    if file is None and subset.pinned is None:
        raise TrainerError(f"{spec}: {subset.source}, so none is pinned: give the {subset.size} {subset.of} "
                           f"classes with ?classes=FILE (one per line)")
    if file is None:
        text, where = (resources.files(__package__) / "classlists" / subset.pinned).read_text(), subset.source
    else:
        try:
            text, where = Path(file).read_text(), file
        except OSError as e:
            raise TrainerError(f"{spec}: cannot read classes={file}: {e.strerror or e}") from None
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if subset.of == "Places365":
        names = [_category(n) for n in names]
    if len(set(names)) != len(names) or not names:
        raise TrainerError(f"{spec}: the class list {where} is empty or names a class twice")
    if len(names) != subset.size:
        raise TrainerError(f"{spec}: the class list {where} has {len(names)} classes; {subset.syntax.split(':')[0]} "
                           f"is {subset.size} classes of {subset.of}")
    return sorted(names), where


def load(family: str, rest: str) -> Downstream:
    """The subset ``FAMILY:REST`` names, read from the copy at ROOT."""
    spec = f"{family}:{rest}"
    subset = SUBSETS[family]
    root, options = split_options(spec, rest, subset.syntax, OPTIONS)
    if not root:
        raise TrainerError(f"unknown dataset {spec!r} ({subset.syntax}: ROOT is a local {subset.of} copy)")
    if not Path(root).is_dir():
        raise TrainerError(f"{spec}: no directory {root} (a local {subset.of} copy)")
    names, where = class_names(spec, subset, options.get("classes"))
    (train, train_labels), (test, test_labels) = subset.read(spec, Path(root), names)
    return Downstream(spec, ImageList(train, train_labels), ImageList(test, test_labels), len(names),
                      {"source": f"{len(names)} classes of {subset.of} in {root}", "classes_from": where,
                       "split": f"{subset.of}'s train and validation sets", "class_names": names})
