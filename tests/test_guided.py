"""Backward rules at every activation type (guided backprop, deconvnet), functional activations, no side effects.

Agreement with captum is in test_oracles.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import explain_tensors, hook_counts
from torch import nn

from camcli.engine.rules import Rules, is_activation
from camcli.models import load_model
from camcli.preprocess import decode, to_input

SIZE = (224, 224)


def _images(samples, data, names=("chelsea.png", "coffee.png")):
    return torch.stack([to_input(decode(samples / n)[0], data)[0] for n in names])


SMOOTH = [("tf_efficientnet_lite0", "ReLU6"), ("efficientnet_b0", "SiLU"), ("convnext_tiny", "GELU")]  # timm GELU class


def _arriving_gradients(model: nn.Module, x: torch.Tensor, target: int, rule: str) -> list[torch.Tensor]:
    """Gradients arriving at each activation output during one backward to the input."""
    seen: list[torch.Tensor] = []

    def record(module, args, output):
        output.register_hook(lambda g: seen.append(g.detach()))

    with Rules(model) as rules:  # its hooks come first, so `record` sees the gated gradient
        handles = [m.register_forward_hook(record) for m in model.modules() if is_activation(m)]
        try:
            x = x.clone().requires_grad_(True)
            with rules.functional():
                logits = model(x)
            with rules.mode(rule):
                torch.autograd.grad(logits[:, target].sum(), x)
        finally:
            for h in handles:
                h.remove()
    return seen


@pytest.mark.parametrize(("name", "act"), SMOOTH, ids=[s[0] for s in SMOOTH])
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

    plain = _arriving_gradients(model, x, 281, "plain")
    gated = _arriving_gradients(model, x, 281, "guided")
    assert len(gated) == len(plain) > 0
    assert any(float(g.min()) < 0 for g in plain)  # the check below is not vacuous
    assert all(float(g.min()) >= 0 for g in gated)  # nothing negative flows back at any activation

    x2 = _images(samples, loaded.data)
    classes = torch.tensor([[281, 967], [967, 504]])
    out = explain_tensors(model, None, x2, ["guided-backprop", "deconvnet", "saliency"], classes=classes)
    together = out.maps["guided-backprop"].raw
    alone = torch.cat(
        [
            explain_tensors(model, None, x2[i : i + 1], ["guided-backprop"], classes=classes[i : i + 1])
            .maps["guided-backprop"]
            .raw
            for i in range(2)
        ]
    )
    assert torch.allclose(together, alone, atol=1e-5 * float(alone.abs().max()))
    deconv, plain = out.maps["deconvnet"].raw, out.maps["saliency"].raw
    assert not torch.allclose(deconv, together, atol=1e-3 * float(together.abs().max()))
    assert not torch.allclose(deconv, plain, atol=1e-3 * float(plain.abs().max()))

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
    with Rules(model, deconv=True) as rules:
        with rules.functional():
            y = model(x).sum()
        with rules.mode("guided"):
            (guided,) = torch.autograd.grad(y, x, retain_graph=True)
        with rules.mode("deconv"):
            (deconv,) = torch.autograd.grad(y, x, retain_graph=True)
        (plain,) = torch.autograd.grad(y, x)
    hidden = model.a(x)
    upstream = model.b.weight
    assert torch.allclose(guided, ((upstream.clamp(min=0) * (hidden > 0)) @ model.a.weight).detach(), atol=1e-6)
    assert torch.allclose(deconv, (upstream.clamp(min=0).expand(16, -1) @ model.a.weight).detach(), atol=1e-6)
    assert torch.allclose(plain, ((upstream * (hidden > 0)) @ model.a.weight).detach(), atol=1e-6)


def test_guided_gradcam_is_class_discriminative(lite0, samples):
    x = _images(samples, lite0.data, ("chelsea.png",))
    ggc = explain_tensors(lite0.model, "bn2", x, ["guided-gradcam"], classes=torch.tensor([[282, 967]]))
    a, b = ggc.maps["guided-gradcam"].raw[0, 0], ggc.maps["guided-gradcam"].raw[0, 1]
    assert (a / a.norm() - b / b.norm()).norm() > 0.1


def test_model_unchanged_after_guided_run_and_on_error(samples):
    torch.manual_seed(0)
    model = load_model("tv:densenet121", random_weights=True).model
    model.train()
    before = ([m.training for m in model.modules()], hook_counts(model), [type(m) for m in model.modules()])
    x = torch.randn(1, 3, 64, 64)
    methods = ["guided-gradcam", "deconvnet", "fullgrad"]
    explain_tensors(model, "features", x, methods, k=2)
    with pytest.raises(RuntimeError, match="boom"):
        explain_tensors(
            model, "features", x, methods, classes=lambda scores: (_ for _ in ()).throw(RuntimeError("boom"))
        )
    after = ([m.training for m in model.modules()], hook_counts(model), [type(m) for m in model.modules()])
    assert before == after
    assert all(p.grad is None for p in model.parameters())
    assert torch.overrides._get_current_function_mode_stack() == []
