"""The explanation methods, by name.

This module is light (no torch): the command line checks ``--method`` before the heavy
libraries load. Each method's maths live in its own module, imported on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import CamcliError

if TYPE_CHECKING:
    from .base import Method


@dataclass(frozen=True)
class MethodInfo:
    """A registered method. ``kind`` "cam": a heat map per class (overlay, map, box); "pixel": a signed
    input-space gradient per class (image). ``module`` holds its maths, loaded on first use."""

    name: str
    module: str
    kind: str
    summary: str
    smoothing: frozenset[str] = frozenset()  # the --smooth values that apply to it


_CAM = frozenset({"aug", "eigen"})
_AUG = frozenset({"aug"})
# One line per method: adding a method is its module, a line here, and its oracle test.
_REGISTRY = (
    MethodInfo("gradcam", "gradcam", "cam", "Grad-CAM: ReLU(Σ_c α_c A_c), α the spatially averaged gradient", _CAM),
    MethodInfo("counterfactual", "gradcam", "cam", "ReLU(Σ_c −α_c A_c): what argues against the class", _CAM),
    MethodInfo("gradcam++", "gradcam", "cam", "Grad-CAM++: α from 2nd and 3rd powers of the gradient", _CAM),
    MethodInfo("xgradcam", "gradcam", "cam", "XGrad-CAM: α = Σ G A / Σ A", _CAM),
    MethodInfo("hirescam", "gradcam", "cam", "HiResCAM: ReLU(Σ_c G_c ⊙ A_c)", _CAM),
    MethodInfo("gradcam-elementwise", "gradcam", "cam", "ReLU(Σ_c ReLU(G_c ⊙ A_c))", _CAM),
    MethodInfo("layercam", "gradcam", "cam", "LayerCAM: ReLU(Σ_c ReLU(G_c) ⊙ A_c)", _CAM),
    MethodInfo("eigencam", "eigen", "cam", "Eigen-CAM: first principal component of A", _CAM),
    MethodInfo("eigengradcam", "eigen", "cam", "first principal component of G ⊙ A", _CAM),
    MethodInfo("scorecam", "scorecam", "cam", "Score-CAM: channels weighted by the scores of masked inputs", _CAM),
    MethodInfo(
        "ablationcam", "ablationcam", "cam", "Ablation-CAM: channels weighted by the score drop when zeroed", _CAM
    ),
    MethodInfo("fullgrad", "fullgrad", "cam", "FullGrad: input-gradient and bias-gradient terms", _AUG),
    MethodInfo("occlusion", "occlusion", "cam", "score drop when a sliding window is set to the mean colour"),
    MethodInfo("saliency", "gradients", "pixel", "vanilla backpropagation: ∂y/∂x"),
    MethodInfo("deconvnet", "gradients", "pixel", "deconvnet: backward passes max(∂/∂y, 0) at activations"),
    MethodInfo("guided-backprop", "gradients", "pixel", "input gradient with every activation guided"),
    MethodInfo("guided-gradcam", "gradients", "pixel", "guided backprop ⊙ Grad-CAM upsampled to the input"),
)
REGISTRY = {m.name: m for m in _REGISTRY}
METHODS = tuple(REGISTRY)
ALIASES = {"gradcampp": "gradcam++", "grad-cam": "gradcam", "vanilla": "saliency", "guided": "guided-backprop"}
SMOOTHING = ("aug", "eigen")


def load(name: str) -> Method:
    """The method's implementation (imports torch)."""
    module = importlib.import_module(f"{__name__}.{REGISTRY[name].module}")
    method: Method = module.METHODS[name]
    return method


def parse_methods(specs: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Comma-separated, repeatable method names (or aliases) → unique names in the order given."""
    names = [n.strip().lower() for spec in specs for n in spec.split(",") if n.strip()]
    resolved = []
    for name in names:
        name = ALIASES.get(name, name)
        if name not in REGISTRY:
            raise CamcliError(
                f"Unknown method '{name}'. Use one or more of: {', '.join(METHODS)} (e.g. --method gradcam,scorecam)."
            )
        resolved.append(name)
    return tuple(dict.fromkeys(resolved)) or ("gradcam",)


def kind(name: str) -> str:
    return REGISTRY[name].kind
