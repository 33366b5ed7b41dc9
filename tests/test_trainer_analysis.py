"""trainer.inspection (``python -m trainer inspect``): the measures on known inputs, the keys a checkpoint
hands to fine-tuning, the initial weights of a run, and layer-wise lr decay in fine-tuning."""

import json

import pytest
import torch
from click.testing import CliRunner
from test_trainer_data import one_thread, tiny  # noqa: F401 (fixtures)

import trainer
from trainer import inspection as analysis
from trainer.cli import main
from trainer.errors import TrainerError
from trainer.models import create_model
from trainer.presets import resolve

# Under pytest-xdist, on one worker: the checkpoint (a module fixture) is trained once.
pytestmark = pytest.mark.xdist_group("analysis")

SMOKE_KWARGS = {"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}


@pytest.fixture(scope="module")
def pretrained(tiny, tmp_path_factory):  # noqa: F811
    """Two steps of smoke pre-training at a tiny lr: the body is the initial weights, to about 1e-8."""
    out = tmp_path_factory.mktemp("pre") / "run"
    trainer.pretrain(str(tiny), out, preset="smoke", samples=32, lr=1e-9, warmup_lr_base=1e-12, min_lr_base=1e-12,
                     drop_path=0.0, progress=False)
    return out / "checkpoint.pt"


def test_effective_rank_counts_equal_directions_and_ignores_the_mean():
    eye = torch.eye(5)
    x = torch.cat([eye, -eye])  # five orthogonal directions of equal spread
    assert analysis.effective_rank(x) == pytest.approx(5.0)
    assert analysis.effective_rank(x + 7.0) == pytest.approx(5.0)  # centred first
    line = torch.arange(10.0)[:, None] * torch.tensor([[1.0, 2.0, 3.0]])
    assert analysis.effective_rank(line) == pytest.approx(1.0)
    assert analysis.effective_rank(torch.ones(4, 3)) == 0.0


def test_attention_entropy_is_one_for_uniform_rows_and_zero_for_one_hot_rows():
    assert analysis.attention_entropy(torch.full((2, 3, 7, 7), 1 / 7)) == pytest.approx(1.0)
    assert analysis.attention_entropy(torch.eye(7).expand(2, 3, 7, 7)) == pytest.approx(0.0, abs=1e-12)


def test_zero_queries_and_keys_give_uniform_attention_and_the_fused_path_is_restored(one_thread):  # noqa: F811
    torch.manual_seed(0)
    model = create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, model_kwargs=SMOKE_KWARGS)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight[: 2 * 64].zero_()  # q and k rows
            block.attn.qkv.bias[: 2 * 64].zero_()
    fused = [b.attn.fused_attn for b in model.blocks]
    stats = analysis.features_and_attention(model, torch.randn(4, 3, 32, 32))
    assert stats["attention_entropy"] == pytest.approx([1.0, 1.0])
    assert [b.attn.fused_attn for b in model.blocks] == fused
    assert len(stats["feature_rank"]) == 2 and all(1 <= r <= 4 for r in stats["feature_rank"])


def test_norms_and_gains_read_the_model():
    model = create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, model_kwargs=SMOKE_KWARGS)
    with torch.no_grad():
        model.blocks[1].norm2.weight.fill_(0.25)
        model.pos_embed.fill_(1.0)
    gains, norms = analysis.norm_gains(model), analysis.weight_norms(model)
    assert gains["blocks.1.norm2"] == 0.25 and gains["blocks.0.norm1"] == 1.0 and "norm" in gains
    assert norms["pos_embed"] == pytest.approx((17 * 64) ** 0.5)
    assert {"patch_embed.proj", "blocks.0.attn.qkv", "blocks.1.mlp.fc2", "head", "cls_token"} <= set(norms)
    assert not any(k.startswith("blocks.0.norm") for k in norms)  # gains are not weight matrices


def test_init_of_a_checkpoint_is_the_weights_its_run_started_from(pretrained):
    saved = torch.load(pretrained, weights_only=True)["state_dict"]
    start = analysis.initial_model(str(pretrained)).state_dict()
    assert start.keys() == saved.keys()
    for k, v in saved.items():
        torch.testing.assert_close(start[k], v, rtol=0, atol=1e-6, msg=k)
    other = create_model("vit_tiny_patch16_224", num_classes=12, img_size=32, model_kwargs=SMOKE_KWARGS)
    assert not torch.allclose(other.state_dict()["blocks.0.attn.qkv.weight"], saved["blocks.0.attn.qkv.weight"])


def test_fine_tuning_starts_from_every_body_key_and_a_fresh_head(pretrained, tmp_path):
    """End to end through ``finetune``: at an lr of ~0 the fine-tuned body is the checkpoint's, and only
    the head is new; the model is built with the pre-training's architecture."""
    saved = torch.load(pretrained, weights_only=True)
    result = trainer.finetune(str(pretrained), "digits", tmp_path, preset="smoke", epochs=1, shots=2, lr=1e-12,
                              warmup_epochs=0, progress=False)
    assert result["settings"]["model_kwargs"] == saved["config"]["model_kwargs"]
    assert result["settings"]["img_size"] == saved["config"]["img_size"]
    tuned = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["state_dict"]
    for k, v in saved["state_dict"].items():
        if not k.startswith("head."):
            torch.testing.assert_close(tuned[k], v, rtol=0, atol=1e-8, msg=k)
    assert tuned["head.weight"].shape == (10, 64) and saved["state_dict"]["head.weight"].shape == (12, 64)

    keys = analysis.key_report(saved["state_dict"], analysis.downstream_model(str(pretrained), num_classes=10,
                                                                              preset="smoke"))
    assert keys["fresh"] == ["head.weight", "head.bias"] and keys["resampled"] == [] and keys["dropped"] == []
    assert set(keys["loaded"]) == set(saved["state_dict"]) - {"head.weight", "head.bias"}
    assert {"pos_embed", "cls_token", "norm.weight", "patch_embed.proj.weight"} <= set(keys["loaded"])


def test_inspect_command_reports_keys_table_json_and_plot(pretrained, tmp_path):
    args = ["inspect", str(pretrained), f"init:{pretrained}", "scratch", "--preset", "smoke", "--images", "16",
            "--json", str(tmp_path / "i.json"), "--plot", str(tmp_path / "i.png")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"{pretrained}: 30 keys loaded unchanged, 0 resampled (-), fresh: head.weight, head.bias" in result.output
    assert "| scratch |" in result.output and f"| init:{pretrained} |" in result.output
    data = json.loads((tmp_path / "i.json").read_text())
    assert data["images"] == 16 and set(data["models"]) == {str(pretrained), f"init:{pretrained}", "scratch"}
    got, start = data["models"][str(pretrained)], data["models"][f"init:{pretrained}"]
    assert got["attention_entropy"] == pytest.approx(start["attention_entropy"], abs=1e-4)
    assert (tmp_path / "i.png").read_bytes()[:4] == b"\x89PNG"


def test_inspect_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "none.pt")])
    assert result.exit_code != 0 and result.output.count("\n") == 1 and "does not exist" in result.output
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(TrainerError, match="not a pre-training checkpoint"):
        analysis.initial_model(str(bad))


# layer-wise lr decay ------------------------------------------------------------------------------------


def test_layer_decay_scales_each_layers_lr_in_fine_tuning(tmp_path):
    result = trainer.finetune("scratch", "digits", tmp_path, preset="smoke", epochs=1, shots=2, warmup_epochs=0,
                              layer_decay=0.5, progress=False)
    assert result["settings"]["layer_decay"] == 0.5
    from trainer.optim import create_optimizer

    model = create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, model_kwargs=SMOKE_KWARGS)
    config = resolve("finetune", "smoke", layer_decay=0.5)
    groups = create_optimizer(model, config, 1e-3).param_groups
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    # depth 2: embeddings are layer 0 (0.5^3), block 0 layer 1 (0.5^2), block 1 layer 2 (0.5), head 1.
    assert scale[id(named["pos_embed"])] == pytest.approx(0.125)
    assert scale[id(named["blocks.0.attn.qkv.weight"])] == pytest.approx(0.25)
    assert scale[id(named["blocks.1.mlp.fc1.weight"])] == pytest.approx(0.5)
    assert scale[id(named["head.weight"])] == pytest.approx(1.0)
    plain = create_optimizer(model, resolve("finetune", "smoke"), 1e-3).param_groups
    assert all(g.get("lr_scale", 1.0) == 1.0 for g in plain)
    with pytest.raises(TrainerError, match="--layer-decay must lie in"):
        resolve("finetune", "smoke", layer_decay=1.5)
