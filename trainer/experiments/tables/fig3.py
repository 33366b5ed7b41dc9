"""Figure 3: linear probes on C100 with the first K ∈ {1, 2, 3, 4, 6} blocks of ViT-Tiny frozen. The paper plots
1p-frac against supervised ImageNet-1k (1p-frac ahead at K = 1-3) and prints no numbers; here each body is also
compared with scratch, probed alike."""

from . import Row, Table

TABLE = Table("fig3", "Linear probing with the first K blocks frozen", ("C100",), (
    Row("Scratch", {"C100": None}),
    Row("ImageNet-1k (SL)", {"C100": None}, external="supervised ImageNet-1k"),
    Row("1p-frac", {"C100": None}, recipe="manifests/1p-frac.json"),
), probe_blocks=(1, 2, 3, 4, 6))
