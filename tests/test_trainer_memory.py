"""The memory path (trainer/memory.py): its random draws against timm's CPU recipe, its batches, and
its place in ``trainer.pretrain``.

The statistical tests draw many parameter sets (cheap: no pixels) from both recipes and compare the
distributions with two-sample tests at a small significance level, so that a correct recipe fails
about once in a thousand runs while a wrong scale, a disabled flip or a wrong op set fails always.
"""

import json
import math
import random
import textwrap

import numpy as np
import pytest
import torch
from mixing import batch_mixing_stats
from PIL import Image
from scipy import stats
from test_trainer_data import one_thread, tiny  # noqa: F401 (fixtures)
from test_trainer_distributed import run_two_ranks
from timm.data.auto_augment import rand_augment_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import RandomResizedCropAndInterpolation

import trainer
from trainer import distributed
from trainer.data import augment_draws as D
from trainer.data import device_augment as A
from trainer.data import inputs
from trainer.data import memory as M
from trainer.data import rand_augment as R
from trainer.data.inputs import MemoryInput
from trainer.data.shardlists import resolve_data
from trainer.loss import create_criterion
from trainer.presets import resolve

N = 20_000
ALPHA = 1e-3
CPU = torch.device("cpu")
PAPER = resolve("pretrain", "paper")


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def same_distribution(a, b):
    """Two-sample Kolmogorov-Smirnov: True unless the samples differ at ALPHA."""
    return stats.ks_2samp(np.asarray(a, float), np.asarray(b, float)).pvalue > ALPHA


def same_frequencies(a: dict, b: dict):
    """Chi-square test of homogeneity of two count tables over the same keys."""
    keys = sorted(set(a) | set(b))
    table = np.array([[a.get(k, 0) for k in keys], [b.get(k, 0) for k in keys]])
    return stats.chi2_contingency(table).pvalue > ALPHA


def binomial_ok(hits, n, p):
    return stats.binomtest(int(hits), n, p).pvalue > ALPHA


# crops and flips ------------------------------------------------------------------------------------------


def timm_crops(height, width, scale, ratio, n=N):
    random.seed(0)
    img = Image.new("L", (width, height))
    return np.array([RandomResizedCropAndInterpolation.get_params(img, scale, ratio) for _ in range(n)], float)


@pytest.mark.parametrize("height,width", [(448, 448), (120, 400)])  # the second hits timm's fallback often
def test_crop_area_aspect_and_position_are_timms(height, width):
    scale, ratio = PAPER["scale"], PAPER["ratio"]
    ours = D.draw_crops(N, height, width, scale, ratio, generator(), CPU).double().numpy()
    ref = timm_crops(height, width, scale, ratio)
    for boxes in (ours, ref):
        assert ((boxes[:, 0] >= 0) & (boxes[:, 0] + boxes[:, 2] <= height)).all()
        assert ((boxes[:, 1] >= 0) & (boxes[:, 1] + boxes[:, 3] <= width)).all()
    area = lambda b: b[:, 2] * b[:, 3] / (height * width)  # noqa: E731
    aspect = lambda b: np.log(b[:, 3] / b[:, 2])  # noqa: E731
    assert same_distribution(area(ours), area(ref))
    assert same_distribution(aspect(ours), aspect(ref))
    assert same_distribution(ours[:, 0], ref[:, 0]) and same_distribution(ours[:, 1], ref[:, 1])


@pytest.mark.parametrize("key", ["hflip", "vflip"])
def test_both_flips_happen_at_the_recipes_rate(key):
    recipe = A.Augmentation.from_config(PAPER)
    p = D.draw_params(recipe, N, 64, 64, generator(), CPU)
    assert binomial_ok(p[key].sum(), N, PAPER[key])


@pytest.mark.parametrize("key,axis", [("hflip", 3), ("vflip", 2)])
def test_a_drawn_flip_mirrors_the_image(key, axis):
    recipe = A.Augmentation(img_size=16, hflip=0.0, vflip=0.0, re_prob=0.0)
    images = (torch.arange(4 * 16 * 16) % 251).to(torch.uint8).view(4, 1, 16, 16)
    p = D.draw_params(recipe, 4, 16, 16, generator(), CPU)
    p["crop"] = torch.tensor([[0.0, 0.0, 16.0, 16.0]]).repeat(4, 1)  # the whole image at its own size
    plain = A.apply_params(images, recipe, p)
    assert torch.allclose(plain[:, :1], images.float() / 127.5 - 1, atol=1e-4)  # the identity crop is exact
    p[key] = torch.tensor([True, False, True, False])
    flipped = A.apply_params(images, recipe, p)
    assert torch.allclose(flipped[0::2], plain[0::2].flip(axis), atol=1e-4)
    assert torch.equal(flipped[1::2], plain[1::2])


def test_a_crop_samples_its_box():
    recipe = A.Augmentation(img_size=8, hflip=0.0, vflip=0.0, re_prob=0.0)
    images = torch.zeros(1, 1, 32, 32, dtype=torch.uint8)
    images[0, 0, 8:16, 16:24] = 200  # an 8 x 8 square
    p = D.draw_params(recipe, 1, 32, 32, generator(), CPU)
    p["crop"] = torch.tensor([[8.0, 16.0, 8.0, 8.0]])
    assert torch.allclose(A.apply_params(images, recipe, p), torch.full((1, 3, 8, 8), 200 / 127.5 - 1), atol=1e-4)


# RandAugment ---------------------------------------------------------------------------------------------


def timm_rand_augment_draws(spec, n=N):
    """(op name, argument) of every op that timm's RandAugment applies to ``n`` images."""
    random.seed(0)
    np.random.seed(0)
    ra = rand_augment_transform(spec, {"translate_const": 100, "img_mean": 128})
    applied = []
    for op in ra.ops:
        op.aug_fn = lambda img, *args, _name=op.name, **kwargs: applied.append((_name, args[0] if args else 0.0))
    img = Image.new("L", (4, 4))
    for _ in range(n):
        ra(img)
    return applied


def our_rand_augment_draws(spec, n=N, ops=None):
    recipe = A.Augmentation(img_size=8, rand_augment=R.RandAugmentSpec.parse(spec), re_prob=0.0)
    p = D.draw_params(recipe, n, 8, 8, generator(), CPU)
    names = ops or recipe.rand_augment.ops
    applied = []
    for layer in range(recipe.rand_augment.layers):
        for k, name in enumerate(names):
            chosen = p["apply"][:, layer] & (p["op"][:, layer] == k)
            args = R.level(name, p["magnitude"][chosen, layer], p["sign"][chosen, layer])
            applied += [(name, float(a)) for a in args]
    return applied


def by_op(draws):
    out = {}
    for name, arg in draws:
        out.setdefault(name, []).append(arg)
    return out


@pytest.mark.parametrize("spec", ["rand-m9-mstd0.5-inc1", "rand-m7-n3-mstd0"])
def test_rand_augment_op_frequencies_and_arguments_are_timms(spec):
    ours, ref = by_op(our_rand_augment_draws(spec)), by_op(timm_rand_augment_draws(spec))
    assert set(ours) == set(ref)
    assert same_frequencies({k: len(v) for k, v in ours.items()}, {k: len(v) for k, v in ref.items()})
    for name in ref:
        a, b = np.round(ours[name], 6), np.round(ref[name], 6)  # float32 and float64 of the same values
        if len(set(b)) <= 12:  # discrete arguments (bits, thresholds, constants): the same values, same odds
            values = sorted(set(a) | set(b))
            assert same_frequencies({v: (a == v).sum() for v in values}, {v: (b == v).sum() for v in values}), name
        else:
            assert same_distribution(a, b), name


def test_an_image_can_get_the_same_op_twice_as_in_timm():
    """timm chooses each layer's op with replacement; Kornia's RandAugment would not."""
    random.seed(0)
    np.random.seed(0)
    ra = rand_augment_transform("rand-m9-mstd0.5-inc1", {"translate_const": 100, "img_mean": 128})
    chosen = []
    for op in ra.ops:
        op.__class__ = type("Recorded", (type(op),), {"__call__": lambda self, img: chosen.append(self.name) or img})
    img, twice_timm = Image.new("L", (4, 4)), 0
    for _ in range(N):
        chosen.clear()
        ra(img)
        twice_timm += chosen[0] == chosen[1]
    recipe = A.Augmentation(img_size=8, rand_augment=R.RandAugmentSpec.parse("rand-m9-mstd0.5-inc1"), re_prob=0.0)
    op = D.draw_params(recipe, N, 8, 8, generator(), CPU)["op"]
    twice = int((op[:, 0] == op[:, 1]).sum())
    assert same_frequencies({"same": twice, "other": N - twice}, {"same": twice_timm, "other": N - twice_timm})


def test_the_magnitude_is_noisy_and_clipped_as_timms():
    recipe = A.Augmentation(img_size=8, rand_augment=R.RandAugmentSpec.parse("rand-m9-mstd0.5-inc1"), re_prob=0.0)
    m = D.draw_params(recipe, N, 8, 8, generator(), CPU)["magnitude"].flatten().numpy()
    reference = np.clip(np.random.default_rng(0).normal(9, 0.5, m.size), 0, 10)
    assert same_distribution(m, reference) and m.max() <= 10


def test_every_rand_augment_op_runs_on_a_batch_and_keeps_8_bit_values():
    recipe = A.Augmentation(img_size=16, rand_augment=R.RandAugmentSpec.parse("rand-m9-mstd0.5-inc1"), re_prob=0.0)
    spec = recipe.rand_augment
    images = torch.randint(0, 256, (len(spec.ops), 1, 16, 16), generator=generator(), dtype=torch.uint8)
    p = D.draw_params(recipe, len(spec.ops), 16, 16, generator(), CPU)
    p["op"] = torch.arange(len(spec.ops)).view(-1, 1).repeat(1, spec.layers)
    p["apply"] = torch.tensor([True, False]).repeat(len(spec.ops), 1)  # each sample: its own op, once
    x = A.DeviceAugment(recipe).rand_augment(images.float(), p)
    assert torch.equal(x, x.round()) and x.min() >= 0 and x.max() <= 255
    changed = (x != images.float()).flatten(1).any(1)
    unchanged = {spec.ops[i] for i in range(len(spec.ops)) if not changed[i]}
    assert unchanged == {"ColorIncreasing"}  # colour of a grayscale image is itself, as in PIL
    invert = spec.ops.index("Invert")
    assert torch.equal(x[invert], 255 - images[invert].float())


def one_op(name, images, magnitude, sign, spec="rand-m9-mstd0.5-inc1"):
    """``images`` (0-255 floats [B, C, H, W]) through the batched RandAugment with op ``name`` in the first
    layer of every sample, at ``magnitude`` and ``sign`` ([B]), and no op in the second."""
    recipe = A.Augmentation(img_size=images.shape[-1], rand_augment=R.RandAugmentSpec.parse(spec), re_prob=0.0)
    n, layers = len(images), recipe.rand_augment.layers
    p = {"op": torch.full((n, layers), recipe.rand_augment.ops.index(name)),
         "apply": torch.tensor([True] + [False] * (layers - 1)).repeat(n, 1),
         "magnitude": magnitude.view(-1, 1).repeat(1, layers), "sign": sign.view(-1, 1).repeat(1, layers)}
    return A.DeviceAugment(recipe).rand_augment(images, p)


@pytest.mark.parametrize("name,sign", [("AutoContrast", 1), ("Equalize", 1), ("Invert", 1), ("PosterizeIncreasing", 1),
                                       ("SolarizeIncreasing", 1), ("SolarizeAdd", 1), ("ContrastIncreasing", 1),
                                       ("ContrastIncreasing", -1), ("BrightnessIncreasing", -1),
                                       ("SharpnessIncreasing", 1), ("SharpnessIncreasing", -1)])
def test_each_colour_op_is_timms_pil_op_within_one_level(name, sign):
    """PIL blends in floats and truncates; the batched ops round: at most one level apart."""
    from timm.data.auto_augment import LEVEL_TO_ARG, NAME_TO_OP

    a = (np.random.default_rng(0).random((3, 1, 40, 40)) ** 2 * 230).astype(np.uint8)
    magnitude, signs = torch.tensor([9.0, 6.0, 3.0]), torch.full((3,), float(sign))
    arg = R.level(name, magnitude, signs)
    ours = one_op(name, torch.from_numpy(a).float(), magnitude, signs)[:, 0].numpy()
    for i in range(3):  # the level rules are compared above; here the ops, at the same argument
        whole = name.startswith(("Posterize", "Solarize"))
        args = () if LEVEL_TO_ARG[name] is None else (int(arg[i]) if whole else float(arg[i]),)
        ref = np.asarray(NAME_TO_OP[name](Image.fromarray(a[i, 0]), *args))
        assert np.abs(ours[i] - ref).max() <= 1, (name, float(magnitude[i]))


@pytest.mark.parametrize("name", ["AutoContrast", "Equalize", "ContrastIncreasing", "ColorIncreasing",
                                  "SharpnessIncreasing", "PosterizeIncreasing"])
def test_each_colour_op_of_a_colour_image_is_timms_pil_op_within_one_level(name):
    from timm.data.auto_augment import LEVEL_TO_ARG, NAME_TO_OP

    a = (np.random.default_rng(1).random((3, 24, 24, 3)) ** 2 * 230).astype(np.uint8)
    magnitude, signs = torch.tensor([9.0, 6.0, 3.0]), torch.tensor([1.0, -1.0, 1.0])
    arg = R.level(name, magnitude, signs)
    ours = one_op(name, torch.from_numpy(a).permute(0, 3, 1, 2).float(), magnitude, signs).permute(0, 2, 3, 1)
    for i in range(3):
        whole = name.startswith(("Posterize", "Solarize"))
        args = () if LEVEL_TO_ARG[name] is None else (int(arg[i]) if whole else float(arg[i]),)
        ref = np.asarray(NAME_TO_OP[name](Image.fromarray(a[i]), *args))
        assert np.abs(ours[i].numpy() - ref).max() <= 1, (name, float(magnitude[i]))


def _pil_affine(coefficients):
    return lambda im: im.transform(im.size, Image.AFFINE, coefficients, resample=Image.BICUBIC, fillcolor=128)


def _pil_rotate(degrees):
    return lambda im: im.rotate(degrees, resample=Image.BICUBIC, fillcolor=128)


@pytest.mark.parametrize("name,arg,pil", [("TranslateXRel", 0.4, _pil_affine((1, 0, 16, 0, 1, 0))),
                                          ("TranslateYRel", -0.25, _pil_affine((1, 0, 0, 0, 1, -10))),
                                          ("Rotate", 90.0, _pil_rotate(90)), ("Rotate", -90.0, _pil_rotate(-90))])
def test_geometric_ops_map_pixels_as_pil_does(name, arg, pil):
    """Whole-pixel moves, where interpolation plays no part, are exact: the coordinate conventions agree."""
    a = (np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)
    x = torch.from_numpy(a).float().view(1, 1, 40, 40)
    ours = R.warp(x, A.geometry(name, torch.tensor([arg])), fill=R.FILL).clamp(0, 255).round()
    assert np.array_equal(ours[0, 0].numpy(), np.asarray(pil(Image.fromarray(a))))


def test_each_sample_gets_its_own_ops_and_nothing_of_the_others():
    """A batch of samples that drew different ops equals each sample augmented alone: the batched lookup tables,
    blends and warps keep to their samples, and the identity of one op is exact for the samples of another."""
    recipe = A.Augmentation(img_size=16, rand_augment=R.RandAugmentSpec.parse("rand-m9-mstd0.5-inc1"), re_prob=0.0)
    images = torch.randint(0, 256, (64, 1, 16, 16), generator=generator(), dtype=torch.uint8).float()
    p = D.draw_params(recipe, 64, 16, 16, generator(1), CPU)
    augment = A.DeviceAugment(recipe)
    batched = augment.rand_augment(images, p)
    alone = torch.cat([augment.rand_augment(images[i:i + 1], {k: v[i:i + 1] for k, v in p.items()})
                       for i in range(64)])
    assert torch.equal(batched, alone)
    untouched = ~p["apply"].any(1)
    assert untouched.any() and torch.equal(batched[untouched], images[untouched])
    assert (batched != images).flatten(1).any(1).float().mean() > 0.5  # most samples were changed


@pytest.mark.parametrize("side,channels,size", [(512, 1, 224), (512, 1, 32), (32, 3, 224), (28, 1, 32), (8, 1, 32),
                                                (40, 3, 24)])
def test_the_crop_is_timms_random_resized_crop_within_one_grey_level(side, channels, size, monkeypatch):
    """On the same boxes and flips, the held image cropped and resized on the device gives the grey levels of
    timm's RandomResizedCrop (PIL's resize of the box) and flips, shrinking (512 px shards) and enlarging
    (downstream sets of 8-32 px)."""
    from torchvision.transforms import functional as TF

    n = 12
    rng = np.random.default_rng(side + channels)
    arrays = (rng.random((n, side, side, channels)) ** 2 * 255).astype(np.uint8)
    recipe = A.Augmentation(img_size=size, re_prob=0.0)
    p = D.draw_params(recipe, n, side, side, generator(side), CPU)
    held = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    ours = A.DeviceAugment(recipe).crop(held, p).permute(0, 2, 3, 1).numpy()
    timm = RandomResizedCropAndInterpolation(size, scale=recipe.scale, ratio=recipe.ratio, interpolation="bicubic")
    for i in range(n):
        box = tuple(int(v) for v in p["crop"][i])
        monkeypatch.setattr(timm, "get_params", lambda *args, _box=box: _box)
        image = timm(Image.fromarray(arrays[i, ..., 0] if channels == 1 else arrays[i]))
        image = TF.hflip(image) if p["hflip"][i] else image
        image = TF.vflip(image) if p["vflip"][i] else image
        ref = np.asarray(image).reshape(size, size, channels).astype(float)
        assert np.abs(ours[i] - ref).max() <= 1, (box, np.abs(ours[i] - ref).max())


# erasing and mixing ----------------------------------------------------------------------------------------


def test_erasing_rate_and_area_are_timms():
    s, n = 48, 5000
    random.seed(0)
    erase = RandomErasing(probability=0.5, mode="const", device="cpu")
    ref = []
    for _ in range(n):
        x = torch.ones(3, s, s)
        erase(x)
        ref.append(float((x == 0).sum() / 3) / (s * s))
    recipe = A.Augmentation(img_size=s, re_prob=0.5)
    p = D.draw_params(recipe, n, s, s, generator(), CPU)
    box = p["erase_box"]
    ours = torch.where(p["erase"], box[:, 2] * box[:, 3] / (s * s), 0.0).numpy()
    assert binomial_ok(p["erase"].sum(), n, np.mean(np.array(ref) > 0))
    assert binomial_ok(p["erase"].sum(), n, 0.5)
    assert same_distribution(ours[ours > 0], np.array(ref)[np.array(ref) > 0])


def test_erased_pixels_are_noise_in_the_box():
    recipe = A.Augmentation(img_size=32, hflip=0.0, vflip=0.0, re_prob=1.0)
    images = torch.full((2, 1, 32, 32), 255, dtype=torch.uint8)
    p = D.draw_params(recipe, 2, 32, 32, generator(), CPU)
    p["erase_box"] = torch.tensor([[2.0, 3.0, 10.0, 12.0], [0.0, 0.0, 5.0, 5.0]])
    p["erase"] = torch.tensor([True, False])
    x = A.apply_params(images, recipe, p)
    assert (x[0, :, 2:12, 3:15] != 1).all() and abs(float(x[0, :, 2:12, 3:15].std()) - 1) < 0.2
    x[0, :, 2:12, 3:15] = 1
    assert (x == 1).all()


def test_mixup_and_cutmix_lambdas_on_memory_batches():
    """The loop's mixing (create_criterion's) on the memory path's float batches: mixup's lambda is
    Beta(0.8, 0.8), CutMix is chosen half the time, and the soft targets carry the same lambda."""
    k, batch, rounds = 10, 4, 8000
    mixup, _ = create_criterion({**PAPER, "smoothing": 0.0}, k)
    torch.manual_seed(0)
    values = torch.tensor([10.0, 20.0, 30.0, 40.0])
    labels = torch.tensor([0, 1, 2, 3])
    lams, cut = [], 0
    for _ in range(rounds):
        x = values.view(-1, 1, 1, 1).expand(batch, 3, 8, 8).clone()
        x, t = mixup(x, labels)
        lam = float(t[0, 0])  # sample 0 mixes with sample 3 (the batch flipped)
        if len(torch.unique(x[0])) > 1 or lam == 1:  # a pasted box (perhaps an empty one): CutMix
            cut += 1
            assert math.isclose(float((x[0] == 10).float().mean()), lam, abs_tol=1e-6)
        else:
            assert math.isclose(float(x[0, 0, 0, 0]), lam * 10 + (1 - lam) * 40, rel_tol=1e-5)
            lams.append(lam)
    assert binomial_ok(cut, rounds, PAPER["mixup_switch"])
    assert stats.kstest(lams, stats.beta(PAPER["mixup"], PAPER["mixup"]).cdf).pvalue > ALPHA


# batches: passes, ranks, resume ---------------------------------------------------------------------------


def held(n=40, size=8):
    images = torch.randint(0, 256, (n, 1, size, size), generator=generator(), dtype=torch.uint8)
    return M.MemoryData(images, torch.arange(n) % 5)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_sample_once_per_pass_and_ranks_disjoint(world):
    n, batch = 40, 4
    per_pass = n // (batch * world)
    shares = [list(M.MemoryLoader(held(n), A.Augmentation(img_size=8), batch_size=batch, steps=per_pass, rank=r,
                                  world=world).indices()) for r in range(world)]
    seen = [torch.cat(s).tolist() for s in shares]
    flat = [i for s in seen for i in s]
    assert len(flat) == len(set(flat)) == per_pass * batch * world  # disjoint, no repeats within a pass
    assert len(flat) > n - batch * world  # only the last partial batch is dropped
    for s in shares:
        assert all(len(set(b.tolist())) == batch for b in s)  # distinct images in every batch


def continued(n, *, batch_size, steps, start=0, rank=0, world=1, seed=0, pass_end="continue"):
    """The sample ids of each batch of a ``BatchOrder`` over ``n`` samples."""
    order = M.BatchOrder(n, batch_size=batch_size, steps=steps, start=start, rank=rank, world=world, seed=seed,
                         pass_end=pass_end)
    return list(order)


@pytest.mark.parametrize("n,batch", [(100, 64), (12, 8), (40, 7), (64, 64)])
def test_passes_that_continue_show_every_sample_once_per_pass_and_none_twice_in_a_batch(n, batch):
    steps = 101
    batches = continued(n, batch_size=batch, steps=steps, seed=3)
    assert all(len(b) == len(set(b)) == batch for b in batches)
    flat = sum(batches, [])
    for p in range(len(flat) // n):
        assert sorted(flat[p * n:(p + 1) * n]) == list(range(n))
    # Exposure over the run: every sample (here every class: one image each) as often as any other, to one.
    counts = np.bincount(flat, minlength=n)
    assert counts.max() - counts.min() <= 1
    # Dropping the last partial batch, 100 images at batch 64 are seen unevenly: 36 of them each pass are not.
    if (n, batch) == (100, 64):
        dropped = np.bincount(sum(continued(n, batch_size=batch, steps=steps, pass_end="drop"), []), minlength=n)
        assert dropped.max() - dropped.min() > 10


def test_passes_that_continue_resume_where_they_were_cut():
    whole = continued(100, batch_size=64, steps=40, seed=1)
    for start in (1, 2, 3, 17, 39):
        assert continued(100, batch_size=64, steps=40 - start, start=start, seed=1) == whole[start:]


@pytest.mark.parametrize("world", [2, 3])
def test_passes_that_continue_keep_ranks_disjoint_and_equal(world):
    n, batch, steps = 101, 10, 30
    ranks = [sum(continued(n, batch_size=batch, steps=steps, rank=r, world=world), []) for r in range(world)]
    share = n // world
    for p in range(steps * batch // share):
        passes = [set(r[p * share:(p + 1) * share]) for r in ranks]
        assert all(len(s) == share for s in passes)
        assert len(set().union(*passes)) == share * world  # disjoint


def test_avoiding_moves_only_what_it_must():
    order = torch.tensor([5, 0, 3, 1, 4, 2, 6])
    moved = M.avoiding(order, torch.tensor([0, 4]), 3, 7)
    assert moved.tolist() == [5, 1, 3, 0, 4, 2, 6]  # 0 in the head trades places with 1, the first one free after it
    assert not set(moved[:3].tolist()) & {0, 4}


# Ops that make the host wait for a GPU (or copy from the host) in the middle of a step.
BLOCKING = ("_local_scalar_dense", "item", "nonzero", "tolist", "lift_fresh", "_to_copy", "copy_", "masked_select")


def test_batch_order_makes_no_op_that_waits_for_the_device():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.__name__)
            return func(*args, **(kwargs or {}))

    for pass_end in ("drop", "continue"):
        order = M.BatchOrder(100, batch_size=64, steps=12, start=5, seed=2, pass_end=pass_end)
        with Ops() as ops:
            batches = list(order.indices())
        assert len(batches) == 12 and ops.names
        assert not [name for name in ops.names if name.split(".")[0] in BLOCKING], pass_end


def memory_batches(n, *, batch_size, steps, rank=0, world=1):
    """The sample ids of each batch the memory path draws from ``n`` held images."""
    loader = M.MemoryLoader(held(n, 2), A.Augmentation(img_size=2), batch_size=batch_size, steps=steps, rank=rank,
                            world=world)
    return [b.tolist() for b in loader.indices()]


def test_memory_batches_mix_the_whole_dataset_as_the_stream_path_must():
    # The stream path's statistics (tests/mixing.py), on the paper's 1000 images at batch 256.
    stats = batch_mixing_stats(memory_batches(1000, batch_size=256, steps=9), num_samples=1000, pass_size=768)
    assert stats["distinct"] == [256] * 9 and stats["out_of_range"] == 0
    assert min(stats["residue_p"].values()) > 1e-4, stats["residue_p"]
    assert stats["pass_distinct"] == [768] * 3
    ranks = [memory_batches(1000, batch_size=100, steps=10, rank=r, world=2) for r in (0, 1)]
    for p in (0, 1):
        shares = [set(sum(batches[5 * p:5 * p + 5], [])) for batches in ranks]
        assert len(shares[0]) == len(shares[1]) == 500 and not shares[0] & shares[1]


def test_passes_are_reshuffled_and_a_resumed_run_continues_the_sequence():
    loader = lambda start, steps: M.MemoryLoader(held(), A.Augmentation(img_size=8), batch_size=8, steps=steps,  # noqa: E731
                                                 start=start, seed=5)
    whole = [b.tolist() for b in loader(0, 15).indices()]
    assert whole[:5] != whole[5:10]  # 5 batches per pass, each pass its own permutation
    assert sorted(sum(whole[:5], [])) == sorted(sum(whole[5:10], [])) == list(range(40))
    assert [b.tolist() for b in loader(7, 8).indices()] == whole[7:]


def test_batches_are_augmented_normalised_and_labelled():
    data = held(16, 40)
    config, d = {**PAPER, "img_size": 24}, distributed.Dist()
    memory = MemoryInput(data, config, d, why="test", num_classes=5)
    for b in memory.batches(batch_size=8, steps=3):
        assert torch.equal(b["image"], data.images[b["index"]])  # augmented in the step, with these parameters
        image = memory.augment(b["image"], b["augment"])
        assert image.shape == (8, 3, 24, 24) and image.dtype == torch.float32
        assert torch.equal(b["label"], data.labels[b["index"]])
    with pytest.raises(trainer.errors.TrainerError, match="outside"):
        MemoryInput(data, config, d, why="test", num_classes=3)


# decoding, the auto rule, workers and threads -----------------------------------------------------------------


def test_decoding_reads_every_sample_once(tiny):  # noqa: F811
    source = resolve_data(str(tiny))
    data = M.decode_source(source, img_size=16, device=CPU)
    assert data.images.shape == (12, 1, 64, 64) and data.images.dtype == torch.uint8  # held whole: 64 <= 4 x 16
    assert M.decode_source(source, img_size=8, device=CPU).images.shape == (12, 1, 32, 32)  # shrunk to 4 x 8
    assert sorted(data.labels.tolist()) == list(range(12))


def test_auto_takes_memory_only_when_the_data_fits(tiny, monkeypatch):  # noqa: F811
    source = resolve_data(str(tiny))
    need = M.held_bytes(source, 224)
    assert need == 12 * 64 * 64
    monkeypatch.setattr(inputs, "free_memory", lambda device: 10 * need)
    assert inputs.choose_input("auto", source, img_size=224, device=CPU)[0] == "memory"
    monkeypatch.setattr(inputs, "free_memory", lambda device: 2 * need)
    kind, why = inputs.choose_input("auto", source, img_size=224, device=CPU)
    assert kind == "stream" and why.startswith("auto: 1 x 0 MiB decoded >= 25% of the")
    assert inputs.choose_input("stream", source, img_size=224, device=CPU) == ("stream", "--input stream")


@pytest.mark.parametrize("device,loader,expected", [("cuda", True, (15, 1)), ("cuda", False, (0, 15)),
                                                    ("cpu", True, (4, 12)), ("cpu", False, (0, 15))])
def test_workers_and_threads_never_oversubscribe_the_cores(device, loader, expected):
    workers, threads = distributed.plan_cores(device, loader=loader, cores=16)
    assert (workers, threads) == expected and workers + threads <= 16


def test_a_stream_loader_in_process_keeps_a_core_for_itself():
    assert distributed.plan_cores("cpu", loader=True, workers=0, cores=2) == (0, 1)


def test_pretraining_through_memory_records_its_choice(tiny, tmp_path, one_thread):  # noqa: F811
    summary = trainer.pretrain(str(tiny), tmp_path / "run", preset="smoke", samples=64, input="memory",
                               progress=False)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert summary["steps"] == 4 and config["input_used"] == "memory"
    assert config["workers_per_process"] == 0 and config["held_in_memory"]["samples"] == 12
    assert config["threads"] >= 1 and config["cores"] >= 1


def test_a_dataset_smaller_than_a_batch_is_read_pass_after_pass():
    loader = M.MemoryLoader(held(3), A.Augmentation(img_size=8), batch_size=4, steps=6, seed=1)
    stream = torch.cat(list(loader.indices())).tolist()
    assert [sorted(stream[i:i + 3]) for i in range(0, 24, 3)] == [[0, 1, 2]] * 8
    assert torch.cat(list(M.MemoryLoader(held(3), A.Augmentation(img_size=8), batch_size=4, steps=3, start=3,
                                         seed=1).indices())).tolist() == stream[12:]


def test_the_stream_path_is_still_taken_when_asked(tiny, tmp_path, one_thread):  # noqa: F811
    trainer.pretrain(str(tiny), tmp_path / "run", preset="smoke", samples=64, input="stream", progress=False)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["input_used"] == "stream" and config["held_in_memory"] is None
    assert config["workers_per_process"] == 0  # the smoke preset's setting wins


# Each rank records the indices of one pass of its memory loader, then both pre-train through memory.
TWO_RANKS = textwrap.dedent("""
    import json, sys
    import torch
    from trainer import distributed
    from trainer.data import device_augment, memory
    from trainer.cli import main
    from trainer.data.shardlists import resolve_data

    data, out, indices_file = sys.argv[1:4]
    torch.set_num_threads(1)
    d = distributed.setup("cpu")
    held = memory.decode_source(resolve_data(data), img_size=8, device=d.device)
    loader = memory.MemoryLoader(held, device_augment.Augmentation(img_size=8), batch_size=2, steps=3, rank=d.rank,
                                 world=d.world)
    everyone = distributed.gather([i for b in loader.indices() for i in b.tolist()], d)
    if d.main:
        with open(indices_file, "w") as f:
            json.dump(everyone, f)
    code = 0
    try:
        main(["pretrain", "--data", data, "--out", out, "--preset", "smoke", "--samples", "64", "--input",
              "memory", "--no-progress"])
    except SystemExit as e:
        code = e.code
    distributed.teardown(distributed.Dist(owns_group=True))
    sys.exit(code)
""")


def test_two_gloo_processes_draw_disjoint_shares_and_pretrain_through_memory(tiny, tmp_path):  # noqa: F811
    out, indices_file = tmp_path / "run", tmp_path / "indices.json"
    run_two_ranks(TWO_RANKS, tmp_path, tiny, out, indices_file)
    first, second = json.loads(indices_file.read_text())
    assert len(first) == len(second) == 6 and sorted(first + second) == list(range(12))  # one pass, split
    config = json.loads((out / "config.json").read_text())
    assert config["processes"] == 2 and config["input_used"] == "memory" and config["total_steps"] == 4


@pytest.mark.parametrize("flag", ["--input", "--data-path"])
def test_an_unknown_input_is_one_line_and_writes_nothing(tiny, tmp_path, flag):  # noqa: F811
    from click.testing import CliRunner

    from trainer.cli import main

    result = CliRunner().invoke(main, ["pretrain", "--data", str(tiny), "--out", str(tmp_path / "run"), "--preset",
                                       "smoke", flag, "disk"])
    assert result.exit_code != 0 and result.output.strip().splitlines() == [
        f"Error: Invalid value for '{flag}': 'disk' is not one of 'stream', 'memory', 'auto'."]
    assert not (tmp_path / "run" / "config.json").exists()


def test_the_old_name_of_the_input_setting_still_works_with_a_warning(tiny, tmp_path):  # noqa: F811
    from click.testing import CliRunner

    from trainer.cli import main

    result = CliRunner().invoke(main, ["pretrain", "--data", str(tiny), "--out", str(tmp_path / "cli"), "--preset",
                                       "smoke", "--samples", "32", "--data-path", "memory", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Warning: --data-path is deprecated; use --input" in result.output
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["input_used"] == "memory"
    with pytest.warns(DeprecationWarning, match="data_path is deprecated; use input"):
        trainer.pretrain(str(tiny), tmp_path / "py", preset="smoke", samples=32, data_path="stream", progress=False)
    assert json.loads((tmp_path / "py" / "config.json").read_text())["input_used"] == "stream"
