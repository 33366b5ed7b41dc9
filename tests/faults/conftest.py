"""Fault injection: faults at random seeded points, and a count of what was survived and what was lost.

``FAULT_TRIALS`` (default 1: the short subset the whole suite runs) is the number of trials per fault kind
that kills a render or a training run (``CHEAP`` times as many for the cheap kinds); ``FAULT_SEED`` (default
0) seeds where the faults land. Every test records its trials with ``tally``; the totals print as a table at
the end of the run and, with ``FAULT_REPORT=PATH``, are written there as JSON.
"""

import json
import os
import random
import sys
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the suite's shared fixtures

TRIALS = int(os.environ.get("FAULT_TRIALS", "1"))
SEED = int(os.environ.get("FAULT_SEED", "0"))
# The kinds that cost a second or less a trial (verify, the trainer's reader, fetch, bad input) run CHEAP times as
# many trials as those that kill a render or a training run: `make faults` (FAULT_TRIALS=20) gives 100 and 20.
CHEAP = 5
COUNTS: dict[str, dict[str, int]] = defaultdict(lambda: {"trials": 0, "survived": 0, "lost": 0})


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.faults)


def trials(kind: str, scale: float = 1.0, least: int = 1) -> list[random.Random]:
    """One seeded generator per trial of fault ``kind``: ``FAULT_TRIALS × scale`` trials, at least ``least``."""
    n = max(least, round(TRIALS * scale))
    return [random.Random(f"{SEED}/{kind}/{t}") for t in range(n)]


class Tally:
    """Counts of one fault kind: a trial survived if nothing was lost and the checks held."""

    def __init__(self, kind: str):
        self.kind = kind

    def record(self, survived: bool, lost: int = 0) -> None:
        c = COUNTS[self.kind]
        c["trials"] += 1
        c["survived"] += bool(survived)
        c["lost"] += lost


@pytest.fixture
def tally():
    return Tally


def table(counts: dict[str, dict[str, int]]) -> str:
    rows = ["| fault | trials | survived | data lost |", "| --- | ---: | ---: | ---: |"]
    rows += [f"| {kind} | {c['trials']} | {c['survived']} | {c['lost']} |" for kind, c in sorted(counts.items())]
    return "\n".join(rows)


def summarise(terminalreporter, counts: dict[str, dict[str, int]]) -> None:
    """The table, and the JSON report where ``FAULT_REPORT`` asks for one."""
    terminalreporter.section(f"faults injected (FAULT_TRIALS={TRIALS}, FAULT_SEED={SEED})")
    terminalreporter.write_line(table(counts))
    if os.environ.get("FAULT_REPORT"):
        Path(os.environ["FAULT_REPORT"]).write_text(json.dumps(
            {"trials_per_kind": TRIALS, "seed": SEED, "counts": dict(counts)}, indent=2, sort_keys=True) + "\n")


def pytest_sessionfinish(session):
    # A worker of a parallel run (pytest-xdist) prints nothing: its counts go to the controlling process, which
    # adds them up and prints the table (tests/conftest.py).
    if hasattr(session.config, "workeroutput") and COUNTS:
        session.config.workeroutput["fault_counts"] = {kind: dict(c) for kind, c in COUNTS.items()}


def pytest_terminal_summary(terminalreporter):
    if COUNTS:
        summarise(terminalreporter, COUNTS)
