"""``hfds/NAME[:CONFIG][?image=COL&label=COL&train=SPLIT&test=SPLIT]``: a Hugging Face ``datasets`` dataset.

NAME is a local directory written by ``save_to_disk`` (a ``DatasetDict``), a local directory of data files
that ``datasets.load_dataset`` reads (parquet, an image folder, ...), or a Hub name (``OWNER/NAME``),
downloaded into the Hugging Face cache where the network allows. The image column is the one ``Image``
feature and the label column the one ``ClassLabel`` feature, unless ``image=`` / ``label=`` name them (a
label column may also hold integers, counted from 0). The splits are ``train`` and ``test`` (``validation``
where there is no ``test``) unless ``train=`` / ``test=`` say otherwise.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ...errors import TrainerError
from .base import Downstream, ImageList, split_options
from .torchvision_sets import one_line

SYNTAX = "hfds/NAME[:CONFIG]"
OPTIONS = {"image": "the image column", "label": "the label column", "train": "the training split",
           "test": "the test split"}


class RowImage:
    """Opens the image of row ``i`` of one column of a ``datasets.Dataset`` (picklable, for loader workers)."""

    def __init__(self, rows: Any, column: str):
        self.rows, self.column = rows, column

    def __call__(self, i: int):
        return self.rows[i][self.column]


@contextlib.contextmanager
def _quiet(datasets):
    """No progress bars from ``datasets`` while loading (they were asked for by no one)."""
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            datasets.enable_progress_bars()


def _name_and_config(name: str) -> tuple[str, str | None]:
    base, sep, config = name.rpartition(":")
    if sep and base and config and "/" not in config:
        return base, config
    return name, None


def _open(spec: str, name: str, config: str | None):
    """The ``DatasetDict`` NAME names, and where it came from."""
    import datasets

    path = Path(name).expanduser()
    try:
        with _quiet(datasets):
            if path.is_dir() and (path / "dataset_dict.json").is_file():
                return datasets.load_from_disk(str(path)), f"a save_to_disk directory, {path}"
            if path.is_dir() and (path / "state.json").is_file():
                raise TrainerError(f"{spec}: {path} holds one split saved with save_to_disk; save a DatasetDict "
                                   "with its train and test splits")
            if path.is_dir():
                return datasets.load_dataset(str(path), config), f"data files in {path}"
            if name.startswith(("/", ".", "~")):
                raise TrainerError(f"{spec}: no directory {path}")
            where = f"the Hugging Face Hub, {name}" + (f" (config {config})" if config else "")
            return datasets.load_dataset(name, config), where
    except TrainerError:
        raise
    except Exception as e:  # datasets and the Hub raise many kinds: offline, not found, a bad config
        raise TrainerError(f"{spec}: cannot load it with datasets ({type(e).__name__}: {one_line(e)})") from None


def _column(spec: str, split: Any, given: str | None, kind: type, what: str, option: str) -> str:
    """The column of feature type ``kind`` (the one there is, or the one given)."""
    import datasets

    features = split.features
    listing = ", ".join(f"{k} ({f.dtype if isinstance(f, datasets.Value) else type(f).__name__})"
                        for k, f in features.items())
    if given is not None:
        if given not in features:
            raise TrainerError(f"{spec}: no column {given!r} for {option}= (columns: {listing})")
        if option == "image" and not isinstance(features[given], kind):
            raise TrainerError(f"{spec}: column {given!r} holds {features[given]}; expected an Image column")
        return given
    found = [k for k, f in features.items() if isinstance(f, kind)]
    if len(found) != 1:
        which = "no" if not found else f"{len(found)} ({', '.join(found)})"
        raise TrainerError(f"{spec}: {which} {kind.__name__} columns; give {option}=COL for the {what} "
                           f"(columns: {listing})")
    return found[0]


def _labels(spec: str, split: Any, column: str, name: str) -> list[int]:
    import datasets

    feature = split.features[column]
    integer = isinstance(feature, datasets.ClassLabel) or (
        isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")))
    if not integer:
        raise TrainerError(f"{spec}: label column {column!r} holds {feature}; expected a ClassLabel or integers")
    labels = [int(y) for y in split[column]]
    if labels and min(labels) < 0:
        raise TrainerError(f"{spec}: split {name!r} has unlabelled rows (label {min(labels)}); give another "
                           "split with test= (or train=)")
    return labels


def load(rest: str) -> Downstream:
    """The dataset ``hfds/REST`` names, its two splits opened lazily."""
    spec = f"hfds/{rest}"
    name, options = split_options(spec, rest, SYNTAX, OPTIONS)
    try:
        import datasets
    except ModuleNotFoundError:
        raise TrainerError(f"{spec}: needs Hugging Face datasets (pip install datasets, or the train extra)") from None
    if not name:
        raise TrainerError(f"unknown dataset {spec!r} ({SYNTAX}: a Hub name or a local directory)")
    name, config = _name_and_config(name)
    found, where = _open(spec, name, config)
    names = list(found)
    chosen = [options.get("train", "train"),
              options.get("test") or next((s for s in ("test", "validation") if s in found), "test")]
    for option, split in zip(("train", "test"), chosen, strict=True):
        if split not in found:
            raise TrainerError(f"{spec}: no split {split!r} (splits: {', '.join(names)}); give {option}=SPLIT")
    train, test = (found[s] for s in chosen)
    image = _column(spec, train, options.get("image"), datasets.Image, "images", "image")
    label = _column(spec, train, options.get("label"), datasets.ClassLabel, "labels", "label")
    for column in (image, label):
        if column not in test.features or test.features[column] != train.features[column]:
            raise TrainerError(f"{spec}: column {column!r} differs between splits {chosen[0]!r} and {chosen[1]!r}")
    labels = [_labels(spec, s, label, n) for s, n in zip((train, test), chosen, strict=True)]
    feature = train.features[label]
    named = isinstance(feature, datasets.ClassLabel)
    classes = feature.num_classes if named else max(max(y, default=-1) for y in labels) + 1
    if max(max(y, default=-1) for y in labels) >= classes:
        raise TrainerError(f"{spec}: a label is outside the {classes} classes of column {label!r}")
    lists = [ImageList(range(len(s)), y, read=RowImage(s.select_columns([image]), image))
             for s, y in zip((train, test), labels, strict=True)]
    info = {"source": f"Hugging Face datasets: {where}", "split": f"{chosen[0]} / {chosen[1]}",
            "columns": {"image": image, "label": label}}
    if named:
        info["class_names"] = list(feature.names)
    return Downstream(spec, *lists, classes, info)
