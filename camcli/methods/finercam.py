"""Finer-CAM (Zhang et al. 2025, arXiv 2501.11309), as pytorch-grad-cam 1.5's ``FinerCAM`` computes it:
a gradient CAM of the class against the classes the model finds most like it, to show what tells
them apart.

For an explained class c, the comparison classes D are those whose class scores (logits) are closest
to c's: the ``comparison_categories``-th closest (1, 2, 3 by default: the three closest; c itself never
counts). With v the explained scores (``--score``; the logits by default, as the reference uses) the
map is the base method's (Grad-CAM by default) for the objective

    S = Σ_{d∈D} w_d (v_c − α v_d),   w = softmax over D of v_D

(pytorch-grad-cam weighs by the model's softmax probabilities over all classes, divided by their sum
over D, which is this softmax up to its 1e-9 guard). The gradient flows through w too, so S is not
linear in the class scores, but its gradient is a combination of theirs:

    ∂S/∂A = ∂v_c/∂A + Σ_{d∈D} w_d (v_c − α v_d − S − α) ∂v_d/∂A

with coefficients from the scores alone. So one more pass (``probe.rerun``) on the same batch gives the
gradients of every image's comparison classes, for all k explained classes at once; the explained
classes' own come from the method's pass. (pytorch-grad-cam explains one class per call, its
``target_idx`` or the top class, with one forward and backward each.) The base method runs on that
combined gradient with its default parameters.

torchcam 0.5's ``FinerCAM`` defines it differently: S = v_c − γ · mean_{d∈D} v_d, an unweighted mean
(no gradient through weights), γ = 0.6 by default, and its comparison classes are always the
``num_references`` closest. camcli follows pytorch-grad-cam.

A comparison rank at or beyond the model's number of classes is dropped, as pytorch-grad-cam does (a
binary head keeps rank 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..engine.needs import Needs
from ..errors import CamcliError
from ..params import Param, Value, integer, number
from .base import CamMethod, Concepts, Method, Settings, base_method, gradients_of

if TYPE_CHECKING:
    import torch

    from ..engine.capture import Pass
    from ..engine.probe import Probe

# The gradient CAMs whose maps depend on the score only through the layer gradients.
BASES = ("gradcam", "gradcam++", "xgradcam", "hirescam", "gradcam-elementwise", "layercam", "eigengradcam")


def _ranks(value: Value) -> tuple[int, ...]:
    return tuple(integer(v) for v in value) if isinstance(value, tuple) else (integer(value),)


class FinerCam(CamMethod):
    name = "finercam"
    summary = "Finer-CAM: the class against the classes scored most like it, for fine-grained differences"
    params = (
        Param(
            "alpha",
            float,
            1.0,
            "comparison strength α: the map explains the class's score minus α times the compared classes' "
            "(softmax-weighted)",
            low=0.0,
        ),
        Param(
            "comparison_categories",
            int,
            (1, 2, 3),
            "which classes to compare with, by closeness of their logit to the class's (1: the closest)",
            low=1,
            many=True,
            metavar="R[,R...]",
        ),
        Param("base_method", str, "gradcam", "the gradient CAM computed for the objective", choices=BASES),
    )

    @classmethod
    def check(cls, values: Mapping[str, Value], input_size: tuple[int, int] | None = None) -> None:
        ranks = _ranks(values["comparison_categories"])
        if len(set(ranks)) != len(ranks):
            raise CamcliError(
                f"--finercam-comparison-categories {','.join(map(str, ranks))} names a class rank twice. "
                "Pass each rank once (e.g. 1,2,3)."
            )

    def _base(self, s: Settings) -> tuple[Method, Settings]:
        return base_method(s.params["base_method"], s.input_size, s.smooth, s.separate_layers)

    def requires(self, s: Settings) -> Needs:
        base, settings = self._base(s)
        return Needs(layer_gradients=True) | base.requires(settings)

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor | dict[str, torch.Tensor]:
        import torch

        comparisons = self.comparisons(p, s)  # B×K×T
        b, k, t = comparisons.shape
        alpha = number(s.params["alpha"])
        own = p.values.gather(1, p.classes)[..., None]  # B×K×1
        theirs = p.values.gather(1, comparisons.flatten(1)).view(b, k, t)
        w = theirs.softmax(dim=-1)
        differences = own - alpha * theirs
        objective = (w * differences).sum(dim=-1, keepdim=True)
        coefficients = w * (differences - objective - alpha)  # ∂S/∂v_d
        compared = probe.rerun(p.x, comparisons.flatten(1))
        layers = []
        for mine, other in zip(p.layers, compared.layers, strict=True):
            own_gradients = gradients_of(mine)
            others = gradients_of(other).reshape(b, k, t, *own_gradients.shape[2:])
            finer = own_gradients + torch.einsum("bkt,bktchw->bkchw", coefficients, others)
            layers.append(dataclasses.replace(mine, gradients=finer))
        base, settings = self._base(s)
        made = base.compute(dataclasses.replace(p, layers=tuple(layers)), probe, settings)
        assert not isinstance(made, Concepts)  # its bases (BASES) are gradient CAMs
        return made

    def comparisons(self, p: Pass, s: Settings) -> torch.Tensor:
        """B×K×T: for each explained class, the classes at the asked ranks of closeness of their score."""
        scores = p.scores
        count = scores.shape[1]
        asked = _ranks(s.params["comparison_categories"])
        ranks = [r for r in asked if r < count]
        if not ranks:
            raise CamcliError(
                f"--finercam-comparison-categories {','.join(map(str, asked))}: the model has {count} classes, "
                f"so a class has {count - 1} to compare with. Pass ranks from 1 to {count - 1}."
            )
        distance = (scores[:, None, :] - scores.gather(1, p.classes)[..., None]).abs()  # B×K×C
        distance.scatter_(2, p.classes[..., None], float("inf"))  # a class is not compared with itself
        closest = distance.topk(max(ranks), dim=2, largest=False).indices
        return closest[..., [r - 1 for r in ranks]]


METHODS = (FinerCam,)
