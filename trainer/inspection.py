"""``trainer.inspect``: what a checkpoint's body holds, against the same model at initialisation.

For one or more initialisations (a pre-training or fine-tuning checkpoint, ``init:CHECKPOINT`` for
the weights that checkpoint's run started from, or ``scratch``), built exactly as ``finetune``
builds them (same architecture, new head), it measures on a batch of downstream images:

- the norm of every weight matrix and of ``pos_embed``/``cls_token`` (``weight_norms``),
- the mean gain of every LayerNorm (``norm_gains``),
- the mean entropy of each block's attention rows, as a fraction of log(tokens) (1: uniform),
- the effective rank (Roy & Vetterli: exp of the entropy of the normalised singular values) of
  each block's token-mean features and of the head's input.

It also says which keys of a checkpoint reach the model unchanged, which are resampled and which are
fresh (``key_report``). The math is pure; reading checkpoints and images sits in ``inspect``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .errors import TrainerError

FLOAT_KEYS = ("pos_embed", "cls_token")


def weight_norms(model: nn.Module) -> dict[str, float]:
    """Frobenius norm of every weight matrix (``.weight`` of ndim >= 2) and of the position and class embeddings."""
    out = {}
    for name, p in model.state_dict().items():
        if (name.endswith(".weight") and p.ndim >= 2) or name in FLOAT_KEYS:
            out[name.removesuffix(".weight")] = float(p.float().norm())
    return out


def norm_gains(model: nn.Module) -> dict[str, float]:
    """Mean gain (LayerNorm weight) of every LayerNorm."""
    return {name: float(m.weight.detach().mean()) for name, m in model.named_modules()
            if isinstance(m, nn.LayerNorm) and m.weight is not None}


def effective_rank(features: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values) of the centred ``features`` (rows: samples)."""
    x = features.double() - features.double().mean(0, keepdim=True)
    s = torch.linalg.svdvals(x)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def attention_entropy(attn: torch.Tensor) -> float:
    """Mean entropy of attention rows (``[..., queries, keys]``, rows summing to 1) over log(keys)."""
    h = -(attn.double() * attn.double().clamp_min(1e-30).log()).sum(-1)
    return float(h.mean() / math.log(attn.shape[-1]))


@torch.no_grad()
def features_and_attention(model: nn.Module, images: torch.Tensor) -> dict[str, list[float] | float]:
    """Per block: attention entropy and effective rank of the token-mean output; and the rank of the head's input."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise TrainerError(f"inspect needs a ViT-style model with blocks, not {type(model).__name__}")
    attn_maps: dict[int, torch.Tensor] = {}
    outputs: dict[int, torch.Tensor] = {}
    hooks, fused = [], []
    for i, block in enumerate(blocks):
        fused.append(block.attn.fused_attn)
        block.attn.fused_attn = False  # the explicit path passes the attention matrix through attn_drop
        hooks.append(block.attn.attn_drop.register_forward_hook(
            lambda m, a, out, i=i: attn_maps.__setitem__(i, out)))
        hooks.append(block.register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out)))
    model.eval()
    try:
        pre_logits = model.forward_head(model.forward_features(images), pre_logits=True)
    finally:
        for h in hooks:
            h.remove()
        for block, f in zip(blocks, fused, strict=True):
            block.attn.fused_attn = f
    return {"attention_entropy": [attention_entropy(attn_maps[i]) for i in range(len(blocks))],
            "feature_rank": [effective_rank(outputs[i].mean(1)) for i in range(len(blocks))],
            "head_input_rank": effective_rank(pre_logits)}


def body_stats(model: nn.Module, images: torch.Tensor) -> dict[str, Any]:
    """Every measure above for one model on one batch of images."""
    return {"weight_norms": weight_norms(model), "norm_gains": norm_gains(model),
            **features_and_attention(model, images)}


def key_report(source: dict[str, torch.Tensor], model: nn.Module) -> dict[str, list[str]]:
    """Which of ``model``'s keys hold ``source``'s tensor unchanged (``loaded``), a tensor resampled to
    another shape (``resampled``: position or patch embeddings) or anything else (``fresh``: the new
    head, a key the source lacks); and which of ``source``'s keys the model lacks (``dropped``)."""
    from .models import classifier_names

    heads = {f"{h}.{p}" for h in classifier_names(model) for p in ("weight", "bias")}
    state = model.state_dict()
    out: dict[str, list[str]] = {"loaded": [], "resampled": [], "fresh": [], "dropped": []}
    for k, v in state.items():
        if k in source and source[k].shape == v.shape and torch.equal(source[k].to(v.dtype), v):
            out["loaded"].append(k)
        elif k in source and k not in heads and source[k].shape != v.shape:
            out["resampled"].append(k)
        else:
            out["fresh"].append(k)
    out["dropped"] = sorted(set(source) - set(state))
    return out


# I/O: checkpoints, models and images --------------------------------------------------------------------


def initial_model(checkpoint: str) -> nn.Module:
    """The model a pre-training checkpoint's run started from: same architecture, same seed."""
    from .checkpoints import read_checkpoint
    from .models import create_model

    saved = read_checkpoint(checkpoint)
    config = saved.get("config") or {}
    if "num_classes" not in saved or "seed" not in config:
        raise TrainerError(f"init:{checkpoint}: not a pre-training checkpoint (no seed or class count)")
    torch.manual_seed(config["seed"])  # as pretraining does before create_model
    return create_model(config["model"], num_classes=saved["num_classes"], img_size=config["img_size"],
                        drop_path=config["drop_path"], model_kwargs=config["model_kwargs"])


def downstream_model(init: str, *, num_classes: int, preset: str = "cpu", img_size: int | None = None,
                     seed: int = 0) -> nn.Module:
    """``init`` built as ``finetune`` builds it: the checkpoint's architecture and body, a new head."""
    from timm.utils import random_seed

    from .models import architecture, create_downstream_model
    from .presets import resolve

    config = resolve("finetune", preset, img_size=img_size, seed=seed)
    name, kwargs = architecture(init, config)
    random_seed(seed)
    return create_downstream_model("finetune", init, name, kwargs, num_classes=num_classes,
                                   img_size=config["img_size"], drop_path=config["drop_path"], blocks=None)


def downstream_images(dataset: str, img_size: int, count: int) -> tuple[torch.Tensor, int]:
    """The first ``count`` test images of ``dataset`` through the evaluation transform, and its class count."""
    from .data.downstream import load_dataset
    from .data.transforms import create_eval_transform

    data = load_dataset(dataset)
    transform = create_eval_transform(img_size=img_size)
    n = min(count, len(data.test))
    return torch.stack([transform(data.test.image(i)) for i in range(n)]), data.classes


def inspect(inits: list[str], *, dataset: str = "digits", images: int = 256, preset: str = "cpu",
            img_size: int | None = None) -> dict[str, Any]:
    """``body_stats`` of each of ``inits`` on ``images`` test images of ``dataset``; for checkpoints also
    ``key_report``. ``init:CHECKPOINT`` is that pre-training run's initial weights."""
    from timm.models import load_state_dict

    from .presets import resolve

    size = resolve("finetune", preset, img_size=img_size)["img_size"]
    batch, classes = downstream_images(dataset, size, images)
    out: dict[str, Any] = {"dataset": dataset, "images": len(batch), "img_size": size, "models": {}}
    for init in inits:
        if init.startswith("init:"):
            model = initial_model(init[5:])
            entry: dict[str, Any] = {}
        else:
            model = downstream_model(init, num_classes=classes, preset=preset, img_size=img_size)
            entry = {}
            if init != "scratch":
                entry["keys"] = key_report(load_state_dict(init, use_ema=True, weights_only=True), model)
        if getattr(model, "patch_embed", None) is not None and model.patch_embed.img_size[0] != size:
            raise TrainerError(f"{init}: the model takes {model.patch_embed.img_size[0]} px, not {size} px "
                               "(give --img-size)")
        out["models"][init] = {**entry, **body_stats(model, batch)}
    return out


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model: weight norms summed per kind of layer, mean gains, entropy and rank per block."""
    rows = []
    for name, m in result["models"].items():
        w = m["weight_norms"]
        depth = len(m["attention_entropy"])
        row = {"model": name, "pos_embed": w.get("pos_embed", float("nan")),
               "patch_embed": w.get("patch_embed.proj", float("nan")),
               "qkv": [w[f"blocks.{i}.attn.qkv"] for i in range(depth)],
               "mlp": [w[f"blocks.{i}.mlp.fc1"] + w[f"blocks.{i}.mlp.fc2"] for i in range(depth)],
               "ln_gain": [(m["norm_gains"][f"blocks.{i}.norm1"] + m["norm_gains"][f"blocks.{i}.norm2"]) / 2
                           for i in range(depth)],
               "final_ln_gain": m["norm_gains"].get("norm", float("nan")),
               "attention_entropy": m["attention_entropy"], "feature_rank": m["feature_rank"],
               "head_input_rank": m["head_input_rank"]}
        rows.append(row)
    return rows


def markdown_table(result: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    """The summary as a Markdown table (per-block lists joined by '/')."""
    labels = labels or {}

    def seq(values: list[float], fmt: str) -> str:
        return " / ".join(format(v, fmt) for v in values)

    lines = ["| model | ‖pos_embed‖ | ‖patch_embed‖ | ‖qkv‖ per block | ‖fc1‖+‖fc2‖ per block | LN gain per block "
             "| final LN gain | attention entropy per block | feature rank per block | head-input rank |",
             "| --- | ---: | ---: | --- | --- | --- | ---: | --- | --- | ---: |"]
    for r in summary_rows(result):
        lines.append(f"| {labels.get(r['model'], r['model'])} | {r['pos_embed']:.2f} | {r['patch_embed']:.2f} | "
                     f"{seq(r['qkv'], '.1f')} | {seq(r['mlp'], '.0f')} | {seq(r['ln_gain'], '.2f')} | "
                     f"{r['final_ln_gain']:.2f} | {seq(r['attention_entropy'], '.2f')} | "
                     f"{seq(r['feature_rank'], '.1f')} | {r['head_input_rank']:.1f} |")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str, labels: dict[str, str] | None = None) -> None:
    """Four panels against block index: ‖qkv‖, LN gain, attention entropy, feature rank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or {}
    rows = summary_rows(result)
    panels = [("qkv", "‖qkv weight‖"), ("ln_gain", "mean LayerNorm gain"),
              ("attention_entropy", "attention entropy / log(tokens)"),
              ("feature_rank", f"effective rank of features ({result['dataset']})")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for r in rows:
            ax.plot(range(1, len(r[key]) + 1), r[key], marker="o", label=labels.get(r["model"], r["model"]))
        ax.set(title=title, xlabel="block")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
