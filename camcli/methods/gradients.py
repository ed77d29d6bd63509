"""Pixel-space gradient methods: one backward to the input per class and backward rule (see
``engine.rules``), all from the batch's one forward.

- saliency (vanilla backpropagation, Simonyan et al. 2014): ∂y^c/∂x, signed, 3×H×W;
- deconvnet (Zeiler & Fergus 2014): the backward through every activation passes max(∂/∂y, 0)
  whatever the forward input was;
- guided-backprop (Springenberg et al. 2015): the backward through every activation passes
  f'(x) · max(∂/∂y, 0);
- guided-gradcam (Selvaraju et al. 2017): guided backprop ⊙ the Grad-CAM map upsampled bilinearly to
  the input (not rescaled, as captum does).
"""

from __future__ import annotations

from typing import Any

import torch

from ..engine import Needs, Pass, Probe
from ..maps import upsample
from .base import Method, Settings
from .gradcam import GradCam


class InputGradient(Method):
    kind = "pixel"
    rule = "plain"

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return p.input_gradients[self.rule]

    def params(self, s: Settings, layers: tuple[str, ...]) -> dict[str, Any]:
        return {"rule": self.rule}


class Saliency(InputGradient):
    name = "saliency"
    needs = Needs(rules=frozenset({"plain"}))


class Deconvnet(InputGradient):
    name = "deconvnet"
    rule = "deconv"
    needs = Needs(rules=frozenset({"deconv"}))


class GuidedBackprop(InputGradient):
    name = "guided-backprop"
    rule = "guided"
    needs = Needs(rules=frozenset({"guided"}))


class GuidedGradCam(InputGradient):
    name = "guided-gradcam"
    rule = "guided"
    needs = Needs(layer_gradients=True, rules=frozenset({"guided"}))

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        cam = upsample(GradCam().compute(p, probe, Settings(s.input_size)), s.input_size)
        return p.input_gradients["guided"] * cam[:, :, None]

    def params(self, s: Settings, layers: tuple[str, ...]) -> dict[str, Any]:
        return {"rule": "guided", "layers": list(layers)}


METHODS = {m.name: m() for m in (Saliency, Deconvnet, GuidedBackprop, GuidedGradCam)}
