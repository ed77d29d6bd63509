"""KPCA-CAM: camcli's kernel PCA in torch against scikit-learn's (through pytorch-grad-cam's projection) for
every kernel, and the maps against pytorch-grad-cam's ``KPCA_CAM`` up to sign, on a CNN (resnet18) and a
ViT's token layer (timm's test_vit); from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import corr, explain_tensors
from pytorch_grad_cam import KPCA_CAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

from camcli.maps import input_map
from camcli.methods.kpcacam import KERNELS, kernel_component
from camcli.models import DataConfig, load_model
from camcli.preprocess import decode, to_input


def vit_tokens(tensor: torch.Tensor) -> torch.Tensor:
    """test_vit's tokens (a class token, then a 10×10 grid) as B×C×h×w, pytorch-grad-cam's reshape."""
    return tensor[:, 1:, :].reshape(tensor.size(0), 10, 10, tensor.size(2)).permute(0, 3, 1, 2)


ARCHS = {"resnet18": (96, "layer3", None), "test_vit": (160, "blocks.5.norm1", vit_tokens)}


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request, samples):
    size, layer, reshape = ARCHS[request.param]
    torch.manual_seed(0)
    loaded = load_model(request.param, random_weights=True)
    data = DataConfig((size, size), size, "bilinear", loaded.data.mean, loaded.data.std)
    x = torch.stack([to_input(decode(samples / f)[0], data)[0] for f in ("chelsea.png", "coffee.png")])
    model = loaded.model.eval()
    seen = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, a, out: seen.update(a=out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    acts = seen["a"] if reshape is None else reshape(seen["a"])
    return request.param, model, layer, reshape, x, acts.contiguous()


@pytest.mark.parametrize("kernel", KERNELS)
def test_projection_is_scikit_learns_kernel_pca_up_to_sign(arch, kernel):
    name, _model, _layer, _reshape, _x, acts = arch
    ours = kernel_component(acts, kernel, 0.0)  # gamma 0: 1/C, scikit-learn's None
    theirs = torch.from_numpy(get_2d_projection_kernel(acts.numpy(), kernel, None))
    for b in range(2):
        sign = 1.0 if corr(ours[b], theirs[b]) > 0 else -1.0
        scale = float(theirs[b].abs().max())
        assert scale > 0
        assert torch.allclose(ours[b], sign * theirs[b], atol=1e-4 * scale, rtol=0), (name, kernel, b)
        assert corr(ours[b], acts[b].mean(0)) > 0, (name, kernel, b)  # camcli's sign: along the activity


@pytest.mark.parametrize(("kernel", "gamma"), [("sigmoid", None), ("poly", 0.05)])
def test_maps_match_kpca_cam_up_to_sign(arch, kernel, gamma):
    name, model, layer, reshape, x, acts = arch
    options = {"kpcacam_kernel": kernel} | ({} if gamma is None else {"kpcacam_gamma": gamma})
    out = explain_tensors(model, layer, x, ["kpcacam"], k=2, **options)
    signed = kernel_component(acts, kernel, gamma or 0.0)
    size = tuple(x.shape[-2:])
    target = dict(model.named_modules())[layer]
    with KPCA_CAM(model=model, target_layers=[target], reshape_transform=reshape, kernel=kernel, gamma=gamma) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in out.classes[:, 0]])
    display = out.maps["kpcacam"].display
    for b in range(2):
        assert torch.equal(display[b, 0], display[b, 1])  # class-agnostic: one map per image
        assert torch.allclose(display[b, 0], input_map(signed[b].relu()[None, None], size)[0, 0], atol=1e-5)
        if corr(display[b, 0], ref[b]) < 0.99:  # pytorch-grad-cam kept the other sign
            flipped = input_map((-signed[b]).relu()[None, None], size)[0, 0]
            assert corr(flipped, ref[b]) >= 0.99, (name, kernel, b)


def test_kpcacam_from_the_command_line(run_cli, samples, tmp_path):
    args = ["explain", samples / "chelsea.png", "--method", "kpcacam", "-o", tmp_path / "o", "-q", "--top-k", "2"]
    result = run_cli(*args, "--save", "raw_map", "--kpcacam-kernel", "rbf", "--kpcacam-gamma", "0.01")
    assert result.exit_code == 0, result.output
    entries = json.loads((tmp_path / "o" / "chelsea.png" / "explanation.json").read_text())["explanations"]
    assert [(e["params"]["kernel"], e["params"]["gamma"]) for e in entries] == [("rbf", 0.01)] * 2
    raw = np.load(tmp_path / "o" / "chelsea.png" / entries[0]["files"]["raw_map"])
    assert raw.shape == (7, 7)
    assert raw.max() > 0
    bad = run_cli(*args, "--kpcacam-kernel", "precomputed")
    assert bad.exit_code != 0
    assert "--kpcacam-kernel" in bad.output
