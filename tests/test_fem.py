"""FEM: the paper's form against its authors' definition, pytorch-grad-cam's form against its ``FEM``, on a
CNN (resnet18) and a ViT's token layer (timm's test_vit); shared by the classes; from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import corr, explain_tensors
from pytorch_grad_cam import FEM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from camcli.models import DataConfig, load_model
from camcli.preprocess import decode, to_input


def vit_tokens(tensor: torch.Tensor) -> torch.Tensor:
    """test_vit's tokens (a class token, then a 10×10 grid) as B×C×h×w, pytorch-grad-cam's reshape."""
    return tensor[:, 1:, :].reshape(tensor.size(0), 10, 10, tensor.size(2)).permute(0, 3, 1, 2)


ARCHS = {"resnet18": (96, "layer4", None), "test_vit": (160, "blocks.5.norm1", vit_tokens)}


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request, samples):
    size, layer, reshape = ARCHS[request.param]
    torch.manual_seed(0)
    loaded = load_model(request.param, random_weights=True)
    data = DataConfig((size, size), size, "bilinear", loaded.data.mean, loaded.data.std)
    x = torch.stack([to_input(decode(samples / f)[0], data)[0] for f in ("chelsea.png", "coffee.png")])
    return request.param, loaded.model.eval(), layer, reshape, x


def _activations(model, layer, reshape, x) -> np.ndarray:
    seen = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, a, out: seen.update(a=out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return (seen["a"] if reshape is None else reshape(seen["a"])).numpy().astype(np.float64)


@pytest.mark.parametrize("k", [2.0, 1.0])
def test_activations_form_matches_pytorch_grad_cam(arch, k):
    name, model, layer, reshape, x = arch
    out = explain_tensors(model, layer, x, ["fem"], k=2, fem_k=k, fem_combine="activations")
    targets = [ClassifierOutputTarget(int(c)) for c in out.classes[:, 0]]
    with FEM(model=model, target_layers=[dict(model.named_modules())[layer]], reshape_transform=reshape, k=k) as cam:
        ref = cam(input_tensor=x, targets=targets)
    display = out.maps["fem"].display
    for b in range(2):
        assert torch.equal(display[b, 0], display[b, 1])  # class-agnostic: one map per image
        assert corr(display[b, 0], ref[b]) >= 0.99, (name, k, b)


def test_masks_form_is_the_authors_definition(arch):
    """Σ_c μ_c·1[A_c > μ_c + 2σ_c], written from the authors' code in NumPy (float64), then ReLU'd."""
    name, model, layer, reshape, x = arch
    out = explain_tensors(model, layer, x, ["fem"], k=1)
    acts = _activations(model, layer, reshape, x)
    mean = acts.mean(axis=(2, 3), keepdims=True)
    binary = acts > mean + 2 * acts.std(axis=(2, 3), keepdims=True)
    expected = np.maximum((mean * binary).sum(axis=1), 0)
    raw = out.maps["fem"].raw[:, 0].double().numpy()
    assert expected.max() > 0
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-5 * expected.max())
    other = explain_tensors(model, layer, x, ["fem"], k=1, fem_combine="activations").maps["fem"].display
    assert min(corr(out.maps["fem"].display[b, 0], other[b, 0]) for b in range(2)) < 0.99, name  # two readings


def test_fem_from_the_command_line(run_cli, samples, tmp_path):
    args = ["explain", samples / "chelsea.png", "--method", "fem", "-o", tmp_path / "o", "-q", "--top-k", "2"]
    result = run_cli(*args, "--save", "raw_map", "--fem-k", "1.5", "--fem-combine", "activations")
    assert result.exit_code == 0, result.output
    entries = json.loads((tmp_path / "o" / "chelsea.png" / "explanation.json").read_text())["explanations"]
    assert [e["params"]["k"] for e in entries] == [1.5, 1.5]
    assert {e["params"]["combine"] for e in entries} == {"activations"}
    maps = [np.load(tmp_path / "o" / "chelsea.png" / e["files"]["raw_map"]) for e in entries]
    assert maps[0].max() > 0
    np.testing.assert_array_equal(maps[0], maps[1])
    bad = run_cli(*args, "--fem-combine", "sum")
    assert bad.exit_code != 0
    assert "--fem-combine" in bad.output
