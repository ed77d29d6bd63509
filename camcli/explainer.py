"""Run a set of methods on batches: one shared engine pass, then each method's batched maths.

The pass serves every method at once (the union of what they need); perturbation methods share
the ``Probe``'s forwards across the k classes. With ``--smooth aug`` the heat-map methods that
support it are also run on six augmented copies of the batch (horizontal flip × intensity
0.9, 1, 1.1, as pytorch-grad-cam's ``aug_smooth``), for the classes chosen on the original; each
copy's input map is flipped back and the maps averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .engine import Capture, Needs, Pass, Probe, Tap
from .engine.capture import ClassChooser
from .heads import SOFTMAX, Head
from .layout import Layout
from .maps import input_map, upsample
from .methods import REGISTRY, load
from .methods.base import Method, Settings

AUGMENTATIONS = tuple((flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1))


@dataclass(frozen=True)
class Maps:
    """One method's maps for a batch, on the model's device."""

    raw: torch.Tensor  # unnormalized: B×K×h×w (heat maps) or B×K×3×H×W (pixel-space gradients)
    display: torch.Tensor  # B×K×H×W heat in [0, 1], or B×K×3×H×W RGB in [0, 1]
    locator: torch.Tensor  # B×K×H×W: where boxes and peaks are read (the upsampled, unscaled map)


@dataclass(frozen=True)
class Explained:
    """Everything explained for one batch."""

    scores: torch.Tensor  # B×C class scores (logits for a softmax head), float32
    probabilities: torch.Tensor  # B×C
    classes: torch.Tensor  # B×K explained classes
    maps: dict[str, Maps]
    params: dict[str, dict[str, Any]]  # per method: what reproduces it (layers, window, rule, ...)


def to_display(gradients: torch.Tensor) -> torch.Tensor:
    """B×K×3×H×W gradients → an RGB image in [0, 1] as such gradients are usually shown:
    each map standardized, scaled by 0.1 and centred on grey 0.5 (zero gradient is grey)."""
    dims = (-3, -2, -1)
    centred = gradients - gradients.mean(dim=dims, keepdim=True)
    std = centred.pow(2).mean(dim=dims, keepdim=True).sqrt()
    return (centred / (std + 1e-12) * 0.1 + 0.5).clamp(0.0, 1.0)


class BatchExplainer:
    """``with BatchExplainer(model, layers, methods, settings) as explain:`` then ``explain(x, choose)``.

    The model is left as it was when the block ends (see ``engine.Capture``).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[tuple[str, Layout]],
        methods: Sequence[str],
        settings: Settings,
        head: Head = SOFTMAX,
        batch_size: int = 8,
        channels_last: bool = False,
        autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self.methods: dict[str, Method] = {name: load(name) for name in methods}
        self.settings = settings
        self.head = head
        self.layer_names = tuple(name for name, _ in layers)
        self.smoothed = [
            name for name in self.methods if settings.smooth == "aug" and "aug" in REGISTRY[name].smoothing
        ]
        plain = [name for name in self.methods if name not in self.smoothed]
        # The pass on the original batch serves the methods not smoothed (and chooses the classes); the
        # augmented passes serve only what the smoothed methods need.
        self.capture = self._capture(model, layers, plain, head, channels_last, autocast)
        self.augmented = (
            self._capture(model, layers, self.smoothed, head, channels_last, autocast) if self.smoothed else None
        )
        self.probe = Probe(model, head.scores, batch_size, autocast)

    def _capture(
        self,
        model: nn.Module,
        layers: Sequence[tuple[str, Layout]],
        names: Sequence[str],
        head: Head,
        channels_last: bool,
        autocast: Callable[[], AbstractContextManager[Any]],
    ) -> Capture:
        needs = Needs()
        taps: dict[str, Tap] = {}
        for name in names:
            needs = needs | self.methods[name].needs
            taps.update(self.methods[name].taps())
        return Capture(model, layers, needs, head.scores, taps, channels_last, autocast)

    def __enter__(self) -> BatchExplainer:
        self.capture.__enter__()
        if self.augmented is not None:
            try:
                self.augmented.__enter__()
            except BaseException:
                self.capture.__exit__()
                raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.augmented is not None:
                self.augmented.__exit__(*exc_info)
        finally:
            self.capture.__exit__(*exc_info)

    def __call__(self, x: torch.Tensor, choose: ClassChooser) -> Explained:
        p = self.capture(x, choose)
        raws = {
            name: method.compute(p, self.probe, self.settings)
            for name, method in self.methods.items()
            if name not in self.smoothed
        }
        if self.smoothed:
            raws.update(self._augmented(x, p))
        raws = {name: raws[name] for name in self.methods}  # in the order asked for
        size = self.settings.input_size
        maps = {}
        for name, raw in raws.items():
            if REGISTRY[name].kind == "cam":
                up = upsample(raw, size)
                maps[name] = Maps(raw, input_map(raw, size), up)
            else:
                maps[name] = Maps(raw, to_display(raw), raw.abs().sum(dim=2))
        params = {name: method.params(self.settings, self.layer_names) for name, method in self.methods.items()}
        return Explained(p.scores, self.head.probabilities(p.scores), p.classes, maps, params)

    def _augmented(self, x: torch.Tensor, p: Pass) -> dict[str, torch.Tensor]:
        """Input-resolution maps averaged over the augmented copies (the classes stay those of ``p``)."""
        size = self.settings.input_size
        sums = {name: torch.zeros(*p.classes.shape, *size, device=p.scores.device) for name in self.smoothed}
        for flip, factor in AUGMENTATIONS:
            copy = x * factor
            assert self.augmented is not None
            augmented = self.augmented(copy.flip(-1) if flip else copy, lambda scores: p.classes)
            for name in self.smoothed:
                shown = input_map(self.methods[name].compute(augmented, self.probe, self.settings), size)
                sums[name] += shown.flip(-1) if flip else shown
        return {name: total / len(AUGMENTATIONS) for name, total in sums.items()}
