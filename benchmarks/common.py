"""Helpers shared by the benchmark sections: timing, and memory and CPU time of a process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "manifests" / "1p-frac.json"
# The GPU check: a section ends its own work this long before the deadline at which it is killed.
STOP_S = 5


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


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and each of its living descendants, from /proc;
    the process's entry also holds what its reaped children used."""
    children: dict[int, list[int]] = {}
    used: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            used[int(entry)] = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
        except (OSError, IndexError, ValueError):
            continue
    found, stack = {}, [pid]
    while stack:
        p = stack.pop()
        found[p] = used.get(p, 0.0)
        stack += children.get(p, [])
    return found


def cpu_timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process and its workers (loky's live on between calls: only
    what they used meanwhile counts) and ``fn``'s result."""
    before = tree_cpu(os.getpid())
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    after = tree_cpu(os.getpid())
    return wall, sum(t - before.get(p, 0.0) for p, t in after.items()), result


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


def wheels() -> list[str]:
    """The lines of benchmarks/gpu-wheels.txt (what the GPU check carries to its host), ``name==version``."""
    text = (ROOT / "benchmarks" / "gpu-wheels.txt").read_text()
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]
