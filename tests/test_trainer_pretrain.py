"""trainer.pretrain and ``python -m trainer pretrain``: a smoke run that learns, its run directory,
interruption and --resume, streaming over HTTP, and every user error as one line."""

import inspect
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import timm
import torch
from click.testing import CliRunner
from test_trainer_data import one_thread, render_tiny, serve, served, tiny  # noqa: F401 (fixtures)
from timm.scheduler import CosineLRScheduler

import trainer
from trainer.cli import main
from trainer.settings import BY_NAME, RENAMED, defaults

# Under pytest-xdist, on one worker: the smoke run (a module fixture) trains once.
pytestmark = pytest.mark.xdist_group("pretrain")

# The smoke preset keeps the paper's heavy augmentation, under which a 2-block ViT needs far more
# than a test's 150 steps to leave chance level; these runs turn it off to see the loss fall.
LIGHT = dict(auto_augment="none", re_prob=0.0, mixup=0.0, cutmix=0.0, smoothing=0.0, scale=(0.5, 1.0))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    # The tiny set drawn as points: the reference's speckled patches at 64 px are not told apart by the
    # smoke model within 200 steps (measured: the loss stays at ln 12, where points reach 1.8), and this
    # test is about the trainer learning, not about that drawing.
    from fracbuild.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "manifests" / "1p-frac.json")
    recipe["perturb"]["classes"] = 12
    recipe["render"].update(size=64, points=3000, draw="point")
    data = render_tiny(recipe, tmp_path_factory.mktemp("data") / "points")
    out = tmp_path_factory.mktemp("runs") / "smoke"
    summary = trainer.pretrain(str(data), out, preset="smoke", samples=3200, progress=False, **LIGHT)
    return out, summary


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_smoke_pretraining_learns_and_writes_its_run(smoke_run):
    out, summary = smoke_run
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "smoke" and config["num_classes"] == 12 and config["total_steps"] == 200
    assert config["dataset"] == {"name": "1p-frac", "samples": 12, "shards": 6} and config["auto_augment"] is None
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(5, 201, 5))
    for m in metrics:
        assert {"step", "epoch", "loss", "lr", "samples_per_s", "data_wait", "corrupt_shards"} <= set(m)
        assert m["samples_per_s"] > 0 and 0 <= m["data_wait"] <= 1 and m["corrupt_shards"] == 0
    assert metrics[-1]["epoch"] == round(200 * 16 / 12, 4)  # passes continue: 16 of 12 samples a step
    losses = [m["loss"] for m in metrics]
    # Untrained, the logged loss wanders within about +-0.03 of ln(12) = 2.48.
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2, losses
    assert summary["steps"] == 200 and summary["loss"] == losses[-1]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_checkpoint_holds_the_run_and_loads_with_timm(smoke_run):
    out, _ = smoke_run
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 200 and ckpt["epoch"] == pytest.approx(200 * 16 / 12) and ckpt["num_classes"] == 12
    assert {"state_dict", "optimizer", "scheduler", "scaler", "config"} <= set(ckpt)
    config = ckpt["config"]
    model = timm.create_model(config["model"], num_classes=12, img_size=config["img_size"], **config["model_kwargs"])
    timm.models.load_checkpoint(model, str(out / "checkpoint.pt"), strict=True)
    for name, value in model.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][name]), name


def test_an_ema_run_saves_ema_weights_that_timm_prefers(tiny, tmp_path):  # noqa: F811
    trainer.pretrain(str(tiny), tmp_path, preset="smoke", samples=160, ema=0.9, progress=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    ema, raw = ckpt["state_dict_ema"], ckpt["state_dict"]
    assert set(ema) == set(raw) and not torch.equal(ema["head.weight"], raw["head.weight"])
    config = ckpt["config"]
    model = timm.create_model(config["model"], num_classes=12, img_size=32, **config["model_kwargs"])
    timm.models.load_checkpoint(model, str(tmp_path / "checkpoint.pt"))
    assert torch.equal(model.state_dict()["head.weight"], ema["head.weight"])


def expected_lr(config, step):
    """The learning rate an uninterrupted run has after ``step`` steps, from timm's scheduler itself."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config["lr"])
    sched = CosineLRScheduler(opt, t_initial=config["total_steps"], lr_min=config["min_lr"],
                              warmup_t=config["warmup_steps"], warmup_lr_init=config["warmup_lr"], t_in_epochs=False)
    sched.step_update(step)
    return opt.param_groups[0]["lr"]


def interrupted_pretrain(data, out, args, *, after_step):
    """Pre-train into ``out``, sending this process SIGINT once metrics reach ``after_step``."""

    def interrupt():
        while True:
            lines = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []
            if any(json.loads(line)["step"] >= after_step for line in lines if line):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        trainer.pretrain(str(data), out, **args)
    thread.join()


def cut_and_resumed(data, out, args, cuts) -> list[int]:
    """Pre-train into ``out``, interrupted once metrics reach each step of ``cuts`` (each time resumed), then to
    the end; returns the steps the checkpoints were at."""
    stopped = []
    for i, after in enumerate(cuts):
        interrupted_pretrain(data, out, {**args, "resume": i > 0}, after_step=after)
        stopped.append(torch.load(out / "checkpoint.pt", weights_only=True)["step"])
    trainer.pretrain(str(data), out, resume=True, progress=False)
    return stopped


def assert_same_run(cut, whole, stopped):
    """Every loss logged after the last cut, and the final weights, are the uninterrupted run's."""
    first_full_log = (stopped[-1] // 5 + 2) * 5  # the first metrics line that averages only resumed steps
    after = {m["step"]: m["loss"] for m in read_jsonl(cut / "metrics.jsonl") if m["step"] >= first_full_log}
    expected = {m["step"]: m["loss"] for m in read_jsonl(whole / "metrics.jsonl") if m["step"] >= first_full_log}
    assert after == expected and after
    a = torch.load(cut / "checkpoint.pt", weights_only=True)["state_dict"]
    b = torch.load(whole / "checkpoint.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in b)


def prefetching(batches, device, tail, check=None):
    """``on_device`` as it runs on a GPU, on the CPU: the next batch's tail is done before this one is handed out."""
    pending = None
    for batch in batches:
        if check is not None:
            check(batch)
        ready = {"image": tail(batch["image"]), "label": batch["label"]}
        if pending is not None:
            yield pending
        pending = ready
    if pending is not None:
        yield pending


@pytest.mark.parametrize("path", ["memory", "stream-0", "stream-1", "stream-2", "stream-1-prefetching"])
def test_a_run_cut_twice_and_resumed_trains_exactly_as_the_uninterrupted_one(tiny, tmp_path, one_thread, path,  # noqa: F811
                                                                              monkeypatch):
    # Data order, augmentation (on the device, or in 0, 1 or 2 loader workers, its tail on the device even when
    # that runs a batch ahead, as on a GPU), Mixup and drop path all continue from the checkpoint's random states
    # and the stream's position, so the losses and weights after each resume are the uninterrupted run's.
    kind, _, workers = path.partition("-")
    workers, _, prefetch = workers.partition("-")
    if prefetch:
        monkeypatch.setattr(trainer.data.inputs, "on_device", prefetching)
    args = dict(preset="smoke", samples=960, input=kind, drop_path=0.1, progress=False)
    if workers:
        args.update(workers=int(workers), shuffle_buffer=5)
    whole = trainer.pretrain(str(tiny), tmp_path / "whole", **args)
    out = tmp_path / "cut"
    stopped = cut_and_resumed(tiny, out, args, cuts=[12, 31])
    assert 12 <= stopped[0] < 31 <= stopped[1] < 60
    assert whole["steps"] == 60
    assert_same_run(out, tmp_path / "whole", stopped)


@pytest.mark.parametrize("kind", ["memory", "stream"])
def test_passes_that_continue_resume_exactly(tiny, tmp_path, one_thread, kind):  # noqa: F811
    # 12 images at batch 8: every other batch spans two passes (on the stream, samples of the next pass that
    # the batch holds already wait for the one after).
    args = dict(preset="smoke", samples=480, input=kind, batch_size=8, pass_end="continue", progress=False)
    if kind == "stream":
        args.update(workers=1, shuffle_buffer=5)
    whole = trainer.pretrain(str(tiny), tmp_path / "whole", **args)
    assert whole["steps"] == 60
    config = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert config["steps_per_epoch"] == 1.5 and config["pass_end"] == "continue"
    out = tmp_path / "cut"
    stopped = cut_and_resumed(tiny, out, args, cuts=[12, 31])
    assert_same_run(out, tmp_path / "whole", stopped)


def test_a_run_with_an_ema_cut_and_resumed_trains_exactly_as_the_uninterrupted_one(tiny, tmp_path,  # noqa: F811
                                                                                   one_thread):  # noqa: F811
    args = dict(preset="smoke", samples=480, input="memory", ema=0.99, progress=False)
    trainer.pretrain(str(tiny), tmp_path / "whole", **args)
    out = tmp_path / "cut"
    stopped = cut_and_resumed(tiny, out, args, cuts=[10])
    assert_same_run(out, tmp_path / "whole", stopped)
    a = torch.load(out / "checkpoint.pt", weights_only=True)["state_dict_ema"]
    b = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["state_dict_ema"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.parametrize("layout", ["one process", "generator"])
def test_checkpoints_of_earlier_layouts_still_resume_exactly(tiny, tmp_path, one_thread, layout):  # noqa: F811
    # Before every rank's states were kept, "rng" was one dict; before that, the memory input's generator
    # sat in it as "generator".
    args = dict(preset="smoke", samples=480, input="memory", drop_path=0.1, progress=False)
    trainer.pretrain(str(tiny), tmp_path / "whole", **args)
    out = tmp_path / "cut"
    interrupted_pretrain(tiny, out, args, after_step=10)
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    rng = checkpoint["rng"][0]
    if layout == "generator":
        rng["generator"] = rng.pop("input")["generator"]
    torch.save({**checkpoint, "rng": rng}, out / "checkpoint.pt")
    trainer.pretrain(str(tiny), out, resume=True, progress=False)
    assert_same_run(out, tmp_path / "whole", [checkpoint["step"]])


def test_a_stream_resumed_with_other_workers_goes_on_with_one_warning(tiny, tmp_path, capfd):  # noqa: F811
    args = dict(preset="smoke", samples=480, input="stream", workers=0, progress=False)
    out = tmp_path / "cut"
    interrupted_pretrain(tiny, out, args, after_step=10)
    capfd.readouterr()
    assert trainer.pretrain(str(tiny), out, resume=True, workers=1, progress=False)["steps"] == 30
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("Warning")]
    assert warnings == ["Warning: the stream was saved with other settings (workers 0 -> 1): the run goes on from "
                        "the start of its pass, not with the batches the uncut run would have had"]


def test_an_interrupted_run_saves_and_resume_continues_the_same_schedule(tiny, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    args = dict(preset="smoke", samples=4800, progress=False, **LIGHT)

    interrupted_pretrain(tiny, out, args, after_step=10)
    stopped = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert 10 <= stopped < 300
    before = read_jsonl(out / "metrics.jsonl")
    assert before[-1]["step"] == stopped  # the interrupted step is logged and saved

    summary = trainer.pretrain(str(tiny), out, resume=True, progress=False)
    assert summary["steps"] == 300
    metrics = read_jsonl(out / "metrics.jsonl")
    steps = [m["step"] for m in metrics]
    assert steps == sorted(set(steps)) and steps[-1] == 300 and stopped in steps
    config = json.loads((out / "config.json").read_text())
    assert config["total_steps"] == 300
    for m in metrics:
        assert m["lr"] == pytest.approx(expected_lr(config, m["step"]), rel=1e-9, abs=1e-15), m["step"]
    final = torch.load(out / "checkpoint.pt", weights_only=True)
    assert final["step"] == 300
    # The optimizer state was restored, not restarted: AdamW counts all 300 steps.
    assert {int(s["step"]) for s in final["optimizer"]["state"].values()} == {300}


def test_pretraining_streams_from_a_dataset_url(served, tmp_path):  # noqa: F811
    summary = trainer.pretrain(f"{served}/tiny/", tmp_path, preset="smoke", samples=320, progress=False)
    config = json.loads((tmp_path / "config.json").read_text())
    assert summary["steps"] == 20 and config["dataset"]["samples"] == 12 and config["data"].startswith("http://")
    assert read_jsonl(tmp_path / "metrics.jsonl")[-1]["corrupt_shards"] == 0


def test_a_corrupt_shard_met_while_training_is_counted_in_metrics(tiny, tmp_path, capfd):  # noqa: F811
    data = shutil.copytree(tiny, tmp_path / "d")
    bad = data / "1p-frac-000001.tar"
    bad.write_bytes(b"\x13" * bad.stat().st_size)
    trainer.pretrain(str(data), tmp_path / "run", preset="smoke", samples=320, progress=False)
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]["corrupt_shards"] == 1
    assert f"skipping corrupt shard {bad}" in capfd.readouterr().err


# the command line --------------------------------------------------------------------------------------


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, message):
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output


def test_the_command_line_runs_and_prints_a_summary(tiny, tmp_path):  # noqa: F811
    result = run("pretrain", "--data", tiny, "--out", tmp_path, "--preset", "smoke", "--samples", 160,
                 "--model-kwargs", "depth=1", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "10 steps, final loss" in result.output and "samples/s" in result.output
    # --model-kwargs adds to the preset's model arguments: smoke's width and heads stay.
    assert json.loads((tmp_path / "config.json").read_text())["model_kwargs"] == {
        "patch_size": 8, "embed_dim": 64, "depth": 1, "num_heads": 2}


def test_command_options_are_the_functions_arguments():
    for kind, func in (("pretrain", trainer.pretrain), ("finetune", trainer.finetune), ("probe", trainer.probe)):
        command = main.commands[kind]
        params = inspect.signature(func).parameters
        options = {p.name: p for p in command.params if p.name not in RENAMED}
        assert set(options) == set(params), kind
        for name, p in params.items():
            if options[name].multiple:  # KEY=VALUE pairs: none given reads as None
                assert p.default is None and options[name].callback is not None
            elif p.default is inspect.Parameter.empty:
                assert options[name].required, name
            else:
                assert options[name].default == p.default, name
        assert set(params) - set(BY_NAME) <= {"data", "out", "init", "dataset", "preset", "resume", "force",
                                              "device", "progress", "blocks"}
        assert set(params) & set(BY_NAME) <= set(defaults(kind)), kind


@pytest.mark.parametrize("setup,args,message", [
    ("none", ["--data", "{tmp}/nothing"], "does not exist"),
    ("no-manifest", ["--data", "{tmp}/d"], "has no manifest.json"),
    ("shard-missing", ["--data", "{tmp}/d"], "1p-frac-000002.tar is missing"),
    ("copy", ["--data", "{tmp}/d", "--model", "vit_no_such_model"], "unknown model 'vit_no_such_model'"),
    ("copy", ["--data", "{tmp}/d", "--model-kwargs", "depth"], "expected KEY=VALUE"),
    ("copy", ["--data", "{tmp}/d", "--model-kwargs", "no_such_argument=3"], "cannot create"),
    ("copy", ["--data", "{tmp}/d", "--classes", 5], "--classes 5 does not match the data's 12 classes"),
    ("copy", ["--data", "{tmp}/d", "--batch-size", 15], "even batch size"),
    ("copy", ["--data", "{tmp}/d", "--preset", "huge"], "Invalid value for '--preset'"),
    ("copy", ["--data", "{tmp}/d", "--scale", 0.5, 0.1], "--scale must satisfy"),
    ("copy", ["--data", "{tmp}/d", "--out", "{tmp}/file"], "is a file"),
    ("copy", ["--data", "{tmp}/d", "--out", "{tmp}/file/run"], "cannot write to"),
    ("copy", ["--data", "{tmp}/d", "--out", "{tmp}/done"], "holds a run; pass --resume"),
    ("copy", ["--data", "{tmp}/d", "--resume"], "has no checkpoint.pt"),
])
def test_user_errors_are_one_line(tiny, tmp_path, setup, args, message):  # noqa: F811
    if setup != "none":
        shutil.copytree(tiny, tmp_path / "d")
    if setup == "no-manifest":
        (tmp_path / "d" / "manifest.json").unlink()
    elif setup == "shard-missing":
        (tmp_path / "d" / "1p-frac-000002.tar").unlink()
    (tmp_path / "file").write_text("")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "metrics.jsonl").write_text("")
    (tmp_path / "done" / "results.json").write_text("{}")  # a finished run (metrics alone a plain re-run takes)
    args = [str(a).format(tmp=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "run")]
    assert_one_line_error(run("pretrain", "--preset", "smoke", *args), message)


def test_labels_beyond_the_class_count_stop_the_run_with_one_line(tiny, tmp_path):  # noqa: F811
    # Shards without a manifest over HTTP: nothing tells the class count until labels arrive.
    for name in ("1p-frac-000004.tar", "1p-frac-000005.tar"):
        shutil.copy(tiny / name, tmp_path / name)
    with serve(tmp_path) as base:
        url = f"{base}/1p-frac-{{000004..000005}}.tar"
        assert_one_line_error(run("pretrain", "--data", url, "--out", tmp_path / "run", "--preset", "smoke"),
                              "class count is unknown")
        result = run("pretrain", "--data", url, "--out", tmp_path / "run2", "--preset", "smoke", "--classes", 5)
        assert_one_line_error(result, "outside [0, 5): the class count does not match the data")


def test_the_paper_preset_is_the_reference_recipe():
    from trainer.optim import plan_run
    from trainer.presets import resolve

    config = resolve("pretrain", "paper")
    assert (config["model"], config["img_size"], config["drop_path"], config["batch_size"]) == (
        "vit_tiny_patch16_224", 224, 0.1, 256)
    assert (config["opt"], config["weight_decay"], config["epochs"], config["warmup_epochs"]) == ("adamw", 0.05,
                                                                                                 80_000, 5)
    assert (config["scale"], config["hflip"], config["vflip"], config["auto_augment"], config["re_prob"]) == (
        [0.08, 1.0], 0.5, 0.5, "rand-m9-mstd0.5-inc1", 0.5)
    assert (config["mixup"], config["cutmix"], config["mixup_switch"], config["smoothing"]) == (0.8, 1.0, 0.5, 0.1)
    steps = plan_run(config, 1000, world=8).as_dict()
    # 1000 images // 256 = 3 steps per epoch (the last partial batch dropped): 240,000 steps, ~61M samples.
    assert steps["steps_per_epoch"] == 3 and steps["total_steps"] == 240_000 and steps["warmup_steps"] == 15
    assert steps["batch_per_process"] == 32 and steps["lr"] == pytest.approx(5e-4)
    assert steps["warmup_lr"] == pytest.approx(5e-7) and steps["min_lr"] == pytest.approx(5e-6)


# the reference's effective recipe, and the settings that turn each of its quirks off ------------------


def test_the_paper_preset_trains_as_the_reference_did_and_each_quirk_has_an_off_setting():
    from trainer.presets import resolve

    paper = resolve("pretrain", "paper")
    assert paper["embed_decay"] is True and paper["mix_chunk"] == 32  # 32 per GPU x 8 GPUs
    off = resolve("pretrain", "paper", embed_decay=False, mix_chunk=0)
    assert off["embed_decay"] is False and off["mix_chunk"] == 0
    for preset in ("cpu", "smoke"):  # the small presets keep timm's defaults
        config = resolve("pretrain", preset)
        assert config["embed_decay"] is False and config["mix_chunk"] == 0


def decay_of(optimizer) -> dict[int, float]:
    return {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}


@pytest.mark.parametrize("opt,wd", [("adamw", 0.05), ("sgd", 1e-4)])
def test_pos_embed_and_cls_token_are_decayed_only_with_embed_decay(opt, wd):
    from trainer.optim import create_optimizer

    net = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=5)
    for embed_decay in (False, True):
        config = {"opt": opt, "weight_decay": wd, "momentum": 0.9, "embed_decay": embed_decay}
        decay = decay_of(create_optimizer(net, config, lr=0.1))
        assert decay[id(net.pos_embed)] == decay[id(net.cls_token)] == (wd if embed_decay else 0.0)
        # Biases and norm weights are never decayed, matrices always (timm's grouping, as in the reference).
        assert decay[id(net.blocks[0].attn.qkv.bias)] == decay[id(net.norm.weight)] == 0.0
        assert decay[id(net.blocks[0].attn.qkv.weight)] == decay[id(net.patch_embed.proj.weight)] == wd
        assert len(decay) == len(list(net.parameters()))


def test_mixing_draws_one_lambda_per_chunk_and_pairs_within_it():
    from trainer.loss import create_criterion

    config = dict(mixup=0.8, cutmix=0.0, mixup_switch=0.5, smoothing=0.0)
    labels = torch.arange(16)
    images = torch.arange(16, dtype=torch.float32)[:, None, None, None].expand(16, 3, 4, 4).contiguous()
    draws = {}
    for chunk in (0, 4):
        mixup, _ = create_criterion({**config, "mix_chunk": chunk}, num_classes=16)
        torch.manual_seed(0)
        mixed, targets = mixup(images.clone(), labels)
        lam = targets[labels, labels]  # each sample's own label keeps weight lambda
        partner = targets.clone()
        partner[labels, labels] = 0
        span = chunk or 16
        expected = torch.tensor([(i // span) * span + span - 1 - i % span for i in range(16)])  # flipped in its chunk
        assert torch.equal(partner.argmax(1), expected)
        # The pixels are mixed with the same lambda as the targets.
        assert torch.allclose(mixed[:, 0, 0, 0], lam * images[:, 0, 0, 0] + (1 - lam) * images[expected, 0, 0, 0])
        draws[chunk] = [set(lam[i:i + 4].tolist()) for i in range(0, 16, 4)]
    assert all(len(d) == 1 for d in draws[4]) and len({d.pop() for d in draws[4]}) == 4  # 4 chunks, 4 lambdas
    assert len(set().union(*draws[0])) == 1  # one lambda for the whole batch


def test_cutmix_or_mixup_is_chosen_per_chunk():
    from trainer.loss import create_criterion

    mixup, _ = create_criterion(dict(mixup=0.8, cutmix=1.0, mixup_switch=0.5, smoothing=0.0, mix_chunk=2),
                                num_classes=64)
    torch.manual_seed(1)
    images = torch.rand(64, 3, 8, 8)
    mixed, _ = mixup(images.clone(), torch.arange(64))
    # CutMix leaves some pixels of each image untouched; Mixup blends every pixel.
    untouched = (mixed == images).flatten(1).any(1).view(32, 2).all(1)
    assert 0 < untouched.sum() < 32
