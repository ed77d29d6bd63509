"""RefineCAM ("How to Evaluate and Refine your CAM", arXiv 2605.14641): a layer-wise CAM's maps from several
target layers, multiplied, so that the coarse but clean maps of late layers suppress the noise of the
sharp maps of early ones.

As pytorch-grad-cam 1.5's ``RefineCAM`` defines it, for a base method (``base``, default Grad-CAM++, as
both references) and the target layers ℓ given with repeated ``--layer``:

    M_ℓ = S(U(S(ReLU(L_ℓ)))),      L = S(Π_ℓ M_ℓ),

L_ℓ the base method's map at layer ℓ (with its default parameters), S a min-max scaling to [0, 1] per
map and U bilinear upsampling to the model input: each layer's map is what the base method alone would
show for that layer, and the product is taken at the input's resolution. (pytorch-grad-cam's loop that
would scale the maps once more assigns to a loop variable and changes nothing; they are in [0, 1]
already.) torchcam's ``RefineCAM`` multiplies the scaled maps at the finest layer's grid instead of the
input's and upsamples the product afterwards, and its base methods are its own; it also refuses fewer
than two layers. With one layer the product is that layer's map, which refines nothing, so camcli
refuses it too and says which layers to pass.

Shared work: every layer's map comes from the same pass (one forward and, for gradient bases, one
backward per class to all target layers at once), for all classes and images; ``--layers-as`` does not
apply, the product being the method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import CamcliError
from ..params import Param, Value
from .base import HEAT, CamMethod, Method, Settings, base_method

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..engine.capture import Pass, Tap
    from ..engine.needs import Needs
    from ..engine.probe import Probe


def _layerwise() -> list[str]:
    """The registered methods that make one map per target layer (the CAM family): possible bases."""
    from . import registry

    return [n for n, info in registry().items() if info.kind == HEAT and issubclass(info.cls, CamMethod)]


class RefineCam(Method):
    name = "refinecam"
    kind = HEAT
    summary = "RefineCAM: the product of a CAM method's scaled maps over several layers"
    params = (
        Param(
            "base",
            str,
            "gradcam++",
            "the layer-wise CAM method whose maps at the target layers are multiplied",
            metavar="METHOD",
        ),
    )

    @classmethod
    def check(cls, values: Mapping[str, Value], input_size: tuple[int, int] | None = None) -> None:
        if str(values["base"]) not in _layerwise():
            raise CamcliError(
                f"--refinecam-base {values['base']!r} is not a CAM method that makes a map per layer. "
                f"Use one of {', '.join(_layerwise())}."
            )

    def prepare(self, model: nn.Module, layers: tuple[str, ...], s: Settings) -> None:
        if len(layers) < 2:
            given = layers[0] if layers else "LAYER"
            raise CamcliError(
                f"refinecam multiplies its base method's maps from several layers, and one target layer was given "
                f"('{given}'). Pass two or more, from an early one to the last, with a repeated --layer (layers=[...] "
                f"in the Python API): e.g. --layer EARLY --layer {given}; 'camcli layers MODEL' lists the candidates."
            )
        base, settings = self._base(s)
        base.prepare(model, layers, settings)  # the base's own checks (its layers, the model's head)

    def _base(self, s: Settings) -> tuple[Method, Settings]:
        return base_method(s.params["base"], s.input_size, separate_layers=True)

    def requires(self, s: Settings) -> Needs:
        base, settings = self._base(s)
        return base.requires(settings)

    def taps(self, s: Settings) -> dict[str, Tap]:
        base, settings = self._base(s)
        return base.taps(settings)

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        import torch

        from ..explainer import variants
        from ..maps import min_max, upsample

        base, settings = self._base(s)
        per_layer = variants(base.compute(p, probe, settings))
        missing = [layer.name for layer in p.layers if layer.name not in per_layer]
        if missing:
            raise CamcliError(
                f"--refinecam-base {base.name} made no map for layer '{missing[0]}'. "
                f"Pick another base: {', '.join(_layerwise())}."
            )
        scaled = [min_max(upsample(min_max(per_layer[layer.name].relu()), s.input_size)) for layer in p.layers]
        return torch.stack(scaled).prod(dim=0)

    def record(self, s: Settings, layers: tuple[str, ...], variant: str | None = None) -> dict[str, Any]:
        return {"layers": list(layers), "base": s.params["base"]}


METHODS = (RefineCam,)
