"""Table 3: 1p-frac against RCDB and VisualAtom, each at 1M images, 1K images and one image with LPCE (◇)."""

from . import Row, Table

TABLE = Table("3", "Comparison with SOTA FDSL datasets", ("C100", "IN100"), (
    Row("Scratch", {"C100": 64.2, "IN100": 74.9}, note="the paper's scratch figures are Table 2's"),
    Row("RCDB (1M)", {"C100": 81.6, "IN100": 88.5}, recipe="manifests/paper/rcdb-1m.json"),
    Row("RCDB (1K)", {"C100": 80.4, "IN100": 87.5}, recipe="manifests/paper/rcdb-1k.json"),
    Row("RCDB◇ (1)", {"C100": 82.5, "IN100": 87.9}, recipe="manifests/paper/rcdb-lpce.json"),
    Row("VA (1M)", {"C100": 84.9, "IN100": 90.3}, recipe="manifests/paper/visualatom-1m.json"),
    Row("VA (1K)", {"C100": 82.1, "IN100": 88.5}, recipe="manifests/paper/visualatom-1k.json"),
    Row("VA◇ (1)", {"C100": 82.6, "IN100": 88.0}, recipe="manifests/paper/visualatom-lpce.json"),
    Row("1p-frac◇ (1)", {"C100": 84.2, "IN100": 89.0}, recipe="manifests/1p-frac.json"),
))
