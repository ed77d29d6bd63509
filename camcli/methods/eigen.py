"""Eigen-CAM (Muhammad & Yeasin 2020) and Eigen-Grad-CAM: the first principal component of the
target layer's activations A, or of G ⊙ A (G = ∂y^c/∂A). Eigen-CAM is class-agnostic: every class
of an image gets the same map. The sign of the component is fixed as ``base.first_component`` says.
"""

from __future__ import annotations

import torch

from ..engine import LayerCapture, Needs, Pass, Probe
from .base import LayerCam, Settings, first_component


class EigenCam(LayerCam):
    """L = ReLU((A − mean) v₁), v₁ the first right singular vector of the centred h·w × C matrix of A."""

    name = "eigencam"
    needs = Needs()
    project = True

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return layer.activations[:, None].expand(-1, p.classes.shape[1], -1, -1, -1)

    def layer_map(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        """Class-agnostic: one decomposition per image, shared by its k classes."""
        one = torch.relu(first_component(layer.activations[:, None]))
        return one.expand(-1, p.classes.shape[1], -1, -1)


class EigenGradCam(LayerCam):
    """L = ReLU((W − mean) v₁) for W = G ⊙ A, class-discriminative through the gradient."""

    name = "eigengradcam"
    project = True

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        assert layer.gradients is not None
        return layer.gradients * layer.activations[:, None]


METHODS = {m.name: m() for m in (EigenCam, EigenGradCam)}
