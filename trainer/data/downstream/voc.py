"""``voc12:ROOT[?download=0|1&difficult=0|1]``: Pascal VOC 2012 as the FractalDB line of papers fine-tunes on it.

Their fine-tuning reads every set as an ImageFolder (one label per image), and VOC 2012 is multi-label; the
FractalDB authors describe their VOC12 as the detection boxes cropped, each crop labelled with its object's
class (FractalDB-Pretrained-ResNet-PyTorch, issue 2). So a sample here is one object box of the detection
annotations, cropped from its photograph, labelled with its class among VOC's 20 (in VOC's order, which is
alphabetical). Objects marked ``difficult`` are left out, as VOC's own counts leave them out (13,609 train /
13,841 val objects); ``difficult=1`` keeps them. Train and test are VOC 2012's ``train`` and ``val`` image
sets (its test annotations are not public).

ROOT holds ``VOCdevkit/VOC2012/`` (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``), the layout of
VOC's trainval archive and of torchvision's ``VOCDetection``, which downloads the archive there with
``download=1`` (about 2 GB) and reads the annotation files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import TrainerError
from .base import Downstream, ImageList, flag, split_options
from .torchvision_sets import one_line

SYNTAX = "voc12:ROOT"
OPTIONS = {"download": "1: let torchvision download VOC 2012 into ROOT", "difficult": "1: keep difficult objects"}
CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
           "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
SPLITS = ("train", "val")


class BoxCrop:
    """Opens ``(path, box)``: the photograph cropped to the box, ``(left, top, right, bottom)`` in PIL's terms."""

    def __call__(self, item: tuple[str, tuple[int, int, int, int]]):
        from PIL import Image

        path, box = item
        with Image.open(path) as image:
            return image.convert("RGB").crop(box)


def _box(spec: str, where: str, box: dict[str, Any]) -> tuple[int, int, int, int]:
    """A VOC ``bndbox`` (1-based, both ends inside) as a PIL crop box (0-based, right and bottom outside)."""
    try:
        xmin, ymin, xmax, ymax = (int(float(box[k])) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (KeyError, TypeError, ValueError):
        raise TrainerError(f"{spec}: {where} has an object without a readable bndbox") from None
    if xmax < xmin or ymax < ymin:
        raise TrainerError(f"{spec}: {where} has an empty box {xmin},{ymin},{xmax},{ymax}")
    return xmin - 1, ymin - 1, xmax, ymax


def objects(spec: str, dataset: Any, keep_difficult: bool) -> tuple[list, list[int]]:
    """Every object box of a ``VOCDetection`` split, as ``(image path, crop box)`` items, and its labels."""
    from xml.etree.ElementTree import ParseError
    from xml.etree.ElementTree import parse as parse_xml

    items, labels = [], []
    for image, annotation in zip(dataset.images, dataset.annotations, strict=True):
        try:
            parsed = dataset.parse_voc_xml(parse_xml(annotation).getroot())["annotation"]
        except (OSError, ParseError, KeyError) as e:
            raise TrainerError(f"{spec}: cannot read {annotation} ({one_line(e)})") from None
        found = parsed.get("object", [])
        for obj in found if isinstance(found, list) else [found]:
            if not isinstance(obj, dict) or obj.get("name") not in CLASSES:
                raise TrainerError(f"{spec}: {annotation} names an object outside VOC's 20 classes: "
                                   f"{obj.get('name') if isinstance(obj, dict) else obj!r}")
            if obj.get("difficult", "0") == "1" and not keep_difficult:
                continue
            items.append((image, _box(spec, annotation, obj.get("bndbox", {}))))
            labels.append(CLASSES.index(obj["name"]))
    return items, labels


def load(rest: str) -> Downstream:
    """VOC 2012's object crops from the copy at ROOT (downloaded there with ``download=1``)."""
    spec = f"voc12:{rest}"
    root, options = split_options(spec, rest, SYNTAX, OPTIONS)
    if not root:
        raise TrainerError(f"unknown dataset {spec!r} ({SYNTAX}: ROOT holds VOCdevkit/VOC2012)")
    download = flag(spec, "download", options["download"]) if "download" in options else False
    keep = flag(spec, "difficult", options["difficult"]) if "difficult" in options else False
    from torchvision.datasets import VOCDetection

    splits = []
    for split in SPLITS:
        try:
            if download:
                Path(root).mkdir(parents=True, exist_ok=True)
            dataset = VOCDetection(root, year="2012", image_set=split, download=download)
        except (OSError, RuntimeError, ValueError) as e:
            how = "" if download else "; give download=1 to let torchvision download it"
            raise TrainerError(f"{spec}: no VOC 2012 {split} set in {root}/VOCdevkit/VOC2012 "
                               f"({one_line(e)}){how}") from None
        items, labels = objects(spec, dataset, keep)
        if not items:
            raise TrainerError(f"{spec}: VOC 2012's {split} set in {root} has no objects")
        splits.append(ImageList(items, labels, read=BoxCrop()))
    return Downstream(spec, *splits, len(CLASSES), {
        "source": f"Pascal VOC 2012 detection annotations in {root}",
        "split": "VOC 2012 train / val image sets; one sample per object box, cropped"
                 + (" (difficult ones too)" if keep else " (difficult ones left out)"),
        "class_names": list(CLASSES)})
