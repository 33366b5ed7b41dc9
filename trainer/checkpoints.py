"""Checkpoint files: writing one so that an interruption never leaves half of it, reading one with a clear
error, and the random states a run draws from, so that a resumed run draws what the uninterrupted run drew."""

from __future__ import annotations

import contextlib
import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import TrainerError
from .runs import replace_synced


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, fsync, then rename over ``path``: a full disk or a file-size limit
    leaves the previous checkpoint as it was, and ends the run with one line saying which."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    # Serialised in memory first: torch's own file writer reports a full disk as "unexpected pos 704 vs 598",
    # a plain write reports it as what it is.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
        replace_synced(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        kept = ("the previous one is kept" if path.exists() else
                "no checkpoint was written: the same command starts the run again")
        raise TrainerError(f"cannot write checkpoint {path}: {e.strerror or e}; {kept}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint file's contents (tensors on the CPU); one clear line if it is not one."""
    if not os.path.isfile(path):
        raise TrainerError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types for a file that is not a checkpoint
        raise TrainerError(f"cannot read checkpoint {path}: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(checkpoint, dict):
        raise TrainerError(f"{path} holds no state dict")
    return checkpoint


def random_state(input_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every random state a training step draws from (torch, CUDA, numpy for Mixup, random, and the input's
    own), as tensors and numbers that a ``weights_only`` checkpoint holds."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos,
                                                       has_gauss, gauss],
             "random": [version, torch.tensor(internal, dtype=torch.int64), gauss_next]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if input_state is not None:
        state["input"] = input_state
    return state


def set_random_state(state: dict[str, Any]) -> dict[str, Any] | None:
    """Put back what ``random_state`` saved; returns the input's own state, for the input to take."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["random"]
    random.setstate((version, tuple(internal.tolist()), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "generator" in state:  # written before inputs kept their own state: the memory input's generator
        return {"generator": state["generator"]}
    return state.get("input")
