"""torchrun with its ranks forked instead of started: ``python tests/fork_ranks.py [torchrun's options]
SCRIPT|-m MODULE [ARGS]``, run through ``forked_python``.

torchrun (``torch.distributed.run``) starts each rank as a new ``python -u ...``, which spends 7-9 s of CPU on
importing torch, torchvision and timm before it does anything. Forked from the preloaded server, this launcher
has them imported already, and it is torchrun itself: torchrun's options, rendezvous, rank environment, signal
handling and failure report, with one change, the start method of torch's elastic launcher (which torchrun is
built on) set to ``fork``, so that each rank is a fork of this process running the script or module as
``python`` would. This process only launches, never computes, so the ranks fork no thread pool.
"""

import sys

import torch.distributed.run as torchrun
from forked_python import run_as_python

_config_from_args = torchrun.config_from_args


def _python(*args: str) -> None:
    """``python ARGS`` (``-u``, then ``-m MODULE`` or a script, then its arguments) in this process."""
    try:
        run_as_python([a for a in args if a != "-u"])
    except SystemExit as e:
        if e.code not in (None, 0):  # the rank's exit status, as torchrun would see it
            raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _forking(args):
    config, cmd, cmd_args = _config_from_args(args)
    if args.no_python:
        raise SystemExit("fork_ranks.py: --no-python runs a program, which cannot be forked")
    config.start_method = "fork"
    return config, _python, cmd_args


if __name__ == "__main__":
    torchrun.config_from_args = _forking
    torchrun.main(sys.argv[1:])
