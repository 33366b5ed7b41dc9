"""The words a comparison's interval supports: above, below, or not distinguishable at this scale.

Every sentence of a report that states a gain, a loss or an agreement with the paper is made here from an
``Interval``, never written by hand.
"""

from __future__ import annotations

from .stats import ABOVE, BELOW, UNDECIDED, Interval

UNDECIDED_WORDS = "not distinguishable at this scale"


def points(value: float) -> str:
    """+3.2 / −1.0 / 0.0 (a true minus sign; no sign on what rounds to zero)."""
    text = f"{value:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text.replace("-", "−")


def bracket(c: Interval) -> str:
    """'+3.2 points (95 % interval +1.0 to +5.4)', with a note where a seed axis has one seed only."""
    n, m = c.seeds
    few = [what for what, k in (("pre-training", n), ("fine-tuning", m)) if k < 2]
    note = f"; one {' and one '.join(few)} seed, so no verdict" if few else ""
    return f"{points(c.mean)} points (95 % interval {points(c.low)} to {points(c.high)}{note})"


def versus(subject: str, baseline: str, where: str, c: Interval) -> str:
    """'On digits, A is above B: ...' only where the interval lies above zero (below: below), else
    '... are not distinguishable at this scale'."""
    if c.verdict == ABOVE:
        return f"On {where}, {subject} is above {baseline}: {bracket(c)}"
    if c.verdict == BELOW:
        return f"On {where}, {subject} is below {baseline}: {bracket(c)}"
    return f"On {where}, {subject} and {baseline} are {UNDECIDED_WORDS}: {bracket(c)}"


def against_paper(c: Interval, expected: str, paper: str) -> str:
    """Whether the comparison agrees with the paper's direction ``expected`` (ABOVE or BELOW)."""
    if c.verdict == UNDECIDED:
        return f"so it neither agrees nor disagrees with the paper ({paper})"
    if c.verdict == expected:
        return f"as in the paper ({paper})"
    return f"the opposite of the paper ({paper})"


def claim(subject: str, baseline: str, where: str, c: Interval, paper: tuple[str, str] | None = None) -> str:
    """One sentence: ``versus``, and ``against_paper`` where the paper has a direction ``(expected, figures)``."""
    sentence = versus(subject, baseline, where, c)
    return sentence + (f"; {against_paper(c, *paper)}." if paper else ".")


def trend(subject: str, baseline: str, first: str, last: str, c: Interval) -> str:
    """The change of a gap from ``first`` to ``last`` (``c``: last gap minus first)."""
    if c.verdict == ABOVE:
        return f"The gap of {subject} over {baseline} grows from {first} to {last}: {bracket(c)}."
    if c.verdict == BELOW:
        return f"The gap of {subject} over {baseline} shrinks from {first} to {last}: {bracket(c)}."
    return (f"Whether the gap of {subject} over {baseline} changes from {first} to {last} is {UNDECIDED_WORDS}: "
            f"{bracket(c)}.")
