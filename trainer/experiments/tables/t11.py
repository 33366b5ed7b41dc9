"""Table 11: one real image as gray levels (the paper's RGB) or Canny edges, 1000 affine warps. The paper
averages five photographs; the shipped recipes use one stand-in (scikit-image's camera)."""

from . import Row, Table

TABLE = Table("11", "RGB against Canny images with shape augmentation (affine)", ("C100",), (
    Row("Scratch", {"C100": 64.2}, note="the paper's scratch figure is Table 2's"),
    Row("RGB image", {"C100": 81.6}, recipe="manifests/real-rgb-affine.json",
        note="made by `fracbuild search --source image --convert rgb --warp affine -o manifests/real-rgb-affine.json`"),
    Row("Gray image", {"C100": None}, recipe="manifests/real-gray-affine.json",
        note="the shipped stand-in for the RGB row while shards are gray"),
    Row("Canny image", {"C100": 82.2}, recipe="manifests/real-canny-affine.json"),
))
