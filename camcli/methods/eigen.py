"""Eigen-CAM (Muhammad & Yeasin 2020) and Eigen-Grad-CAM: the first principal component of the
target layer's activations A, or of G ⊙ A (G = ∂y^c/∂A). Eigen-CAM is class-agnostic: every class
of an image gets the same map. The sign of the component is fixed as ``base.first_component`` says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.needs import Needs
from .base import CamMethod, Settings, first_component

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


METHODS = (EigenCam, EigenGradCam)
