"""The capture engine leaves the caller's model as it was (every method, errors, channels-last) and takes layer
values as the layer produced them."""

from __future__ import annotations

import pytest
import torch
from conftest import explain_tensors, hook_counts
from torch import nn

from camcli.engine.capture import Capture
from camcli.engine.needs import Needs
from camcli.errors import LayerError
from camcli.layout import Layout
from camcli.methods import names as method_names
from camcli.models import load_model

# legrad reads attention blocks (tests/test_legrad.py leaves a ViT as it was); refinecam needs several layers
# and runs below on two; SS-CAM and IS-CAM with one noise sample (their defaults' 35 and 10 cost minutes).
ALL = [name for name in method_names() if name not in ("legrad", "refinecam")]
FEW_SAMPLES = {"sscam_num_samples": 1, "iscam_num_samples": 1}


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
    explain_tensors(resnet, "layer4", x, ALL, k=2, occlusion_window=32, occlusion_stride=32, **FEW_SAMPLES)
    explain_tensors(resnet, ["layer3", "layer4"], x, ["refinecam"], k=2)
    _assert_same(before, _state(resnet))

    def explode(scores):
        raise RuntimeError("boom")

    for channels_last in (False, True):
        with pytest.raises(RuntimeError, match="boom"):
            explain_tensors(resnet, "layer4", x, ALL, classes=explode, channels_last=channels_last, **FEW_SAMPLES)
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
