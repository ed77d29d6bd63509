"""Finer-CAM agrees with pytorch-grad-cam's FinerCAM on a CNN and on a ViT's tokens, with its defaults and
with another base method, strength and comparison ranks; ranks beyond the classes are dropped as there;
it runs from the command line with its options."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import timm
import torch
from conftest import corr, explain_tensors
from pytorch_grad_cam import GradCAM, LayerCAM
from pytorch_grad_cam.finer_cam import DEFAULT_COMPARISON_CATEGORIES, FinerCAM

from camcli import methods
from camcli.errors import CamcliError
from camcli.models import DataConfig
from camcli.preprocess import decode, to_input

METHOD = "finercam"


def tokens_to_map(tensor: torch.Tensor) -> torch.Tensor:
    """The reshape transform for test_vit at 64 px with 8-pixel patches: 1 class token, then 8×8 patches."""
    return tensor[:, 1:].reshape(tensor.shape[0], 8, 8, tensor.shape[2]).permute(0, 3, 1, 2)


def images(samples, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    data = DataConfig((size, size), size, "bilinear", mean, std)
    return torch.stack([to_input(decode(samples / f)[0], data)[0] for f in ("chelsea.png", "coffee.png")])


@pytest.fixture(scope="module", params=["tf_efficientnet_lite0", "test_vit"])
def arch(request, samples):
    """Real weights for the CNN: a random model's logits lie so close together that the softmax weights of
    the comparison classes are even, and their gradient (part of the objective's) vanishes."""
    if request.param == "tf_efficientnet_lite0":
        loaded = request.getfixturevalue("lite0")
        return loaded.model.eval(), "blocks.4", None, images(samples, 96, loaded.data.mean, loaded.data.std)
    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=64, patch_size=8).eval()
    return model, "blocks.5.norm1", tokens_to_map, images(samples, 64, (0.5,) * 3, (0.5,) * 3)


SETTINGS = {
    "defaults": ({}, GradCAM, {}),
    "layercam": (
        {"finercam_base_method": "layercam", "finercam_alpha": 0.6, "finercam_comparison_categories": "1,3"},
        LayerCAM,
        {"alpha": 0.6, "comparison_categories": [1, 3]},
    ),
}


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_matches_pytorch_grad_cam(arch, setting):
    model, layer, reshape, x = arch
    options, base, keywords = SETTINGS[setting]
    out = explain_tensors(model, layer, x, [METHOD, "gradcam"], k=2, **options)
    maps = out.maps[METHOD]
    module = dict(model.named_modules())[layer]
    with FinerCAM(model, [module], reshape_transform=reshape, base_method=base) as cam:
        for b in range(2):
            for j in range(2):
                ref = cam(input_tensor=x[b : b + 1], target_idx=int(out.classes[b, j]), **keywords)[0]
                assert ref.max() > ref.min()
                assert corr(maps.display[b, j], ref) >= 0.99, (layer, setting, b, j)
    gradcam = out.maps["gradcam"].raw
    assert not torch.allclose(maps.raw, gradcam, atol=1e-3 * float(gradcam.abs().max()), rtol=0)  # it compares


def test_defaults_are_pytorch_grad_cams():
    ours = {p.name: p.default for p in methods.get(METHOD).params}
    assert ours["alpha"] == inspect.signature(FinerCAM.forward).parameters["alpha"].default
    assert ours["comparison_categories"] == DEFAULT_COMPARISON_CATEGORIES
    assert inspect.signature(FinerCAM).parameters["base_method"].default is GradCAM
    assert ours["base_method"] == "gradcam"


def test_ranks_beyond_the_classes_are_dropped(tiny_model):
    model = tiny_model.model
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    first = explain_tensors(model, None, x, [METHOD], k=2, finercam_comparison_categories="1").maps[METHOD].raw
    kept = explain_tensors(model, None, x, [METHOD], k=2, finercam_comparison_categories="1,4,9").maps[METHOD].raw
    assert torch.equal(first, kept)  # 4 classes: a class has 3 others, ranks 4 and 9 name none
    other = explain_tensors(model, None, x, [METHOD], k=2, finercam_comparison_categories="2").maps[METHOD].raw
    assert not torch.equal(first, other)
    with pytest.raises(CamcliError, match=r"the model has 4 classes.*Pass ranks from 1 to 3"):
        explain_tensors(model, None, x, [METHOD], k=2, finercam_comparison_categories="4,5")
    with pytest.raises(CamcliError, match="names a class rank twice"):
        explain_tensors(model, None, x, [METHOD], k=2, finercam_comparison_categories="1,2,1")


def test_runs_from_the_command_line_with_its_options(run_cli, samples, tmp_path):
    result = run_cli(
        *("explain", samples / "chelsea.png", "--method", METHOD, "-m", "resnet18", "--random-weights"),
        *("--input-size", "64", "-o", tmp_path / "o", "-q", "--top-k", "2", "--save", "raw_map"),
        *("--finercam-alpha", "0.5", "--finercam-comparison-categories", "1,2"),
        *("--finercam-base-method", "gradcam++"),
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "o" / "chelsea.png"
    entries = json.loads((folder / "explanation.json").read_text())["explanations"]
    assert [e["method"] for e in entries] == [METHOD, METHOD]
    expected = {"alpha": 0.5, "comparison_categories": [1, 2], "base_method": "gradcam++", "layers": ["layer4"]}
    for entry in entries:
        assert expected.items() <= entry["params"].items()
        assert np.load(folder / entry["files"]["raw_map"]).shape == (2, 2)
