"""SESS: Saliency Enhancing with Scaling and Sliding (Tursun et al. 2022), a wrapper over any heat-map
method (``base``), as pytorch-grad-cam's ``SESS`` computes it.

The model input is resized so its shorter side is each of the ``scales`` (default: ``num_scales``
sizes from the window size up in steps of ``scale_step`` × the window: 224, 288, ... for a 224 px input),
and a square window of the input's shorter side slides over every scaled image in steps of ``step``
(default: the window; windows crossing the far border are shifted back inside). Every patch is
classified; its weight for class c is its softmax probability of c over the largest among the patches
(the ``pre_filter`` share of lowest-weighted patches is dropped). The base method's map of each patch (at
the patch's size, min-max scaled as pytorch-grad-cam scales every CAM) times its weight is pasted where the
patch came from, resized to the input (bilinear), and the maps are fused: the mean over the patches whose
value exceeds ``theta`` at each pixel (``pool`` mean), or the maximum (``pool`` max); then a Gaussian blur
(kernel 11, σ 5) when ``smooth``.

The patches are the same for every image of a batch (they depend on the input size only): all images'
patches are classified in batched forwards, and each chunk of patches gets one pass of the base method
for all k classes at once (``probe.rerun``); the reference runs one per class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import CamcliError
from ..params import Param, Value, integer, number
from .base import HEAT, Method, Settings, base_method

if TYPE_CHECKING:
    import torch

    from ..engine.capture import Pass, Tap
    from ..engine.needs import Needs
    from ..engine.probe import Probe

POOLS = ("mean", "max")


def window_starts(length: int, step: int, window: int) -> list[int]:
    """Where windows start along one side: every ``step``, the last shifted back inside the border."""
    starts = []
    for start in range(0, length, step):
        if start + window >= length:
            starts.append(max(length - window, 0))
            break
        starts.append(start)
    return starts


class Sess(Method):
    name = "sess"
    perturbs = True
    kind = HEAT
    summary = "SESS: any heat-map method over scaled, sliding patches, weighted and fused"
    params = (
        Param("base", str, "gradcam", "the heat-map method run on every patch", metavar="METHOD"),
        Param("num_scales", int, 12, "how many scales (ignored with --sess-scales)", low=1),
        Param(
            "scales",
            int,
            (),
            "the shorter side of each scaled input, at least the window",
            low=1,
            many=True,
            metavar="N,N,...",
        ),
        Param("scale_step", float, 2.0 / 7.0, "growth of the scales, as a share of the window", low=0.0, low_open=True),
        Param("step", int, 0, "stride of the sliding window (0: the window size)", low=0),
        Param(
            "pre_filter", float, 0.0, "share of the lowest-scoring patches dropped", low=0.0, high=1.0, high_open=True
        ),
        Param("theta", float, 0.0, "patch values below this take no part in the mean"),
        Param("pool", str, "mean", "fuse patches by their mean or their maximum", choices=POOLS),
        Param("smooth", bool, True, "Gaussian blur (11, σ 5) of the fused map"),
        Param("softmax_scores", bool, True, "weigh patches by softmax probabilities (else by clipped scores)"),
    )

    @classmethod
    def check(cls, values: Mapping[str, Value], input_size: tuple[int, int] | None = None) -> None:
        from . import registry

        base = registry().get(str(values["base"]))
        if base is None or base.kind != HEAT or base.name == cls.name or base.cls.concepts:
            heat = [n for n, i in registry().items() if i.kind == HEAT and n != cls.name and not i.cls.concepts]
            raise CamcliError(
                f"--sess-base {values['base']!r} is not a heat-map method with a map per class. "
                f"Use one of {', '.join(heat)}."
            )
        if input_size is not None:
            window = min(input_size)
            small = [s for s in _scales(values, window) if s < window]
            if small:
                raise CamcliError(
                    f"--sess-scales {small[0]} is smaller than the window ({window} px, the input's shorter side). "
                    f"Pass scales of at least {window}."
                )

    def _base(self, s: Settings) -> tuple[Method, Settings]:
        return base_method(s.params["base"], s.input_size)

    def requires(self, s: Settings) -> Needs:
        base, settings = self._base(s)
        return base.requires(settings)

    def taps(self, s: Settings) -> dict[str, Tap]:
        base, settings = self._base(s)
        return base.taps(settings)

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        from ..evaluate.metrics import gaussian_blur
        from ..explainer import variants
        from ..maps import input_map

        base, base_settings = self._base(s)
        height, width = (int(p.x.shape[-2]), int(p.x.shape[-1]))
        window = min(height, width)
        step = integer(s.params["step"]) or window
        sizes = [
            (scale, int(scale * width / height)) if height <= width else (int(scale * height / width), scale)
            for scale in _scales(s.params, window)
        ]
        patches = [
            (index, x, y)
            for index, size in enumerate(sizes)
            for y in window_starts(size[0], step, window)
            for x in window_starts(size[1], step, window)
        ]
        x_all = p.x.float()
        b, k = p.classes.shape
        scaled = [F.interpolate(x_all, size=size, mode="bilinear", align_corners=False) for size in sizes]

        def crops(first: int, last: int) -> torch.Tensor:
            """Patches first..last-1 of every image, patch-major: (patch, image) rows."""
            return torch.cat([scaled[i][:, :, y : y + window, x : x + window] for i, x, y in patches[first:last]])

        # 1. Every patch's weight for each (image, class): its softmax probability, over the largest.
        values = probe.inputs(lambda i, j: _rows(crops, b, i, j), len(patches) * b)
        scores = values.softmax(dim=1) if s.params["softmax_scores"] else values.clamp_min(0)
        weight = scores.reshape(len(patches), b, -1).gather(2, p.classes[None].expand(len(patches), -1, -1))
        keep = _kept(weight, number(s.params["pre_filter"]))
        weight = weight * keep / (weight * keep).amax(dim=0, keepdim=True).clamp_min(torch.finfo(weight.dtype).tiny)
        # 2. Each chunk of patches: one pass of the base method for all images and classes, pasted and fused.
        fused = torch.zeros(b, k, height, width, device=x_all.device)
        counts = torch.zeros_like(fused)
        theta, pool = number(s.params["theta"]), str(s.params["pool"])
        chunk = max(1, probe.batch_size // max(b, 1))
        for first in range(0, len(patches), chunk):
            last = min(first + chunk, len(patches))
            rerun = probe.rerun(crops(first, last), p.classes.repeat(last - first, 1))
            [cam] = variants(base.compute(rerun, probe, base_settings)).values()
            shown = input_map(cam, (window, window)).reshape(last - first, b, k, window, window)
            for offset, (i, x, y) in enumerate(patches[first:last]):
                placed = torch.zeros(b, k, *sizes[i], device=x_all.device)
                placed[:, :, y : y + window, x : x + window] = shown[offset] * weight[first + offset][..., None, None]
                back = F.interpolate(placed, size=(height, width), mode="bilinear", align_corners=False)
                if pool == "max":
                    fused = torch.maximum(fused, back)
                else:
                    counted = (back > theta) & keep[first + offset][..., None, None]
                    fused += torch.where(counted, back, 0.0)
                    counts += counted
        if pool == "mean":
            fused = torch.where(counts > 0, fused / counts.clamp_min(1), 0.0)
        return gaussian_blur(fused, 11, 5.0) if s.params["smooth"] else fused

    def record(self, s: Settings, layers: tuple[str, ...], variant: str | None = None) -> dict[str, Any]:
        return {"layers": list(layers), **{p.name: s.params[p.name] for p in self.params}}


def _scales(values: Mapping[str, Value], window: int) -> list[int]:
    given = values["scales"]
    if isinstance(given, tuple) and given:
        return [integer(v) for v in given]
    step = round(window * number(values["scale_step"]))
    return [window + step * i for i in range(integer(values["num_scales"]))]


def _rows(crops: Callable[[int, int], torch.Tensor], images: int, first: int, last: int) -> torch.Tensor:
    """Rows first..last-1 of the (patch, image) list of patches."""
    start, stop = first // images, -(-last // images)
    rows: torch.Tensor = crops(start, stop)
    return rows[first - start * images : last - start * images]


def _kept(weight: torch.Tensor, share: float) -> torch.Tensor:
    """P×B×K: which patches take part (the lowest-weighted ``share`` of the patches dropped, per image and
    class, as the reference sorts them)."""
    import torch

    count = weight.shape[0]
    drop = int(count * share)
    if drop == 0:
        return torch.ones_like(weight, dtype=torch.bool)
    order = weight.argsort(dim=0, stable=True)
    keep = torch.ones_like(weight, dtype=torch.bool)
    keep.scatter_(0, order[:drop], False)
    return keep


METHODS = (Sess,)
