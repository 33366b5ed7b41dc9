"""Table 14: five VTAB sets (specialized and structured), ViT-Tiny. Copies the user supplies: RETINOPATHY,
RESISC45, CAMELYON, SMALLNORB name Hugging Face dataset directories (``hfds/``); SMALLNORB_AZIMUTH names its
azimuth label column."""

from . import Row, Table

COLUMNS = ("Retino", "Resisc45", "Camelyon", "CLEVR-C", "sNORB-A")


def _p(*values: float) -> dict[str, float]:
    return dict(zip(COLUMNS, values, strict=True))


TABLE = Table("14", "Performance on five VTAB fine-tuning datasets", COLUMNS, (
    Row("Scratch", _p(66.9, 89.2, 74.4, 46.4, 11.5)),
    Row("ImageNet-1k (SL)", _p(79.1, 97.0, 82.7, 89.3, 29.2), external="supervised ImageNet-1k"),
    Row("ImageNet-1k (SSL:M)", _p(76.7, 95.6, 83.9, 89.5, 26.3), external="MAE on ImageNet-1k"),
    Row("1p-frac", _p(77.9, 95.8, 82.7, 86.2, 28.9), recipe="manifests/1p-frac.json"),
))
