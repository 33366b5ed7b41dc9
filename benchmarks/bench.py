"""Performance harness behind ``make bench``: prints every figure it measures.

``python benchmarks/bench.py [SECTION ...]`` runs the named sections (default: all). Sections live in
``benchmarks/bench_*.py``, each a module with a ``SECTIONS`` dict of name -> function(args).
Figures are measured side by side in one run on this machine; compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["bench_fracbuild"]  # modules run in this order; any others after them, by name


def sections() -> dict:
    sys.path.insert(0, str(HERE))
    names = ORDER + sorted(p.stem for p in HERE.glob("bench_*.py") if p.stem not in ORDER)
    found = {}
    for name in names:
        found.update(importlib.import_module(name).SECTIONS)
    return found


def main() -> None:
    available = sections()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(available)} (default: all)")
    parser.add_argument("--repeats", type=int, default=20, help="repeats of short timings")
    parser.add_argument("--reference-images", type=int, default=2, help="images for the reference-style renderer")
    parser.add_argument("--startup-repeats", type=int, default=3, help="interleaved runs of each startup figure")
    parser.add_argument("--startup-images", type=int, default=1000,
                        help="images of each --jobs 1 / --jobs 2 render (startup section)")
    args = parser.parse_args()
    unknown = set(args.sections) - set(available)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    for name in args.sections or available:
        available[name](args)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
