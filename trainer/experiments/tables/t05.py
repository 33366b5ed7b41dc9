"""Table 5: the perturbation degree Δ (σ = 3.5, L = 1000)."""

from . import Row, Table

TABLE = Table("5", "Effects of the perturbation degree Δ", ("C100", "IN100"), (
    Row("Scratch", {"C100": 64.2, "IN100": 74.9}, note="the paper's scratch figures are Table 2's"),
    Row("Δ = 0.001", {"C100": 1.2, "IN100": 1.9}, recipe="manifests/paper/delta-0.001.json"),
    Row("Δ = 0.01", {"C100": 19.9, "IN100": None}, recipe="manifests/paper/delta-0.01.json"),
    Row("Δ = 0.05", {"C100": 83.0, "IN100": 88.2}, recipe="manifests/paper/delta-0.05.json"),
    Row("Δ = 0.1", {"C100": 84.2, "IN100": 89.0}, recipe="manifests/paper/delta-0.1.json"),
    Row("Δ = 0.2", {"C100": 83.4, "IN100": 88.5}, recipe="manifests/paper/delta-0.2.json"),
    Row("Δ = 1.0", {"C100": 82.6, "IN100": 88.1}, recipe="manifests/paper/delta-1.0.json"),
))
