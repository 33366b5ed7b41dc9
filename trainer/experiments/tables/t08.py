"""Table 8: ViT-Base pre-trained on 1p-frac with L = 21,000, fine-tuned on ImageNet-1k (a copy the user supplies:
IMAGENET=DIR). The paper gives neither the pre-training schedule nor its own ImageNet-1k protocol beyond "the
protocols of [18]"; the 21k rows it compares with were fine-tuned by masora1030/CVPR2022-Pretrained-ViT-PyTorch
scripts/finetune.sh (SETS["IN1k"]). Pre-training follows OFDB's 21k model, the closest one-image-per-class
21k run: "pretrain_deit_tiny_2d-ofdb21k_patch_lr5.0e-4_epochs15238_bs1024_amp" (ryoo-nakamura/OFDB README):
15,238 epochs of 21,000 images at a global batch of 1024, lr 5.0e-4 as its name gives it, AMP."""

from . import Row, Table

VIT_B = "vit_base_patch16_224"
PAPER_PRETRAIN = {"model": VIT_B, "batch_size": 1024, "samples": 15_238 * 21_000, "lr": 5e-4}


def _theirs(label: str, number: float, what: str) -> Row:
    return Row(label, {"IN1k": number}, external=what)


TABLE = Table("8", "Comparison of pre-training datasets on ImageNet-1k fine-tuning (ViT-B)", ("IN1k",), (
    Row("Scratch", {"IN1k": 79.8}),
    _theirs("ImageNet-21k", 81.8, "supervised ImageNet-21k (14M real images)"),
    _theirs("FractalDB-21k", 81.8, "FractalDB-21k (21M images)"),
    _theirs("ExFractalDB-21k", 82.7, "ExFractalDB-21k (3-D fractals, 21M images)"),
    _theirs("RCDB-21k", 82.4, "RCDB-21k (21M images; the shipped RCDB recipes have 1000 categories)"),
    _theirs("VA-21k", 82.7, "VisualAtom-21k (21M images)"),
    _theirs("OFDB-21k", 82.2, "OFDB-21k (21k images; the shipped OFDB recipe has 1000 categories)"),
    _theirs("3D-OFDB-21k", 82.7, "3D-OFDB-21k (3-D fractals)"),
    Row("1p-frac (L = 21,000)", {"IN1k": 82.1}, recipe="manifests/1p-frac.json", render={"classes": 21_000}),
), sizes={"paper": {"pretrain": PAPER_PRETRAIN, "finetune": {"model": VIT_B}},
          "gpu": {"pretrain": {"model": VIT_B}, "finetune": {"model": VIT_B}}})
