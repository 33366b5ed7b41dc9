"""Table 6: the σ-factor of the one fractal (Δ = 0.1, L = 1000)."""

from . import Row, Table

TABLE = Table("6", "Effects of σ", ("C100", "IN100"), (
    Row("Scratch", {"C100": 64.2, "IN100": 74.9}, note="the paper's scratch figures are Table 2's"),
    Row("σ = 3.5", {"C100": 84.2, "IN100": 89.0}, recipe="manifests/paper/sigma-3.5.json"),
    Row("σ = 4.0", {"C100": 82.8, "IN100": 87.9}, recipe="manifests/paper/sigma-4.0.json"),
    Row("σ = 4.5", {"C100": 81.9, "IN100": 86.9}, recipe="manifests/paper/sigma-4.5.json"),
    Row("σ = 5.0", {"C100": 82.2, "IN100": 87.1}, recipe="manifests/paper/sigma-5.0.json"),
    Row("σ = 6.0", {"C100": 81.3, "IN100": 86.3}, recipe="manifests/paper/sigma-6.0.json"),
))
