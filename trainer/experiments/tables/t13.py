"""Table 13: fine-tuning on the seven sets of the OFDB paper (ViT-Tiny). Rows pre-trained on real images or with
self-supervision are the paper's figures only. "w/ Aug." is OFDB's augmentation for one-instance data, which
neither the paper nor the public OFDB and 1p-frac code defines (docs/reference.md): those rows are the paper's
figures only."""

from . import Row, Table

COLUMNS = ("C10", "C100", "Cars", "Flowers", "VOC12", "P30", "IN100")
UNDEFINED = "OFDB's one-instance augmentation, which no public material defines (docs/reference.md)"


def _p(*values: float | None) -> dict[str, float | None]:
    return dict(zip(COLUMNS, values, strict=True))


def _theirs(label: str, values: dict, what: str) -> Row:
    return Row(label, values, external=what)


TABLE = Table("13", "Comparison among pre-training methods in fine-tuning accuracies", COLUMNS, (
    Row("Scratch", _p(80.3, 62.1, 13.7, 71.4, 56.2, 76.2, 74.8)),
    _theirs("Places-365 (SL)", _p(97.6, 83.9, 89.2, 99.3, 84.6, None, 89.4), "supervised Places-365, 1.80M images"),
    _theirs("ImageNet-1k (SL)", _p(98.0, 85.5, 89.9, 99.4, 88.7, 80.0, None), "supervised ImageNet-1k"),
    _theirs("ImageNet-1k (SSL:D)", _p(97.7, 82.4, 88.0, 98.5, 74.7, 78.4, 89.0), "DINO on ImageNet-1k"),
    _theirs("ImageNet-1k (SSL:M)", _p(97.4, 85.8, 86.6, 96.3, 83.3, 80.2, 90.0), "MAE on ImageNet-1k"),
    _theirs("PASS (SSL:D)", _p(97.5, 84.0, 86.4, 98.6, 82.9, 79.0, 82.9), "DINO on PASS, 1.43M images"),
    Row("FractalDB-1k", _p(96.8, 81.6, 86.0, 98.3, 80.6, 78.4, 88.3), recipe="manifests/fractaldb-1k.json"),
    Row("RCDB-1k", _p(97.0, 82.2, 86.5, 98.9, 80.9, 79.7, 88.5), recipe="manifests/paper/rcdb-1m.json",
        note="RCDB with 1k categories and 1M images"),
    _theirs("ImageNet-1k, 1,000 images (SL)", _p(94.3, 76.9, 57.3, 94.8, 73.8, 78.2, 84.3),
            "one ImageNet image per class"),
    _theirs("ImageNet-1k, 1,000 images (SSL:D)", _p(94.9, 78.0, 71.2, 94.6, 75.5, 78.6, 84.9),
            "DINO on one ImageNet image per class"),
    Row("OFDB-1k", _p(96.9, 84.0, 84.5, 97.1, 79.9, 79.9, 88.0), recipe="manifests/ofdb-1k.json"),
    _theirs("3D-OFDB-1k", _p(97.1, 83.8, 85.5, 98.4, 80.8, 80.0, 89.1), "3-D fractals rendered from 12 views"),
    _theirs("OFDB-1k w/ Aug.", _p(97.2, 85.3, 87.6, 98.3, 81.4, 80.4, 89.5), f"OFDB-1k with {UNDEFINED}"),
    _theirs("3D-OFDB-1k w/ Aug.", _p(97.0, 84.7, 85.6, 98.3, 81.2, 79.8, 88.9), "3-D fractals, OFDB's augmentation"),
    _theirs("1-image SSL (SSL:D)", _p(95.7, 79.5, 73.1, 93.8, 69.0, 80.4, 88.7), "DINO on one real image"),
    _theirs("1-image SSL (SSL:M)", _p(97.2, 84.7, 82.1, 94.6, 78.5, 80.3, 89.0), "MAE on one real image"),
    Row("1p-frac", _p(96.9, 84.2, 84.5, 97.4, 80.5, 80.6, 89.0), recipe="manifests/1p-frac.json"),
    _theirs("1p-frac w/ Aug.", _p(96.5, 84.7, 87.0, 98.1, 80.9, 80.5, 88.9), f"1p-frac with {UNDEFINED}"),
))
