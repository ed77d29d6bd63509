"""RefineCAM: maps against pytorch-grad-cam's ``RefineCAM`` on resnet18 and a ViT's token layers (timm's test_vit),
with its default base (Grad-CAM++) and another; the layers and bases it refuses; the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import corr, explain_tensors, hook_counts
from pytorch_grad_cam import GradCAMPlusPlus, LayerCAM, RefineCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from camcli import methods
from camcli.errors import CamcliError
from camcli.models import DataConfig, load_model
from camcli.preprocess import decode, to_input


def vit_tokens(tensor: torch.Tensor) -> torch.Tensor:
    """test_vit's tokens (a class token, then a 10×10 grid) as B×C×h×w, pytorch-grad-cam's reshape."""
    return tensor[:, 1:, :].reshape(tensor.size(0), 10, 10, tensor.size(2)).permute(0, 3, 1, 2)


ARCHS = {
    "resnet18": (64, ["layer2", "layer3", "layer4"], None),
    "test_vit": (160, ["blocks.1", "blocks.3", "blocks.5.norm1"], vit_tokens),
}


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request, samples):
    size, layers, reshape = ARCHS[request.param]
    torch.manual_seed(0)
    model = load_model(request.param, random_weights=True).model.eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 1 and not param.any():  # heads timm starts at zero
                param.normal_(0, 0.02)
    data = DataConfig((size, size), size, "bilinear", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.stack([to_input(decode(samples / f)[0], data)[0] for f in ("chelsea.png", "coffee.png")])
    return request.param, model, layers, reshape, x


@pytest.mark.parametrize(("base", "oracle"), [("gradcam++", GradCAMPlusPlus), ("layercam", LayerCAM)])
def test_maps_match_pytorch_grad_cam(arch, base, oracle):
    name, model, layers, reshape, x = arch
    before = hook_counts(model)
    options = {} if base == "gradcam++" else {"refinecam_base": base}
    out = explain_tensors(model, layers, x, ["refinecam", base], k=2, **options)
    assert out.params["refinecam"] == {"layers": layers, "base": base}
    refined = out.maps["refinecam"]
    assert refined.raw.shape == (2, 2, *x.shape[-2:])  # the product is taken at the input's resolution
    modules = dict(model.named_modules())
    cam = RefineCAM(model, [modules[n] for n in layers], reshape, base_method=oracle)
    try:
        for j in range(2):
            ref = cam(x, [ClassifierOutputTarget(int(c)) for c in out.classes[:, j]])
            for b in range(2):
                assert ref[b].max() > 0
                assert corr(refined.display[b, j], ref[b]) >= 0.99, (name, base, b, j)
                assert corr(out.maps[base].display[b, j], ref[b]) < 0.99  # the product is not the base's average
    finally:
        for per_layer in cam.base_cam_per_layer:
            per_layer.activations_and_grads.release()
    assert hook_counts(model) == before


def test_one_layer_is_refused_with_what_to_pass(arch):
    _name, model, layers, _reshape, x = arch
    with pytest.raises(CamcliError, match="one target layer was given") as info:
        explain_tensors(model, layers[-1], x[:1], ["refinecam"], k=1)
    assert f"--layer EARLY --layer {layers[-1]}" in str(info.value)
    assert sum(hook_counts(model)) == 0


@pytest.mark.parametrize("base", ["occlusion", "saliency", "refinecam", "no-such-method"])
def test_bases_without_a_map_per_layer_are_refused(base):
    with pytest.raises(CamcliError, match=f"--refinecam-base '{base}' is not a CAM method") as info:
        methods.resolve_params(("refinecam",), {"refinecam": {"base": base}})
    offered = str(info.value).split("Use one of ")[1].rstrip(".").split(", ")
    assert {"gradcam", "gradcam++", "layercam", "scorecam", "shapleycam"} <= set(offered)
    assert not {"occlusion", "saliency", "refinecam", "fullgrad", "legrad"} & set(offered)


def test_command_line(run_cli, samples, tmp_path):
    common = ("explain", samples / "chelsea.png", "--method", "refinecam", "-m", "resnet18", "--random-weights")
    common += ("-q", "--top-k", "2", "--save", "raw_map")
    result = run_cli(*common, "--layer", "layer3", "--layer", "layer4", "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "o" / "chelsea.png" / "explanation.json").read_text())
    assert [e["method"] for e in doc["explanations"]] == ["refinecam", "refinecam"]
    for exp in doc["explanations"]:
        raw = np.load(tmp_path / "o" / "chelsea.png" / exp["files"]["raw_map"])
        assert raw.shape == (224, 224)
        assert raw.min() >= 0
        assert 0 < raw.max() <= 1
        assert exp["params"] == {"layers": ["layer3", "layer4"], "base": "gradcam++"}
    refused = run_cli(*common, "-o", tmp_path / "r")
    assert refused.exit_code == 2, refused.output
    assert "refinecam multiplies its base method's maps from several layers" in refused.output


def test_classes_and_images_share_the_work_exactly(arch):
    _name, model, layers, _reshape, x = arch
    model.zero_grad(set_to_none=True)  # pytorch-grad-cam's backward, in another test, fills them
    classes = torch.tensor([[1, 2, 3], [4, 5, 6]])
    together = explain_tensors(model, layers, x, ["refinecam"], classes=classes).maps["refinecam"].raw
    for j in range(3):
        alone = explain_tensors(model, layers, x, ["refinecam"], classes=classes[:, j : j + 1]).maps["refinecam"].raw
        torch.testing.assert_close(together[:, j : j + 1], alone, atol=1e-5, rtol=1e-4)
    single = explain_tensors(model, layers, x[1:], ["refinecam"], classes=classes[1:]).maps["refinecam"].raw
    torch.testing.assert_close(together[1:], single, atol=1e-5, rtol=1e-4)
    assert all(p.grad is None for p in model.parameters())


def test_the_base_methods_own_checks_apply(monkeypatch):
    from camcli.methods.gradcam import GradCamPlusPlus

    def refuse(self, model, layers, s):
        raise CamcliError(f"the base refuses {layers}")

    monkeypatch.setattr(GradCamPlusPlus, "prepare", refuse)
    conv = {"kernel_size": 3, "padding": 1}
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, **conv),
        torch.nn.Conv2d(4, 4, **conv),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 16 * 16, 2),
    )
    with pytest.raises(CamcliError, match=r"the base refuses \('0', '1'\)"):
        explain_tensors(model, ["0", "1"], torch.randn(1, 3, 16, 16), ["refinecam"], k=1)
