"""What every downstream family shares: the images-and-labels list, the two-split bundle, and SPEC options.

A SPEC may end in options, ``?key=value&key=value``, for the families that take them (``torch/``,
``hfds/``, ``in100:``, ``places30:``); each family names the keys it takes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ...errors import TrainerError


class ImageList(Dataset):
    """Images and labels, opened as PIL images on access.

    An image is a uint8 array, encoded bytes or a file path; or, given ``read``, whatever ``read`` opens (an
    index into a torchvision or Hugging Face dataset), so that a large set is opened one image at a time.
    """

    def __init__(self, images: Sequence[Any], labels: Sequence[int], transform: Callable | None = None,
                 read: Callable[[Any], Image.Image] | None = None):
        self.images, self.labels, self.transform = list(images), [int(y) for y in labels], transform
        self.read = read

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> Image.Image:
        item = self.images[i]
        if self.read is not None:
            return self.read(item)
        if isinstance(item, np.ndarray):
            return Image.fromarray(item)
        image = Image.open(io.BytesIO(item) if isinstance(item, bytes) else item)
        image.load()
        return image

    def __getitem__(self, i: int):
        image = self.image(i)
        return (self.transform(image) if self.transform else image), self.labels[i]

    def subset(self, indices: Sequence[int]) -> ImageList:
        return ImageList([self.images[i] for i in indices], [self.labels[i] for i in indices], self.transform,
                         self.read)

    def with_transform(self, transform: Callable | None) -> ImageList:
        """The same images and labels, opened through ``transform``."""
        return ImageList(self.images, self.labels, transform, self.read)


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


def data_dir() -> Path:
    """Where ``torch/NAME`` datasets live unless ``root=`` says: ``$TRAINER_DATA_DIR`` or
    ``~/.cache/trainer/datasets``."""
    return Path(os.environ.get("TRAINER_DATA_DIR") or Path.home() / ".cache" / "trainer" / "datasets")


def split_options(spec: str, rest: str, syntax: str, allowed: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """``NAME?key=value&...`` -> ``(NAME, {key: value})``. ``allowed`` maps each key the family takes to what it
    means; another key, or an item without ``=``, is an error naming them."""
    body, sep, query = rest.partition("?")
    options: dict[str, str] = {}
    takes = f"{syntax} takes {', '.join(f'{k}= ({v})' for k, v in allowed.items())}"
    for item in query.split("&") if sep else ():
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise TrainerError(f"{spec}: options are key=value after '?', got {item!r}; {takes}")
        if key not in allowed:
            raise TrainerError(f"{spec}: unknown option {key!r}; {takes}")
        options[key] = value
    return body, options


def flag(spec: str, key: str, value: str) -> bool:
    """An option's yes/no value."""
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise TrainerError(f"{spec}: {key}= takes 1 or 0, got {value!r}")
