"""The gradient CAM family: every map from the target layer's activations A (B×C×h×w) and the
gradient G = ∂y^c/∂A of each class score, all from one pass (see ``engine.capture``).

Definitions follow pytorch-grad-cam 1.5, the reference our tests compare against; each map is then
ReLU'd (``LayerCam``).
"""

from __future__ import annotations

import torch

from ..engine import LayerCapture, Pass, Probe
from .base import LayerCam, Settings


class GradCam(LayerCam):
    """Grad-CAM (Selvaraju et al. 2017): α_c = (1/Z) Σ_ij G_cij, the spatially averaged gradient."""

    name = "gradcam"

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        assert layer.gradients is not None
        return layer.gradients.mean(dim=(-2, -1))


class Counterfactual(LayerCam):
    """Counterfactual explanation (Selvaraju et al. §5): α_c = −(1/Z) Σ_ij G_cij, regions whose
    removal would raise the class score."""

    name = "counterfactual"

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        assert layer.gradients is not None
        return -layer.gradients.mean(dim=(-2, -1))


class GradCamPlusPlus(LayerCam):
    """Grad-CAM++ (Chattopadhyay et al. 2018), the closed form with exponential scores:
    a_cij = G² / (2G² + (Σ_ab A_cab) G³ + ε), zero where G = 0; α_c = Σ_ij a_cij ReLU(G_cij)."""

    name = "gradcam++"

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        g = layer.gradients
        assert g is not None
        g2 = g * g
        total = layer.activations.sum(dim=(-2, -1))[:, None, :, None, None]
        a = g2 / (2 * g2 + total * g2 * g + 1e-6)
        a = torch.where(g != 0, a, torch.zeros_like(a))
        return (torch.relu(g) * a).sum(dim=(-2, -1))


class XGradCam(LayerCam):
    """XGrad-CAM (Fu et al. 2020): α_c = Σ_ij G_cij A_cij / (Σ_ab A_cab + ε)."""

    name = "xgradcam"

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        g = layer.gradients
        assert g is not None
        a = layer.activations[:, None]
        return (g * a / (a.sum(dim=(-2, -1), keepdim=True) + 1e-7)).sum(dim=(-2, -1))


class HiResCam(LayerCam):
    """HiResCAM (Draelos & Carin 2020): L = ReLU(Σ_c G_c ⊙ A_c), the element-wise product, which is
    faithful to the model's computation for architectures that end in global average pooling."""

    name = "hirescam"

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        assert layer.gradients is not None
        return layer.gradients * layer.activations[:, None]


class GradCamElementwise(LayerCam):
    """Element-wise Grad-CAM: L = ReLU(Σ_c ReLU(G_c ⊙ A_c))."""

    name = "gradcam-elementwise"

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        assert layer.gradients is not None
        return torch.relu(layer.gradients * layer.activations[:, None])


class LayerCamMethod(LayerCam):
    """LayerCAM (Jiang et al. 2021): L = ReLU(Σ_c ReLU(G_c) ⊙ A_c), positive gradients as
    position-wise weights."""

    name = "layercam"

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        assert layer.gradients is not None
        return torch.relu(layer.gradients) * layer.activations[:, None]


METHODS = {
    m.name: m()
    for m in (GradCam, Counterfactual, GradCamPlusPlus, XGradCam, HiResCam, GradCamElementwise, LayerCamMethod)
}
