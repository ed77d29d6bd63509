"""Eigen-CAM (Muhammad & Yeasin 2020), Eigen-Grad-CAM and Seg-Eigen-CAM (Chung & Ying 2025): the first
principal component of the target layer's activations A, of G ⊙ A, or of |G| ⊙ A (G = ∂y^c/∂A). Eigen-CAM
is class-agnostic: every class of an image gets the same map. The sign of the component is fixed as
``base.first_component`` says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.needs import Needs
from .base import CamMethod, Settings, first_component, gradients_of

if TYPE_CHECKING:
    import torch

    from ..engine.capture import LayerCapture, Pass
    from ..engine.probe import Probe


class EigenCam(CamMethod):
    """L = ReLU((A − mean) v₁), v₁ the first right singular vector of the centred h·w × C matrix of A."""

    name = "eigencam"
    summary = "Eigen-CAM: first principal component of A"
    needs = Needs()
    project = True

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return layer.activations[:, None].expand(-1, p.classes.shape[1], -1, -1, -1)

    def layer_map(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        """Class-agnostic: one decomposition per image, shared by its k classes."""
        one = first_component(layer.activations[:, None]).relu()
        return one.expand(-1, p.classes.shape[1], -1, -1)


class EigenGradCam(CamMethod):
    """L = ReLU((W − mean) v₁) for W = G ⊙ A, class-discriminative through the gradient."""

    name = "eigengradcam"
    summary = "first principal component of G ⊙ A"
    project = True

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        if layer.gradients is None:
            raise RuntimeError(f"the pass computed no gradients at '{layer.name}'")
        return layer.gradients * layer.activations[:, None]


class SegEigenCam(CamMethod):
    """L = ReLU(±(W − mean) v₁) for W = |G| ⊙ A (Seg-Eigen-CAM, Appl. Sci. 2025, 15(13) 7562, Eq. 10–13): the
    gradient's magnitude weighs each activation position by position, both signs counting, and the
    component's sign is the one that makes its larger extreme positive. Written for segmentation models
    (pytorch-grad-cam's ``SegEigenCAM``), defined for any model with layer gradients."""

    name = "segeigencam"
    summary = "Seg-Eigen-CAM: first principal component of |G| ⊙ A, its larger extreme positive"

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return gradients_of(layer).abs() * layer.activations[:, None]

    def layer_map(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return first_component(self.weighted(layer, p, probe, s), sign="extreme").relu()


METHODS = (EigenCam, EigenGradCam, SegEigenCam)
