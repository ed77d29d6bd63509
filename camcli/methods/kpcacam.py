"""KPCA-CAM (Karmani et al. 2024, "KPCA-CAM: Visual Explainability of Deep Computer Vision Models using
Kernel PCA"): Eigen-CAM with kernel PCA in place of PCA.

The target layer's n = h·w positions are the samples and its C channels the features: X (n×C), centred
over positions. With a kernel κ, K_ij = κ(x_i, x_j) is double-centred, K̃ = K − 1K − K1 + 1K1 (1 the
n×n matrix of 1/n), and the map is the positions' projection on the first kernel principal component,
v₁√λ₁ (λ₁ the largest eigenvalue of K̃, v₁ its unit eigenvector), then ReLU'd. Kernels as
scikit-learn's ``KernelPCA`` (which pytorch-grad-cam's ``KPCA_CAM`` calls), with its degree 3 and coef0
1: linear ⟨x, y⟩; poly (γ⟨x, y⟩ + 1)³; rbf exp(−γ‖x − y‖²); sigmoid tanh(γ⟨x, y⟩ + 1); cosine
⟨x, y⟩ / (‖x‖‖y‖). ``gamma`` 0 means 1/C, scikit-learn's default (None).

Computed in torch for the whole batch at once (one n×n eigendecomposition per image, O(n³)), with no
scikit-learn at run time. An eigenvector's sign is arbitrary (scikit-learn fixes it by the largest
entry); camcli fixes it as ``base.first_component`` does, so that the map correlates positively with the
channel mean of A and ReLU keeps the activity rather than its opposite. Where λ₁ ≤ 0 (no direction of
positive variance) the map is 0; scikit-learn raises there. Class-agnostic: each image's map is shared by
its k classes.
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

KERNELS = ("linear", "poly", "rbf", "sigmoid", "cosine")


def kernel_matrix(x: torch.Tensor, kernel: str, gamma: float) -> torch.Tensor:
    """B×n×n kernel of the rows of ``x`` (B×n×C), as scikit-learn's ``pairwise_kernels``."""
    import torch.nn.functional as F

    if kernel == "cosine":
        unit = F.normalize(x, dim=-1)  # a zero row stays zero, as scikit-learn's normalize
        return unit @ unit.transpose(-1, -2)
    dot = x @ x.transpose(-1, -2)
    if kernel == "linear":
        return dot
    if kernel == "poly":
        return (gamma * dot + 1.0) ** 3
    if kernel == "sigmoid":
        return (gamma * dot + 1.0).tanh()
    squares = dot.diagonal(dim1=-2, dim2=-1)
    return (-gamma * (squares[..., :, None] + squares[..., None, :] - 2 * dot).clamp_min(0.0)).exp()


def kernel_component(activations: torch.Tensor, kernel: str, gamma: float) -> torch.Tensor:
    """B×C×h×w → B×h×w: each position's projection on the first kernel principal component, signed to
    correlate positively with the channel mean."""
    import torch

    b, c, h, w = activations.shape
    raw = torch.nan_to_num(activations.float()).reshape(b, c, h * w).transpose(-1, -2)  # B×n×C
    x = raw - raw.mean(dim=-2, keepdim=True)
    k = kernel_matrix(x, kernel, gamma if gamma > 0 else 1.0 / c)
    k = k - k.mean(dim=-1, keepdim=True) - k.mean(dim=-2, keepdim=True) + k.mean(dim=(-2, -1), keepdim=True)
    values, vectors = torch.linalg.eigh(k)
    projection = vectors[..., -1] * values[..., -1:].clamp_min(0.0).sqrt()  # B×n
    reference = raw.mean(dim=-1)
    agreement = ((projection - projection.mean(-1, keepdim=True)) * (reference - reference.mean(-1, keepdim=True))).sum(
        -1, keepdim=True
    )
    signed: torch.Tensor = projection * torch.where(agreement < 0, -1.0, 1.0)
    return signed.reshape(b, h, w)


class KpcaCam(CamMethod):
    name = "kpcacam"
    summary = "KPCA-CAM: first kernel principal component of A (class-agnostic)"
    needs = Needs()
    smoothing = frozenset({"aug"})
    params = (
        Param("kernel", str, "sigmoid", "kernel of the kernel PCA (scikit-learn's)", choices=KERNELS),
        Param("gamma", float, 0.0, "coefficient of the rbf, poly and sigmoid kernels; 0: 1/channels", low=0.0),
    )

    def layer_map(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        one = kernel_component(layer.activations, str(s.params["kernel"]), number(s.params["gamma"])).relu()
        return one[:, None].expand(-1, p.classes.shape[1], -1, -1)


METHODS = (KpcaCam,)
