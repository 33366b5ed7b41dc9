"""Models from timm: creation, pre-trained bodies with a new head, the linear probe, and the model a
fine-tuning or probe builds from its ``--init``."""

from __future__ import annotations

import logging
import os
from typing import Any

import timm
import torch
from torch import nn

from .checkpoints import read_checkpoint
from .errors import TrainerError


def _timm_model(name: str, *, img_size: int | None, **kwargs: Any) -> nn.Module:
    if name not in timm.list_models():
        raise TrainerError(f"unknown model {name!r} (see timm.list_models())")
    try:
        try:
            return timm.create_model(name, img_size=img_size, **kwargs)
        except TypeError as e:
            if "img_size" not in str(e):
                raise
            return timm.create_model(name, **kwargs)  # a model without an img_size argument (a CNN)
    except (TypeError, ValueError, AssertionError) as e:
        raise TrainerError(f"cannot create {name} with {kwargs_text(kwargs)}: {e}") from None


def kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "no arguments"


def create_model(name: str, *, num_classes: int, img_size: int | None = None, drop_path: float = 0.0,
                 model_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """A randomly initialised timm model."""
    return _timm_model(name, img_size=img_size, num_classes=num_classes, drop_path_rate=drop_path,
                       **(model_kwargs or {}))


def classifier_names(model: nn.Module) -> tuple[str, ...]:
    names = model.pretrained_cfg.get("classifier") or ()
    return (names,) if isinstance(names, str) else tuple(names)


def create_pretrained(checkpoint: str | os.PathLike, name: str, *, num_classes: int, img_size: int | None = None,
                      drop_path: float = 0.0, model_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """A timm model whose body comes from ``checkpoint`` and whose head is new, for ``num_classes``.

    timm does the loading: its checkpoint filter (for ViTs: position embeddings resampled to a new
    image size, patch embeddings to a new patch size) and, with the overlay's ``num_classes=-1``, the
    head dropped whatever its size. timm then loads non-strictly, so every other key is checked
    here: a checkpoint of another architecture is an error, not a silently random layer.
    ``custom_load=False``: timm before 1.0.31 keeps the registry's ``custom_load=True`` (JAX weights) of some
    default weights when a ``file`` is given, and would read the checkpoint as JAX weights.
    """
    from timm.models import load_state_dict

    path = os.fspath(checkpoint)
    try:
        source = load_state_dict(path, use_ema=True, weights_only=True)
    except Exception as e:  # see read_checkpoint
        raise TrainerError(f"cannot read checkpoint {path}: {str(e).splitlines()[0][:200]}") from None
    kwargs = dict(num_classes=num_classes, drop_path_rate=drop_path, **(model_kwargs or {}))
    # timm logs every key it did not load; the check below says what matters in one line.
    builder_log = logging.getLogger("timm.models._builder")
    level = builder_log.level
    builder_log.setLevel(logging.ERROR)
    try:
        model = _timm_model(name, img_size=img_size, pretrained=True,
                            pretrained_cfg_overlay=dict(file=path, num_classes=-1, custom_load=False), **kwargs)
    except RuntimeError as e:  # shapes that no filter can adapt
        raise TrainerError(f"{path} does not fit {name} ({kwargs_text(model_kwargs or {})}): "
                           f"{str(e).splitlines()[0][:300]}") from None
    finally:
        builder_log.setLevel(level)
    heads = {f"{h}.{p}" for h in classifier_names(model) for p in ("weight", "bias")}
    body = set(model.state_dict()) - heads
    missing = sorted(k for k in body if k not in source)
    extra = sorted(k for k in set(source) - heads if k not in body)
    if missing or extra:
        problem = f"lacks {missing[0]}" if missing else f"has {extra[0]}, which the model lacks"
        raise TrainerError(f"{path} does not fit {name} ({kwargs_text(model_kwargs or {})}): the checkpoint "
                           f"{problem} ({len(missing)} missing, {len(extra)} extra keys)")
    return model


class LinearProbe(nn.Module):
    """The frozen patch embedding and first ``blocks`` transformer blocks of a ViT, then a linear classifier.

    timm prunes the ViT to those blocks (norm and head removed) and returns their patch tokens as a
    grid. As in the probes the paper follows (Asano et al., linear classifiers on pooled feature maps),
    the grid is average-pooled to ``grid`` x ``grid`` cells and flattened, so that the classifier sees
    where things are (a mean over all tokens would not); the features are standardised by a
    BatchNorm without learned parameters, as MAE's probe does, so that SGD is equally well
    conditioned at every depth. At inference that is a fixed affine map: the classifier stays linear.
    """

    def __init__(self, vit: nn.Module, blocks: int, num_classes: int, grid: int = 4):
        super().__init__()
        if not all(hasattr(vit, a) for a in ("blocks", "embed_dim", "prune_intermediate_layers")):
            raise TrainerError(f"probe needs a ViT-style model with blocks, not {type(vit).__name__}")
        depth = len(vit.blocks)
        if not 1 <= blocks <= depth:
            raise TrainerError(f"--blocks must lie in [1, {depth}] for this model, got {blocks}")
        vit.prune_intermediate_layers([blocks - 1], prune_norm=True, prune_head=True)
        self.blocks, self.grid = blocks, grid
        self.body = vit.requires_grad_(False)
        features = vit.embed_dim * grid * grid
        self.norm = nn.BatchNorm1d(features, affine=False)
        self.head = nn.Linear(features, num_classes)

    def train(self, mode: bool = True) -> LinearProbe:
        super().train(mode)
        self.body.eval()  # frozen: no dropout or drop-path in it, ever
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            (tokens,) = self.body.forward_intermediates(x, indices=[self.blocks - 1], output_fmt="NCHW",
                                                        intermediates_only=True)
            cells = nn.functional.adaptive_avg_pool2d(tokens, self.grid).flatten(1)
        return self.head(self.norm(cells))


DEFAULT_MODEL = "vit_tiny_patch16_224"


def architecture(init: str, config: dict[str, Any], overrides: dict[str, Any] | None = None
                 ) -> tuple[str, dict[str, Any]]:
    """Model name and arguments of a run from ``init``: a checkpoint's own (none for another ``--model``), with
    ``--model-kwargs`` added to them; for ``scratch``, the settings' (default ``DEFAULT_MODEL``)."""
    overrides = overrides or {}
    if init == "scratch":
        return config["model"] or DEFAULT_MODEL, dict(config["model_kwargs"] or {})
    saved = read_checkpoint(init).get("config") or {}
    name = overrides.get("model") or saved.get("model")
    if name is None:
        raise TrainerError(f"{init} records no model name: give --model")
    same = overrides.get("model") is None or overrides["model"] == saved.get("model")
    kwargs = (saved.get("model_kwargs") or {}) if same else {}
    return name, {**kwargs, **(overrides.get("model_kwargs") or {})}


def create_downstream_model(kind: str, init: str, name: str, kwargs: dict[str, Any], *, num_classes: int,
                            img_size: int, drop_path: float, blocks: int | None) -> nn.Module:
    """The model a ``finetune`` (pre-trained body, or random, with a new head) or a ``probe`` trains."""
    args = dict(img_size=img_size, drop_path=0.0 if kind == "probe" else drop_path, model_kwargs=kwargs)
    if init == "scratch":
        net = create_model(name, num_classes=num_classes, **args)
    else:
        net = create_pretrained(init, name, num_classes=num_classes, **args)
    return LinearProbe(net, blocks, num_classes) if kind == "probe" else net
