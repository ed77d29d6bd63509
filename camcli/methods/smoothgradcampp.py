"""SmoothGrad-CAM++ (Omeiza et al. 2019, arXiv 1908.01224), as torchcam 0.5's ``SmoothGradCAMpp`` computes it.

n noisy copies x + δ_m of the model input (δ_m ~ N(0, σ²) per input value, in normalized input space)
each give, at the target layer, the activations A_m and the gradients G_m = ∂y^c/∂A_m of every explained
class. With the sample means D2 = (1/n) Σ_m G_m² and D3 = (1/n) Σ_m G_m³, and A the clean input's
activations:

    a_cij = D2_cij / (2 D2_cij + Σ_ab D3_cab A_cab + ε),   ε = 1e-8
    w_c   = Σ_ij a_cij ReLU(G_n,cij)
    L     = ReLU(Σ_c w_c A_n,c)

This is torchcam's definition, kept exactly, quirks included, so that maps agree with it:
- what is averaged over the copies is the powers of the gradient inside Grad-CAM++'s α, never the
  weights or the maps; the numerator is the mean second power (torchcam's correction of the paper,
  whose numerator is the mean first derivative);
- the third-power term is Σ_ab D3_cab A_cab, summed with the activations position by position (the
  Grad-CAM++ paper, and camcli's ``gradcam++``, multiply Σ_ab A_cab by the gradient at (i, j));
- the ReLU'd gradient in w and the feature maps that are combined, G_n and A_n, are those of the last
  noisy copy (torchcam's hooks keep the last forward's), while α's denominator uses the clean A.

The noise comes from a generator of its own seeded with ``seed``, drawn on the CPU (so the maps do not
depend on the device), one 3×H×W draw per copy, the same for every image: an image's map depends on the
image and the seed, not on the batch it falls in, so runs repeat and resume. torchcam draws from torch's
global generator, B×3×H×W per copy; ``torch.manual_seed(seed)`` before it explains a single image gives
it the same noise.

Shared work: each noisy copy of the whole batch is one pass (``probe.rerun``: one forward, then one
backward per class from the target layer) that serves all B images and all k classes; torchcam runs n
forwards and backwards per class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..params import Param, integer, number
from .base import CamMethod, Settings, combine_layers, first_component, gradients_of

if TYPE_CHECKING:
    import torch

    from ..engine.capture import Pass
    from ..engine.probe import Probe


def _combined(weights: torch.Tensor, activations: torch.Tensor, s: Settings) -> torch.Tensor:
    """ReLU(Σ_c w_c A_c), B×K×h×w; with ``--smooth eigen`` the first principal component of w_c A_c."""
    import torch

    if "eigen" in s.smooth:
        return torch.relu(first_component(weights[..., None, None] * activations[:, None]))
    return torch.relu(torch.einsum("bkc,bchw->bkhw", weights, activations))


class SmoothGradCamPlusPlus(CamMethod):
    name = "smoothgradcam++"
    perturbs = True
    summary = "SmoothGrad-CAM++: Grad-CAM++ with gradient powers averaged over noisy copies of the input"
    params = (
        Param("samples", int, 4, "noisy copies of the input, one pass each (torchcam's num_samples)", low=1),
        Param("std", float, 0.3, "standard deviation of the Gaussian noise, in normalized input space", low=0.0),
        Param("seed", int, 0, "seed of the noise: the same seed gives the same maps", low=0),
    )

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor | dict[str, torch.Tensor]:
        import torch

        samples, std = integer(s.params["samples"]), number(s.params["std"])
        generator = torch.Generator().manual_seed(integer(s.params["seed"]))
        squares = [torch.zeros_like(gradients_of(layer)) for layer in p.layers]
        cubes = [torch.zeros_like(square) for square in squares]
        last = p
        for _ in range(samples):
            noise = torch.randn(tuple(p.x.shape[1:]), generator=generator) * std
            last = probe.rerun(p.x + noise.to(p.x.device, p.x.dtype), p.classes)
            for layer, square, cube in zip(last.layers, squares, cubes, strict=True):
                g2 = gradients_of(layer).square()
                square += g2
                cube += g2 * gradients_of(layer)
        maps = {}
        for clean, noisy, square, cube in zip(p.layers, last.layers, squares, cubes, strict=True):
            d2, d3 = square / samples, cube / samples
            total = (d3 * clean.activations[:, None]).sum(dim=(-2, -1), keepdim=True)
            alpha = d2 / (2 * d2 + total + 1e-8)
            weights = (alpha * gradients_of(noisy).relu()).sum(dim=(-2, -1))
            maps[clean.name] = _combined(weights, noisy.activations, s)
        if s.separate_layers and len(maps) > 1:
            return maps
        return combine_layers(list(maps.values()), s.input_size)


METHODS = (SmoothGradCamPlusPlus,)
