"""Colour jitter on both inputs, against timm's own transform (torchvision's ColorJitter on PIL images)."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from scipy import stats
from torchvision import transforms as T

from trainer.cli import main
from trainer.data import augment_draws as D
from trainer.data import color_jitter as CJ
from trainer.data import device_augment as A
from trainer.data.transforms import create_train_transform, train_transform
from trainer.presets import GPU_EXPERIMENT, resolve

ALPHA = 1e-3
SIZE = 24


def images(channels: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` uint8 images [n, SIZE, SIZE, channels], dark-heavy as fractals are, with some pure black."""
    a = np.random.default_rng(seed).random((n, SIZE, SIZE, channels)) ** 2 * 255
    a[:, :4] = 0
    return a.astype(np.uint8)


def jitters(transform) -> list[T.ColorJitter]:
    return [t for t in getattr(transform, "transforms", ()) if isinstance(t, T.ColorJitter)]


@pytest.mark.parametrize("channels", [1, 3])
def test_the_memory_jitter_is_timms_transform_on_the_same_factors_and_order(channels, monkeypatch):
    """The device augmentation (full-image crop, no flips: only the jitter changes pixels) against timm's
    transform with torchvision's draws replaced by the device's."""
    n = 48
    a = images(channels, n)
    config = dict(img_size=SIZE, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, vflip=0.0, auto_augment=None,
                  re_prob=0.0, color_jitter=0.4)
    augmentation = A.Augmentation.from_config(config)
    batch = torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()
    p = D.draw_params(augmentation, n, SIZE, SIZE, torch.Generator().manual_seed(0), torch.device("cpu"))
    ours = A.apply_params(batch, augmentation, p).mul(0.5).add(0.5).mul(255).round()  # back to levels
    # torchvision's draw: a permutation of its four ops (hue, 3, is off and skipped) and the three factors
    drawn = iter([(torch.tensor([*order, 3]), *factors, None)
                  for order, factors in zip(p["jitter_order"].tolist(), p["jitter"].tolist(), strict=True)])
    monkeypatch.setattr(T.ColorJitter, "get_params", staticmethod(lambda *_: next(drawn)))
    timm = create_train_transform(**config, use_prefetcher=True)
    assert len(jitters(timm.rgb)) == 1
    ref = torch.stack([timm(Image.fromarray(a[i, :, :, 0] if channels == 1 else a[i])).float() for i in range(n)])
    diff = (ours[:, :channels] - ref).abs()
    # PIL truncates its float32 blend as the device does: a level apart only where float rounding differs
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3
    assert (ours[:, :channels] != batch).any(3).any(2).all()  # every sample was jittered


@pytest.mark.parametrize("channels", [1, 3])
def test_each_order_of_the_three_ops_is_pils(channels):
    """Every order, at factors far from 1, op by op through torchvision's PIL functions."""
    import torchvision.transforms.functional as TF

    orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]
    a = images(channels, len(orders), seed=1)
    factors = torch.tensor([[0.6, 1.4, 0.65], [1.38, 0.62, 1.3]]).repeat(3, 1)
    x = torch.from_numpy(a).permute(0, 3, 1, 2).float()
    dev = A.DeviceAugment(A.Augmentation(SIZE))
    ours = CJ.apply_jitter(x, factors, torch.tensor(orders), dev._gray).permute(0, 2, 3, 1)
    ops = {CJ.BRIGHTNESS: TF.adjust_brightness, CJ.CONTRAST: TF.adjust_contrast, CJ.SATURATION: TF.adjust_saturation}
    for i, order in enumerate(orders):
        im = Image.fromarray(a[i, :, :, 0] if channels == 1 else a[i])
        for op in order:
            im = ops[op](im, float(factors[i, op]))
        ref = torch.from_numpy(np.asarray(im).reshape(SIZE, SIZE, channels).astype(np.float32))
        diff = (ours[i] - ref).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3, order


@pytest.mark.parametrize("j", [0.4, 1.5])
def test_the_drawn_factors_and_order_are_torchvisions(j):
    n = 6000
    p = CJ.jitter_params(torch.rand((n, 6), generator=torch.Generator().manual_seed(0)), j)
    torch.manual_seed(0)
    jitter = T.ColorJitter(j, j, j)
    theirs = [jitter.get_params(jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) for _ in range(n)]
    for k in range(3):
        assert stats.ks_2samp(p["jitter"][:, k].numpy(), [t[1 + k] for t in theirs]).pvalue > ALPHA
        assert stats.kstest(p["jitter"][:, k].numpy(), stats.uniform(max(0, 1 - j), 1 + j - max(0, 1 - j)).cdf
                            ).pvalue > ALPHA
    ours = Counter(tuple(o) for o in p["jitter_order"].tolist())
    tv = Counter(tuple(i for i in t[0].tolist() if i != 3) for t in theirs)
    assert len(ours) == len(tv) == 6
    keys = sorted(ours)
    assert stats.chi2_contingency([[ours[k] for k in keys], [tv[k] for k in keys]]).pvalue > ALPHA


@pytest.mark.parametrize("auto_augment,color_jitter,applied", [
    ("rand-m9-mstd0.5-inc1", 0.4, None), (None, 0.7, 0.7), (None, 0.0, None), (None, None, 0.4)])
def test_jitter_applies_only_without_rand_augment_on_both_inputs(auto_augment, color_jitter, applied):
    """(None: the paper preset's 0.4.)"""
    config = resolve("pretrain", "paper", auto_augment=auto_augment or "none", color_jitter=color_jitter)
    assert config["auto_augment"] == auto_augment
    stream = train_transform(config, use_prefetcher=True)
    for path in (stream.rgb, stream.gray):
        found = jitters(path)
        assert [(t.brightness, t.contrast, t.saturation, t.hue) for t in found] == (
            [] if applied is None else [((1 - applied, 1 + applied),) * 3 + (None,)])
    augmentation = A.Augmentation.from_config(config)
    assert augmentation.color_jitter == applied
    p = D.draw_params(augmentation, 4, 32, 32, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert ("jitter" in p) == (applied is not None)


def test_the_one_channel_stream_path_equals_the_rgb_path_with_jitter():
    """PIL's Color of an "L" image is the identity and its Contrast takes the same mean: same pixels, same draws."""
    gray = Image.fromarray(images(1, 1)[0, :, :, 0])
    transform = create_train_transform(img_size=16, auto_augment=None, color_jitter=0.4, re_prob=0.0)
    for seed in range(30):
        random.seed(seed)
        torch.manual_seed(seed)
        a = transform.rgb(gray.convert("RGB"))
        random.seed(seed)
        torch.manual_seed(seed)
        assert torch.equal(a, transform(gray)), seed


def test_the_paper_presets_have_the_references_jitter_and_the_small_ones_none():
    assert resolve("pretrain", "paper")["color_jitter"] == 0.4
    assert resolve("pretrain", "cpu")["color_jitter"] is None  # its RandAugment is off: jitter would apply
    # The reference's fine-tuning passes 0.4 too (off beside its RandAugment); the gpu experiment's own
    # fine-tuning turns RandAugment off and must not start jittering.
    assert resolve("finetune", "paper")["color_jitter"] == 0.4
    gpu = resolve("finetune", "paper", **GPU_EXPERIMENT["finetune"])
    assert gpu["auto_augment"] is None and not gpu["color_jitter"]


def test_the_flag_is_taken_and_a_bad_value_is_one_line(tmp_path):
    assert "--color-jitter" in CliRunner().invoke(main, ["pretrain", "--help"]).output
    assert "--color-jitter" in CliRunner().invoke(main, ["finetune", "--help"]).output
    result = CliRunner().invoke(main, ["pretrain", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run"),
                                       "--preset", "smoke", "--color-jitter", "-0.5"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == ["Error: --color-jitter must be >= 0, got -0.5"]
    assert not (tmp_path / "run").exists()
