"""Table 12: Canny edges of one real image, classes made by affine, elastic or polynomial warps. The paper
averages five photographs; the shipped recipes use one stand-in (scikit-image's camera)."""

from . import Row, Table

TABLE = Table("12", "Affine, elastic and polynomial transformations of one real image", ("C100",), (
    Row("Scratch", {"C100": 64.2}, note="the paper's scratch figure is Table 2's"),
    Row("Affine trans.", {"C100": 81.9}, recipe="manifests/real-canny-affine.json"),
    Row("Elastic trans.", {"C100": 37.0}, recipe="manifests/real-canny-elastic.json"),
    Row("Polynomial trans.", {"C100": 81.3}, recipe="manifests/real-canny-polynomial.json"),
))
