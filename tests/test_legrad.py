"""LeGrad: maps against torchcam's ``LeGrad`` on a torchvision ViT (built in to torchcam) and a timm ViT (test_vit,
read by torchcam through the same weights in ``nn.MultiheadAttention`` blocks and a score projection); timm's
unfused attention; the blocks parameter; models it does not apply to; the model left as it was; the command
line."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from conftest import corr, explain_tensors, hook_counts
from timm.layers import set_fused_attn
from torch import nn
from torchcam.methods import LeGrad as TorchcamLeGrad

from camcli.errors import CamcliError


def _torchvision_vit() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=64, patch_size=16, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    ).eval()
    nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision starts the head at zero
    return model


def _timm_vit() -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("test_vit", num_classes=10).eval()
    nn.init.normal_(model.head.weight, std=0.5)
    return model


class MultiheadBlock(nn.Module):
    """A timm ViT block computed with ``nn.MultiheadAttention`` (its very weights): the structure torchcam's
    LeGrad reads (``self_attention``)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        attn = block.attn
        self.norm1, self.ls1, self.norm2, self.mlp, self.ls2 = block.norm1, block.ls1, block.norm2, block.mlp, block.ls2
        self.self_attention = nn.MultiheadAttention(attn.qkv.in_features, attn.num_heads, batch_first=True)
        with torch.no_grad():
            self.self_attention.in_proj_weight.copy_(attn.qkv.weight)
            self.self_attention.in_proj_bias.copy_(attn.qkv.bias)
            self.self_attention.out_proj.weight.copy_(attn.proj.weight)
            self.self_attention.out_proj.bias.copy_(attn.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.ls1(self.self_attention(y, y, y, need_weights=False)[0])
        return x + self.ls2(self.mlp(self.norm2(x)))


def _torchcam_maps(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, timm_model: bool) -> list[torch.Tensor]:
    """torchcam's LeGrad over every block, per class column, upsampled to the input as camcli shows maps."""
    if timm_model:
        oracle = copy.deepcopy(model)
        oracle.blocks = nn.Sequential(*[MultiheadBlock(b) for b in oracle.blocks]).eval()
        with torch.no_grad():
            torch.testing.assert_close(oracle(x), model(x), atol=1e-4, rtol=1e-4)
        blocks = list(oracle.blocks)
        extra = {"score_projection": lambda t: oracle.head(oracle.fc_norm(oracle.norm(t.mean(dim=1))))}
    else:
        oracle, blocks, extra = model, list(model.encoder.layers), {}
    maps = []
    with TorchcamLeGrad(oracle, blocks, **extra) as extractor:
        for j in range(classes.shape[1]):
            cam = extractor(classes[:, j].tolist(), oracle(x))[0]
            maps.append(F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0])
    return maps


@pytest.mark.parametrize("family", ["torchvision", "timm"])
def test_maps_match_torchcam(family):
    model = _torchvision_vit() if family == "torchvision" else _timm_vit()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64) if family == "torchvision" else torch.randn(2, 3, 160, 160)
    before = hook_counts(model)
    out = explain_tensors(model, None, x, ["legrad"], k=3)
    assert hook_counts(model) == before
    assert torch.overrides._get_current_function_mode_stack() == []
    maps = out.maps["legrad"]
    assert maps.raw.shape == (2, 3, *[s // 16 for s in x.shape[-2:]])
    assert out.params["legrad"] == {"blocks": 0}
    for j, ref in enumerate(_torchcam_maps(model, x, out.classes, family == "timm")):
        for b in range(2):
            assert ref[b].max() > 0
            assert corr(maps.display[b, j], ref[b]) >= 0.99, (family, b, j)
    assert hook_counts(model) == before


def test_unfused_timm_attention_and_the_last_blocks():
    """timm attention built unfused forms its probabilities itself; the last N blocks are those averaged."""
    fused = _timm_vit()
    set_fused_attn(False)
    try:
        unfused = _timm_vit()
    finally:
        set_fused_attn(True)
    assert not unfused.blocks[0].attn.fused_attn
    assert fused.blocks[0].attn.fused_attn
    x = torch.randn(1, 3, 160, 160)
    classes = torch.tensor([[2, 5]])
    for blocks in (0, 2):
        a = explain_tensors(fused, None, x, ["legrad"], classes=classes, legrad_blocks=blocks).maps["legrad"].raw
        b = explain_tensors(unfused, None, x, ["legrad"], classes=classes, legrad_blocks=blocks).maps["legrad"].raw
        torch.testing.assert_close(a, b, atol=1e-5 * float(a.abs().max()), rtol=1e-4)
    every = explain_tensors(fused, None, x, ["legrad"], classes=classes).maps["legrad"].raw
    last = explain_tensors(fused, None, x, ["legrad"], classes=classes, legrad_blocks=1).maps["legrad"].raw
    alone = explain_tensors(fused, None, x, ["legrad"], classes=classes, legrad_blocks=6).maps["legrad"].raw
    torch.testing.assert_close(every, alone)
    assert not torch.allclose(every, last)
    with pytest.raises(CamcliError, match="has 6 attention blocks"):
        explain_tensors(fused, None, x, ["legrad"], classes=classes, legrad_blocks=7)


def test_refuses_models_without_attention_blocks():
    model = torchvision.models.resnet18(num_classes=4).eval()
    with pytest.raises(CamcliError, match="legrad explains vision transformers; ResNet"):
        explain_tensors(model, "layer4", torch.randn(1, 3, 64, 64), ["legrad"], k=1)
    assert sum(hook_counts(model)) == 0


def test_command_line(run_cli, samples, tmp_path):
    common = ("explain", samples / "chelsea.png", "--method", "legrad", "-q", "--top-k", "2", "--save", "raw_map")
    result = run_cli(*common, "-m", "test_vit", "--random-weights", "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "o" / "chelsea.png" / "explanation.json").read_text())
    assert [e["method"] for e in doc["explanations"]] == ["legrad", "legrad"]
    for exp in doc["explanations"]:
        raw = np.load(tmp_path / "o" / "chelsea.png" / exp["files"]["raw_map"])
        assert raw.shape == (10, 10)
        assert raw.min() >= 0
        assert raw.max() > 0
        assert exp["params"]["blocks"] == 0
    refused = run_cli(*common, "-m", "resnet18", "--random-weights", "-o", tmp_path / "r")
    assert refused.exit_code == 2, refused.output
    assert "legrad explains vision transformers" in refused.output


def test_classes_and_images_share_the_work_exactly_and_the_model_is_left_as_it_was():
    model = _timm_vit().train()  # the caller's mode must come back
    modes = [m.training for m in model.modules()]
    x = torch.randn(2, 3, 160, 160)
    classes = torch.tensor([[1, 2, 3], [4, 5, 6]])
    together = explain_tensors(model, None, x, ["legrad"], classes=classes).maps["legrad"].raw
    for j in range(3):
        alone = explain_tensors(model, None, x, ["legrad"], classes=classes[:, j : j + 1]).maps["legrad"].raw
        torch.testing.assert_close(together[:, j : j + 1], alone, atol=1e-5 * float(alone.abs().max()), rtol=1e-4)
    single = explain_tensors(model, None, x[1:], ["legrad"], classes=classes[1:]).maps["legrad"].raw
    torch.testing.assert_close(together[1:], single, atol=1e-5 * float(single.abs().max()), rtol=1e-4)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert sum(hook_counts(model)) == 0
