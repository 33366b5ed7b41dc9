"""``trainer.experiment`` and the CPU diagnosis: what they run (``plan``, ``diagnosis``, ``grid``) apart from
what they write (``report``, ``diagnosis_report``, ``charts``) and the statistics both read (``stats``)."""

from .diagnosis import diagnose
from .grid import Run
from .plan import RANDAUGMENT, SIZES, Task, experiment, size_plan

__all__ = ["RANDAUGMENT", "SIZES", "Run", "Task", "diagnose", "experiment", "size_plan"]
