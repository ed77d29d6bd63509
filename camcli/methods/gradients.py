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

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..engine.needs import Needs
from ..errors import CamcliError
from ..params import Param, Value
from .base import HEAT, PIXEL, Method, Settings, base_method
from .gradcam import GradCam

if TYPE_CHECKING:
    import torch

    from ..engine.capture import Pass, Tap
    from ..engine.probe import Probe


class InputGradient(Method):
    kind = PIXEL
    rule: ClassVar[str] = "plain"

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return p.input_gradients[self.rule]

    def record(self, s: Settings, layers: tuple[str, ...], variant: str | None = None) -> dict[str, Any]:
        return {"rule": self.rule}


class Saliency(InputGradient):
    name = "saliency"
    summary = "vanilla backpropagation: ∂y/∂x"
    needs = Needs(rules=frozenset({"plain"}))


class Deconvnet(InputGradient):
    name = "deconvnet"
    summary = "deconvnet: backward passes max(∂/∂y, 0) at activations"
    rule = "deconv"
    needs = Needs(rules=frozenset({"deconv"}))


class GuidedBackprop(InputGradient):
    name = "guided-backprop"
    summary = "input gradient with every activation guided"
    rule = "guided"
    needs = Needs(rules=frozenset({"guided"}))


class GuidedGradCam(InputGradient):
    name = "guided-gradcam"
    summary = "guided backprop ⊙ Grad-CAM upsampled to the input"
    rule = "guided"
    needs = Needs(layer_gradients=True, rules=frozenset({"guided"}))

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        from ..maps import upsample

        cam = upsample(GradCam().combined(p, probe, Settings(s.input_size)), s.input_size)
        return p.input_gradients["guided"] * cam[:, :, None]

    def record(self, s: Settings, layers: tuple[str, ...], variant: str | None = None) -> dict[str, Any]:
        return {"rule": "guided", "layers": list(layers)}


class GuidedCam(InputGradient):
    """Guided backprop ⊙ the map of any heat-map method (``base``): the map upsampled to the input and
    min-max scaled to [0, 1], times the guided gradient, as pytorch-grad-cam combines any CAM with its
    ``GuidedBackpropReLUModel``. The base runs with its default parameters, from the same pass."""

    name = "guided-cam"
    summary = "guided backprop ⊙ any heat-map method's map (its --guided-cam-base)"
    rule = "guided"
    needs = Needs(rules=frozenset({"guided"}))  # and its base's: see requires()
    params = (
        Param("base", str, "gradcam", "the heat-map method whose map weighs the guided gradient", metavar="METHOD"),
    )

    @classmethod
    def check(cls, values: Mapping[str, Value], input_size: tuple[int, int] | None = None) -> None:
        from . import names, registry

        base = values["base"]
        found = registry().get(str(base))
        if found is None or found.kind != HEAT or found.name == cls.name:
            heat = [n for n in names() if registry()[n].kind == HEAT]
            raise CamcliError(f"--guided-cam-base {base!r} is not a heat-map method. Use one of {', '.join(heat)}.")

    def _base(self, s: Settings) -> tuple[Method, Settings]:
        return base_method(s.params["base"], s.input_size)

    def requires(self, s: Settings) -> Needs:
        base, settings = self._base(s)
        return Needs(rules=frozenset({"guided"})) | base.requires(settings)

    def taps(self, s: Settings) -> dict[str, Tap]:
        base, settings = self._base(s)
        return base.taps(settings)

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        from ..explainer import variants
        from ..maps import input_map

        base, settings = self._base(s)
        [cam] = variants(base.compute(p, probe, settings)).values()
        return p.input_gradients["guided"] * input_map(cam, s.input_size)[:, :, None]

    def record(self, s: Settings, layers: tuple[str, ...], variant: str | None = None) -> dict[str, Any]:
        return {"rule": "guided", "base": s.params["base"], "layers": list(layers)}


METHODS = (Saliency, Deconvnet, GuidedBackprop, GuidedGradCam, GuidedCam)
