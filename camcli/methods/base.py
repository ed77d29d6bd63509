"""What every method is: a name, a kind, its parameters, what it needs from the engine, and batched
maths on a pass.

A method computes *raw* maps for all B images and K classes of a batch at once:
- kind ``heat``: a heat map per (image, class), B×K×h×w at any resolution (the target layer's grid,
  or the input's); shown as ``maps.input_map`` (upsampled bilinearly, min-max scaled), boxed by the
  paper's 15% rule;
- kind ``pixel``: a signed input-space gradient per (image, class), B×K×3×H×W.

A *class-free* method (``concepts = True``, Deep Feature Factorization) gives no map per class: its
``compute`` returns ``Concepts``, N heat maps per image (B×N×h×w), each concept named by the classes
the model scores highest for it, or the reason it cannot be named. Its explanation.json entries have
``"class_index": null`` and a ``"concept"`` index instead (see ``outputs.concept_entries``).

Method modules import torch inside their functions, not at the top: the command line reads every
method's declaration (name, kind, summary, parameters) to build its options, and must do so without
loading torch (see ``camcli.methods``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..engine.needs import Needs
from ..params import Param, Value

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..engine.capture import LayerCapture, Pass, Tap
    from ..engine.probe import Probe

HEAT, PIXEL = "heat", "pixel"
KINDS = (HEAT, PIXEL)


@dataclass(frozen=True)
class Concepts:
    """What a class-free method computes for a batch: ``maps`` B×N×h×w (a heat map per image and
    concept); ``names[b][n]`` the concept's top classes as (class index, score) pairs, best first, or
    None with ``unnamed`` saying why no concept could be named."""

    maps: torch.Tensor
    names: list[list[list[tuple[int, float]]]] | None
    unnamed: str | None = None


@dataclass(frozen=True)
class Settings:
    """What a method is run with: the model input's size, the ``--smooth`` modes that apply to it, and
    its own parameters' values (every declared one, defaults filled in)."""

    input_size: tuple[int, int]
    smooth: frozenset[str] = frozenset()
    params: Mapping[str, Value] = field(default_factory=dict)
    separate_layers: bool = False  # --layers-as separate: one map per target layer, not their average


class Method:
    """Base of every method. A subclass sets the class attributes and ``compute``; its docstring (or its
    module's) states the maths."""

    name: ClassVar[str]
    kind: ClassVar[str] = HEAT
    summary: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    smoothing: ClassVar[frozenset[str]] = frozenset()  # the --smooth modes that apply to it
    needs: ClassVar[Needs] = Needs()
    concepts: ClassVar[bool] = False  # class-free: compute() returns Concepts, not maps per class
    # Scores forwards of changed inputs or layers (the Probe). A segmentation target would have to keep the
    # clean prediction's pixels for those; camcli does not yet, so such methods refuse segmentation models.
    perturbs: ClassVar[bool] = False

    @classmethod
    def check(cls, values: Mapping[str, Value], input_size: tuple[int, int] | None = None) -> None:
        """Checks that involve several parameters, or the model's input size once it is known
        (``input_size`` is None before the model loads); raise CamcliError with what to pass."""

    def prepare(self, model: nn.Module, layers: tuple[str, ...], s: Settings) -> None:
        """Checks that need the model (e.g. that its head is a pooled linear classifier), made once before
        any image; raise CamcliError saying why the method does not apply and what to use instead."""

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor | dict[str, torch.Tensor] | Concepts:
        """Raw maps for every image and class of the pass; or, for a method that makes several variants
        (one per target layer, per window size), {variant: maps}; or a class-free method's ``Concepts``."""
        raise NotImplementedError

    def requires(self, s: Settings) -> Needs:
        """What the method needs from the pass with these settings (by default its class's ``needs``)."""
        return self.needs

    def taps(self, s: Settings) -> dict[str, Tap]:
        """Captures of its own the method needs during the forward (named in its needs' ``taps``)."""
        return {}

    def record(self, s: Settings, layers: tuple[str, ...], variant: str | None = None) -> dict[str, Any]:
        """What a reader needs to reproduce an entry, recorded in explanation.json's ``params``:
        by default the declared parameters that shape the outputs."""
        return {p.name: s.params[p.name] for p in self.params if p.record}


class CamMethod(Method):
    """The CAM family: per target layer, a weighted combination of its feature maps A.

    L = ReLU(Σ_c W_c), with W the method's weighted activations (B×K×C×h×w; most methods give
    channel weights α and W = α_c A_c). With ``--smooth eigen`` (and always for the Eigen methods)
    the channel sum is replaced by the first principal component of W (see ``first_component``).
    Several target layers: each layer's map is min-max scaled, upsampled to the input and the
    maps averaged, as pytorch-grad-cam does.
    """

    kind = HEAT
    needs = Needs(layer_gradients=True)
    smoothing = frozenset({"aug", "eigen"})
    project: ClassVar[bool] = False

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor | None:
        """Channel weights α, B×K×C; None when the method weighs element-wise (see ``weighted``)."""
        return None

    def weighted(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        """W, B×K×C×h×w."""
        alpha = self.weights(layer, p, probe, s)
        if alpha is None:
            raise NotImplementedError(f"{self.name} must define weights() or weighted()")
        return alpha[..., None, None] * layer.activations[:, None]

    def layer_map(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        import torch

        if self.project or "eigen" in s.smooth:
            return torch.relu(first_component(self.weighted(layer, p, probe, s)))
        alpha = self.weights(layer, p, probe, s)
        if alpha is not None:  # Σ_c α_c A_c without materializing B×K×C×h×w
            return torch.relu(torch.einsum("bkc,bchw->bkhw", alpha, layer.activations))
        return torch.relu(self.weighted(layer, p, probe, s).sum(dim=2))

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor | dict[str, torch.Tensor]:
        if s.separate_layers and len(p.layers) > 1:
            return {layer.name: self.layer_map(layer, p, probe, s) for layer in p.layers}
        return self.combined(p, probe, s)

    def combined(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        """The map of every target layer, combined (``combine_layers``)."""
        return combine_layers([self.layer_map(layer, p, probe, s) for layer in p.layers], s.input_size)

    def record(self, s: Settings, layers: tuple[str, ...], variant: str | None = None) -> dict[str, Any]:
        smooth = ",".join(sorted(s.smooth))
        shown = [variant] if variant is not None and variant in layers else list(layers)
        return {"layers": shown, **({"smooth": smooth} if smooth else {}), **super().record(s, layers, variant)}


def gradients_of(layer: LayerCapture) -> torch.Tensor:
    """The class scores' gradients at a target layer, B×K×C×h×w (a method that reads them declares
    ``Needs(layer_gradients=True)``; their absence is camcli's bug, not the user's)."""
    if layer.gradients is None:
        raise RuntimeError(f"the pass computed no gradients at '{layer.name}'")
    return layer.gradients


def base_method(
    name: Value, input_size: tuple[int, int], smooth: frozenset[str] = frozenset(), separate_layers: bool = False
) -> tuple[Method, Settings]:
    """The method a wrapper runs on (guided-cam, Finer-CAM, RefineCAM, SESS name it by a parameter) and its
    settings: its own parameters at their defaults, the ``smooth`` modes that apply to it."""
    from . import get, load

    info = get(str(name))
    values = {p.name: p.default for p in info.params}
    return load(info.name), Settings(input_size, smooth & info.smoothing, values, separate_layers)


def combine_layers(maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """One layer: its map as it is. Several: the mean of each min-max scaled map upsampled to ``size``."""
    import torch

    from ..maps import min_max, upsample

    if len(maps) == 1:
        return maps[0]
    return torch.stack([upsample(min_max(m), size) for m in maps]).mean(dim=0)


def first_component(weighted: torch.Tensor, sign: str = "mean") -> torch.Tensor:
    """Projection of each position's channel vector on the first principal component (Eigen-CAM).

    For each image and class, the h·w × C matrix of W is centred over positions, its first right
    singular vector v found by SVD, and the map is (W − mean) v. The sign of a singular vector is
    arbitrary. ``sign="mean"`` (Eigen-CAM, Eigen-Grad-CAM, ``--smooth eigen``): camcli fixes it so the map
    correlates positively with the channel mean of W (the plain activation map for Eigen-CAM), so that
    ReLU keeps the evidence rather than its opposite; pytorch-grad-cam leaves it to the SVD routine.
    ``sign="extreme"`` (Seg-Eigen-CAM's Eq. 13): the map is negated when its minimum is larger in
    magnitude than its maximum.
    """
    import torch

    b, k, c, h, w = weighted.shape
    m = torch.nan_to_num(weighted.float()).reshape(b, k, c, h * w).transpose(-1, -2)  # B×K×hw×C
    m = m - m.mean(dim=-2, keepdim=True)
    v = torch.linalg.svd(m, full_matrices=False).Vh[..., 0, :]  # B×K×C
    projection = (m @ v[..., None])[..., 0]  # B×K×hw
    if sign == "extreme":
        flip = projection.amin(-1, keepdim=True).abs() > projection.amax(-1, keepdim=True).abs()
        return torch.where(flip, -projection, projection).reshape(b, k, h, w)
    reference = weighted.float().mean(dim=2).reshape(b, k, h * w)
    agreement = ((projection - projection.mean(-1, keepdim=True)) * (reference - reference.mean(-1, keepdim=True))).sum(
        -1, keepdim=True
    )
    signed: torch.Tensor = projection * torch.where(agreement < 0, -1.0, 1.0)
    return signed.reshape(b, k, h, w)


def scale_channels(maps: torch.Tensor, eps: float) -> torch.Tensor:
    """Min-max scale each map over its last two dimensions as pytorch-grad-cam's ``scale_cam_image``:
    (m − min) / (max − min + eps)."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    return (maps - lo) / (maps.amax(dim=(-2, -1), keepdim=True) - lo + eps)
