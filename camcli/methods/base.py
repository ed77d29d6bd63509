"""What every method is: a name, a kind, what it needs from the engine, and batched maths on a pass.

A method computes *raw* maps for all B images and K classes of a batch at once:
- kind ``cam``: a heat map per (image, class), B×K×h×w at any resolution (the target layer's grid,
  or the input's); shown as ``maps.input_map`` (upsampled bilinearly, min-max scaled), boxed by the
  paper's 15% rule;
- kind ``pixel``: a signed input-space gradient per (image, class), B×K×3×H×W.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..engine import LayerCapture, Needs, Pass, Probe, Tap
from ..maps import min_max, upsample
from . import REGISTRY


@dataclass(frozen=True)
class Settings:
    """Method options from the job (``--smooth``, ``--occlusion-window``, ...) and the input size."""

    input_size: tuple[int, int]
    smooth: str | None = None  # "eigen" | "aug"
    occlusion_window: int = 32
    occlusion_stride: int = 16


class Method:
    """Base of every method. Subclasses set the class attributes and ``compute``."""

    name: ClassVar[str]
    kind: ClassVar[str] = "cam"
    needs: ClassVar[Needs] = Needs()

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        """Raw maps for every image and class of the pass."""
        raise NotImplementedError

    def taps(self) -> dict[str, Tap]:
        """Captures of its own the method needs during the forward (named in ``needs.taps``)."""
        return {}

    def params(self, s: Settings, layers: tuple[str, ...]) -> dict[str, Any]:
        """What a reader needs to reproduce an entry, recorded in explanation.json."""
        return {}


class LayerCam(Method):
    """The CAM family: per target layer, a weighted combination of its feature maps A.

    L = ReLU(Σ_c W_c), with W the method's weighted activations (B×K×C×h×w; most methods give
    channel weights α and W = α_c A_c). With ``--smooth eigen`` (and always for the Eigen methods)
    the channel sum is replaced by the first principal component of W (see ``first_component``).
    Several target layers: each layer's map is min-max scaled, upsampled to the input and the
    maps averaged, as pytorch-grad-cam does.
    """

    kind = "cam"
    needs = Needs(layer_gradients=True)
    project: ClassVar[bool] = False

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor | None:
        """Channel weights α, B×K×C; None when the method weighs element-wise (see ``weighted``)."""
        return None

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        """W, B×K×C×h×w."""
        alpha = self.weights(layer, p, probe, s)
        if alpha is None:
            raise NotImplementedError(f"{self.name} must define weights() or weighted()")
        return alpha[..., None, None] * layer.activations[:, None]

    def layer_map(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        if self.project or s.smooth == "eigen":
            return torch.relu(first_component(self.weighted(layer, p, probe, s)))
        alpha = self.weights(layer, p, probe, s)
        if alpha is not None:  # Σ_c α_c A_c without materializing B×K×C×h×w
            return torch.relu(torch.einsum("bkc,bchw->bkhw", alpha, layer.activations))
        return torch.relu(self.weighted(layer, p, probe, s).sum(dim=2))

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return combine_layers([self.layer_map(layer, p, probe, s) for layer in p.layers], s.input_size)

    def params(self, s: Settings, layers: tuple[str, ...]) -> dict[str, Any]:
        smooth = s.smooth if s.smooth in REGISTRY[self.name].smoothing else None
        return {"layers": list(layers), **({"smooth": smooth} if smooth else {})}


def combine_layers(maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """One layer: its map as it is. Several: the mean of each min-max scaled map upsampled to ``size``."""
    if len(maps) == 1:
        return maps[0]
    return torch.stack([upsample(min_max(m), size) for m in maps]).mean(dim=0)


def first_component(weighted: torch.Tensor) -> torch.Tensor:
    """Projection of each position's channel vector on the first principal component (Eigen-CAM).

    For each image and class, the h·w × C matrix of W is centred over positions, its first right
    singular vector v found by SVD, and the map is (W − mean) v. The sign of a singular vector is
    arbitrary; camcli fixes it so the map correlates positively with the channel mean of W (the
    plain activation map for Eigen-CAM), so that ReLU keeps the evidence rather than its opposite.
    pytorch-grad-cam leaves the sign to the SVD routine.
    """
    b, k, c, h, w = weighted.shape
    m = torch.nan_to_num(weighted.float()).reshape(b, k, c, h * w).transpose(-1, -2)  # B×K×hw×C
    m = m - m.mean(dim=-2, keepdim=True)
    v = torch.linalg.svd(m, full_matrices=False).Vh[..., 0, :]  # B×K×C
    projection = (m @ v[..., None])[..., 0]  # B×K×hw
    reference = weighted.float().mean(dim=2).reshape(b, k, h * w)
    agreement = ((projection - projection.mean(-1, keepdim=True)) * (reference - reference.mean(-1, keepdim=True))).sum(
        -1, keepdim=True
    )
    signed: torch.Tensor = projection * torch.where(agreement < 0, -1.0, 1.0)
    return signed.reshape(b, k, h, w)


def scale_channels(maps: torch.Tensor, eps: float) -> torch.Tensor:
    """Min-max scale each map over its last two dimensions as pytorch-grad-cam's ``scale_cam_image``:
    (m − min) / (max − min + eps)."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    return (maps - lo) / (maps.amax(dim=(-2, -1), keepdim=True) - lo + eps)
