"""The explainer: k classes from one pass equal one class at a time, a batch equals its images one by one,
methods asked together share a pass, several layers combine as pytorch-grad-cam does."""

from __future__ import annotations

import pytest
import torch
from conftest import explain_tensors

from camcli.methods import get as get_method
from camcli.methods import names as method_names
from camcli.models import load_model

# legrad (attention blocks) and refinecam (several layers) have this test in their own files; so do SS-CAM and
# IS-CAM (tests/test_scorecam_variants.py: two classes from one pass, each equal to torchcam's map of that
# class alone, and the batch), which repeat Score-CAM's shared masked forwards, tested here, over samples.
ALL = [name for name in method_names() if name not in ("legrad", "refinecam", "sscam", "iscam")]


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return load_model("resnet18", random_weights=True).model


@pytest.mark.parametrize("method", ALL)
def test_k_classes_together_equal_one_at_a_time_and_batch_equals_single(resnet, method):
    x = torch.randn(2, 3, 64, 64)
    classes = torch.tensor([[1, 2, 3], [4, 5, 6]])
    opts = {"occlusion_window": 32, "occlusion_stride": 16}
    together = explain_tensors(resnet, "layer4", x, [method], classes=classes, **opts).maps[method].raw
    class_free = get_method(method).cls.concepts  # dff: the same concepts whatever the classes
    if class_free:
        alone = explain_tensors(resnet, "layer4", x, [method], classes=classes[:, :1], **opts).maps[method].raw
        assert torch.equal(together, alone), method
    for j in range(0 if class_free else 3):
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


def test_several_layers_give_one_map_per_class(resnet):
    """Several layers: the mean of each layer's Grad-CAM, min-max scaled then upsampled bilinearly to the input
    (as pytorch-grad-cam combines layers). Expected maps are computed here from hooked activations and
    autograd gradients: ReLU(Σ_c mean(∂y/∂A_c) A_c) per layer."""
    import torch.nn.functional as F

    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    out = explain_tensors(resnet, ["layer3", "layer4"], x, ["gradcam"], k=2)
    combined = out.maps["gradcam"].raw
    assert combined.shape == (2, 2, 64, 64)  # averaged at input resolution
    assert out.params["gradcam"]["layers"] == ["layer3", "layer4"]

    acts: dict[str, torch.Tensor] = {}
    handles = [
        getattr(resnet, name).register_forward_hook(lambda m, a, output, name=name: acts.__setitem__(name, output))
        for name in ("layer3", "layer4")
    ]
    try:
        logits = resnet(x)
    finally:
        for handle in handles:
            handle.remove()
    expected = torch.zeros(2, 2, 64, 64)
    for b in range(2):
        for j, c in enumerate(out.classes[b].tolist()):
            grads = torch.autograd.grad(logits[b, c], [acts["layer3"], acts["layer4"]], retain_graph=True)
            for name, grad in zip(("layer3", "layer4"), grads, strict=True):
                cam = torch.relu((grad[b].mean(dim=(1, 2))[:, None, None] * acts[name][b]).sum(dim=0)).detach()
                scaled = (cam - cam.min()) / (cam.max() - cam.min()) if cam.max() > cam.min() else torch.zeros_like(cam)
                up = F.interpolate(scaled[None, None], size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
                expected[b, j] += up / 2
    assert float(expected.amax()) > 0.5  # maps with evidence, not zeros compared with zeros
    torch.testing.assert_close(combined, expected, atol=1e-5, rtol=0)


def test_ablation_runs_from_the_layer_up_only_where_exact(resnet, monkeypatch):
    """The tail shortcut is used where the model allows it, and gives the same maps as whole forwards."""
    from camcli.engine.probe import Probe

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
