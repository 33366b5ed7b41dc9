"""Downstream datasets by SPEC, each with a fixed train/test split: ``load_dataset(spec, shots=...)``.

``FAMILIES`` is the one list of the SPEC forms; each family is one module here:

    digits, mnist5k, folder:PATH, wds:DATA   ``builtin``
    torch/NAME                                ``torchvision_sets``: torchvision's sets, by timm's names
    hfds/NAME[:CONFIG]                        ``hub``: Hugging Face datasets, local or on the Hub
    in100:ROOT, places30:ROOT                 ``subsets``: the paper's class lists over ImageNet / Places365
    voc12:ROOT                                ``voc``: Pascal VOC 2012's object boxes, cropped, as the paper's VOC12
    vtab/NAME                                 ``vtab``: the paper's five VTAB sets, each a torch/ or hfds/ set

A family may take options after ``?`` (``torch/svhn?root=/data&download=0``); its module names them.
``shots`` keeps the first N training images of each class, in the family's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import TrainerError

if TYPE_CHECKING:
    from .base import Downstream, ImageList

__all__ = ["FAMILIES", "Downstream", "ImageList", "data_dir", "few_shot", "load_dataset"]


def __getattr__(name: str):
    """``Downstream``, ``ImageList`` and ``data_dir`` from ``base`` when first asked for: the registry's names
    (``SPECS`` for the command line's help) load without torch."""
    if name in ("Downstream", "ImageList", "data_dir"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Family:
    """One SPEC form: how it is written, how a SPEC is recognised (its whole text, or its prefix), and the
    function of this module that loads it, given the rest of the SPEC."""

    syntax: str
    match: str
    loader: str
    exact: bool = False


FAMILIES = (
    Family("digits", "digits", "load_digits", exact=True),
    Family("mnist5k", "mnist5k", "load_mnist5k", exact=True),
    Family("folder:PATH", "folder:", "load_folder"),
    Family("wds:DATA", "wds:", "load_wds"),
    Family("torch/NAME", "torch/", "load_torch"),
    Family("hfds/NAME[:CONFIG]", "hfds/", "load_hfds"),
    Family("in100:ROOT", "in100:", "load_in100"),
    Family("places30:ROOT", "places30:", "load_places30"),
    Family("voc12:ROOT", "voc12:", "load_voc12"),
    Family("vtab/NAME", "vtab/", "load_vtab"),
)
SPECS = ", ".join(f.syntax for f in FAMILIES)


# The loaders import their family's module when called: torchvision, timm and datasets load only when needed.
def load_digits(rest: str = "") -> Downstream:
    from .builtin import load_digits

    return load_digits()


def load_mnist5k(rest: str = "") -> Downstream:
    from .builtin import load_mnist5k

    return load_mnist5k()


def load_folder(rest: str) -> Downstream:
    from .builtin import load_folder

    return load_folder(rest)


def load_wds(rest: str) -> Downstream:
    from .builtin import load_wds

    return load_wds(rest)


def load_torch(rest: str) -> Downstream:
    from .torchvision_sets import load

    return load(rest)


def load_hfds(rest: str) -> Downstream:
    from .hub import load

    return load(rest)


def load_in100(rest: str) -> Downstream:
    from .subsets import load

    return load("in100", rest)


def load_places30(rest: str) -> Downstream:
    from .subsets import load

    return load("places30", rest)


def load_voc12(rest: str) -> Downstream:
    from .voc import load

    return load(rest)


def load_vtab(rest: str) -> Downstream:
    from .vtab import load

    return load(rest, load_dataset)  # a VTAB set is another family's set: loaded through this registry


def load_dataset(spec: str, *, shots: int | None = None) -> Downstream:
    """The dataset a SPEC names, with ``shots`` training images per class if given."""
    spec = str(spec)
    for family in FAMILIES:
        if spec == family.match if family.exact else (spec.startswith(family.match) and spec != family.match):
            # Looked up by name when called, so that a caller (a test without network) may replace a loader.
            data = globals()[family.loader](spec[len(family.match):])
            break
    else:
        raise TrainerError(f"unknown dataset {spec!r} (one of {SPECS})")
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
