"""Vision transformers: token and channels-last layers as feature maps, agreement with pytorch-grad-cam's
reshape transforms, every method on token layers, and a planted model whose right answer is known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import explain_tensors
from pytorch_grad_cam import GradCAM, HiResCAM, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from camcli.api import Explainer
from camcli.methods import names as method_names
from camcli.models import DataConfig, load_model
from camcli.preprocess import decode, to_input

spec = importlib.util.spec_from_file_location(
    "families", Path(__file__).resolve().parent.parent / "docs" / "families.py"
)
assert spec is not None
assert spec.loader is not None
families = importlib.util.module_from_spec(spec)
spec.loader.exec_module(families)


def vit_reshape(prefix: int, h: int, w: int):
    """pytorch-grad-cam's documented reshape transform for ViTs (tokens → B×C×h×w)."""

    def reshape(tensor):
        result = tensor[:, prefix:, :].reshape(tensor.size(0), h, w, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    return reshape


def swin_reshape(tensor):
    return tensor.permute(0, 3, 1, 2)


CASES = [
    ("vit_tiny_patch16_224", "blocks.11.norm1", vit_reshape(1, 14, 14)),
    ("deit_tiny_distilled_patch16_224", "blocks.11.norm1", vit_reshape(2, 14, 14)),
    ("swin_tiny_patch4_window7_224", "norm", swin_reshape),
]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def transformer(request, samples):
    name, layer, reshape = request.param
    torch.manual_seed(0)
    loaded = load_model(name, random_weights=True)
    families.wake_zero_parameters(loaded.model)  # untrained heads start at zero
    x = torch.stack([to_input(decode(samples / f)[0], loaded.data)[0] for f in ("chelsea.png", "coffee.png")])
    return name, loaded.model.eval(), layer, reshape, x


@pytest.mark.parametrize(("method", "oracle"), [("gradcam", GradCAM), ("hirescam", HiResCAM), ("layercam", LayerCAM)])
def test_default_layer_and_maps_match_pytorch_grad_cam_with_reshape(transformer, method, oracle):
    name, model, layer, reshape, x = transformer
    out = explain_tensors(model, None, x, [method], k=2)
    assert out.params[method]["layers"] == [layer]  # the default rule picked the layer pytorch-grad-cam recommends
    with oracle(model=model, target_layers=[dict(model.named_modules())[layer]], reshape_transform=reshape) as cam:
        for j in range(2):
            ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in out.classes[:, j]])
            for b in range(2):
                ours = out.maps[method].display[b, j].flatten().double()
                theirs = torch.from_numpy(ref[b]).flatten().double()
                assert float(torch.corrcoef(torch.stack([ours, theirs]))[0, 1]) >= 0.99, (name, method, b, j)


def test_scorecam_on_tokens_matches_pytorch_grad_cam(samples):
    torch.manual_seed(0)
    loaded = load_model("vit_tiny_patch16_224", random_weights=True)
    model = loaded.model.eval()
    families.wake_zero_parameters(model)
    x = torch.nn.functional.interpolate(
        torch.stack([to_input(decode(samples / "chelsea.png")[0], loaded.data)[0]]), size=(224, 224)
    )
    layer = "blocks.5.norm1"  # 192 channels: as many masked forwards per image
    out = explain_tensors(model, layer, x, ["scorecam"], k=1, batch_size=64)
    with ScoreCAM(
        model=model, target_layers=[dict(model.named_modules())[layer]], reshape_transform=vit_reshape(1, 14, 14)
    ) as cam:
        cam.batch_size = 64
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(out.classes[0, 0]))])[0]
    ours = out.maps["scorecam"].display[0, 0].flatten().double()
    assert float(torch.corrcoef(torch.stack([ours, torch.from_numpy(ref).flatten().double()]))[0, 1]) >= 0.99


# Methods checked on token and channels-last layers in their own test files instead: cam refuses heads that
# are not one linear layer on pooled maps (tests/test_cam.py); kpcacam decomposes a positions × positions
# kernel, 3136² at Swin's first stage (tests/test_kpcacam.py runs it on a ViT); refinecam needs several layers
# (tests/test_refinecam.py runs it on a ViT); legrad reads ViT attention blocks, which Swin has not (its
# refusal and ViTs: tests/test_legrad.py). SS-CAM and IS-CAM take one noise sample each and run on the ViT
# only (on Swin they would repeat Score-CAM's masking, which runs there); SESS takes two scales.
ELSEWHERE = {"cam", "kpcacam", "refinecam"}
NOT_ON_SWIN = {"legrad", "sscam", "iscam"}


@pytest.mark.parametrize(
    ("name", "layer"), [("vit_tiny_patch16_224", None), ("swin_tiny_patch4_window7_224", "layers.0")]
)
def test_every_method_works_on_token_and_channels_last_layers(name, layer):
    torch.manual_seed(0)
    model = load_model(name, random_weights=True).model.eval()
    families.wake_zero_parameters(model)
    x = torch.randn(1, 3, 224, 224)
    # Swin's first stage (96 channels, 56×56, B×H×W×C): Score-CAM runs one forward per channel.
    chosen = [m for m in method_names() if m not in ELSEWHERE | (NOT_ON_SWIN if "swin" in name else set())]
    out = explain_tensors(
        model,
        layer,
        x,
        chosen,
        k=1,
        batch_size=64,
        occlusion_window=56,
        occlusion_stride=56,
        sscam_num_samples=1,
        iscam_num_samples=1,
        sess_num_scales=2,
    )
    for method in chosen:
        raw = out.maps[method].raw
        assert torch.isfinite(raw).all(), (name, method)
        assert float(raw.abs().max()) > 0, (name, method)


def test_torchvision_vit_default_layer():
    model = load_model("tv:vit_b_16", random_weights=True).model
    [info] = Explainer(model).layers
    assert info.name == "encoder.layers.encoder_layer_11.ln_1"
    assert (info.layout.kind, info.layout.grid, info.layout.prefix) == ("tokens", (14, 14), 1)


class RegionTransformer(nn.Module):
    """A planted model: 16-px patches of a 64×96 image (a 4×6 grid) as tokens after a class token; a
    position-wise block; the class score reads channel 0 of the tokens in the right half of the grid only.
    Channel 0 is a patch's brightness, so the true explanation is: the bright patches in the right half."""

    num_prefix_tokens = 1

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, 8, 16, 16)
        with torch.no_grad():
            self.patch_embed.weight.zero_()
            self.patch_embed.bias.zero_()
            self.patch_embed.weight[0] = 1.0 / (3 * 16 * 16)  # channel 0: mean brightness of the patch
            self.patch_embed.weight[1:].normal_(0, 0.01)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.block = nn.Sequential(nn.Linear(8, 8), nn.Identity())
        with torch.no_grad():
            self.block[0].weight.copy_(torch.eye(8))
            self.block[0].bias.zero_()
        self.head = nn.Linear(8, 2)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[1, 0] = 1.0
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # B×24×8, row-major over the 4×6 grid
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        tokens = self.block(tokens)
        grid = tokens[:, 1:].reshape(x.shape[0], 4, 6, 8)
        return self.head(grid[:, :, 3:].mean(dim=(1, 2)))  # the right half only


def test_planted_region_gets_the_peak():
    model = RegionTransformer().eval()
    data = DataConfig((64, 96), (64, 96), "bilinear", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    explainer = Explainer(model, data=data, labels=["background", "planted"], methods=["gradcam", "layercam"])
    [layer] = explainer.layers
    assert (layer.name, layer.layout.kind, layer.layout.grid, layer.layout.prefix) == ("block", "tokens", (4, 6), 1)
    image = np.zeros((64, 96, 3), np.uint8)
    image[0:32, 64:96] = 255  # bright, in the right half (grid rows 0-1, columns 4-5)
    image[32:64, 0:32] = 128  # dimmer, in the left half: the score never reads it
    [result] = explainer.explain([image], classes=["planted"])
    for exp in result.explanations:
        x, y = exp.peak
        assert 64 <= x < 96, (exp.method, exp.peak)
        assert 0 <= y < 32, (exp.method, exp.peak)
        x0, _y0, _x1, y1 = exp.bbox
        assert x0 >= 48, (exp.method, exp.bbox)  # around the planted patch, not the distractor
        assert y1 <= 40, (exp.method, exp.bbox)
    # Grad-CAM weighs channels by their average gradient, so the distractor shows at its brightness (half);
    # LayerCAM weighs each position by its own gradient: nothing where the score never reads.
    gradcam, layercam = (result.get(m, 1).full_map() for m in ("gradcam", "layercam"))
    assert gradcam[40:, :24].max() == pytest.approx(128 / 255, abs=0.01)
    assert layercam[:, :40].max() == 0.0
