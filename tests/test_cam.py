"""CAM: equal to torchcam's ``CAM`` on two pooled-linear CNNs (timm's resnet18, torchvision's mobilenet_v2),
refused before any image where the head is anything else, a binary head's class 0 signed, and the command
line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import corr, explain_tensors, hook_counts
from torch import nn
from torchcam.methods import CAM

from camcli.errors import CamcliError
from camcli.explainer import BatchExplainer
from camcli.heads import Head
from camcli.layout import Layout
from camcli.maps import min_max
from camcli.models import DataConfig, load_model
from camcli.preprocess import decode, to_input

ARCHS = {  # model: target layer, classifier
    "resnet18": ("layer4", "fc"),  # timm: get_classifier(), random weights
    "tf_efficientnet_lite0": ("bn2", "classifier"),  # its bundled weights
    "tv:mobilenet_v2": ("features.18", "classifier.1"),  # torchvision: the last Linear, random weights
}


@pytest.fixture(scope="module")
def x(samples):
    data = DataConfig((96, 96), 96, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return torch.stack([to_input(decode(samples / f)[0], data)[0] for f in ("chelsea.png", "coffee.png")])


def _first_and_last(scores: torch.Tensor) -> torch.Tensor:
    return torch.cat([scores.argmax(1, keepdim=True), scores.argmin(1, keepdim=True)], dim=1)


@pytest.mark.parametrize("name", list(ARCHS))
def test_cam_equals_torchcam(name, x):
    """The most and the least likely class of each image: the least likely one's map is mostly negative."""
    layer, fc = ARCHS[name]
    torch.manual_seed(0)
    model = load_model(name, random_weights=name != "tf_efficientnet_lite0").model.eval()
    out = explain_tensors(model, layer, x, ["cam"], classes=_first_and_last)
    with CAM(model, layer, fc, input_shape=(3, 96, 96)) as extractor, torch.no_grad():
        scores = model(x)
        refs = [extractor(out.classes[:, j].tolist(), scores, normalized=False)[0] for j in range(2)]
    for j, ref in enumerate(refs):
        raw = out.maps["cam"].raw[:, j]
        assert torch.allclose(raw, ref, atol=1e-5 * float(ref.abs().max()), rtol=0), (name, j)
        shown = min_max(F.interpolate(ref[:, None], size=(96, 96), mode="bilinear", align_corners=False))[:, 0]
        for b in range(2):
            assert corr(out.maps["cam"].display[b, j], shown[b]) >= 0.99, (name, b, j)
    assert float(out.maps["cam"].raw[:, 1].min()) < 0  # signed: no ReLU, as the paper and torchcam


@pytest.mark.parametrize(
    ("name", "layer", "why"),
    [
        ("resnet18", "layer3", "'layer3' has 256 channels and the classifier takes 512 inputs"),
        ("convnext_tiny", "stages.3", "does more than pool it and apply one linear layer"),  # pool, norm, fc
        ("test_vit", "blocks.5.norm1", "does more than pool it and apply one linear layer"),  # class-token pooling
    ],
)
def test_cam_refuses_other_heads_and_layers_before_any_image(name, layer, why):
    torch.manual_seed(0)
    model = load_model(name, random_weights=True).model.train()
    hooks = hook_counts(model)
    with pytest.raises(CamcliError, match="Use gradcam") as info:
        BatchExplainer(model, [(layer, Layout())], {"cam": {}}, (64, 64) if name != "test_vit" else (160, 160))
    assert why in str(info.value)
    assert hook_counts(model) == hooks
    assert all(m.training for m in model.modules())  # its modes put back


def test_cam_refuses_a_model_without_a_linear_classifier():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 4, 1), nn.Flatten())
    with pytest.raises(CamcliError, match=r"classifier is one linear layer; this one's is not\. Use gradcam"):
        BatchExplainer(model.eval(), [("0", Layout())], {"cam": {}}, (32, 32))


def test_cam_refuses_vgg_from_the_command_line(run_cli, samples, tmp_path):
    args = ["--model", "tv:vgg11", "--random-weights", "--input-size", "64", "--method", "gradcam,cam"]
    result = run_cli("explain", samples / "chelsea.png", *args, "-o", tmp_path / "o", "-q")
    assert result.exit_code == 2, result.output
    assert "classifier takes 4096 inputs" in result.output
    assert "Use gradcam" in result.output
    assert not (tmp_path / "o").exists()  # a usage error: no image was explained


def test_binary_head_class_0_has_the_negated_weights():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1)
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    with BatchExplainer(model, [("1", Layout())], {"cam": {}}, (32, 32), head=Head("binary")) as explain:
        raw = explain(x, lambda scores: torch.tensor([[0, 1], [1, 0]])).maps["cam"].raw
    acts = torch.relu(model[0](x))
    expected = torch.einsum("c,bchw->bhw", model[4].weight[0].detach(), acts)
    assert torch.allclose(raw[:, 0], torch.stack([-expected[0], expected[1]]), atol=1e-5)
    assert torch.allclose(raw[:, 1], -raw[:, 0], atol=1e-6)


def test_cam_from_the_command_line(run_cli, samples, tmp_path):
    """The default model (EfficientNet-Lite0: bn2, pooled, one linear layer) with its bundled weights."""
    args = ["explain", samples / "chelsea.png", "--method", "cam,gradcam", "-o", tmp_path / "o", "-q", "--top-k", "2"]
    result = run_cli(*args, "--save", "raw_map")
    assert result.exit_code == 0, result.output
    entries = json.loads((tmp_path / "o" / "chelsea.png" / "explanation.json").read_text())["explanations"]
    raws = {e["method"]: np.load(tmp_path / "o" / "chelsea.png" / e["files"]["raw_map"]) for e in entries[:2]}
    assert entries[0]["params"] == {"layers": ["bn2"]}
    # Grad-CAM's weights on a pooled linear head are CAM's divided by h·w: Grad-CAM is CAM's positive part.
    np.testing.assert_allclose(raws["gradcam"], np.maximum(raws["cam"], 0) / 49, atol=1e-4 * raws["gradcam"].max())
