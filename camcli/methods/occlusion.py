"""Occlusion sensitivity (Zeiler & Fergus 2014): the drop of the class score when a window of the input
is covered.

A window of ``window`` pixels (all channels; ``HxW`` for a rectangle) slides over the model input in
steps of ``stride``; inside it the input is set to ``fill`` (in normalized input space: 0 is the mean
colour). Each pixel's value is the drop of the explained score, y^c(x) − y^c(x occluded), averaged over
the windows that cover it. Where the windows go (``border``):

- ``inside`` (captum's ``Occlusion``): windows inside the input, ⌈(H − h)/s⌉ + 1 positions per axis, the
  last one clipped at the edge;
- ``centred`` (grad-cam-pytorch's ``occlusion_sensitivity``): a window centred on every ``stride``-th
  pixel, border ones hanging over the edge (the part outside the input covers nothing). grad-cam-pytorch
  pads the input by half a window and feeds the larger picture to the model; camcli keeps the model's
  input as the model expects it. A pixel no window covers (the far edge, when the stride does not
  divide the size) is 0.

Several window sizes (``window`` 16,32) give one map each (variants named by their size), from one
batch of forwards per image. Every forward is shared by all k classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import CamcliError
from ..params import Param, Value, integer, number
from .base import HEAT, Method, Settings

if TYPE_CHECKING:
    import torch

    from ..engine.capture import Pass
    from ..engine.probe import Probe

BORDERS = ("inside", "centred")


def window_size(text: Value) -> tuple[int, int]:
    """``N`` or ``HxW`` (a ``--occlusion-window`` item) as (height, width)."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides, default=0) < 1:
        raise CamcliError(f"--occlusion-window {text!r} is not N or HxW (e.g. 32 or 16x48), at least 1 pixel.")
    return sides[0], sides[-1]


def window_axes(
    size: tuple[int, int], window: tuple[int, int], stride: int, border: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per axis, which pixels each window position covers: R×H and C×W masks (R·C windows in all)."""
    import torch

    axes = []
    for extent, win in zip(size, window, strict=True):
        if border == "centred":
            starts = torch.arange(0, extent, stride, device=device)[:, None] - win // 2
            win_here = win
        else:
            win_here = min(win, extent)
            starts = torch.arange(math.ceil((extent - win_here) / stride) + 1, device=device)[:, None] * stride
        positions = torch.arange(extent, device=device)[None]
        axes.append(((positions >= starts) & (positions < starts + win_here)).float())
    return axes[0], axes[1]


class Occlusion(Method):
    name = "occlusion"
    perturbs = True
    kind = HEAT
    summary = "score drop when a sliding window is set to the mean colour"
    params = (
        Param(
            "window",
            str,
            ("32",),
            "window side(s) in input pixels, N or HxW; several give one map each",
            many=True,
            metavar="N[,N...]",
        ),
        Param("stride", int, 16, "step between windows, at most the window side", low=1, metavar="S"),
        Param("fill", float, 0.0, "value of the occluded pixels in normalized input space (0: the mean colour)"),
        Param(
            "border",
            str,
            "inside",
            "inside: windows within the input (captum); centred: a window centred on "
            "every stride-th pixel (grad-cam-pytorch)",
            choices=BORDERS,
        ),
    )

    @classmethod
    def check(cls, values: Mapping[str, Value], input_size: tuple[int, int] | None = None) -> None:
        windows = [window_size(w) for w in _items(values["window"])]
        stride = integer(values["stride"])
        if stride > min(min(w) for w in windows):
            raise CamcliError(
                f"--occlusion-stride {stride} is larger than a window side in --occlusion-window "
                f"{','.join(map(str, _items(values['window'])))}, so some pixels would never be occluded. Pass a "
                "stride of at most the smallest window side (default 16 and 32)."
            )
        if input_size is not None:
            for h, w in windows:
                if h > input_size[0] or w > input_size[1]:
                    raise CamcliError(
                        f"--occlusion-window {h}x{w} is larger than the model input ({input_size[0]}×{input_size[1]}): "
                        "every window would cover the whole image and give a constant map. Pass a window of at "
                        f"most {min(input_size)} (e.g. {max(8, min(input_size) // 7)})."
                    )

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor | dict[str, torch.Tensor]:
        import torch

        stride, fill, border = integer(s.params["stride"]), number(s.params["fill"]), str(s.params["border"])
        size = (int(p.x.shape[-2]), int(p.x.shape[-1]))
        windows = {str(w): window_size(w) for w in _items(s.params["window"])}
        axes = {name: window_axes(size, window, stride, border, p.x.device) for name, window in windows.items()}
        # All windows of all sizes, as (axes name, row, column), in one list: one batch of forwards per image.
        plan = [(name, r, c) for name, (rows, cols) in axes.items() for r in range(len(rows)) for c in range(len(cols))]
        x = p.x.float()
        found: dict[str, list[torch.Tensor]] = {name: [] for name in windows}
        for b in range(x.shape[0]):

            def occluded(i: int, j: int, b: int = b) -> torch.Tensor:
                # Window masks are made batch by batch: all at once are windows × H × W floats.
                inside = torch.stack(
                    [axes[name][0][r][:, None] * axes[name][1][c][None, :] for name, r, c in plan[i:j]]
                )
                return x[b : b + 1] * (1 - inside[:, None]) + fill * inside[:, None]

            drops = (p.values[b][None] - probe.inputs(occluded, len(plan)))[:, p.classes[b]]  # windows × K
            start = 0
            for name, (rows, cols) in axes.items():
                count = len(rows) * len(cols)
                mine = drops[start : start + count].T.reshape(-1, len(rows), len(cols))
                start += count
                total = torch.einsum("kij,ih,jw->khw", mine, rows, cols)
                covered = rows.sum(dim=0)[:, None] * cols.sum(dim=0)[None]  # how many windows cover each pixel
                found[name].append(total / covered.clamp_min(1))  # a pixel no window covers (centred): 0
        maps = {name: torch.stack(per_image) for name, per_image in found.items()}
        return next(iter(maps.values())) if len(maps) == 1 else maps

    def record(self, s: Settings, layers: tuple[str, ...], variant: str | None = None) -> dict[str, Any]:
        windows = _items(s.params["window"])
        shown = [variant] if variant is not None else list(windows)
        window: Any = shown if len(shown) > 1 else int(shown[0]) if shown[0].isdigit() else shown[0]
        extra = (
            {}
            if (s.params["border"], number(s.params["fill"])) == ("inside", 0.0)
            else {
                "border": s.params["border"],
                "fill": number(s.params["fill"]),
            }
        )
        return {
            "window": window,
            "stride": s.params["stride"],
            **extra,
            "baseline": number(s.params["fill"]),
            "score": "pre-softmax class score",
        }


def _items(value: Value) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, tuple) else (str(value),)


METHODS = (Occlusion,)
