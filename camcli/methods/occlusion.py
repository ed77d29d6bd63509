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


def window_axes(
    size: tuple[int, int], window: int, stride: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per axis, which pixels each window position covers: R×H and C×W masks (R·C windows in all)."""
    axes = []
    for extent in size:
        win = min(window, extent)
        starts = torch.arange(math.ceil((extent - win) / stride) + 1, device=device)[:, None] * stride
        positions = torch.arange(extent, device=device)[None]
        axes.append(((positions >= starts) & (positions < starts + win)).float())
    return axes[0], axes[1]


class Occlusion(Method):
    name = "occlusion"
    kind = "cam"

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        size = (int(p.x.shape[-2]), int(p.x.shape[-1]))
        rows, cols = window_axes(size, s.occlusion_window, s.occlusion_stride, p.x.device)
        count = rows.shape[0] * cols.shape[0]
        covered = rows.sum(dim=0)[:, None] * cols.sum(dim=0)[None]  # how many windows cover each pixel
        x = p.x.float()
        maps = []
        for b in range(x.shape[0]):

            def occluded(i: int, j: int, b: int = b) -> torch.Tensor:
                # Window masks are made batch by batch: all at once are windows × H × W floats.
                where = torch.arange(i, j, device=x.device)
                inside = rows[where // cols.shape[0]][:, :, None] * cols[where % cols.shape[0]][:, None, :]
                return x[b : b + 1] * (1 - inside[:, None])

            scores = probe.inputs(occluded, count)
            drops = (p.scores[b][None] - scores)[:, p.classes[b]]  # windows × K
            total = torch.einsum("kij,ih,jw->khw", drops.T.reshape(-1, rows.shape[0], cols.shape[0]), rows, cols)
            maps.append(total / covered)
        return torch.stack(maps)

    def params(self, s: Settings, layers: tuple[str, ...]) -> dict[str, Any]:
        return {
            "window": s.occlusion_window,
            "stride": s.occlusion_stride,
            "baseline": 0.0,
            "score": "pre-softmax class score",
        }


METHODS = {"occlusion": Occlusion()}
