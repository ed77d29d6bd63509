"""Ablation-CAM (Desai & Ramaswamy 2020): the relative drop of the class score when one channel of
the target layer is zeroed.

α_c = (y^k − y^k_{A_c = 0}) / y^k, L = ReLU(Σ_c α_c A_c). The ablated forwards start at the target
layer (``Probe.from_layer``), one per channel and image, shared by all k classes.

pytorch-grad-cam zeroes the channel only when the layer's minimum is 0 and otherwise writes
min − 10⁷ into it; camcli always zeroes, as the paper does. On layers whose outputs are
non-negative (after a ReLU) the two agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engine.needs import Needs
from .base import CamMethod, Settings

if TYPE_CHECKING:
    import torch

    from ..engine.capture import LayerCapture, Pass
    from ..engine.probe import Probe


class AblationCam(CamMethod):
    name = "ablationcam"
    perturbs = True
    summary = "Ablation-CAM: channels weighted by the score drop when zeroed"
    needs = Needs()

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        import torch

        acts = layer.activations
        channels = acts.shape[1]
        weights = []
        for b in range(acts.shape[0]):

            def ablated(i: int, j: int, b: int = b) -> torch.Tensor:
                rows = acts[b : b + 1].repeat(j - i, 1, 1, 1)
                rows[torch.arange(j - i), torch.arange(i, j)] = 0.0
                return rows

            scores = probe.from_layer(layer, b, p.x[b : b + 1], ablated, channels, p.values[b])
            original = p.selected[b][:, None]  # K×1
            weights.append((original - scores[:, p.classes[b]].T) / original)
        return torch.stack(weights)

    def record(self, s: Settings, layers: tuple[str, ...], variant: str | None = None) -> dict[str, Any]:
        return {**super().record(s, layers, variant), "ablation": "channel set to 0"}


METHODS = (AblationCam,)
