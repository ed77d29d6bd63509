"""Run a set of methods on batches: one shared engine pass, then each method's batched maths.

The pass serves every method at once (the union of what they need); perturbation methods share
the ``Probe``'s forwards across the k classes. With ``--smooth aug`` the heat-map methods that
support it are also run on six augmented copies of the batch (horizontal flip × intensity
0.9, 1, 1.1, as pytorch-grad-cam's ``aug_smooth``), for the classes chosen on the original; each
copy's input map is flipped back and the maps averaged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from . import methods as registry
from .engine.capture import Capture, ClassChooser, Pass, Tap
from .engine.needs import Needs
from .engine.probe import Probe
from .heads import SOFTMAX, Head, explained_scores
from .layout import Layout
from .maps import input_map, upsample
from .methods.base import HEAT, Concepts, Method, Settings
from .outputs import entry_key
from .params import Value

AUGMENTATIONS = tuple((flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1))


@dataclass(frozen=True)
class Maps:
    """One method's maps for a batch (one variant of them, for methods that make several: a layer of
    ``--layers-as separate``, an occlusion window size), on the model's device."""

    raw: torch.Tensor  # unnormalized: B×K×h×w (heat maps) or B×K×3×H×W (pixel-space gradients)
    display: torch.Tensor  # B×K×H×W heat in [0, 1], or B×K×3×H×W RGB in [0, 1]
    locator: torch.Tensor  # B×K×H×W: where boxes and peaks are read (the upsampled, unscaled map)
    method: str = ""
    variant: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # what reproduces it (layers, window, rule, ...)
    # A class-free method's maps (Concepts): B×N, one per concept rather than per class, with the
    # concepts' top classes (names[b][n]: (class, score) pairs) or why they are unnamed.
    concepts: bool = False
    names: list[list[list[tuple[int, float]]]] | None = None
    unnamed: str | None = None


@dataclass(frozen=True)
class Explained:
    """Everything explained for one batch. ``maps`` and ``params`` are keyed by method, or by
    ``METHOD[VARIANT]`` for a method's variants (``outputs.entry_key``)."""

    scores: torch.Tensor  # B×C class scores (logits for a softmax head), float32
    ranking: torch.Tensor  # B×C what the classes are ranked by (the scores; pixel counts for segmentation)
    probabilities: torch.Tensor  # B×C
    classes: torch.Tensor  # B×K explained classes
    maps: dict[str, Maps]
    params: dict[str, dict[str, Any]]
    prediction: torch.Tensor | None = None  # segmentation: B×H×W each pixel's predicted class


Made = torch.Tensor | Mapping[str, torch.Tensor] | Mapping[str | None, torch.Tensor] | Concepts  # compute()'s


def variants(raw: Made) -> dict[str | None, torch.Tensor]:
    """A method's result as {variant: maps}: one unnamed variant, or the named ones it made."""
    if isinstance(raw, Concepts):
        raise TypeError("a class-free method's concepts have no variants")
    if isinstance(raw, torch.Tensor):
        return {None: raw}
    return {key: value for key, value in raw.items()}


def to_display(gradients: torch.Tensor) -> torch.Tensor:
    """B×K×3×H×W gradients → an RGB image in [0, 1] as such gradients are usually shown:
    each map standardized, scaled by 0.1 and centred on grey 0.5 (zero gradient is grey)."""
    dims = (-3, -2, -1)
    centred = gradients - gradients.mean(dim=dims, keepdim=True)
    std = centred.pow(2).mean(dim=dims, keepdim=True).sqrt()
    return (centred / (std + 1e-12) * 0.1 + 0.5).clamp(0.0, 1.0)


class BatchExplainer:
    """``with BatchExplainer(model, layers, methods, input_size) as explain:`` then ``explain(x, choose)``.

    ``methods`` maps each method's name to its parameters' values (defaults filled in, as
    ``methods.resolve_params`` gives them); ``batch_size`` is the number of perturbed forwards run
    together (Score-CAM, Ablation-CAM, occlusion); ``stop`` ends their work between two of them. The
    model is left as it was when the block ends (see ``engine.capture.Capture``).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[tuple[str, Layout]],
        methods: Mapping[str, Mapping[str, Value]],
        input_size: tuple[int, int],
        smooth: frozenset[str] = frozenset(),
        head: Head = SOFTMAX,
        batch_size: int = 8,
        channels_last: bool = False,
        autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
        stop: threading.Event | None = None,
        score: str = "logit",
        separate_layers: bool = False,
    ) -> None:
        self.score = score
        self.explain = partial(explained_scores, kind=score, head=head)
        self.methods: dict[str, Method] = {name: registry.load(name) for name in methods}
        self.settings = {
            name: Settings(input_size, smooth & method.smoothing, methods[name], separate_layers)
            for name, method in self.methods.items()
        }
        self.input_size = input_size
        self.head = head
        for name, method in self.methods.items():  # a method that cannot apply to this model says so now
            method.prepare(model, tuple(n for n, _ in layers), self.settings[name])
        self.layer_names = tuple(name for name, _ in layers)
        self.smoothed = [name for name, s in self.settings.items() if "aug" in s.smooth]
        plain = [name for name in self.methods if name not in self.smoothed]
        # The pass on the original batch serves the methods not smoothed (and chooses the classes); the
        # augmented passes serve only what the smoothed methods need.
        self.capture = self._capture(model, layers, plain, head, channels_last, autocast)
        self.augmented = (
            self._capture(model, layers, self.smoothed, head, channels_last, autocast) if self.smoothed else None
        )
        self.probe = Probe(model, lambda out: self.explain(head.scores(out)), batch_size, autocast, stop)

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
            needs = needs | self.methods[name].requires(self.settings[name])
            taps.update(self.methods[name].taps(self.settings[name]))
        return Capture(model, layers, needs, head.scores, self.explain, head.ranking, taps, channels_last, autocast)

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
        probe = self.probe.bound(lambda x, classes: self.capture(x, lambda scores: classes))
        raws: dict[str, Made] = {
            name: method.compute(p, probe, self.settings[name])
            for name, method in self.methods.items()
            if name not in self.smoothed
        }
        if self.smoothed:
            raws.update(self._augmented(x, p))
        size = self.input_size
        maps = {}
        for name, method in self.methods.items():  # in the order asked for
            made = raws[name]
            if isinstance(made, Concepts):
                record = method.record(self.settings[name], self.layer_names)
                shown, located = input_map(made.maps, size), upsample(made.maps, size)
                maps[name] = Maps(made.maps, shown, located, name, None, record, True, made.names, made.unnamed)
                continue
            for variant, raw in variants(made).items():
                record = method.record(self.settings[name], self.layer_names, variant)
                if self.score != "logit":  # what the maps explain, when it is not the paper's pre-softmax score
                    record = {**record, "score": self.score}
                if method.kind == HEAT:
                    found = Maps(raw, input_map(raw, size), upsample(raw, size), name, variant, record)
                else:
                    found = Maps(raw, to_display(raw), raw.abs().sum(dim=2), name, variant, record)
                maps[entry_key(name, variant)] = found
        params = {key: found.params for key, found in maps.items()}
        probabilities = self.head.probabilities(p.ranking)
        return Explained(p.scores, p.ranking, probabilities, p.classes, maps, params, p.prediction)

    def _augmented(self, x: torch.Tensor, p: Pass) -> dict[str, dict[str | None, torch.Tensor]]:
        """Input-resolution maps averaged over the augmented copies (the classes stay those of ``p``)."""
        size = self.input_size
        sums: dict[str, dict[str | None, torch.Tensor]] = {name: {} for name in self.smoothed}
        assert self.augmented is not None
        capture = self.augmented
        probe = self.probe.bound(lambda x, classes: capture(x, lambda scores: classes))
        for flip, factor in AUGMENTATIONS:
            copy = x * factor
            assert self.augmented is not None
            augmented = self.augmented(copy.flip(-1) if flip else copy, lambda scores: p.classes)
            for name in self.smoothed:
                made = self.methods[name].compute(augmented, probe, self.settings[name])
                for variant, raw in variants(made).items():
                    shown = input_map(raw, size)
                    shown = shown.flip(-1) if flip else shown
                    sums[name][variant] = sums[name][variant] + shown if variant in sums[name] else shown
        return {name: {v: total / len(AUGMENTATIONS) for v, total in found.items()} for name, found in sums.items()}
