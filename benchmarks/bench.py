"""Performance harness behind ``make bench``: prints every figure it measures.

Run ``python benchmarks/bench.py [SECTION ...]``; with no section, all of them run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {}


def section(fn):
    SECTIONS[fn.__name__] = fn
    return fn


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@section
def search(args: argparse.Namespace) -> None:
    """One `fracbuild.search` at σ = 3.5 with the paper's render settings (JIT cache warm)."""
    import fracbuild

    fracbuild.search(sigma=3.5, seed=0)  # compile or load the kernels
    seeds = range(args.repeats)
    times = [timed(lambda s=s: fracbuild.search(sigma=3.5, seed=s)) for s in seeds]
    tries = [fracbuild.search(sigma=3.5, seed=s)["search"]["tries"] for s in seeds]
    print(f"search  sigma=3.5 N=2 512px 100k points, seeds 0..{args.repeats - 1}: "
          f"median {statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms, "
          f"mean tries {statistics.mean(tries):.2f}  (paper: 8 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, []], help="default: all")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    for name in args.sections or SECTIONS:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
