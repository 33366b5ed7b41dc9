"""trainer/models.py against the timm versions the package allows."""

import pytest
import torch
from timm.models import _builder

from trainer.models import create_model, create_pretrained

TINY = {"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    net = create_model("vit_tiny_patch16_224", num_classes=5, img_size=32, model_kwargs=TINY)
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": net.state_dict()}, path)
    return path, net


def test_a_checkpoint_loads_where_timm_keeps_the_registrys_custom_load(checkpoint, monkeypatch):
    """timm before 1.0.31 keeps the registry's ``custom_load=True`` of vit_tiny_patch16_224's default weights
    when a ``file`` overlay is given, and then reads the file as JAX weights. Without the source keys that
    newer timm resets it for, this is that behaviour."""
    monkeypatch.setattr(_builder, "_PRETRAINED_SOURCE_KEYS", (), raising=False)
    path, net = checkpoint
    model = create_pretrained(path, "vit_tiny_patch16_224", num_classes=3, img_size=32, model_kwargs=TINY)
    assert torch.equal(model.state_dict()["blocks.1.mlp.fc2.weight"], net.state_dict()["blocks.1.mlp.fc2.weight"])
    assert model.head.out_features == 3
