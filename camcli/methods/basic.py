"""The explanation methods, as batched tensor maths on an engine result.

- gradcam:         L^c = ReLU(Σ_k α_k^c A^k)
- counterfactual:  ReLU(Σ_k −α_k^c A^k): regions whose removal would raise the class score
- guided-backprop: the input gradient of y^c with every activation guided (see guided.py)
- guided-gradcam:  guided backprop ⊙ L^c upsampled bilinearly to the input (not rescaled)
"""

from __future__ import annotations

import torch

from ..engine import CamBatch
from ..maps import min_max, upsample
from . import CAM_METHODS

def to_display(gradients: torch.Tensor) -> torch.Tensor:
    """B×K×3×H×W gradients → an RGB image in [0, 1] as such gradients are usually shown:
    each map standardized, scaled by 0.1 and centred on grey 0.5 (zero gradient is grey)."""
    dims = (-3, -2, -1)
    centred = gradients - gradients.mean(dim=dims, keepdim=True)
    std = centred.pow(2).mean(dim=dims, keepdim=True).sqrt()
    return (centred / (std + 1e-12) * 0.1 + 0.5).clamp(0.0, 1.0)


def compute(out: CamBatch, method: str, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(raw, display, locator) for every image and class of the batch.

    CAM methods: raw B×K×h×w (unnormalized), display B×K×H×W in [0, 1], locator the upsampled
    map before scaling (the paper's box threshold is 15% of *its* max).
    Guided methods: raw B×K×3×H×W (unnormalized), display B×K×3×H×W RGB in [0, 1], locator the
    gradient magnitude B×K×H×W.
    """
    if method in CAM_METHODS:
        raw = out.cam(sign=1.0 if method == "gradcam" else -1.0)
        up = upsample(raw, size)
        return raw, min_max(up), up
    if out.guided is None:
        raise ValueError(f"method '{method}' needs an engine run in guided mode")
    raw = out.guided
    if method == "guided-gradcam":
        raw = raw * upsample(out.cam(), size)[:, :, None]
    return raw, to_display(raw), raw.abs().sum(dim=2)
