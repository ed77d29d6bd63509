"""Score-CAM (Wang et al. 2020), as pytorch-grad-cam computes it.

Each channel A_c of the target layer, upsampled to the input (bilinear, corners aligned, as
``nn.UpsamplingBilinear2d``) and min-max scaled to M_c ∈ [0, 1] (ε = 1e-8), masks the
(normalized) input: x ⊙ M_c. The class scores of the C masked inputs, softmaxed over channels,
weigh the channels: α_c = softmax_c(y^k(x ⊙ M_c)), L = ReLU(Σ_c α_c A_c).

One forward per channel and image, shared by all k classes (every forward gives every class's
score); peers run them once per class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engine.needs import Needs
from .base import CamMethod, Settings

if TYPE_CHECKING:
    import torch

    from ..engine.capture import LayerCapture, Pass
    from ..engine.probe import Probe


class ScoreCam(CamMethod):
    name = "scorecam"
    perturbs = True
    summary = "Score-CAM: channels weighted by the scores of masked inputs"
    needs = Needs()

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        acts = layer.activations
        x = p.x.float()
        weights = []
        for b in range(acts.shape[0]):

            def masked(i: int, j: int, b: int = b) -> torch.Tensor:
                # Masks are made batch by batch: all of them at once would be C×H×W floats per image.
                up = F.interpolate(acts[b : b + 1, i:j], size=x.shape[-2:], mode="bilinear", align_corners=True)[0]
                lo = up.amin(dim=(-2, -1), keepdim=True)
                masks = (up - lo) / (up.amax(dim=(-2, -1), keepdim=True) - lo + 1e-8)
                return x[b : b + 1] * masks[:, None]

            scores = probe.inputs(masked, acts.shape[1])
            weights.append(scores[:, p.classes[b]].T.softmax(dim=-1))  # K×C
        return torch.stack(weights)

    def record(self, s: Settings, layers: tuple[str, ...], variant: str | None = None) -> dict[str, Any]:
        return {**super().record(s, layers, variant), "masked_forwards_per_image": "one per channel"}


METHODS = (ScoreCam,)
