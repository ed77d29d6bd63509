"""The engine leaves the caller's model as it was and batches correctly."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from camcli.engine import GradCam
from camcli.maps import input_map
from camcli.errors import LayerError
from camcli.layers import probe_layers, resolve_layer
from camcli.models import load_model

from conftest import hook_counts


def _state(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        hook_counts(model),
        [p.grad for p in model.parameters()],
        [type(m) for m in model.modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def _assert_same(before, after):
    assert before[0] == after[0], "train/eval modes changed"
    assert before[1] == after[1], "hooks left behind"
    assert all(a is None and b is None for a, b in zip(before[2], after[2], strict=True)), ".grad touched"
    assert before[3] == after[3], "modules swapped"
    assert all(torch.equal(before[4][k], after[4][k]) for k in before[4]), "weights changed"


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return load_model("resnet18", random_weights=True).model


def test_model_left_as_it_was_also_on_error(resnet):
    resnet.train()  # the caller's mode must come back, not eval
    before = _state(resnet)
    with GradCam(resnet, "layer4") as cam:
        cam(torch.randn(2, 3, 64, 64), lambda logits: logits.topk(2, dim=1).indices)
    _assert_same(before, _state(resnet))
    with pytest.raises(RuntimeError, match="boom"):
        with GradCam(resnet, "layer4") as cam:
            def explode(logits):
                raise RuntimeError("boom")
            cam(torch.randn(1, 3, 64, 64), explode)
    _assert_same(before, _state(resnet))
    resnet.eval()


def test_batch_equals_single_images(resnet):
    x = torch.randn(3, 3, 96, 96)
    classes = torch.tensor([[1, 2], [3, 4], [5, 6]])
    with GradCam(resnet, "layer4") as cam:
        together = cam(x, lambda logits: classes).cam()
        alone = torch.cat([cam(x[i : i + 1], lambda logits, i=i: classes[i : i + 1]).cam() for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5 * float(alone.abs().max()))


def test_counterfactual_uses_negated_gradients(resnet):
    with GradCam(resnet, "layer4") as cam:
        out = cam(torch.randn(1, 3, 64, 64), lambda logits: torch.tensor([[3]]))
    by_hand = torch.relu((-out.weights[0, 0][:, None, None] * out.activations[0]).sum(0))
    assert torch.allclose(out.cam(sign=-1.0)[0, 0], by_hand, atol=1e-6)


def test_inplace_op_after_target_layer_is_harmless():
    """torchvision DenseNet runs F.relu(features, inplace=True) right after the target layer."""
    torch.manual_seed(0)
    model = load_model("tv:densenet121", random_weights=True).model
    x = torch.randn(1, 3, 64, 64)
    captured = {}
    handle = model.features.register_forward_hook(lambda m, a, out: captured.update(a=out.clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    with GradCam(model, "features") as cam:
        out = cam(x, lambda logits: torch.tensor([[0]]))
    assert torch.equal(out.activations, captured["a"])  # pre-ReLU values, as the layer produced them
    assert (out.activations < 0).any()


def test_layer_called_twice_is_rejected():
    shared = nn.Conv2d(3, 3, 3, padding=1)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))
    # nn.Sequential registers the same module once; name it and call twice through the index.
    with pytest.raises(LayerError, match="more than once"):
        with GradCam(model, "0") as cam:
            cam(torch.randn(1, 3, 8, 8), lambda logits: logits.topk(1, dim=1).indices)
    assert hook_counts(model) == [0] * len(list(model.modules()))


def test_default_layer_is_last_spatial_output():
    torch.manual_seed(0)
    model = load_model("tv:resnet18", random_weights=True).model
    assert resolve_layer(model, (224, 224)).name == "layer4"
    names = [info.name for info in probe_layers(model, (224, 224))]
    assert names.index("layer4.1") < names.index("layer4") < names.index("fc")


def test_unknown_layer_suggests_close_names(resnet):
    with pytest.raises(LayerError, match="layer4"):
        resolve_layer(resnet, (64, 64), "layer_4")
    with pytest.raises(LayerError, match="not a B×C×H×W"):
        resolve_layer(resnet, (64, 64), "fc")


def test_input_map():
    cams = torch.zeros(1, 2, 7, 7)
    cams[0, 0, 3, 3] = 2.0
    up = input_map(cams, (224, 224))
    assert up.shape == (1, 2, 224, 224)
    assert float(up[0, 0].max()) == pytest.approx(1.0) and float(up[0, 0].min()) == 0.0
    assert float(up[0, 1].abs().max()) == 0.0  # constant map: no evidence


def test_channels_last_is_temporary_and_exact(resnet):
    pointers = [p.data_ptr() for p in resnet.parameters()]
    strides = [p.stride() for p in resnet.parameters()]
    x = torch.randn(2, 3, 64, 64)
    pick = lambda logits: torch.tensor([[1, 2], [3, 4]])  # noqa: E731
    with GradCam(resnet, "layer4") as cam:
        plain = cam(x, pick).cam()
    with GradCam(resnet, "layer4", channels_last=True) as cam:
        assert resnet.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        fast = cam(x, pick).cam()
    assert [p.data_ptr() for p in resnet.parameters()] == pointers  # the very same storage is back
    assert [p.stride() for p in resnet.parameters()] == strides
    assert torch.allclose(plain, fast, atol=1e-4 * float(plain.abs().max()))


def test_channels_last_transformer_layers_are_not_feature_maps():
    torch.manual_seed(0)
    model = load_model("swin_tiny_patch4_window7_224", random_weights=True).model
    info = resolve_layer(model, (224, 224))
    assert info.name == "patch_embed.proj" and info.kind == "Conv2d"  # its only B×C×H×W feature map
    with pytest.raises(LayerError, match="channels last"):
        resolve_layer(model, (224, 224), "norm")
