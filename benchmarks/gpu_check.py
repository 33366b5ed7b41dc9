"""The GPU check behind ``make gpu-check``: what one short slot on one GPU can measure, inside a time budget,
written to one markdown report as it goes.

    make gpu-check                    # benchmarks/gpu-check.sh: the wheels of .whl/ on the path, then this script
    python benchmarks/gpu_check.py [--budget-s 420] [--out DIR] [--sections synthetic,inputs] [--device cpu]

Carry to a GPU host without internet: ``.whl/`` (``make gpu-wheels`` on a machine with internet: the wheels of
``benchmarks/gpu-wheels.txt`` for Python 3.12, x86_64) and ``shards/1p-frac`` (``make run``: the default dataset;
rendered there, inside the budget, where it is missing). The report is ``$OUT/gpu-check.md`` where the variable OUT
is set (the folder a remote runner hands back), else ``gpu-check/gpu-check.md``; beside it ``log.txt`` (all that
the sections printed), ``figures.json`` and the chain's runs.

Sections, in this order, each in a process of its own:
  env        the device, the versions, the listed wheels found
  render     the default dataset, only where --data lacks it
  synthetic  the model's ceiling: one batch held on the device through the trainer's loop, eager and compiled
  inputs     pre-training through the memory input and through the stream (its tail on the device, in the workers)
  finetune   mnist5k with the fine-tuning recipe, beside the ceiling at its batch; evaluation through each input
  chain      the real commands: pretrain (paper preset), then finetune mnist5k from it and from scratch

The budget counts from the start of ``make gpu-check`` (installing the wheels is in it). A section starts only if
its least time is left; it gets its share of the time left (by weight; what it leaves unused goes to the next),
sizes its timed steps to its deadline, stops its commands before it and is killed at it with every process it
started. Each section's figures and target lines are in the report as soon as they are measured; a summary ends
it. Exit status 1 when a section failed or was cut at its deadline (the report is written all the same), else 0;
skipped sections are listed. Without a GPU (--device cpu, or no CUDA) it runs tiny: a check of the script, not a
measurement. GPU_CHECK_FAIL=SECTION makes that section fail at its start and GPU_CHECK_FAIL=SECTION:hang makes it
hang past its deadline with a child process (to check the check).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from common import STOP_S

ROOT = Path(__file__).resolve().parents[1]
REPORT, FIGURES, LOG = "gpu-check.md", "figures.json", "log.txt"
DATA = "shards/1p-frac"
RESERVE_S = 3  # kept for the summary
CUT = 3  # a section's exit status when it stopped itself at its deadline


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    weight: float  # its share of the time left, against the sections after it
    least_s: float  # the least time it needs on a GPU, and in the tiny run
    least_tiny_s: float
    needs_data: bool = False


SECTIONS = (
    Section("env", "Device and versions", 1, 20, 5),
    Section("render", "The default dataset", 2, 60, 10),  # where it was not carried: what needs data waits on it
    Section("synthetic", "Synthetic ceiling", 2, 45, 10),
    Section("inputs", "Pre-training inputs", 2, 45, 10, needs_data=True),
    Section("finetune", "Fine-tuning mnist5k", 2, 45, 10),
    Section("chain", "Chain: the real commands", 3, 60, 20, needs_data=True),
)
BY_NAME = {s.name: s for s in SECTIONS}


class SectionDeadline(BaseException):
    """A section's own deadline came (a BaseException, so that no library's ``except Exception`` swallows it)."""


class Report:
    """The markdown report, appended to and flushed line by line (every process of the check writes to it), and
    ``figures.json``, the figures and target lines that later sections and the summary read."""

    def __init__(self, out: Path):
        self.out = out
        self.path = out / REPORT

    def add(self, *lines: str) -> None:
        print(*lines, sep="\n", flush=True)
        with open(self.path, "a") as f:
            f.write("".join(line + "\n" for line in lines))

    def figures(self) -> dict:
        try:
            return json.loads((self.out / FIGURES).read_text())
        except (OSError, ValueError):
            return {}

    def figure(self, key: str, value) -> None:
        figures = self.figures()
        figures[key] = value
        tmp = self.out / (FIGURES + ".tmp")
        tmp.write_text(json.dumps(figures, indent=1))
        os.replace(tmp, self.out / FIGURES)

    def target(self, line: str) -> None:
        """A line of the Targets: in the report now, and again in the summary."""
        self.add(f"- {line}")
        self.figure("targets", [*self.figures().get("targets", []), line])

    def failed(self, what: str, seconds: float, error: BaseException | None = None, tail: list[str] = (),
               code: int | None = None) -> None:
        """A failure: its exception (or exit status), then the last lines of its traceback (or output)."""
        why = f": `{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}`" if error else ""
        status = f" with exit status {code}" if code is not None else ""
        detail = traceback.format_exception(error)[-8:] if error else tail
        lines = [x for chunk in detail for x in chunk.rstrip("\n").splitlines()][-12:]
        self.add("", f"- **{what} failed**{status} after {seconds:.0f} s{why}",
                 *(["", "```", *lines, "```"] if lines else []))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=420,
                        help="wall seconds for the whole check, from the start of make gpu-check (default 420)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu-check",
                        help="folder of the report and the runs (default: $OUT where set, else gpu-check)")
    parser.add_argument("--data", default=None,
                        help=f"the default dataset, rendered if missing (default {DATA}; tiny: OUT/tiny-1p-frac)")
    parser.add_argument("--steps", type=int, default=50,
                        help="timed steps per throughput figure, after 10 untimed (fewer where the deadline says)")
    parser.add_argument("--sections", default=",".join(BY_NAME),
                        help=f"the sections to run, in their order (default all: {','.join(BY_NAME)})")
    parser.add_argument("--device", default=None, help="cuda (default where torch sees one) or cpu (a tiny run)")
    parser.add_argument("--section", help=argparse.SUPPRESS)  # one section, in its own process
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in BY_NAME]
    if unknown or not wanted:
        parser.exit(2, f"gpu_check: --sections takes names among {', '.join(BY_NAME)}, got {args.sections!r}\n")
    args.sections = [s for s in BY_NAME if s in wanted]
    if args.budget_s <= 0 or args.steps < 1:
        parser.exit(2, "gpu_check: --budget-s and --steps must be positive\n")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.section:
        return run_section(args)
    started = float(os.environ.get("GPU_CHECK_T0") or time.time())
    end = started + args.budget_s
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in (REPORT, FIGURES, LOG):
        (out / name).unlink(missing_ok=True)
    report = Report(out)
    report.add(f"# GPU check, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
               f"- budget {args.budget_s:.0f} s of wall time ({time.time() - started:.0f} s of it spent before "
               f"this script, on the wheels); sections: {', '.join(args.sections)}")
    status: dict[str, tuple[str, float]] = {}
    cuda = args.device.startswith("cuda") if args.device else None
    if cuda is None:  # ask torch, in a process of its own: this one stays light
        start = time.time()
        code, tail = run_until([sys.executable, "-c", "import torch; print('CUDA:', torch.cuda.is_available())"],
                               min(start + 120, end - RESERVE_S), out / LOG)
        cuda = code == 0 and tail[-1:] == ["CUDA: True"]
        if code != 0:
            status["torch"] = ("failed", time.time() - start)
            report.failed("importing torch", time.time() - start, tail=tail, code=code)
    device = "cuda" if cuda else "cpu"
    data = Path(args.data or (DATA if cuda else out / "tiny-1p-frac")).resolve()
    if not cuda:
        report.add("- no GPU: a tiny run that checks the script, not a measurement")
    chosen = [BY_NAME[name] for name in args.sections]
    for i, section in enumerate(chosen):
        rendered = (data / "manifest.json").is_file()
        if section.name == "render" and rendered:
            status["render"] = ("done", 0.0)
            report.add("", f"## {section.title}", "", f"- `{data}` is rendered already "
                       f"({json.loads((data / 'manifest.json').read_text()).get('samples')} samples)")
            continue
        left = end - RESERVE_S - time.time()
        least = section.least_s if cuda else section.least_tiny_s
        why = ("needs the rendered dataset" if section.needs_data and not rendered
               else f"needs {least:.0f} s, {max(0.0, left):.0f} s left" if left < least else None)
        if why:
            status[section.name] = ("skipped", 0.0)
            report.add("", f"## {section.title}", "", f"- **skipped**: {why}")
            continue
        weights = sum(s.weight for s in chosen[i:] if not (s.name == "render" and rendered))
        allotted = min(left, max(least, left * section.weight / weights))
        start = time.time()
        deadline = start + allotted
        if section.name == "render":
            report.add("", f"## {section.title}", "")
            words = [sys.executable, "-m", "fracbuild", "render", str(ROOT / "manifests" / "1p-frac.json"), "-o",
                     str(data), "--no-progress", "--no-preview"] + ([] if cuda else ["--classes", "20", "--size", "64"])
        else:
            words = [sys.executable, str(Path(__file__).resolve()), "--section", section.name, "--deadline",
                     f"{deadline - STOP_S:.3f}", "--out", str(out), "--data", str(data), "--steps", str(args.steps),
                     "--device", device]
        code, tail = run_until(words, deadline, out / LOG)
        took = time.time() - start
        if code == 0:
            state = "done"
            if section.name == "render":
                report.add(f"- rendered `{data}` in {took:.0f} s: {tail[-1] if tail else ''}")
        elif code is None or (code == CUT and section.name != "render"):
            state = "cut"
            if code is None:
                report.add("", f"- **{section.name} killed at its deadline**, after {took:.0f} s of its "
                           f"{allotted:.0f} s; its last lines:", "", "```", *tail[-8:], "```")
        else:
            state = "failed"
            if section.name == "render" or code != 1:  # 1: the section said why in the report itself
                report.failed(section.name, took, tail=tail, code=code)
        status[section.name] = (state, took)
    summary(report, status, started, args.budget_s)
    return 1 if any(state in ("failed", "cut") for state, _ in status.values()) else 0


def run_until(words: list[str], deadline: float, log: Path) -> tuple[int | None, list[str]]:
    """Run ``words`` in a process group of its own, its output to ours and to ``log``; kill the group at
    ``deadline`` (status None) and, when the process ends, whatever of it is left (loader or compile workers).
    Returns the exit status and the last lines of output."""
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(words, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True, cwd=ROOT)

    def copy() -> None:
        with open(log, "a") as f:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                f.write(line)
                f.flush()
                tail.append(line.rstrip("\n"))

    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=max(0.1, deadline - time.time()))
    except subprocess.TimeoutExpired:
        code = None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(timeout=5)
    return code, list(tail)


def summary(report: Report, status: dict[str, tuple[str, float]], started: float, budget: float) -> None:
    report.add("", "## Summary", "", "| section | status | seconds |", "| --- | --- | ---: |",
               *(f"| {name} | {state} | {took:.0f} |" for name, (state, took) in status.items()))
    targets = report.figures().get("targets", [])
    report.add("", "Targets:" if targets else "No target was measured.", *(f"- {line}" for line in targets))
    report.add("", f"The whole check took {time.time() - started:.0f} s of its {budget:.0f} s budget.")


def run_section(args: argparse.Namespace) -> int:
    """One section in this process: stopped by SIGALRM at ``--deadline`` (the orchestrator kills it a little
    later); 0 when it measured everything, 1 when something in it failed, ``CUT`` when its deadline stopped it."""
    section, out = BY_NAME[args.section], Path(args.out)
    report = Report(out)
    report.add("", f"## {section.title}", "")

    def stop(signum, frame):
        raise SectionDeadline

    signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, args.deadline - time.time()))
    start = time.time()
    try:
        planted(section.name, out)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import gpu_sections

        return 0 if gpu_sections.run(section.name, report, out=out, data=Path(args.data), steps=args.steps,
                                     device=args.device, deadline=args.deadline) else 1
    except SectionDeadline:
        report.add("", f"- **{section.name} stopped at its deadline** after {time.time() - start:.0f} s: "
                   "the figures above are all it measured")
        return CUT
    except Exception as e:  # noqa: BLE001 (a failed section is a finding: say it, and the next one runs)
        traceback.print_exc()
        report.failed(section.name, time.time() - start, e)
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def planted(name: str, out: Path) -> None:
    """GPU_CHECK_FAIL=NAME: section NAME fails at once; NAME:hang: it hangs past its deadline, ignoring its own
    alarm, with a child process (its pid in OUT/hang.pid): only the kill at the deadline ends them."""
    section, _, how = os.environ.get("GPU_CHECK_FAIL", "").partition(":")
    if section != name:
        return
    if how == "hang":
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "600"])
        (out / "hang.pid").write_text(str(child.pid))
        time.sleep(600)
    raise RuntimeError(f"planted failure (GPU_CHECK_FAIL={name})")


if __name__ == "__main__":
    sys.exit(main())
