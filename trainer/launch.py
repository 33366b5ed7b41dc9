"""``python -m trainer.launch ARGS``: torchrun (``torch.distributed.run``) with the same arguments, that a stop
signal ends quietly.

Signalled, torchrun stops its ranks and then raises its own ``SignalException`` with a traceback (or, when the
ranks stopped first, a ``ChildFailedError`` report); the ranks have already said the one line that matters (the
step saved, and that ``--resume`` continues). Here a stop ends with that line alone and exit status 130, as a
run without torchrun does; any other failure keeps torchrun's full report.
"""

from __future__ import annotations

import logging
import sys

INTERRUPTED = 130  # what the trainer exits with when a signal stopped it
# Where torchrun logs that it got a stop signal and passes it on to the ranks.
SIGNAL_LOGGERS = ("torch.distributed.elastic.agent.server.api", "torch.distributed.elastic.multiprocessing.api")


def _not_about_signals(record: logging.LogRecord) -> bool:
    return "signal" not in record.getMessage().lower()


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for name in SIGNAL_LOGGERS:
        logging.getLogger(name).addFilter(_not_about_signals)
    try:
        run(parse_args(argv))
    except SignalException:
        return INTERRUPTED
    except ChildFailedError as e:
        if any(f.exitcode != INTERRUPTED for f in e.failures.values()):
            raise
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
