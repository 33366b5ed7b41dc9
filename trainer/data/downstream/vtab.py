"""``vtab/NAME[?from=DIR&...]``: the paper's five VTAB sets (its Table 14) by name, their labels pinned.

Each name stands for a ``torch/`` set where torchvision has it, and for a Hub copy (``hfds/``) otherwise,
with the label column the paper's task reads and the class count the task has (``SETS``); a copy that
gives another count is refused, so a wrong column can never train silently. The Hub copies are
``clip-benchmark``'s webdataset exports of VTAB (tensorflow-datasets' splits, label ``cls``: for smallNORB
the azimuth, 18 classes, not the category). ``from=DIR`` reads a local copy instead of the Hub one (the
repository's files, ``train/*.tar`` and ``test/*.tar``, or a ``save_to_disk`` directory); other options go
to the family (``root=``, ``download=`` for ``torch/``; ``image=``, ``label=``, ``train=``, ``test=`` for
``hfds/``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...errors import TrainerError
from .base import Downstream

SYNTAX = "vtab/NAME"


@dataclass(frozen=True)
class VtabSet:
    """One of Table 14's sets: the paper's column, the spec it stands for, the label it trains on."""

    column: str  # the paper's name for it
    spec: str  # torch/NAME or hfds/OWNER/NAME
    label: str  # what a class is
    classes: int
    column_name: str | None = None  # the label column of an hfds/ copy


SETS: dict[str, VtabSet] = {
    "retinopathy": VtabSet("Retino", "hfds/clip-benchmark/wds_vtab-diabetic_retinopathy",
                           "diabetic retinopathy grade 0-4", 5, "cls"),
    "resisc45": VtabSet("Resisc45", "hfds/clip-benchmark/wds_vtab-resisc45", "remote-sensing scene", 45, "cls"),
    "camelyon": VtabSet("Camelyon", "torch/pcam", "metastatic tissue in the patch's centre or not", 2),
    "clevr_count": VtabSet("CLEVR-C", "torch/clevr_count", "3 to 10 objects, as 0 to 7", 8),
    "snorb_azimuth": VtabSet("sNORB-A", "hfds/clip-benchmark/wds_vtab-smallnorb_label_azimuth",
                             "camera azimuth, 0 to 340 degrees in steps of 20", 18, "cls"),
}


def resolve(rest: str) -> tuple[str, VtabSet]:
    """The spec ``vtab/REST`` stands for, and its entry."""
    spec = f"vtab/{rest}"
    name, sep, query = rest.partition("?")
    if name not in SETS:
        raise TrainerError(f"{spec}: not a vtab/ set; expected one of {', '.join(SETS)}")
    entry = SETS[name]
    options = dict(item.partition("=")[::2] for item in query.split("&")) if sep and query else {}
    target = entry.spec
    if "from" in options:
        if not entry.spec.startswith("hfds/"):
            raise TrainerError(f"{spec}: from= takes a local copy of a Hub set; {name} is {entry.spec}: "
                               "give root=DIR")
        target = f"hfds/{options.pop('from')}"
    if entry.column_name is not None:
        options.setdefault("label", entry.column_name)
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return target + (f"?{query}" if query else ""), entry


def load(rest: str, load_dataset: Callable[[str], Downstream]) -> Downstream:
    """The set ``vtab/REST`` names, loaded by ``load_dataset`` (the registry's, which calls this) from its family,
    with its class count checked."""
    target, entry = resolve(rest)
    data = load_dataset(target)
    if data.classes != entry.classes:
        raise TrainerError(f"vtab/{rest}: {target} gives {data.classes} classes; {entry.column} has {entry.classes} "
                           f"({entry.label})")
    data.name = f"vtab/{rest}"
    data.info = {**data.info, "vtab": {"column": entry.column, "from": target, "label": entry.label}}
    return data
