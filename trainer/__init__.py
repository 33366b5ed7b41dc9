"""trainer: pre-training, fine-tuning and probing on fracbuild's shards (reads shards only).

``trainer.pretrain``, ``trainer.finetune``, ``trainer.probe`` and ``trainer.experiment`` are the
library forms of ``python -m trainer pretrain|finetune|probe|experiment``, with the same names and
defaults. They are imported on first use, so that ``import trainer`` does not import torch.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {"pretrain": "pretraining", "finetune": "finetuning", "probe": "finetuning", "experiment": "experiments"}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
