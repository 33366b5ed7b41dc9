"""Helpers shared by the benchmark sections: timing, and memory of a process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "manifests" / "1p-frac.json"


def registry() -> tuple[dict[str, Callable], Callable]:
    """A module's ``SECTIONS`` dict and the ``@section`` decorator that fills it."""
    found: dict[str, Callable] = {}

    def section(fn: Callable) -> Callable:
        found[fn.__name__] = fn
        return fn

    return found, section


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack += children.get(p, [])
    return total


def run_cli(args: list[str]) -> tuple[float, int]:
    """Wall time and peak resident memory (process tree) of one ``fracbuild`` command."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fracbuild", *args], stdout=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.02)
    if proc.returncode:
        raise SystemExit(f"fracbuild {' '.join(args)} failed")
    return time.perf_counter() - start, peak
