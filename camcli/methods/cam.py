"""CAM, Class Activation Mapping (Zhou et al. 2016, "Learning Deep Features for Discriminative
Localization"), as torchcam's ``CAM``.

For a model whose class scores are one linear layer on the global average of the target layer,
y^k = Σ_c w^k_c mean_ij A_cij + b^k, the map of class k is M^k = Σ_c w^k_c A_c: the classifier's weights
over the channels, no gradient needed. It is signed and not ReLU'd (the paper, torchcam), so a region
that argues against the class is below the map's zero. On such models Grad-CAM's weights are w^k / (h·w),
so Grad-CAM is ReLU(CAM) / (h·w).

CAM is defined only for that architecture, so ``prepare`` checks it once, before any image: on a seeded
random input, the classifier (timm's ``get_classifier()``, else the last ``nn.Linear``) applied to the
target layer's spatial mean must give the model's scores. The weights are read from the model at every
batch, so they are the model's as it is. For a one-output model under ``--head binary``, class 0's score
is −y, so its weights are −w. One einsum for every image and class of a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..engine.needs import Needs
from ..errors import CamcliError
from .base import CamMethod, Settings

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..engine.capture import LayerCapture, Pass
    from ..engine.probe import Probe

ADVICE = "Use gradcam, which needs no particular head (on a pooled linear head it is CAM's positive part, scaled)."


def linear_head(model: nn.Module) -> nn.Linear | None:
    """The final classifier if it is a Linear layer: timm's ``get_classifier()``, else the last Linear."""
    from torch import nn

    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
    else:
        head = next((m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)), None)
    return head if isinstance(head, nn.Linear) else None


def _probe(
    model: nn.Module, layers: tuple[str, ...], size: tuple[int, int]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The model's scores for a seeded random input, and the layers' outputs (copies: an in-place operation
    after a layer would change its output, as camcli's capture never lets it)."""
    import torch
    from torch import nn

    from ..engine.capture import model_lock
    from ..heads import logits_of

    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, args: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                outputs[name] = out.detach().clone()

        return hook

    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    channels = next((m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d)), 3)
    x = torch.randn(1, channels, *size, generator=torch.Generator().manual_seed(0)).to(device)
    modules = dict(model.named_modules())
    with model_lock(model):
        modes = {m: m.training for m in model.modules()}
        handles = [modules[name].register_forward_hook(keep(name)) for name in layers]
        try:
            model.eval()
            with torch.no_grad():
                scores = logits_of(model(x)).float()
        finally:
            for handle in handles:
                handle.remove()
            for module, mode in modes.items():
                module.training = mode
    return scores, outputs


def pooled_head_problem(model: nn.Module, layers: tuple[str, ...], size: tuple[int, int]) -> str | None:
    """None when the model's class scores are its linear classifier (``linear_head``) applied to the
    global average of each target layer (checked on a seeded random input); else what is missing, as
    the end of "this method needs ...". Shared by CAM and DFF (which names concepts with that classifier)."""
    import torch

    from ..layers import layout_of

    head = linear_head(model)
    if head is None:
        return "a model whose classifier is one linear layer; this one's is not"
    scores, outputs = _probe(model, layers, size)
    prefix = getattr(model, "num_prefix_tokens", 0)
    for name in layers:
        out = outputs.get(name)
        layout = None if out is None else layout_of(tuple(out.shape), size, prefix if isinstance(prefix, int) else 0)
        if out is None or layout is None:
            return f"a feature map to pool, and layer '{name}' gives none"
        pooled = layout.to_map(out).float().mean(dim=(-2, -1))
        if pooled.shape[1] != head.in_features:
            return (
                f"the classifier to read the global average of the target layer, but layer '{name}' has "
                f"{pooled.shape[1]} channels and the classifier takes {head.in_features} inputs: the model's head "
                f"is not a pooled linear layer on it"
            )
        bias = None if head.bias is None else head.bias.detach().float()
        predicted = torch.nn.functional.linear(pooled, head.weight.detach().float(), bias)
        tolerance = 1e-3 * float(scores.abs().max())  # relative: untrained models' scores can be tiny
        if predicted.shape != scores.shape or float((predicted - scores).abs().max()) > tolerance:
            return (
                f"the class scores to be the classifier applied to the global average of the target layer, and "
                f"they are not for layer '{name}': the model's head does more than pool it and apply one linear "
                f"layer (a norm, an MLP, attention pooling, or the layer is not the last one before the pooling)"
            )
    return None


class Cam(CamMethod):
    name = "cam"
    summary = "CAM: Σ_c w_c A_c, w the classifier's weights (global-average-pooled linear heads only)"
    needs = Needs()
    smoothing = frozenset({"aug"})

    def prepare(self, model: nn.Module, layers: tuple[str, ...], s: Settings) -> None:
        problem = pooled_head_problem(model, layers, s.input_size)
        if problem is not None:
            raise CamcliError(f"cam needs {problem}. {ADVICE}")

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        import torch

        head = linear_head(probe.model)
        if head is None:
            raise RuntimeError("cam's model lost its linear classifier after prepare()")
        w = head.weight.detach().float()
        if w.shape[0] == 1 and p.scores.shape[1] == 2:  # --head binary: class 0 scores −y
            w = torch.cat([-w, w])
        return w.to(p.classes.device)[p.classes]

    def layer_map(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        import torch

        return torch.einsum("bkc,bchw->bkhw", self.weights(layer, p, probe, s), layer.activations)


METHODS = (Cam,)
