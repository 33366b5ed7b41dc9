"""Table 4: LPCE on one noise image (Gaussian, uniform) against 1p-frac."""

from . import Row, Table

TABLE = Table("4", "Comparison with pre-training on a single noise image", ("C100", "IN100"), (
    Row("Scratch", {"C100": 64.2, "IN100": 74.9}, note="the paper's scratch figures are Table 2's"),
    Row("Gaussian◇", {"C100": 1.1, "IN100": 5.7}, recipe="manifests/noise-gaussian.json"),
    Row("Uniform◇", {"C100": 2.0, "IN100": 71.1}, recipe="manifests/noise-uniform.json"),
    Row("1p-frac◇", {"C100": 84.2, "IN100": 89.0}, recipe="manifests/1p-frac.json"),
))
