"""Score-CAM averaged over perturbed masks: SS-CAM (Wang et al. 2020, arXiv 2006.14255) and IS-CAM
(Naidu et al. 2020, arXiv 2010.03023), as torchcam 0.5's ``SSCAM`` and ``ISCAM`` compute them.

Both start from torchcam's Score-CAM masks: each channel A_c of the target layer is min-max scaled at
the layer's resolution, (A_c − min) / (max − min + 1e-8), then upsampled bilinearly to the input
(corners not aligned), giving M_c. (camcli's ``scorecam`` follows pytorch-grad-cam, which upsamples with
corners aligned and scales afterwards.) Over n samples, each masked input gives the explained class
score, and

    α_c = softmax_c((1/n) Σ_i y^k(X_ic)),   L = ReLU(Σ_c α_c A_c)

with A the raw activations, and X_ic:
- SS-CAM: (M_c + δ_ic) ⊙ x, δ_ic ~ N(0, σ²) noise at input resolution added to the mask, which is not
  rescaled afterwards (the paper also smooths with the noise on the masked input; torchcam, and camcli,
  add it to the masks);
- IS-CAM: β_i M_c ⊙ x, β_i = Σ_{s=1..i} s/n for i = 1..n: the integration schedule of torchcam's code
  (its docstring sums j/n for j = 0..i−1), whose factors grow past 1, up to (n + 1)/2.

torchcam subtracts the clean input's score from every masked score; a softmax over channels does not
change when the same number is subtracted from all of them, so camcli skips that forward.

SS-CAM's noise comes from a generator of its own seeded with ``seed``, drawn on the CPU (so the maps do
not depend on the device), one C×H×W draw per sample, the same for every image of the batch: an image's
map depends on the image and the seed, not on its batch. Each target layer starts from the seed again.
torchcam draws from torch's global generator, B×C×H×W per sample, one stream across layers;
``torch.manual_seed(seed)`` before it explains a single image with one layer gives it the same noise.

Shared work: every masked forward gives every class's score, so the k classes of an image share them,
and the forwards of all images of the batch run together, ``batch_size`` rows at a time
(n·C per image); torchcam runs them once per class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING

from ..engine.needs import Needs
from ..params import Param, integer, number
from .base import CamMethod, Settings

if TYPE_CHECKING:
    import torch

    from ..engine.capture import LayerCapture, Pass
    from ..engine.probe import Probe

# One sample's change to a chunk of upsampled masks (rows × 1 × H × W), given each row's channel.
Perturbation = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


class SampledScoreCam(CamMethod):
    """Score-CAM whose channel scores are averaged over ``perturbations`` of the masks."""

    needs = Needs()
    perturbs = True

    def perturbations(
        self, s: Settings, channels: int, size: tuple[int, int], device: torch.device
    ) -> Iterator[Perturbation]:
        """One function per sample, made when that sample's forwards start."""
        raise NotImplementedError

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        acts = layer.activations
        b, c = acts.shape[:2]
        k = p.classes.shape[1]
        lo = acts.amin(dim=(-2, -1), keepdim=True)
        unit = (acts - lo) / (acts.amax(dim=(-2, -1), keepdim=True) - lo + 1e-8)
        x = p.x.float()
        size = (int(x.shape[-2]), int(x.shape[-1]))
        total = torch.zeros(b, c, k, device=acts.device)
        samples = 0
        for perturb in self.perturbations(s, c, size, x.device):

            def masked(i: int, j: int, perturb: Perturbation = perturb) -> torch.Tensor:
                # Rows run over (image, channel) pairs of the whole batch; masks are made chunk by chunk, since
                # all of them at once would be B×C×H×W floats.
                rows = torch.arange(i, j, device=x.device)
                image, channel = rows // c, rows % c
                up = F.interpolate(unit[image, channel][:, None], size=size, mode="bilinear", align_corners=False)
                return perturb(up, channel) * x[image]

            scores = probe.inputs(masked, b * c).view(b, c, -1)
            total += scores.gather(2, p.classes[:, None, :].expand(b, c, k))
            samples += 1
        return (total / samples).transpose(1, 2).softmax(dim=-1)


def _plus_noise(noise: torch.Tensor, up: torch.Tensor, channel: torch.Tensor) -> torch.Tensor:
    return up + noise[channel][:, None]


def _scaled(factor: float, up: torch.Tensor, channel: torch.Tensor) -> torch.Tensor:
    return factor * up


class SsCam(SampledScoreCam):
    name = "sscam"
    summary = "SS-CAM: Score-CAM with Gaussian noise on the masks, scores averaged over samples"
    params = (
        Param("num_samples", int, 35, "noisy masks per channel, one forward each", low=1),
        Param("std", float, 2.0, "standard deviation of the noise added to the [0, 1] masks", low=0.0),
        Param("seed", int, 0, "seed of the noise: the same seed gives the same maps", low=0),
    )

    def perturbations(
        self, s: Settings, channels: int, size: tuple[int, int], device: torch.device
    ) -> Iterator[Perturbation]:
        import torch

        std = number(s.params["std"])
        generator = torch.Generator().manual_seed(integer(s.params["seed"]))
        for _ in range(integer(s.params["num_samples"])):
            noise = (torch.randn((channels, *size), generator=generator) * std).to(device)
            yield partial(_plus_noise, noise)


class IsCam(SampledScoreCam):
    name = "iscam"
    summary = "IS-CAM: Score-CAM with the masks scaled up step by step, scores averaged over steps"
    params = (Param("num_samples", int, 10, "integration steps per channel, one forward each", low=1),)

    def perturbations(
        self, s: Settings, channels: int, size: tuple[int, int], device: torch.device
    ) -> Iterator[Perturbation]:
        steps = integer(s.params["num_samples"])
        factor = 0.0
        for step in range(1, steps + 1):
            factor += step / steps  # accumulated as torchcam does, for the same rounding
            yield partial(_scaled, factor)


METHODS = (SsCam, IsCam)
