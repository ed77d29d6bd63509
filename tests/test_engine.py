"""The engine leaves the caller's model as it was, batches correctly, and serves every method from one pass."""

from __future__ import annotations

import pytest
import torch
from conftest import explain_tensors, hook_counts
from torch import nn

from camcli.engine import Capture, Needs
from camcli.errors import LayerError
from camcli.layers import probe_layers, resolve_layer
from camcli.layout import Layout
from camcli.maps import input_map
from camcli.methods import METHODS
from camcli.models import load_model

ALL = METHODS


def _state(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        hook_counts(model),
        [p.grad for p in model.parameters()],
        [type(m) for m in model.modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
        [(p.data_ptr(), p.stride()) for p in model.parameters()],
    )


def _assert_same(before, after):
    assert before[0] == after[0], "train/eval modes changed"
    assert before[1] == after[1], "hooks left behind"
    assert all(a is None and b is None for a, b in zip(before[2], after[2], strict=True)), ".grad touched"
    assert before[3] == after[3], "modules swapped"
    assert all(torch.equal(before[4][k], after[4][k]) for k in before[4]), "weights changed"
    assert before[5] == after[5], "parameter storage or layout changed"
    assert torch.overrides._get_current_function_mode_stack() == [], "a function mode was left active"


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return load_model("resnet18", random_weights=True).model


def test_model_left_as_it_was_after_every_method_and_on_error(resnet):
    resnet.train()  # the caller's mode must come back, not eval
    before = _state(resnet)
    x = torch.randn(2, 3, 64, 64)
    explain_tensors(resnet, "layer4", x, ALL, k=2, occlusion_window=32, occlusion_stride=32)
    _assert_same(before, _state(resnet))

    def explode(scores):
        raise RuntimeError("boom")

    for channels_last in (False, True):
        with pytest.raises(RuntimeError, match="boom"):
            explain_tensors(resnet, "layer4", x, ALL, classes=explode, channels_last=channels_last)
        _assert_same(before, _state(resnet))
    resnet.eval()


class _Exploding(torch.nn.Module):
    """A classifier whose head fails on its second call: the first is the engine's pass, later ones the
    perturbation forwards."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("boom in a perturbed forward")
        return self.inner(x)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "occlusion"])
def test_model_left_as_it_was_when_a_perturbation_forward_fails(resnet, method):
    model = _Exploding(resnet)
    before = _state(model)
    with pytest.raises(RuntimeError, match="boom"):
        explain_tensors(
            model, "inner.layer4", torch.randn(1, 3, 64, 64), [method], k=1, occlusion_window=32, occlusion_stride=32
        )
    _assert_same(before, _state(model))


@pytest.mark.parametrize("method", ALL)
def test_k_classes_together_equal_one_at_a_time_and_batch_equals_single(resnet, method):
    x = torch.randn(2, 3, 64, 64)
    classes = torch.tensor([[1, 2, 3], [4, 5, 6]])
    opts = {"occlusion_window": 32, "occlusion_stride": 16}
    together = explain_tensors(resnet, "layer4", x, [method], classes=classes, **opts).maps[method].raw
    for j in range(3):
        alone = explain_tensors(resnet, "layer4", x, [method], classes=classes[:, j : j + 1], **opts).maps[method].raw
        scale = float(alone.abs().max()) + 1e-12
        assert torch.allclose(together[:, j : j + 1], alone, atol=1e-4 * scale, rtol=1e-4), method
    single = explain_tensors(resnet, "layer4", x[1:], [method], classes=classes[1:], **opts).maps[method].raw
    assert torch.allclose(together[1:], single, atol=1e-4 * (float(single.abs().max()) + 1e-12), rtol=1e-4), method


def test_methods_asked_together_share_one_pass(resnet):
    x = torch.randn(2, 3, 64, 64)
    classes = torch.tensor([[1, 2], [3, 4]])
    both = explain_tensors(resnet, "layer4", x, ["gradcam", "guided-gradcam", "saliency", "deconvnet"], classes=classes)
    for method in ("gradcam", "guided-gradcam", "saliency", "deconvnet"):
        alone = explain_tensors(resnet, "layer4", x, [method], classes=classes).maps[method].raw
        assert torch.allclose(both.maps[method].raw, alone, atol=1e-5 * float(alone.abs().max()))


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
    for needs in (Needs(layer_gradients=True), Needs(layer_gradients=True, rules=frozenset({"guided"}))):
        with Capture(model, [("features", Layout())], needs) as capture:
            out = capture(x, lambda scores: torch.tensor([[0]]))
        acts = out.layers[0].activations
        assert torch.equal(acts, captured["a"])  # pre-ReLU values, as the layer produced them
        assert (acts < 0).any()


def test_layer_called_twice_is_rejected():
    shared = nn.Conv2d(3, 3, 3, padding=1)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))
    # nn.Sequential registers the same module once; name it and call twice through the index.
    capture = Capture(model, [("0", Layout())], Needs(layer_gradients=True))
    with pytest.raises(LayerError, match="more than once"), capture:
        capture(torch.randn(1, 3, 8, 8), lambda scores: scores.topk(1, dim=1).indices)
    assert hook_counts(model) == [0] * len(list(model.modules()))


def test_several_layers_give_one_map_per_class(resnet):
    x = torch.randn(2, 3, 64, 64)
    out = explain_tensors(resnet, ["layer3", "layer4"], x, ["gradcam"], k=2)
    assert out.maps["gradcam"].raw.shape == (2, 2, 64, 64)  # averaged at input resolution
    assert out.params["gradcam"]["layers"] == ["layer3", "layer4"]


def test_default_layer_is_last_spatial_output():
    torch.manual_seed(0)
    model = load_model("tv:resnet18", random_weights=True).model
    assert resolve_layer(model, (224, 224)).name == "layer4"
    names = [info.name for info in probe_layers(model, (224, 224))]
    assert names.index("layer4.1") < names.index("layer4") < names.index("fc")


def test_unknown_layer_suggests_close_names(resnet):
    with pytest.raises(LayerError, match="layer4"):
        resolve_layer(resnet, (64, 64), "layer_4")
    with pytest.raises(LayerError, match="not a grid of image positions"):
        resolve_layer(resnet, (64, 64), "fc")


def test_input_map():
    cams = torch.zeros(1, 2, 7, 7)
    cams[0, 0, 3, 3] = 2.0
    up = input_map(cams, (224, 224))
    assert up.shape == (1, 2, 224, 224)
    assert float(up[0, 0].max()) == pytest.approx(1.0)
    assert float(up[0, 0].min()) == 0.0
    assert float(up[0, 1].abs().max()) == 0.0  # constant map: no evidence


def test_channels_last_is_temporary_and_exact(resnet):
    pointers = [p.data_ptr() for p in resnet.parameters()]
    strides = [p.stride() for p in resnet.parameters()]
    x = torch.randn(2, 3, 64, 64)
    classes = torch.tensor([[1, 2], [3, 4]])
    plain = explain_tensors(resnet, "layer4", x, ["gradcam"], classes=classes).maps["gradcam"].raw
    fast = explain_tensors(resnet, "layer4", x, ["gradcam"], classes=classes, channels_last=True).maps["gradcam"].raw
    assert [p.data_ptr() for p in resnet.parameters()] == pointers  # the very same storage is back
    assert [p.stride() for p in resnet.parameters()] == strides
    assert torch.allclose(plain, fast, atol=1e-4 * float(plain.abs().max()))


def test_ablation_runs_from_the_layer_up_only_where_exact(resnet, monkeypatch):
    """The tail shortcut is used where the model allows it, and gives the same maps as whole forwards."""
    from camcli.engine import Probe

    x = torch.randn(1, 3, 48, 48)
    classes = torch.tensor([[1, 2]])
    fed: list[int] = []
    original = Probe._replaced

    def spy(self, name, inputs, replacement):
        fed.append(inputs.shape[0])
        return original(self, name, inputs, replacement)

    monkeypatch.setattr(Probe, "_replaced", spy)
    tail = explain_tensors(resnet, "layer3", x, ["ablationcam"], classes=classes).maps["ablationcam"].raw
    assert fed[0] == 1
    assert fed[1] == 1
    monkeypatch.setattr(Probe, "_tail_is_exact", lambda *args: False)  # force whole forwards
    fed.clear()
    whole = explain_tensors(resnet, "layer3", x, ["ablationcam"], classes=classes).maps["ablationcam"].raw
    assert fed[0] > 1
    assert torch.allclose(tail, whole, atol=1e-4 * float(whole.abs().max()))


def test_transformer_layers_become_feature_maps():
    torch.manual_seed(0)
    model = load_model("swin_tiny_patch4_window7_224", random_weights=True).model
    info = resolve_layer(model, (224, 224))
    assert (info.name, info.layout.kind, info.layout.grid) == ("norm", "nhwc", (7, 7))
    vit = load_model("vit_tiny_patch16_224", random_weights=True).model
    info = resolve_layer(vit, (224, 224))
    assert (info.name, info.layout.kind, info.layout.grid, info.layout.prefix) == (
        "blocks.11.norm1",
        "tokens",
        (14, 14),
        1,
    )
    with pytest.raises(LayerError, match="attention"):
        resolve_layer(vit, (224, 224), "blocks.11.attn.qkv")
