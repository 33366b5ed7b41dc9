"""Table 2: one fractal (1p-frac) against FractalDB (1M images) and OFDB (1k images), ViT-Tiny."""

from . import Row, Table

TABLE = Table("2", "Comparison of 1p-frac with FractalDB and OFDB", ("C100", "IN100"), (
    Row("Scratch", {"C100": 64.2, "IN100": 74.9}),
    Row("FractalDB (1M)", {"C100": 81.6, "IN100": 88.5}, recipe="manifests/fractaldb-1k.json"),
    Row("OFDB (1k)", {"C100": 84.0, "IN100": 88.6}, recipe="manifests/ofdb-1k.json"),
    Row("1p-frac (1)", {"C100": 84.2, "IN100": 89.0}, recipe="manifests/1p-frac.json"),
))
