"""The gradient CAM family: every map from the target layer's activations A (B×C×h×w) and the
gradient G = ∂y^c/∂A of each class score, all from one pass (see ``engine.capture``).

Definitions follow pytorch-grad-cam 1.5, the reference our tests compare against; each map is then
ReLU'd (``CamMethod``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import CamMethod, Settings, gradients_of

if TYPE_CHECKING:
    import torch

    from ..engine.capture import LayerCapture, Pass
    from ..engine.probe import Probe


class GradCam(CamMethod):
    """Grad-CAM (Selvaraju et al. 2017): α_c = (1/Z) Σ_ij G_cij, the spatially averaged gradient."""

    name = "gradcam"
    summary = "Grad-CAM: ReLU(Σ_c α_c A_c), α the spatially averaged gradient"

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return gradients_of(layer).mean(dim=(-2, -1))


class Counterfactual(CamMethod):
    """Counterfactual explanation (Selvaraju et al. §5): α_c = −(1/Z) Σ_ij G_cij, regions whose
    removal would raise the class score."""

    name = "counterfactual"
    summary = "ReLU(Σ_c −α_c A_c): what argues against the class"

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return -gradients_of(layer).mean(dim=(-2, -1))


class GradCamPlusPlus(CamMethod):
    """Grad-CAM++ (Chattopadhyay et al. 2018), the closed form with exponential scores:
    a_cij = G² / (2G² + (Σ_ab A_cab) G³ + ε), zero where G = 0; α_c = Σ_ij a_cij ReLU(G_cij)."""

    name = "gradcam++"
    summary = "Grad-CAM++: α from 2nd and 3rd powers of the gradient"

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        g = gradients_of(layer)
        g2 = g * g
        total = layer.activations.sum(dim=(-2, -1))[:, None, :, None, None]
        a = g2 / (2 * g2 + total * g2 * g + 1e-6)
        a = a.where(g != 0, 0.0)
        return (g.relu() * a).sum(dim=(-2, -1))


class XGradCam(CamMethod):
    """XGrad-CAM (Fu et al. 2020): α_c = Σ_ij G_cij A_cij / (Σ_ab A_cab + ε)."""

    name = "xgradcam"
    summary = "XGrad-CAM: α = Σ G A / Σ A"

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        a = layer.activations[:, None]
        return (gradients_of(layer) * a / (a.sum(dim=(-2, -1), keepdim=True) + 1e-7)).sum(dim=(-2, -1))


class HiResCam(CamMethod):
    """HiResCAM (Draelos & Carin 2020): L = ReLU(Σ_c G_c ⊙ A_c), the element-wise product, which is
    faithful to the model's computation for architectures that end in global average pooling."""

    name = "hirescam"
    summary = "HiResCAM: ReLU(Σ_c G_c ⊙ A_c)"

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return gradients_of(layer) * layer.activations[:, None]


class GradCamElementwise(CamMethod):
    """Element-wise Grad-CAM: L = ReLU(Σ_c ReLU(G_c ⊙ A_c))."""

    name = "gradcam-elementwise"
    summary = "ReLU(Σ_c ReLU(G_c ⊙ A_c))"

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return (gradients_of(layer) * layer.activations[:, None]).relu()


class LayerCam(CamMethod):
    """LayerCAM (Jiang et al. 2021): L = ReLU(Σ_c ReLU(G_c) ⊙ A_c), positive gradients as
    position-wise weights."""

    name = "layercam"
    summary = "LayerCAM: ReLU(Σ_c ReLU(G_c) ⊙ A_c)"

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return gradients_of(layer).relu() * layer.activations[:, None]


METHODS = (GradCam, Counterfactual, GradCamPlusPlus, XGradCam, HiResCam, GradCamElementwise, LayerCam)
