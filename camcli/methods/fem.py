"""FEM, the Feature Explanation Method (Fuad et al. 2020, "Features understanding in 3D CNNs for actions
recognition in video", IPTA): where the target layer's channels respond unusually strongly.

For channel c of the target layer A (C×h×w), with μ_c and σ_c its mean and (population) standard
deviation over positions, the k-sigma rule marks its peaks: M_cij = 1[A_cij > μ_c + k·σ_c]. The channels'
peaks are then summed (``combine``):

- ``masks`` (the paper and its authors' code): L = ReLU(Σ_c μ_c M_c), each channel's binary mask
  weighted by the channel's mean, the "squeeze" of a squeeze-and-excitation block;
- ``activations`` (pytorch-grad-cam's ``FEM``): L = ReLU(Σ_c w_c A_c) with w_c = mean_ij M_cij, the
  share of the channel's positions that are peaks, weighing the activations themselves.

pytorch-grad-cam's reading differs from the paper's: there the binary masks only count, and the map is
made of activations. camcli follows the paper by default (as it does for Ablation-CAM) and offers the
reference's form, which the tests compare against pytorch-grad-cam. The authors divide the map by its
maximum; a min-max scaled display makes that a no-op, so the raw map is left unscaled. The ReLU is
camcli's, as for every CAM (the authors' layers are non-negative, where it changes nothing).

Class-agnostic: no gradient and no class enter the map, so each image's map is computed once and shared
by its k classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.needs import Needs
from ..params import Param, number
from .base import CamMethod, Settings

if TYPE_CHECKING:
    import torch

    from ..engine.capture import LayerCapture, Pass
    from ..engine.probe import Probe

COMBINE = ("masks", "activations")


class Fem(CamMethod):
    name = "fem"
    summary = "FEM: each channel's k-sigma peaks, weighted by its mean (class-agnostic)"
    needs = Needs()
    smoothing = frozenset({"aug"})
    params = (
        Param("k", float, 2.0, "a position is a channel's peak above its mean + k standard deviations", low=0.0),
        Param(
            "combine",
            str,
            "masks",
            "masks: the peaks' binary masks weighted by channel means (the paper); activations: the "
            "activations weighted by each channel's share of peaks (pytorch-grad-cam's FEM)",
            choices=COMBINE,
        ),
    )

    def layer_map(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        a = layer.activations
        mean = a.mean(dim=(-2, -1), keepdim=True)
        std = a.std(dim=(-2, -1), correction=0, keepdim=True)
        peaks = a > mean + number(s.params["k"]) * std
        if s.params["combine"] == "masks":
            one = (mean * peaks).sum(dim=1)
        else:
            one = (peaks.float().mean(dim=(-2, -1), keepdim=True) * a).sum(dim=1)
        return one.relu()[:, None].expand(-1, p.classes.shape[1], -1, -1)


METHODS = (Fem,)
