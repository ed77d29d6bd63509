"""The model-randomization sanity check (``--sanity``, Adebayo et al. 2018): the model's layers are
re-initialized cumulatively from the top, and Spearman's ρ between each image's map and its map after
each step says whether the method depends on the weights at all (a faithful one decorrelates quickly)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from . import metrics
from .faithfulness import explained_class, inputs
from .truth import Image

if TYPE_CHECKING:
    from ..session import Session

IMAGES = 8  # the first images of the run


def randomization_steps(model: torch.nn.Module) -> list[str]:
    """Adebayo et al.'s cascade: the model's blocks from the top (the classifier) down, each a module
    with parameters; sequential containers at the top level are opened one level."""
    steps: list[str] = []
    for name, child in model.named_children():
        if isinstance(child, (torch.nn.Sequential, torch.nn.ModuleList)) and len(child) > 1:
            steps += [
                f"{name}.{sub}"
                for sub, grandchild in child.named_children()
                if any(True for _ in grandchild.parameters())
            ]
        elif any(True for _ in child.parameters()):
            steps.append(name)
    return steps[::-1]


def sanity_check(
    images: Sequence[Image], method: str, session: Session, stop: threading.Event | None = None
) -> list[dict[str, Any]]:
    """For the first images: Spearman's ρ between each map and the map after each cascading step of
    re-initializing the model's weights (normal, with each tensor's own standard deviation). Stops
    between steps once ``stop`` is set."""
    chosen = list(inputs(images, session, []))[:IMAGES]
    if not chosen:
        return []
    layers = [layer.name for layer in session.layers]
    x = torch.stack([t for _, t in chosen])
    classes = [explained_class(image) for image, _ in chosen]
    randomized = copy.deepcopy(session.loaded.model)
    base = _maps(randomized, session, layers, method, x, classes)
    results = []
    generator = torch.Generator().manual_seed(0)
    modules = dict(randomized.named_modules())
    for step in randomization_steps(randomized):
        if stop is not None and stop.is_set():
            break
        with torch.no_grad():
            for param in modules[step].parameters():
                spread = float(param.std()) if param.numel() > 1 else 1.0
                param.copy_(torch.randn(param.shape, generator=generator) * (spread or 0.02))
        after = _maps(randomized, session, layers, method, x, classes)
        rho = [metrics.spearman(a.numpy(), b.numpy()) for a, b in zip(base, after, strict=True)]
        rho_abs = [metrics.spearman(a.abs().numpy(), b.abs().numpy()) for a, b in zip(base, after, strict=True)]
        results.append({"step": step, "spearman": metrics.mean(rho), "spearman_abs": metrics.mean(rho_abs)})
    return results


def _maps(
    model: torch.nn.Module, session: Session, layers: list[str], method: str, x: torch.Tensor, classes: list[int]
) -> list[torch.Tensor]:
    from ..api import Explainer

    explainer = Explainer(
        model,
        layers=layers,
        methods=[method],
        data=session.loaded.data,
        labels=list(session.loaded.labels),
        head=session.loaded.head.name,
    )
    maps = []
    for i, cls in enumerate(classes):
        [result] = explainer.explain(x[i], classes=[cls])
        maps.append(torch.from_numpy(result.explanations[0].map))
    return maps
