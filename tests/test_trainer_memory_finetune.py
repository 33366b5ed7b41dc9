"""Fine-tuning held on the device: the fine-tuning recipes drawn as timm draws them, ImageNet's mean and fill,
the evaluation transform within one grey level of timm's, downstream splits decoded at their own size, and
fine-tunes and probes through the memory input."""

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image
from test_trainer_data import one_thread  # noqa: F401 (fixture)
from test_trainer_memory import N, binomial_ok, generator, same_distribution, timm_crops
from timm.data.auto_augment import rand_augment_transform
from timm.data.random_erasing import RandomErasing

import trainer
from trainer.data import augment_draws as D
from trainer.data import device_augment as A
from trainer.data import device_eval as E
from trainer.data import memory as M
from trainer.data.downstream import ImageList, load_dataset
from trainer.data.inputs import MemoryEvalInput, MemoryInput, create_eval_input, create_train_input
from trainer.data.transforms import create_eval_transform, create_train_transform, mean_std
from trainer.distributed import Dist
from trainer.presets import resolve

CPU = torch.device("cpu")
RECIPES = {f"finetune-{p}": resolve("finetune", p) for p in ("paper", "cpu")} | {"probe-paper": resolve("probe",
                                                                                                          "paper")}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_crops_flips_and_erasing_of_each_downstream_recipe_are_timms(name):
    config = RECIPES[name]
    augmentation = A.Augmentation.from_config(config)
    p = D.draw_params(augmentation, N, 32, 32, generator(), CPU)
    ours, ref = p["crop"].double().numpy(), timm_crops(32, 32, config["scale"], config["ratio"])
    area = lambda b: b[:, 2] * b[:, 3] / (32 * 32)  # noqa: E731
    assert same_distribution(area(ours), area(ref))
    assert same_distribution(np.log(ours[:, 3] / ours[:, 2]), np.log(ref[:, 3] / ref[:, 2]))
    for key in ("hflip", "vflip"):
        assert binomial_ok(p[key].sum(), N, config[key]), key
    erased = p["erase"].sum() if "erase" in p else 0
    if config["re_prob"]:  # timm's rate: its RandomErasing, erasing at least once in this many draws
        random.seed(0)
        erase, hits = RandomErasing(probability=config["re_prob"], mode="const", device="cpu"), 0
        for _ in range(4000):
            x = torch.ones(3, 224, 224)
            erase(x)
            hits += bool((x == 0).any())
        assert binomial_ok(erased, N, hits / 4000) and binomial_ok(erased, N, config["re_prob"])
    else:
        assert erased == 0


def test_the_fine_tuning_recipe_has_timms_rand_augment_and_mixing():
    config = RECIPES["finetune-paper"]
    augmentation = A.Augmentation.from_config(config)
    spec = augmentation.rand_augment
    ra = rand_augment_transform(config["auto_augment"], {"translate_const": 100, "img_mean": (124, 116, 104)})
    assert spec.ops == tuple(op.name for op in ra.ops) and spec.layers == ra.num_layers
    assert (spec.magnitude, spec.magnitude_std, spec.prob) == (9.0, 0.5, 0.5)
    assert config["mixup"] == 0.8 and config["cutmix"] == 1.0 and config["mix_chunk"] == 96  # the loop's Mixup


def test_an_imagenet_run_fills_geometric_ops_with_the_imagenet_mean_per_channel():
    """timm fills RandAugment's rotations with (124, 116, 104) for ImageNet's mean: a rotated gray image's corner
    then holds three different values, as timm's RGB route makes them."""
    config = {**RECIPES["finetune-paper"], "img_size": 16, "re_prob": 0.0}
    augmentation = A.Augmentation.from_config(config)
    assert augmentation.fill == (124, 116, 104)
    images = torch.full((1, 1, 16, 16), 200, dtype=torch.uint8)
    p = D.draw_params(augmentation, 1, 16, 16, generator(), CPU)
    p.update(crop=torch.tensor([[0.0, 0.0, 16.0, 16.0]]), hflip=torch.tensor([False]), vflip=torch.tensor([False]))
    p["op"][:] = augmentation.rand_augment.ops.index("Rotate")
    p["apply"][:] = torch.tensor([True, False])
    p["magnitude"][:], p["sign"][:] = 10.0, 1.0  # 30 degrees
    x = A.apply_params(images, augmentation, p)
    corner = x[0, :, 0, 0] * torch.tensor(config_std := (0.229, 0.224, 0.225)) * 255 + torch.tensor(
        (0.485, 0.456, 0.406)) * 255
    assert torch.allclose(corner, torch.tensor([124.0, 116.0, 104.0]), atol=0.01), (corner, config_std)
    centre = x[0, :, 8, 8] * torch.tensor(config_std) * 255 + torch.tensor((0.485, 0.456, 0.406)) * 255
    assert torch.allclose(centre, torch.full((3,), 200.0), atol=0.01)


def test_imagenet_normalisation_on_the_device_is_timms():
    config = {**RECIPES["finetune-paper"], "img_size": 16, "re_prob": 0.0, "auto_augment": None, "color_jitter": None}
    augmentation = A.Augmentation.from_config(config)
    a = (np.random.default_rng(0).random((16, 16)) * 255).astype(np.uint8)
    p = D.draw_params(augmentation, 1, 16, 16, generator(), CPU)
    p.update(crop=torch.tensor([[0.0, 0.0, 16.0, 16.0]]), hflip=torch.tensor([False]))
    ours = A.apply_params(torch.from_numpy(a).view(1, 1, 16, 16), augmentation, p)[0]
    timm = create_eval_transform(img_size=16, mean=augmentation.mean, std=augmentation.std)(Image.fromarray(a))
    assert torch.allclose(ours, timm, atol=1e-5)


@pytest.mark.parametrize("side,channels,img_size,crop_pct,normalize", [
    (32, 1, 224, 0.875, "imagenet"), (32, 3, 224, 1.0, "0.5"), (28, 1, 32, 1.0, "0.5"), (96, 3, 32, 0.875, "0.5"),
    (40, 1, 32, 0.875, "imagenet"), (375, 3, 224, 0.875, "imagenet")])
def test_the_evaluation_transform_on_the_device_is_timms_to_the_grey_level(side, channels, img_size, crop_pct,
                                                                          normalize):
    """PIL's resize weights and its 8-bit rounding between passes, on the device: the same grey levels as timm's
    transform (the float arithmetic of the normalisation aside)."""
    rng = np.random.default_rng(side)
    arrays = (rng.random((6, side, side + 7, channels)) * 255).astype(np.uint8)  # not square: the short side leads
    config = {**resolve("finetune", "paper"), "img_size": img_size, "crop_pct": crop_pct, "normalize": normalize}
    mean_std = dict(mean=A.Augmentation.from_config(config).mean, std=A.Augmentation.from_config(config).std)
    timm = create_eval_transform(img_size=img_size, crop_pct=crop_pct, **mean_std)
    pil = [Image.fromarray(a[..., 0] if channels == 1 else a) for a in arrays]
    expected = torch.stack([timm(im) for im in pil])
    held = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    ours = E.eval_images(held, img_size=img_size, crop_pct=crop_pct, **mean_std)
    grey = ((ours - expected) * torch.tensor(mean_std["std"]).view(1, 3, 1, 1) * 255).abs()
    assert ours.shape == expected.shape == (6, 3, img_size, img_size)
    assert grey.max() < 1e-3, grey.max()


def test_a_downstream_split_is_held_at_its_own_size_and_a_split_of_mixed_sizes_is_refused():
    data = load_dataset("digits")
    held = M.decode_images(data.train, img_size=224, device=CPU)
    assert held.images.shape == (898, 1, 8, 8) and held.images.dtype == torch.uint8  # not upsampled on the host
    assert torch.equal(held.labels, torch.tensor(data.train.labels))
    assert np.array_equal(held.images[5, 0].numpy(), np.asarray(data.train.image(5)))
    mixed = ImageList([np.zeros((8, 8), np.uint8), np.zeros((9, 9), np.uint8)], [0, 1])
    with pytest.raises(M.MixedSizes, match="one size"):
        M.decode_images(mixed, img_size=32, device=CPU)
    config = {**resolve("finetune", "smoke"), "input": "auto"}
    assert create_train_input(mixed, config, Dist()).kind == "stream"  # auto falls back to the stream
    with pytest.raises(M.MixedSizes):
        create_train_input(mixed, {**config, "input": "memory"}, Dist())


def test_the_memory_input_of_a_split_gives_augmented_batches_and_its_test_split_the_eval_transform():
    data = load_dataset("mnist5k", shots=4)
    config = resolve("finetune", "paper", img_size=32)
    train = create_train_input(data.train, {**config, "input": "memory"}, Dist(), num_classes=10)
    assert isinstance(train, MemoryInput) and train.describe()["held_in_memory"]["height"] == 28
    batch = next(train.batches(batch_size=8, steps=1))
    image = train.augment(batch["image"], batch["augment"])
    assert image.shape == (8, 3, 32, 32) and image.dtype == torch.float32
    test = create_eval_input(data.test, config, Dist(), batch_size=8, like=train)
    assert isinstance(test, MemoryEvalInput)
    first = next(iter(test))
    timm = create_eval_transform(img_size=32, crop_pct=config["crop_pct"], mean=train.augmentation.mean,
                                 std=train.augmentation.std)
    expected = torch.stack([timm(data.test.image(i)) for i in range(256)])
    assert first["image"].shape == (256, 3, 32, 32) and first["label"].tolist() == data.test.labels[:256]
    grey = (first["image"] - expected) * torch.tensor(train.augmentation.std).view(1, 3, 1, 1) * 255
    assert grey.abs().max() < 1e-3


def test_the_stream_input_hands_uint8_batches_and_finishes_them_on_the_device():
    """With the same random draws, the stream's uint8 batches finished by the tail are timm's full transform."""
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((48, 48)) * 255).astype(np.uint8))
    for normalize in ("0.5", "imagenet"):
        config = {**resolve("finetune", "paper", img_size=32, normalize=normalize), "re_prob": 0.0}
        stream = create_train_input(ImageList([np.asarray(image)], [0]), {**config, "input": "stream"}, Dist())
        timm = create_train_transform(img_size=32, auto_augment=config["auto_augment"], re_prob=0.0,
                                      hflip=config["hflip"], vflip=0.0, **mean_std(config))
        random.seed(3), np.random.seed(3), torch.manual_seed(3)
        half = stream.transform(image)
        random.seed(3), np.random.seed(3), torch.manual_seed(3)
        full = timm(image)
        assert half.dtype == torch.uint8 and half.shape[0] == (1 if normalize == "0.5" else 3)
        assert torch.allclose(stream.tail(half[None])[0], full, atol=1e-5)


@pytest.mark.parametrize("kind", ["finetune", "probe"])
def test_fine_tuning_and_probing_run_through_the_memory_input(kind, tmp_path):
    run = trainer.finetune if kind == "finetune" else trainer.probe
    extra = {"blocks": 1} if kind == "probe" else {}
    results = run("scratch", "digits", tmp_path / kind, preset="smoke", shots=8, epochs=2, progress=False,
                  input="memory", **extra)
    config = json.loads((tmp_path / kind / "config.json").read_text())
    assert config["input_used"] == "memory" and config["held_in_memory"]["height"] == 8
    assert 0 <= results["top1"] <= 100 and results["last"]["epoch"] == 2
    auto = run("scratch", "digits", tmp_path / f"{kind}-auto", preset="smoke", shots=8, epochs=1, progress=False,
               **extra)
    assert auto["settings"]["input_used"] == "memory"  # 1,797 images of 8 x 8: they fit
