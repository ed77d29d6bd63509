"""SmoothGrad-CAM++ equals torchcam's SmoothGradCAMpp given the same noise, on a CNN and on a ViT's tokens;
its noise is seeded and the same whatever batch an image falls in; it runs from the command line."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import corr, explain_tensors
from torchcam.methods import SmoothGradCAMpp

from camcli import methods
from camcli.models import DataConfig, load_model
from camcli.preprocess import decode, to_input

METHOD = "smoothgradcam++"


def shown(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A feature-resolution map at input resolution, min-max scaled."""
    up = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return (up - up.min()) / (up.max() - up.min() + 1e-12)


def tokens_to_map(tensor: torch.Tensor) -> torch.Tensor:
    """The reshape transform for test_vit at 64 px with 8-pixel patches: 1 class token, then 8×8 patches."""
    return tensor[:, 1:].reshape(tensor.shape[0], 8, 8, tensor.shape[2]).permute(0, 3, 1, 2)


def images(samples, size: int) -> torch.Tensor:
    data = DataConfig((size, size), size, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return torch.stack([to_input(decode(samples / f)[0], data)[0] for f in ("chelsea.png", "coffee.png")])


ARCHS = ["resnet18", "test_vit"]


@pytest.fixture(scope="module", params=ARCHS)
def arch(request, samples):
    torch.manual_seed(0)
    if request.param == "resnet18":
        return load_model("resnet18", random_weights=True).model.eval(), "layer3", None, images(samples, 96)
    model = timm.create_model("test_vit", img_size=64, patch_size=8).eval()
    return model, "blocks.5.norm1", tokens_to_map, images(samples, 64)


def test_equals_torchcam_given_the_same_noise(arch):
    model, layer, reshape, x = arch
    options = {"smoothgradcampp_samples": 3, "smoothgradcampp_std": 0.25, "smoothgradcampp_seed": 7}
    out = explain_tensors(model, layer, x, [METHOD], k=2, **options)
    maps = out.maps[METHOD]
    size = (x.shape[-2], x.shape[-1])
    with SmoothGradCAMpp(
        model, layer, num_samples=3, std=0.25, input_shape=tuple(x.shape[1:]), reshape_transform=reshape
    ) as cam:
        for b in range(2):
            for j in range(2):
                model(x[b : b + 1])  # torchcam keeps this input and its activations
                torch.manual_seed(7)  # the noise camcli draws from its seed
                ref = cam(class_idx=int(out.classes[b, j]), normalized=False)[0][0]
                assert ref.amax() > ref.amin()
                assert corr(maps.display[b, j], shown(ref, size)) >= 0.99, (layer, b, j)
                assert torch.allclose(maps.raw[b, j], ref, atol=1e-4 * float(ref.abs().max()), rtol=0), (layer, b, j)
    assert not torch.allclose(maps.raw[:, 0], maps.raw[:, 1])  # each class has its own map


def test_defaults_are_torchcams():
    theirs = inspect.signature(SmoothGradCAMpp).parameters
    ours = {p.name: p.default for p in methods.get(METHOD).params}
    assert ours == {"samples": theirs["num_samples"].default, "std": theirs["std"].default, "seed": 0}


def test_noise_is_seeded_and_independent_of_the_batch(arch):
    model, layer, _reshape, x = arch
    classes = torch.tensor([[3, 5], [3, 5]])
    both = explain_tensors(model, layer, x, [METHOD], classes=classes).maps[METHOD].raw
    alone = explain_tensors(model, layer, x[1:], [METHOD], classes=classes[1:]).maps[METHOD].raw
    assert torch.allclose(both[1:], alone, atol=1e-5 * float(alone.abs().max()), rtol=0)
    other = explain_tensors(model, layer, x, [METHOD], classes=classes, smoothgradcampp_seed=1).maps[METHOD].raw
    assert not torch.allclose(both, other, atol=1e-3 * float(both.abs().max()), rtol=0)


def test_runs_from_the_command_line_with_its_options(run_cli, samples, tmp_path):
    common = ["explain", samples / "chelsea.png", "--method", METHOD, "-m", "resnet18", "--random-weights"]
    result = run_cli(
        *common,
        *("--input-size", "64", "-o", tmp_path / "o", "-q", "--top-k", "2", "--save", "raw_map"),
        *("--smoothgradcampp-samples", "2", "--smoothgradcampp-std", "0.1", "--smoothgradcampp-seed", "3"),
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "o" / "chelsea.png"
    entries = json.loads((folder / "explanation.json").read_text())["explanations"]
    assert [e["method"] for e in entries] == [METHOD, METHOD]
    for entry in entries:
        assert {"samples": 2, "std": 0.1, "seed": 3, "layers": ["layer4"]}.items() <= entry["params"].items()
        assert np.load(folder / entry["files"]["raw_map"]).shape == (2, 2)
    refused = run_cli(*common, "-o", tmp_path / "p", "--smoothgradcampp-samples", "0")
    assert refused.exit_code == 2
    assert "--smoothgradcampp-samples" in refused.output
