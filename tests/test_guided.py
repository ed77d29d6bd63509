"""Guided backprop and Guided Grad-CAM: agreement with captum, every activation type, no side effects."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from captum.attr import GuidedGradCam as CaptumGuidedGradCam
from torch import nn

from camcli.engine import GradCam
from camcli.guided import GuidedBackprop, is_activation
from camcli.layers import resolve_layer
from camcli.methods.basic import compute
from camcli.models import load_model
from camcli.preprocess import decode, to_input

from conftest import hook_counts

SIZE = (224, 224)


def _images(samples, data, names=("chelsea.png", "coffee.png")):
    return torch.stack([to_input(decode(samples / n)[0], data)[0] for n in names])


def _captum_view(name: str, model: nn.Module) -> nn.Module:
    """The model as captum can guide it.

    captum guides nn.ReLU modules only; torchvision's DenseNet ends with a functional
    F.relu(..., inplace=True), which camcli guides too. For captum, the same modules are
    rearranged with that ReLU as a module; the logits are identical (checked below).
    """
    if name != "tv:densenet121":
        return model
    return nn.Sequential(model.features, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         model.classifier).eval()


@pytest.mark.parametrize("name", ["tv:resnet18", "tv:vgg11", "tv:densenet121"])
def test_guided_methods_match_captum(name, samples):
    torch.manual_seed(0)
    loaded = load_model(name, random_weights=True)
    model = loaded.model
    layer = resolve_layer(model, SIZE).name
    oracle_model = _captum_view(name, model)
    x = _images(samples, loaded.data)
    with torch.no_grad():
        assert torch.allclose(oracle_model(x), model(x), atol=1e-5)

    with GradCam(model, layer, guided=True) as cam:
        out = cam(x, lambda logits: logits.topk(20, dim=1).indices)
    guided = compute(out, "guided-backprop", SIZE)[0]
    ggc = compute(out, "guided-gradcam", SIZE)[0]
    strongest = out.cam().amax(dim=(2, 3)).topk(2, dim=1).indices  # classes with a non-zero CAM

    oracle_layer = dict(oracle_model.named_modules())[layer if oracle_model is model else "0"]
    gbp = CaptumGuidedBackprop(oracle_model)
    gcam = CaptumGuidedGradCam(oracle_model, oracle_layer)
    for b in range(2):
        for j in strongest[b].tolist():
            c = int(out.classes[b, j])
            ref = gbp.attribute(x[b : b + 1], target=c)[0]
            assert torch.allclose(guided[b, j], ref, atol=1e-4 * float(ref.abs().max()), rtol=0)
            ref = gcam.attribute(x[b : b + 1], target=c, interpolate_mode="bilinear")[0]
            assert ref.abs().max() > 0
            assert torch.allclose(ggc[b, j], ref, atol=1e-4 * float(ref.abs().max()), rtol=0)


SMOOTH = [("tf_efficientnet_lite0", "ReLU6"), ("efficientnet_b0", "SiLU"), ("convnext_tiny", "GELU")]  # timm GELU class


def _arriving_gradients(model: nn.Module, x: torch.Tensor, target: int, guided: bool) -> list[torch.Tensor]:
    """Gradients arriving at each activation output during one backward to the input."""
    seen: list[torch.Tensor] = []

    def record(module, args, output):
        output.register_hook(lambda g: seen.append(g.detach()))

    with GuidedBackprop(model) as gb:  # its hooks come first, so `record` sees the gated gradient
        handles = [m.register_forward_hook(record) for m in model.modules() if is_activation(m)]
        try:
            x = x.clone().requires_grad_(True)
            with gb.functional():
                logits = model(x)
            gb.enabled = guided
            torch.autograd.grad(logits[:, target].sum(), x)
        finally:
            gb.enabled = False
            for h in handles:
                h.remove()
    return seen


@pytest.mark.parametrize("name,act", SMOOTH, ids=[s[0] for s in SMOOTH])
def test_every_activation_type_is_guided(name, act, samples):
    torch.manual_seed(0)
    loaded = load_model(name, random_weights=name != "tf_efficientnet_lite0")
    model = loaded.model.eval()
    with torch.no_grad():
        # ConvNeXt initializes its layer scales to 1e-6, so an untrained model's input gradient runs
        # almost entirely through the residual skips, past no activation. Trained scales are O(1).
        for pname, param in model.named_parameters():
            if pname.endswith("gamma"):
                param.fill_(1.0)
    assert any(type(m).__name__ == act and is_activation(m) for m in model.modules())
    x = _images(samples, loaded.data, ("chelsea.png",))

    plain = _arriving_gradients(model, x, 281, guided=False)
    gated = _arriving_gradients(model, x, 281, guided=True)
    assert len(gated) == len(plain) > 0
    assert any(float(g.min()) < 0 for g in plain)  # the check below is not vacuous
    assert all(float(g.min()) >= 0 for g in gated)  # nothing negative flows back at any activation

    layer = resolve_layer(model, loaded.data.input_size).name
    x2 = _images(samples, loaded.data)
    classes = torch.tensor([[281, 967], [967, 504]])
    with GradCam(model, layer, guided=True) as cam:
        together = cam(x2, lambda logits: classes).guided
        alone = torch.cat([cam(x2[i : i + 1], lambda logits, i=i: classes[i : i + 1]).guided for i in range(2)])
    assert torch.allclose(together, alone, atol=1e-5 * float(alone.abs().max()))

    x3 = x2.clone().requires_grad_(True)
    plain_grad = torch.autograd.grad(model(x3)[0, 281], x3)[0][0]
    assert not torch.allclose(together[0, 0], plain_grad, atol=1e-3 * float(plain_grad.abs().max()))


def test_functional_relu_is_guided():
    """A ReLU called as a function, not a module, is guided too."""

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 1)

        def forward(self, x):
            return self.b(F.relu(self.a(x)))

    torch.manual_seed(0)
    model = Functional()
    x = torch.randn(16, 4, requires_grad=True)
    with GuidedBackprop(model) as gb:
        with gb.functional():
            y = model(x).sum()
        with gb.guiding():
            (got,) = torch.autograd.grad(y, x)
    hidden = model.a(x)
    expected = ((model.b.weight.clamp(min=0) * (hidden > 0)) @ model.a.weight)  # paper's rule by hand
    assert torch.allclose(got, expected.detach(), atol=1e-6)


def test_guided_gradcam_is_class_discriminative(lite0, samples):
    x = _images(samples, lite0.data, ("chelsea.png",))
    with GradCam(lite0.model, "bn2", guided=True) as cam:
        out = cam(x, lambda logits: torch.tensor([[282, 967]]))
    ggc = compute(out, "guided-gradcam", SIZE)[0]
    a, b = ggc[0, 0], ggc[0, 1]
    assert (a / a.norm() - b / b.norm()).norm() > 0.1


def test_model_unchanged_after_guided_run_and_on_error(samples):
    torch.manual_seed(0)
    model = load_model("tv:densenet121", random_weights=True).model
    model.train()
    before = ([m.training for m in model.modules()], hook_counts(model), [type(m) for m in model.modules()])
    x = torch.randn(1, 3, 64, 64)
    with GradCam(model, "features", guided=True) as cam:
        cam(x, lambda logits: logits.topk(2, dim=1).indices)
    with pytest.raises(RuntimeError, match="boom"):
        with GradCam(model, "features", guided=True) as cam:
            cam(x, lambda logits: (_ for _ in ()).throw(RuntimeError("boom")))
    after = ([m.training for m in model.modules()], hook_counts(model), [type(m) for m in model.modules()])
    assert before == after
    assert all(p.grad is None for p in model.parameters())
    assert torch.overrides._get_current_function_mode_stack() == []
