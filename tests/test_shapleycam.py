"""ShapleyCAM: maps against pytorch-grad-cam's ``ShapleyCAM`` on resnet18, convnext_tiny and a ViT's token
layer (timm's test_vit); the engine's Hessian-vector products against finite differences of the gradient;
explicit attention against torch's own; the model left as it was; the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import corr, explain_tensors, hook_counts
from pytorch_grad_cam import ShapleyCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from camcli.engine.attention import ExplicitAttention
from camcli.engine.capture import Capture
from camcli.engine.needs import Needs
from camcli.heads import explained_scores
from camcli.layers import resolve_layer
from camcli.layout import Layout
from camcli.methods.shapleycam import ShapleyCam
from camcli.models import DataConfig, load_model
from camcli.preprocess import decode, to_input


def vit_tokens(tensor: torch.Tensor) -> torch.Tensor:
    """test_vit's tokens (a class token, then a 10×10 grid) as B×C×h×w, pytorch-grad-cam's reshape."""
    return tensor[:, 1:, :].reshape(tensor.size(0), 10, 10, tensor.size(2)).permute(0, 3, 1, 2)


class Oracle(ShapleyCAM):
    """pytorch-grad-cam's ShapleyCAM, keeping the channel weights it computes, with its token-layer bug fixed:
    it weighs the raw B×N×C activations (its reshape transform reaches only the gradients). The weights and
    the rest of its computation are its own."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth=False):
        self.weights = self.get_cam_weights(input_tensor, target_layer, targets, activations, grads)
        reshape = self.activations_and_grads.reshape_transform
        maps = (activations if reshape is None else reshape(activations)).detach().numpy()
        return (self.weights[:, :, None, None] * maps).sum(axis=1)


# name: (input size, target layer, score, pytorch-grad-cam target). resnet18 is linear after layer4, so
# with the logit H·A = 0: the paper's ReST score gives it curvature.
ARCHS = {
    "resnet18": (96, "layer3", "rest", ClassifierOutputReST),
    "convnext_tiny": (64, "stages.2", "logit", ClassifierOutputTarget),
    "test_vit": (160, "blocks.3", "logit", ClassifierOutputTarget),
}


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = load_model(name, random_weights=True).model.eval()
    with torch.no_grad():
        for pname, param in model.named_parameters():
            if pname.endswith("gamma"):  # ConvNeXt's untrained layer scales of 1e-6 silence its blocks
                param.fill_(1.0)
            elif param.dim() >= 1 and not param.any():  # heads timm starts at zero
                param.normal_(0, 0.02)
        if name == "resnet18":  # logits as large as a trained model's, so that ReST's softmax term curves
            model.fc.weight.mul_(30)
    return model


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request, samples):
    size, layer, score, target = ARCHS[request.param]
    model = _model(request.param)
    data = DataConfig((size, size), size, "bilinear", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.stack([to_input(decode(samples / f)[0], data)[0] for f in ("chelsea.png", "coffee.png")])
    return request.param, model, layer, score, target, x


def test_maps_and_weights_match_pytorch_grad_cam(arch):
    name, model, layer, score, target, x = arch
    before = hook_counts(model)
    out = explain_tensors(model, layer, x, ["shapleycam"], k=2, score=score)
    assert hook_counts(model) == before
    assert torch.overrides._get_current_function_mode_stack() == []
    layout = resolve_layer(model, tuple(x.shape[-2:]), layer).layout
    needs = Needs(layer_gradients=True, hessian=True)
    with Capture(model, [(layer, layout)], needs, explain=lambda s: explained_scores(s, score)) as capture:
        captured = capture(x, lambda scores: out.classes).layers[0]
    alpha = ShapleyCam().weights(captured, None, None, None)  # B×K×C
    assert captured.hessian is not None
    curvature = 0.5 * captured.hessian.mean(dim=(-2, -1))
    assert float(curvature.abs().max()) > 0.05 * float(alpha.abs().max())  # not Grad-CAM in disguise
    cam = Oracle(
        model=model,
        target_layers=[dict(model.named_modules())[layer]],
        reshape_transform=vit_tokens if name == "test_vit" else None,
    )
    try:
        for j in range(2):
            with sdpa_kernel(SDPBackend.MATH):  # its fused attention has no second derivative
                ref = cam(input_tensor=x, targets=[target(int(c)) for c in out.classes[:, j]])
            expected = torch.from_numpy(cam.weights)
            torch.testing.assert_close(alpha[:, j], expected, atol=1e-3 * float(expected.abs().max()), rtol=0)
            for b in range(2):
                assert ref[b].max() > 0
                assert corr(out.maps["shapleycam"].display[b, j], ref[b]) >= 0.99, (name, b, j)
    finally:
        cam.activations_and_grads.gradients = []  # its clear() cannot detach these views in place
        cam.activations_and_grads.release()
    assert hook_counts(model) == before


def _gradient_at(model: nn.Module, layer: str, x: torch.Tensor, given: torch.Tensor, classes, score: str):
    """∂(explained score)/∂A with the layer's output replaced by ``given``, by plain first-order autograd."""
    leaf = given.clone().requires_grad_(True)
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, a, out: leaf)
    try:
        values = explained_scores(model(x), score)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(values.gather(1, classes).sum(), leaf)
    return grad


@pytest.mark.parametrize(
    ("name", "layer", "layout", "score"),
    [
        ("resnet18", "layer3", Layout("nchw", (4, 4)), "rest"),
        ("test_vit", "blocks.3", Layout("tokens", (10, 10), 1), "logit"),
    ],
)
def test_hessian_vector_products_equal_finite_differences(name, layer, layout, score):
    """H·A = d/dt ∂y/∂A(A + tA) at t = 0: central differences in float64, prefix tokens included."""
    model = _model(name).double()
    torch.manual_seed(1)
    size = 64 if name == "resnet18" else 160
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    classes = torch.tensor([[3, 7], [5, 3]])
    needs = Needs(layer_gradients=True, hessian=True)
    with Capture(model, [(layer, layout)], needs, explain=lambda s: explained_scores(s, score)) as capture:
        found = capture(x, lambda scores: classes).layers[0]
    assert found.hessian is not None
    assert found.gradients is not None
    seen = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, a, out: seen.update(a=out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    a, eps = seen["a"], 1e-4
    for j in range(2):
        pick = classes[:, j : j + 1]
        ahead = _gradient_at(model, layer, x, a * (1 + eps), pick, score)
        behind = _gradient_at(model, layer, x, a * (1 - eps), pick, score)
        expected = layout.to_map((ahead - behind) / (2 * eps)).float()
        scale = float(expected.abs().max())
        assert scale > 1e-3 * float(found.gradients[:, j].abs().max())  # the curvature term is not negligible
        torch.testing.assert_close(found.hessian[:, j], expected, atol=1e-3 * scale, rtol=0)


def test_explicit_attention_equals_torch_and_records_probabilities():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 5, 8).unbind(0)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    for options in ({}, {"is_causal": True}, {"attn_mask": causal}, {"attn_mask": torch.randn(5, 5)}, {"scale": 0.3}):
        seen: list[torch.Tensor] = []
        with ExplicitAttention(seen.append):
            got = F.scaled_dot_product_attention(q, k, v, **options)
        torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, **options))
        assert seen[0].shape == (2, 4, 5, 5)
        torch.testing.assert_close(seen[0].sum(-1), torch.ones(2, 4, 5))
    attention = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    query, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    forbidden = torch.zeros(5, 7, dtype=torch.bool)
    forbidden[:, 3:] = True  # nn.MultiheadAttention: True may not attend
    for mask in (None, forbidden):
        seen = []
        with ExplicitAttention(seen.append):
            got, weights = attention(query, memory, memory, attn_mask=mask)
        expected, expected_weights = attention(query, memory, memory, attn_mask=mask)
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(weights, expected_weights)
        torch.testing.assert_close(seen[0].mean(dim=1), expected_weights)
    assert torch.overrides._get_current_function_mode_stack() == []


def test_command_line(run_cli, samples, tmp_path):
    result = run_cli(
        "explain",
        samples / "chelsea.png",
        "--method",
        "shapleycam",
        "-m",
        "resnet18",
        "--random-weights",
        "--score",
        "rest",
        "-o",
        tmp_path / "o",
        "-q",
        "--top-k",
        "2",
        "--save",
        "raw_map",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "o" / "chelsea.png" / "explanation.json").read_text())
    assert [e["method"] for e in doc["explanations"]] == ["shapleycam", "shapleycam"]
    for exp in doc["explanations"]:
        raw = np.load(tmp_path / "o" / "chelsea.png" / exp["files"]["raw_map"])
        assert raw.shape == (7, 7)
        assert raw.min() >= 0
        assert raw.max() > 0
        assert exp["params"]["layers"] == ["layer4"]
        assert exp["params"]["score"] == "rest"
