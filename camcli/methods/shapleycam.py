"""ShapleyCAM (Cai 2025, "CAMs as Shapley value-based explainers", arXiv 2501.06261): channel weights from
the gradient and the Hessian of the class score at the target layer.

The paper reads a CAM as the Shapley value of each activation under a second-order Taylor expansion
of the class score y around the layer's output A. With G = ∂y/∂A and H = ∂²y/∂A², as
pytorch-grad-cam 1.5's ``ShapleyCAM`` defines it:

    α_c = (1/Z) Σ_ij (G − ½ H·A)_cij,      L = ReLU(Σ_c α_c A_c),

H·A the Hessian-vector product along the layer's own output (for a token layer, along every token,
prefix tokens included, as pytorch-grad-cam differentiates the layer's raw output). Where the score is
linear in A beyond the layer (ReLU networks ending in average pooling and a linear classifier, with
``--score logit``), H·A = 0 and ShapleyCAM is Grad-CAM; the paper pairs it with ``--score rest``
(y^c − CE, pytorch-grad-cam's ``ClassifierOutputReST``), whose softmax term has curvature.

Shared work: the engine's one forward per batch serves every class and image; per class, one
backward keeps its own graph (``create_graph``) and one more per target layer gives H·A, for all
images at once (images do not interact, so the summed score's Hessian is block-diagonal by image). The
second backward cannot be shared across classes: each class has its own H. Attention in that forward
is computed explicitly (``engine.attention``), because fused attention kernels cannot be
differentiated twice.

Departure from pytorch-grad-cam: its ``ShapleyCAM`` fails on token layers (it applies the reshape
transform to the gradients but not to the activations it weighs, and its fused attention has no
second derivative); camcli computes the same formula there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.needs import Needs
from .base import CamMethod, Settings

if TYPE_CHECKING:
    import torch

    from ..engine.capture import LayerCapture, Pass
    from ..engine.probe import Probe


class ShapleyCam(CamMethod):
    """ShapleyCAM: α_c = mean over positions of G − ½ H·A (see the module docstring)."""

    name = "shapleycam"
    summary = "ShapleyCAM: α = mean(∂y/∂A − ½ H·A), gradient and Hessian-vector product"
    needs = Needs(layer_gradients=True, hessian=True)

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        if layer.gradients is None or layer.hessian is None:
            raise RuntimeError(f"the pass computed no gradients or Hessian-vector products at '{layer.name}'")
        return (layer.gradients - 0.5 * layer.hessian).mean(dim=(-2, -1))


METHODS = (ShapleyCam,)
