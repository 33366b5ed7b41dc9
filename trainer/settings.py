"""Every setting of a run, defined once: its name, type, help, the rule its value must keep, and its default
for each kind of run (``pretrain``, ``finetune``, ``probe``).

The command line's options (``trainer.cli``), the keyword arguments of ``trainer.pretrain``, ``finetune`` and
``probe`` (their signatures, and the check of a call's names and types) and the check of the presets
(``trainer.presets``) are all made from ``SETTINGS``. A kind takes the settings that have a default for it;
``Hidden`` marks one that a kind uses but does not take from its caller (a probe has no Mixup).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import TrainerError

KINDS = ("pretrain", "finetune", "probe")
# The names of the inputs (trainer.data.inputs) and of the input mean/std pairs (trainer.data.transforms).
INPUTS = ("stream", "memory", "auto")
# How a pass over the training data ends (trainer.data.memory, trainer.data.rebatch).
PASS_ENDS = ("drop", "continue")
NORMALIZE = ("0.5", "imagenet")
# Value types besides int, float, str and bool: a pair of floats, and KEY=VALUE pairs (a dict).
PAIR, KV = "pair", "kv"


class Hidden(NamedTuple):
    """A default that a kind uses without taking the setting from its caller."""

    value: Any


class Rule(NamedTuple):
    """What a value must satisfy, and how an error says it."""

    holds: Callable[[Any], bool]
    text: str


POSITIVE = Rule(lambda v: v > 0, "must be positive")
NON_NEGATIVE = Rule(lambda v: v >= 0, "must be >= 0")
UNIT = Rule(lambda v: 0 <= v <= 1, "must lie in [0, 1]")
UNIT_OPEN_BELOW = Rule(lambda v: 0 < v <= 1, "must lie in (0, 1]")
UNIT_OPEN_ABOVE = Rule(lambda v: 0 <= v < 1, "must lie in [0, 1)")
AREA = Rule(lambda v: 0 < v[0] <= v[1] <= 1, "must satisfy 0 < MIN <= MAX <= 1")
EVEN = Rule(lambda v: v >= 0 and v % 2 == 0, "must be even and >= 0 (mixing pairs samples up)")


@dataclass(frozen=True)
class Setting:
    name: str
    type: Any  # int, float, str, bool, PAIR or KV
    help: str
    defaults: Mapping[str, Any]  # kind -> default (a Hidden one is not the caller's to set)
    rule: Rule | None = None
    choices: tuple[str, ...] | None = None
    # May differ when a run is resumed: it does not change what is learned.
    runtime: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> None:
        """One clear line for a value outside the setting's rule or choices (None: the setting is off)."""
        if value is None:
            return
        if self.choices is not None and value not in self.choices:
            raise TrainerError(f"{self.flag} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.rule is not None and not self.rule.holds(value):
            shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            raise TrainerError(f"{self.flag} {self.rule.text}, got {shown}")


def _s(name, type, help, rule=None, choices=None, runtime=False, **defaults) -> Setting:
    return Setting(name, type, help, defaults, rule, choices, runtime)


# The reference recipe's RandAugment, as timm spells it.
RANDAUGMENT = "rand-m9-mstd0.5-inc1"
_AUG = dict(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, vflip=0.5, auto_augment=RANDAUGMENT,
            re_prob=0.5, mixup=0.8, cutmix=1.0, mixup_switch=0.5, smoothing=0.1)
_ALL = {k: None for k in KINDS}
_TRAINING = {"pretrain": None, "finetune": None}  # neither a default nor a setting of a probe

SETTINGS: tuple[Setting, ...] = (
    _s("model", str, "timm model name.", pretrain="vit_tiny_patch16_224", finetune=None, probe=None),
    _s("model_kwargs", KV, "timm model argument KEY=VALUE, added to the preset's (or the checkpoint's) model "
       "arguments, replacing one of the same KEY; repeat the option for more: --model-kwargs patch_size=4 "
       "--model-kwargs depth=6.", pretrain={}, finetune=None, probe=None),
    _s("img_size", int, "Input resolution in pixels.", POSITIVE, pretrain=224, finetune=224, probe=224),
    _s("drop_path", float, "Stochastic depth rate.", UNIT, pretrain=0.1, finetune=0.1, probe=Hidden(0.0)),
    _s("batch_size", int, "Global batch size (split over processes).", POSITIVE, pretrain=256, finetune=256,
       probe=256),
    _s("epochs", float, "Training length in passes over the data.", POSITIVE, pretrain=None, finetune=1000,
       probe=1000),
    _s("samples", int, "Training length in samples seen (instead of epochs).", POSITIVE, pretrain=None),
    _s("warmup_epochs", float, "Linear warm-up length in epochs (default: 5% of the run).", NON_NEGATIVE,
       pretrain=None, finetune=10, probe=10),
    _s("lr", float, "Peak learning rate (default: lr_base x batch_size / 512).", POSITIVE, **_ALL),
    _s("lr_base", float, "Learning rate per 512 samples of global batch.", POSITIVE, pretrain=1e-3, finetune=0.01,
       probe=0.01),
    _s("warmup_lr_base", float, "Warm-up start learning rate per 512 samples of batch.", NON_NEGATIVE, pretrain=1e-6,
       finetune=1e-6, probe=1e-6),
    _s("min_lr_base", float, "Final cosine learning rate per 512 samples of batch.", NON_NEGATIVE, pretrain=1e-5,
       finetune=1e-5, probe=1e-5),
    _s("opt", str, "timm optimizer name.", pretrain="adamw", finetune="sgd", probe="sgd"),
    _s("weight_decay", float, "Weight decay.", NON_NEGATIVE, pretrain=0.05, finetune=1e-4, probe=1e-4),
    _s("layer_decay", float, "Layer-wise lr decay: layer i at lr x LAYER_DECAY^(D+1-i) (0: embeddings, D+1: "
       "head).", UNIT_OPEN_BELOW, finetune=None, probe=Hidden(None)),
    _s("momentum", float, "Momentum (SGD-like optimizers).", pretrain=0.9, finetune=0.9, probe=0.9),
    _s("clip_grad", float, "Clip the gradient norm to this value (default: no clipping).", POSITIVE,
       pretrain=None, finetune=None, probe=Hidden(None)),
    _s("amp", bool, "Automatic mixed precision: bf16 where the GPU has it, else fp16 (default: on with CUDA).",
       **_ALL),
    _s("compile", bool, "torch.compile the training step (augmentation, mixing, forward, loss and their backward) "
       "(default: off; the paper presets: on with CUDA).", runtime=True, pretrain=False, finetune=False,
       probe=Hidden(False)),
    _s("compile_backend", str, "torch.compile backend of --compile (timm's --torchcompile): inductor generates "
       "kernels; aot_eager traces the same graphs, forward and backward, and runs them op by op.", runtime=True,
       pretrain="inductor", finetune="inductor", probe=Hidden("inductor")),
    _s("fused", bool, "The optimizer's fused kernel, where torch has one for it (AdamW, Adam, SGD).", runtime=True,
       pretrain=False, finetune=False, probe=False),
    _s("tf32", bool, "TF32 matrix products and convolutions on GPUs (no effect on a CPU).", runtime=True,
       pretrain=False, finetune=False, probe=False),
    _s("ema", float, "EMA decay of the weights (0: no EMA).", UNIT_OPEN_ABOVE, pretrain=0.0),
    _s("scale", PAIR, "RandomResizedCrop area range MIN MAX.", AREA, pretrain=_AUG["scale"],
       finetune=_AUG["scale"], probe=_AUG["scale"]),
    _s("ratio", PAIR, "RandomResizedCrop aspect ratio range MIN MAX.", pretrain=_AUG["ratio"],
       finetune=_AUG["ratio"], probe=Hidden(_AUG["ratio"])),
    _s("hflip", float, "Horizontal flip probability.", UNIT, pretrain=0.5, finetune=0.5, probe=0.5),
    _s("vflip", float, "Vertical flip probability.", UNIT, pretrain=0.5, finetune=0.0, probe=Hidden(0.0)),
    _s("auto_augment", str, "timm RandAugment spec ('none': off).", pretrain=_AUG["auto_augment"],
       finetune=_AUG["auto_augment"], probe=Hidden(None)),
    _s("color_jitter", float, "Colour jitter J: brightness, contrast and saturation factors each from "
       "U[max(0, 1 - J), 1 + J], applied in a random order (torchvision's ColorJitter); as timm applies it, only "
       "when RandAugment is off (0: off).", NON_NEGATIVE, pretrain=None, finetune=None, probe=Hidden(None)),
    _s("re_prob", float, "Random erasing probability.", UNIT, pretrain=0.5, finetune=0.25, probe=Hidden(0.0)),
    _s("mixup", float, "Mixup alpha (0: off).", NON_NEGATIVE, pretrain=0.8, finetune=0.8, probe=Hidden(0.0)),
    _s("cutmix", float, "CutMix alpha (0: off).", NON_NEGATIVE, pretrain=1.0, finetune=1.0, probe=Hidden(0.0)),
    _s("mixup_switch", float, "Probability of CutMix instead of Mixup when both are on.", UNIT, pretrain=0.5,
       finetune=0.5, probe=Hidden(0.5)),
    _s("smoothing", float, "Label smoothing.", UNIT, pretrain=0.1, finetune=0.1, probe=Hidden(0.0)),
    _s("input", str, "Input: stream (shards through loader workers), memory (decoded once into the training "
       "device's memory and augmented there in batches), auto (memory when it fits).", choices=INPUTS,
       runtime=True, pretrain="auto", finetune="auto", probe="auto"),
    _s("workers", int, "DataLoader workers per process (default: from the CPU count).", NON_NEGATIVE,
       runtime=True, **_ALL),
    _s("pass_end", str, "How a pass over the data ends: drop (the reference's: its last partial batch is left out) "
       "or continue (batches run on into the next pass: every sample once per pass, no sample twice in a batch; "
       "an epoch is then samples / batch steps, not a whole number).", choices=PASS_ENDS, pretrain="drop",
       finetune="drop", probe="drop"),
    _s("strict", bool, "Stop at the first damaged shard or sample (unreadable, or not matching the manifest's "
       "sha256) instead of leaving it out with a warning.", runtime=True, pretrain=False),
    _s("shuffle_buffer", int, "Samples in each worker's shuffle buffer.", NON_NEGATIVE, runtime=True, pretrain=1000),
    _s("seed", int, "Seed of every random draw.", pretrain=0, finetune=0, probe=0),
    _s("log_every", int, "Steps between metrics lines.", POSITIVE, runtime=True, pretrain=50, finetune=10,
       probe=10),
    _s("save_every", int, "Steps between checkpoints.", POSITIVE, runtime=True, pretrain=1000),
    _s("classes", int, "Class count; must match the data's.", POSITIVE, pretrain=None),
    _s("shots", int, "Keep the first N training images of each class.", POSITIVE, finetune=None, probe=None),
    _s("eval_every", int, "Epochs between evaluations.", POSITIVE, finetune=1, probe=1),
    # The reference's effective recipe where it differs from its stated one (docs/training.md: the recipe table).
    _s("embed_decay", bool, "Weight decay on pos_embed and cls_token too (the reference's: its optimizer saw the "
       "DDP wrapper, which hides the model's no-weight-decay list).", pretrain=False, finetune=False,
       probe=Hidden(False)),
    _s("mix_chunk", int, "Samples per Mixup/CutMix draw: one lambda and one Mixup-or-CutMix choice per chunk of "
       "the batch, pairs within it (0: one per batch).", EVEN, pretrain=0, finetune=0, probe=Hidden(0)),
    _s("normalize", str, "Input mean/std: 'imagenet' or '0.5'.", choices=NORMALIZE, finetune="0.5", probe="0.5"),
    _s("crop_pct", float, "Evaluation: resize to img_size / crop_pct, then centre-crop img_size (1: resize only).",
       UNIT_OPEN_BELOW, finetune=1.0, probe=1.0),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
# Old names still taken, with a warning: old -> new.
RENAMED = {"data_path": "input"}


def of(kind: str, *, exposed: bool = False) -> tuple[Setting, ...]:
    """The settings a ``kind`` of run has (``exposed``: only those its caller may set)."""
    return tuple(s for s in SETTINGS if kind in s.defaults
                 and not (exposed and isinstance(s.defaults[kind], Hidden)))


def defaults(kind: str) -> dict[str, Any]:
    """Every setting of ``kind`` with its default."""
    return {s.name: getattr(s.defaults[kind], "value", s.defaults[kind]) if isinstance(s.defaults[kind], Hidden)
            else s.defaults[kind] for s in of(kind)}


def runtime(kind: str) -> frozenset[str]:
    """The settings of ``kind`` that a resumed run may change."""
    return frozenset(s.name for s in of(kind) if s.runtime)


def _typed(setting: Setting, value: Any) -> Any:
    """``value`` as the setting's type; TypeError (a caller's mistake, as for any Python call) if it is not one."""
    t = setting.type
    if t is bool:
        ok = isinstance(value, bool)
    elif t is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif t is str:
        ok = isinstance(value, str)
    elif t == PAIR:
        ok = (isinstance(value, (list, tuple)) and len(value) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
        value = [float(v) for v in value] if ok else value
    else:  # KV
        ok = isinstance(value, Mapping)
        value = dict(value) if ok else value
    if not ok:
        raise TypeError(f"{setting.name}={value!r}: expected {getattr(t, '__name__', t)}")
    return value


def check_types(kind: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (None: not given) typed as ``kind``'s settings; TypeError for a name it does not have."""
    known = {s.name: s for s in of(kind)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TypeError(f"{kind} got unknown setting(s): {', '.join(unknown)}")
    return {k: None if v is None else _typed(known[k], v) for k, v in values.items()}


def check_values(config: Mapping[str, Any]) -> None:
    """One clear line for the first setting whose value breaks its rule."""
    for name, value in config.items():
        if name in BY_NAME:
            BY_NAME[name].check(value)


def takes_settings(kind: str) -> Callable[[Callable], Callable]:
    """Give a library function (``trainer.pretrain``, ...) ``kind``'s exposed settings as keyword arguments.

    The function is written with ``**settings``; its signature shows every setting (default None: the
    preset's value), a name it does not take is a TypeError as in any call, a value given is checked against its
    setting's type and rule before the function runs, and a renamed one is accepted with a DeprecationWarning.
    """

    def decorate(func: Callable) -> Callable:
        sig = inspect.signature(func)
        params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params += [inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=None)
                   for s in of(kind, exposed=True)]

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            for old, new in RENAMED.items():
                if old in kwargs and any(s.name == new for s in of(kind, exposed=True)):
                    value = kwargs.pop(old)
                    if value is not None:
                        warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
                        kwargs[new] = kwargs.get(new) or value
            names = {s.name for s in of(kind, exposed=True)}
            fixed = {p.name for p in params if p.name not in names}
            unknown = sorted(set(kwargs) - names - fixed)
            if unknown:
                raise TypeError(f"{func.__name__}() got unexpected keyword argument(s): {', '.join(unknown)}")
            # The values given, checked before the run loads anything (torch, the data): a bad one is one line at once
            check_values(check_types(kind, {k: v for k, v in kwargs.items() if k in names and v is not None}))
            return func(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)
        return wrapper

    return decorate
