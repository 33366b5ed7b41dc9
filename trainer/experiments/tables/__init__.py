"""The paper's experiments as data: one module per table (``t02`` ... ``t14``, ``fig3``), each a ``Table`` of
``Row`` s, and what every table shares: the downstream sets by the paper's column names (``SETS``), the
pre-training schedules the paper leaves unstated (``ONE_IMAGE_STEPS``, ``MILLION_IMAGE_EPOCHS``), and the
rates behind ``--dry-run``'s hours (``RATES``). ``trainer.experiments.reproduce`` turns a table into runs.

A row's pre-training is its recipe rendered by ``fracbuild`` and the size's preset with the row's settings on
top; its fine-tuning is every column of the table from the row's body, against scratch on the same columns.
``$NAME`` in a set's SPEC is a copy the user supplies (an environment variable naming its directory).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

# Which modules hold a table, by the name ``--table`` takes.
TABLES = ("2", "3", "4", "5", "6", "7", "8", "9", "11", "12", "13", "14", "fig3")


@dataclass(frozen=True)
class Row:
    """One row of a paper table."""

    label: str
    paper: dict[str, float | None]  # column -> the paper's top-1 (%), None where it gives none
    recipe: str | None = None  # the fracbuild recipe to render; None: scratch, or a row not made here
    render: dict[str, Any] = field(default_factory=dict)  # fracbuild render options over the recipe's
    pretrain: dict[str, Any] = field(default_factory=dict)  # settings over the size's pre-training
    needs: tuple[str, ...] = ()  # "setting:NAME" (a trainer setting) or "dataset:FAMILY" that must exist
    external: str | None = None  # a row this project does not make: what it is
    same_as: str | None = None  # a row that trains exactly as another (no run of its own)
    note: str = ""

    @property
    def scratch(self) -> bool:
        return self.recipe is None and self.external is None and self.same_as is None


@dataclass(frozen=True)
class Table:
    """A paper table: its rows, the downstream sets it reports (the paper's column names, keys of ``SETS``), and
    what its sizes change (``sizes[size]``: ``pretrain`` settings, ``finetune`` settings, ``max_classes``,
    ``max_instances``)."""

    number: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    probe_blocks: tuple[int, ...] = ()  # a linear probe at these depths instead of fine-tuning (Figure 3)
    sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class DownstreamSet:
    """A fine-tuning set by the paper's column name: its SPEC, its training images (for the hours estimate),
    and its settings at the ``paper`` and ``gpu`` sizes over their presets."""

    spec: str
    train_images: int
    paper: dict[str, Any] = field(default_factory=dict)
    gpu: dict[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    note: str = ""


# ---- schedules the paper does not state ---------------------------------------------------------------------
# The paper states one pre-training schedule: 80,000 epochs over L = 1000 images at a global batch of 256
# (1p-frac's train/pre-train.sh, OFDB's pre-train.sh), which is 3 full batches per epoch (the last partial batch
# dropped): 240,000 steps. For other L neither gives a number ("adjust the hyperparameters based on the sample
# size", 1p-frac's train/README.md); OFDB keeps the steps: its 21k model is named
# "...epochs15238_bs1024..." (OFDB README), 15,238 epochs of 21,000 images at 1024, about the steps of its 1k run.
# So every one-image-per-class set (any L, OFDB, the LPCE sets) pre-trains for these steps at its batch.
ONE_IMAGE_STEPS = 240_000
# Million-image sets (FractalDB-1k, RCDB, VisualAtom: 1000 categories x 1000 instances): RCDB's and
# ExFractalDB's 1k scripts (masora1030/CVPR2022-Pretrained-ViT-PyTorch exe_scripts/exe_rcdb_1k.sh,
# exe_exfractaldb_1k.sh) pre-train 300 epochs at a global batch of 256 (4 GPUs x 64); VisualAtom's and
# FractalDB's repositories ship no 1k ViT script (their pretrain.sh is 21k: 90 epochs at 8192).
MILLION_IMAGE_EPOCHS = 300

# ---- the hours --dry-run states ------------------------------------------------------------------------------
# An estimate: training samples per second of the model alone (forward and backward, AMP, 224 px) on one
# RTX 3090, from timm's own benchmark (huggingface/pytorch-image-models results/
# benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv: vit_tiny_patch16_224 2293.54, vit_base_patch16_224 390.86).
# Data loading, evaluation and start-up are left out; a newer GPU is faster.
RATES = {"vit_tiny_patch16_224": 2293.54, "vit_base_patch16_224": 390.86}
# The cpu size (its 6-block model at 32 px): ~60 samples/s, the measured `cpu` pre-training of docs/performance.md
# (48.7-91.7).
CPU_RATE = 60.0

# ---- downstream sets by the paper's column names ----------------------------------------------------------------
# paper: the reference's fine-tuning (FINETUNE_PRESETS["paper"]: SGD, 1000 epochs, batch 768, as 1p-frac's
# train/finetuning.sh runs CIFAR-100; its scripts give no other value per set). gpu: GPU_EXPERIMENT["finetune"]
# for a few epochs, sized to a few hundred thousand samples each. Training images: the sets' own train splits.
SETS: dict[str, DownstreamSet] = {
    "C10": DownstreamSet("torch/cifar10", 50_000, gpu={"epochs": 5}),
    "C100": DownstreamSet("torch/cifar100", 50_000, gpu={"epochs": 5}),
    "Cars": DownstreamSet("torch/stanford_cars?root=$CARS", 8_144, gpu={"epochs": 30},
                          note="Stanford Cars cannot be downloaded: CARS names a copy"),
    "Flowers": DownstreamSet("torch/flowers102", 1_020, gpu={"epochs": 100}),
    "VOC12": DownstreamSet("voc12:$VOC2012", 5_717, gpu={"epochs": 30}, needs=("dataset:voc12",),
                           note="Pascal VOC 2012 as classification"),
    "P30": DownstreamSet("places30:$PLACES365?classes=$PLACES30_CLASSES", 150_000, gpu={"epochs": 2},
                         note="30 classes of Places365 (at most 5,000 training images each: 150,000 is a bound)"),
    "IN100": DownstreamSet("in100:$IMAGENET", 126_689, gpu={"epochs": 2}),
    # Table 8: the DeiT-style protocol of masora1030/CVPR2022-Pretrained-ViT-PyTorch scripts/finetune.sh, which
    # fine-tunes ImageNet-1k from its 21k bodies: 300 epochs, AdamW lr 1e-3 at 16 x 64, wd 0.05, 5 warm-up
    # epochs, RandAugment, Mixup 0.8 / CutMix 1.0, erasing 0.25, drop path 0.1, smoothing 0.1.
    "IN1k": DownstreamSet("torch/imagenet?root=$IMAGENET", 1_281_167, gpu={"epochs": 1},
                          paper={"epochs": 300, "batch_size": 1024, "opt": "adamw", "lr": 1e-3, "weight_decay": 0.05,
                                 "warmup_epochs": 5, "re_prob": 0.25}),
    "Retino": DownstreamSet("hfds/$RETINOPATHY", 35_126, gpu={"epochs": 5}),
    "Resisc45": DownstreamSet("hfds/$RESISC45", 18_900, gpu={"epochs": 10}),
    "Camelyon": DownstreamSet("hfds/$CAMELYON", 262_144, gpu={"epochs": 1}),
    "CLEVR-C": DownstreamSet("torch/clevr_count", 70_000, gpu={"epochs": 3}),
    "sNORB-A": DownstreamSet("hfds/$SMALLNORB?label=$SMALLNORB_AZIMUTH", 24_300, gpu={"epochs": 10},
                             note="the label is the azimuth column, not the category"),
}


def load(number: str) -> Table:
    """The plan of paper table ``number`` (``2`` ... ``14``, ``fig3``)."""
    from ...errors import TrainerError

    name = str(number).lower().removeprefix("table").strip()
    if name not in TABLES:
        raise TrainerError(f"no plan for table {number!r} (one of {', '.join(TABLES)})")
    module = "fig3" if name == "fig3" else f"t{int(name):02d}"
    return importlib.import_module(f"{__name__}.{module}").TABLE
