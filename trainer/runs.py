"""A run directory: config.json, metrics.jsonl, checkpoint.pt, results.json and curves.png.

Only rank 0 calls these (``prepare_out`` aside: every rank does). Every file is written to a
temporary name and renamed into place, so an interruption at any moment leaves the previous
complete file, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import TrainerError

if TYPE_CHECKING:
    from . import distributed

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"
CURVES = "curves.png"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, RESULTS, CURVES)
# What makes a directory hold a run worth keeping: a run stopped before its first checkpoint (a full disk) left
# only its config and metrics, which nothing can continue from, so a plain re-run takes the directory.
KEPT_FILES = (CHECKPOINT, RESULTS)


def check_out(out: str | os.PathLike, *, resume: bool = False, force: bool = False) -> Path:
    """Refuse ``out`` if it cannot hold the run (an existing run needs ``resume`` or ``force``);
    changes nothing, so that a command can check every setting before it writes anything."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TrainerError(f"{out} exists and is not a directory")
    nearest = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not nearest.is_dir():
        raise TrainerError(f"cannot write to {out}: {nearest} is not a directory")
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise TrainerError(f"--resume: {out} has no {CHECKPOINT} to continue from")
    elif any((out / f).exists() for f in KEPT_FILES) and not force:
        raise TrainerError(f"{out} holds a run; pass --resume to continue it or --force to replace it")
    return out


_HELD: dict[str, int] = {}  # the run directories this process writes: the descriptor holding each one's lock


def hold(out: str | os.PathLike) -> None:
    """Take ``out`` for this process, or refuse in one line if another process has it: two runs writing one
    directory would interleave their checkpoints and metrics. The lock is ``flock`` on the directory itself, so
    there is no lock file to leave behind, and the kernel drops it when the process ends, however it ends."""
    key = os.path.abspath(out)
    if key in _HELD:
        return
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TrainerError(f"{out} is being written by another run; wait for it to end or choose another "
                           "--out") from None
    except OSError:
        pass  # a file system without locks (some network mounts): the run goes on unlocked, as a render does
    _HELD[key] = fd


@contextlib.contextmanager
def released(out: str | os.PathLike) -> Iterator[None]:
    """Whatever ends the block, the lock ``hold`` took on ``out`` in it is given back."""
    try:
        yield
    finally:
        fd = _HELD.pop(os.path.abspath(out), None)
        if fd is not None:
            os.close(fd)


def prepare(out: str | os.PathLike, *, resume: bool = False, force: bool = False) -> Path:
    """Create ``out`` (or check it for ``resume``) and hold it (``hold``); refuse to overwrite a run unless
    ``force``."""
    out = check_out(out, resume=resume, force=force)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainerError(f"cannot write to {out}: {e.strerror or e}") from None
    hold(out)
    check_out(out, resume=resume, force=force)  # again: a run that held it until now may have written a run
    for f in RUN_FILES:  # what a crash between a write and its rename left: never read, so only debris
        with contextlib.suppress(FileNotFoundError):
            (out / f".{f}.tmp").unlink()
    if not resume:  # with --force, or what a run that never saved left (check_out refused anything else)
        for f in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                (out / f).unlink()
    try:
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise TrainerError(f"cannot write to {out}: {e.strerror or e}") from None
    return out


@contextlib.contextmanager
def no_debris(out: str | os.PathLike) -> Iterator[None]:
    """A command that fails leaves no empty run directory of its own making behind."""
    made = not os.path.exists(out)
    try:
        yield
    except BaseException:
        if made:
            with contextlib.suppress(OSError):  # not empty: the run wrote something worth keeping
                os.rmdir(out)
        raise


def prepare_out(out: str | os.PathLike, resume: bool, force: bool, d: distributed.Dist) -> None:
    """Rank 0 prepares the run directory (``prepare``); every rank learns whether that failed."""
    from . import distributed

    error = None
    if d.main:
        try:
            prepare(out, resume=resume, force=force)
        except TrainerError as e:
            error = str(e)
    error = distributed.broadcast(error, d)
    if error:
        raise TrainerError(error)


def replace_synced(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` over ``path`` once its bytes are on disk (fsync), so that a crash leaves one or the other;
    then fsync the directory, so that the rename itself survives a crash."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_json(path: str | os.PathLike, data: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    replace_synced(tmp, path)


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, flushed as written; on resume, lines past the
    checkpoint's step are dropped so that the file tells one consistent story."""

    def __init__(self, path: str | os.PathLike, *, keep_until_step: int | None = None):
        self.path = Path(path)
        if keep_until_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and _step_of(line) <= keep_until_step]
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            replace_synced(tmp, self.path)
        self.file = open(self.path, "a")  # noqa: SIM115 (closed in close())

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record, sort_keys=True) + "\n")
        self.file.flush()

    def sync(self) -> None:
        """On disk before a checkpoint is: a crash then loses no line up to the step it continues from."""
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _step_of(line: str) -> float:
    try:
        return json.loads(line).get("step", math.inf)
    except ValueError:  # a line cut short by a kill
        return math.inf


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    lines = Path(path).read_text().splitlines() if Path(path).exists() else []
    records = []
    for line in lines:
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


def plot_curves(metrics: list[dict[str, Any]], path: str | os.PathLike, *, title: str = "",
                chance: float | None = None) -> None:
    """Loss and learning rate against step (and top-1 against step where evaluations were logged); ``chance``,
    the loss of a uniform guess, as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [m for m in metrics if "loss" in m]
    evals = [m for m in metrics if "top1" in m]
    panels = 3 if evals else 2
    height = 3.4
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, height))
    axes[0].plot([m["step"] for m in train], [m["loss"] for m in train], lw=1)
    if chance is not None:
        axes[0].axhline(chance, ls="--", lw=1, color="gray", label=f"chance ({chance:.2f})")
        axes[0].legend(fontsize=7)
    axes[0].set(xlabel="step", ylabel="loss", title="training loss")
    axes[1].plot([m["step"] for m in train], [m["lr"] for m in train], lw=1, color="tab:orange")
    axes[1].set(xlabel="step", ylabel="learning rate", title="learning rate")
    if evals:
        axes[2].plot([m["step"] for m in evals], [m["top1"] for m in evals], marker=".", color="tab:green")
        axes[2].set(xlabel="step", ylabel="top-1 (%)", title="test top-1")
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    # Margins fixed in inches: tight_layout would draw the figure once more to measure it (0.2 s of every run).
    width = fig.get_figwidth()
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, bottom=0.48 / height, top=1 - 0.55 / height,
                        wspace=0.3)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    replace_synced(tmp, path)
