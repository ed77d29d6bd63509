"""Occlusion sensitivity (Zeiler & Fergus 2014), as captum's ``Occlusion`` computes it.

A window of ``--occlusion-window`` pixels (all channels) slides over the input in steps of
``--occlusion-stride``, covering every pixel (captum's positions: ⌈(H − w)/s⌉ + 1 per axis, the last
window clipped at the edge); inside it the input is set to the baseline 0 (the mean colour, in
normalized space). Each pixel's value is the drop of the class score (pre-softmax), y^c(x) −
y^c(x occluded), averaged over the windows that cover it. One forward per window and image, shared
by all k classes.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..engine import Pass, Probe
from .base import Method, Settings


def windows(size: tuple[int, int], window: int, stride: int, device: torch.device) -> torch.Tensor:
    """P×H×W masks, 1 inside each window position."""
    axes = []
    for extent in size:
        win = min(window, extent)
        starts = [i * stride for i in range(math.ceil((extent - win) / stride) + 1)]
        positions = torch.arange(extent, device=device)
        axes.append(torch.stack([(positions >= a) & (positions < a + win) for a in starts]).float())
    rows, cols = axes
    return (rows[:, None, :, None] * cols[None, :, None, :]).reshape(-1, *size)


class Occlusion(Method):
    name = "occlusion"
    kind = "cam"

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        size = (int(p.x.shape[-2]), int(p.x.shape[-1]))
        masks = windows(size, s.occlusion_window, s.occlusion_stride, p.x.device)  # P×H×W
        covered = masks.sum(dim=0)
        x = p.x.float()
        maps = []
        for b in range(x.shape[0]):
            scores = probe.inputs(lambda i, j, b=b: x[b : b + 1] * (1 - masks[i:j, None]), len(masks))
            drops = (p.scores[b][None] - scores)[:, p.classes[b]]  # P×K
            maps.append(torch.einsum("pk,phw->khw", drops, masks) / covered)
        return torch.stack(maps)

    def params(self, s: Settings, layers: tuple[str, ...]) -> dict[str, Any]:
        return {"window": s.occlusion_window, "stride": s.occlusion_stride, "baseline": 0.0,
                "score": "pre-softmax class score"}


METHODS = {"occlusion": Occlusion()}
