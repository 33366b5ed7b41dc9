"""Table 7: the number of perturbation classes L (σ = 3.5, Δ = 0.1). Every L pre-trains for the same steps
(``ONE_IMAGE_STEPS``), not the same epochs."""

from . import Row, Table

TABLE = Table("7", "Effects of the number of sampling points L", ("C100", "IN100"), (
    Row("Scratch", {"C100": 64.2, "IN100": 74.9}, note="the paper's scratch figures are Table 2's"),
    Row("L = 16", {"C100": 78.7, "IN100": 85.3}, recipe="manifests/paper/classes-16.json"),
    Row("L = 64", {"C100": 82.3, "IN100": 88.0}, recipe="manifests/paper/classes-64.json"),
    Row("L = 512", {"C100": 82.4, "IN100": 88.0}, recipe="manifests/paper/classes-512.json"),
    Row("L = 1000", {"C100": 84.2, "IN100": 89.0}, recipe="manifests/paper/classes-1000.json"),
), sizes={"cpu": {"max_classes": 1000}}, note="L is what this table varies, so the cpu size keeps every L (1000 "
   "images at 32 px render in seconds).")
