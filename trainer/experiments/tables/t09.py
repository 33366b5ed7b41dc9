"""Table 9: pre-training without one or two of the DeiT augmentations (1p-frac, C100).

timm 0.4.12, which the reference trains with, applies its colour jitter (0.4 in the reference's
pre-train.sh) only when RandAugment is off: "w/o Random Aug." trains with colour jitter, and "w/o Color
Jittering" trains exactly as the baseline."""

from ...settings import RANDAUGMENT
from . import Row, Table

BASE = "manifests/1p-frac.json"

TABLE = Table("9", "Ablation study on data augmentation methods", ("C100",), (
    Row("Scratch", {"C100": 64.2}, note="the paper's scratch figure is Table 2's"),
    Row("Baseline", {"C100": 84.2}, recipe=BASE),
    Row("w/o Random Aug.", {"C100": 83.4}, recipe=BASE, pretrain={"auto_augment": "none", "color_jitter": 0.4},
        needs=("setting:color_jitter",)),
    Row("w/o Random Crop", {"C100": 80.1}, recipe=BASE, pretrain={"scale": [1.0, 1.0]}),
    Row("w/o Rand Aspect", {"C100": 83.6}, recipe=BASE, pretrain={"ratio": [1.0, 1.0]}),
    Row("w/o Rand Erasing", {"C100": 84.0}, recipe=BASE, pretrain={"re_prob": 0.0}),
    Row("w/o Mixup", {"C100": 83.6}, recipe=BASE, pretrain={"mixup": 0.0}),
    Row("w/o Cutmix", {"C100": 83.3}, recipe=BASE, pretrain={"cutmix": 0.0}),
    Row("w/o Mixup/Cutmix", {"C100": 80.4}, recipe=BASE, pretrain={"mixup": 0.0, "cutmix": 0.0}),
    Row("w/o Flipping", {"C100": 84.3}, recipe=BASE, pretrain={"hflip": 0.0, "vflip": 0.0}),
    Row("w/o Color Jittering", {"C100": 84.2}, same_as="Baseline",
        note="colour jitter is off whenever RandAugment is on (timm 0.4.12), so this is the baseline's run"),
    # The cpu preset leaves these augmentations out; the miniature puts the recipe's back so that each row
    # removes something.
), sizes={"cpu": {"pretrain": {"scale": [0.08, 1.0], "auto_augment": RANDAUGMENT, "re_prob": 0.5, "mixup": 0.8,
                               "cutmix": 1.0}}})
