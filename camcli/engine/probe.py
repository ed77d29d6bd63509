"""Batched forwards without gradients, for the perturbation methods (Score-CAM, Ablation-CAM, occlusion).

Every forward gives the scores of all classes, so the k explained classes of an image share each
masked, ablated or occluded forward: peers repeat them once per class. Forwards run ``batch_size``
rows at a time, which bounds memory; between two such forwards a ``stop`` request (SIGINT/SIGTERM) ends
the work with ``StopRequested``, so one image's hundreds of forwards never delay a stop for long.

Ablation changes the target layer's output, so its forwards start at that layer: the layer's
output is replaced by the ablated rows while the part of the network below it runs once, on the
single image (downstream uses of earlier tensors, such as residual connections, broadcast from one
row to all of them). Whether a model allows this is checked once per layer, by feeding the
unmodified output back and comparing the scores with the real ones; where it does not (an
operation that needs equal batch sizes, a reshape by the input's batch size), every row runs the
whole network instead, as peers do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from ..errors import StopRequested
from ..heads import logits_of
from .capture import LayerCapture, Pass, Scores

Rows = Callable[[int, int], torch.Tensor]  # (start, stop) → those rows of the perturbed inputs or maps


class Probe:
    """``probe.inputs(...)`` and ``probe.from_layer(...)``: class scores of perturbed forwards;
    ``probe.rerun(x, classes)``: a whole pass (activations and gradients, as the method's own pass has
    them) on other inputs, for methods that explain noisy or rescaled copies (SmoothGrad-CAM++)."""

    def __init__(
        self,
        model: nn.Module,
        scores: Scores,
        batch_size: int,
        autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
        stop: threading.Event | None = None,
    ) -> None:
        self.model = model
        self.scores = scores
        self.batch_size = batch_size
        self.stop = stop
        self.autocast = autocast
        self._modules = dict(model.named_modules())
        self._tail_works: dict[str, bool] = {}
        self.forwards = 0  # rows run, for the record and the benchmarks
        self._rerun: Callable[[torch.Tensor, torch.Tensor], Pass] | None = None

    def bound(self, rerun: Callable[[torch.Tensor, torch.Tensor], Pass]) -> Probe:
        """This probe, with ``rerun`` running passes through the capture that serves the method."""
        copy = object.__new__(Probe)
        copy.__dict__.update(self.__dict__)
        copy._rerun = rerun
        return copy

    def rerun(self, x: torch.Tensor, classes: torch.Tensor) -> Pass:
        """A pass on ``x`` (N×3×H×W) for ``classes`` (N×K), with what the method's own pass computes."""
        if self.stop is not None and self.stop.is_set():
            raise StopRequested
        if self._rerun is None:
            raise RuntimeError("this probe cannot run passes: it is not bound to a capture")
        self.forwards += x.shape[0]
        return self._rerun(x, classes)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stop is not None and self.stop.is_set():
            raise StopRequested
        with torch.no_grad(), self.autocast():
            out = logits_of(self.model(x))
        self.forwards += x.shape[0]
        return self.scores(out.float())

    def inputs(self, rows: Rows, total: int) -> torch.Tensor:
        """Class scores (total×C) of the inputs ``rows`` builds, ``batch_size`` at a time."""
        return torch.cat(
            [self._forward(rows(i, min(i + self.batch_size, total))) for i in range(0, total, self.batch_size)]
        )

    def from_layer(
        self, layer: LayerCapture, b: int, x: torch.Tensor, rows: Rows, total: int, expected: torch.Tensor
    ) -> torch.Tensor:
        """Class scores (total×C) with the layer's output for image ``b`` of the pass replaced by the maps
        ``rows`` builds (N×C×h×w, variants of its maps). ``x`` is that image (1×3×H×W) and ``expected``
        its real scores."""
        like = layer.output[b : b + 1]  # what the maps lack (e.g. prefix tokens) comes from here
        if layer.name not in self._tail_works:
            self._tail_works[layer.name] = self._tail_is_exact(layer.name, like, x, expected)
        tail = self._tail_works[layer.name]
        chunks = []
        for i in range(0, total, self.batch_size):
            replacement = layer.layout.from_map(rows(i, min(i + self.batch_size, total)), like)
            chunks.append(
                self._replaced(layer.name, x if tail else x.expand(len(replacement), *x.shape[1:]), replacement)
            )
        return torch.cat(chunks)

    def _replaced(self, name: str, x: torch.Tensor, replacement: torch.Tensor) -> torch.Tensor:
        """Scores of ``x`` with layer ``name``'s output replaced (hook removed in ``finally``)."""

        def replace(module: nn.Module, args: object, output: Any) -> torch.Tensor:
            return replacement.to(output.dtype)

        handle = self._modules[name].register_forward_hook(replace)
        try:
            scores = self._forward(x)
        finally:
            handle.remove()
        if scores.shape[0] != replacement.shape[0]:
            raise RuntimeError(f"{replacement.shape[0]} rows fed at '{name}' gave {scores.shape[0]} outputs")
        return scores

    def _tail_is_exact(self, name: str, own: torch.Tensor, x: torch.Tensor, expected: torch.Tensor) -> bool:
        """Feed the layer's own output back, twice, below one image: the scores must be the real ones."""
        try:  # repeat, not expand: the rows may be changed in place downstream (ResNet's out += identity)
            got = self._replaced(name, x, own.repeat(2, *([1] * (own.dim() - 1))))
        except RuntimeError:  # a batch-size mismatch somewhere above the layer: run whole forwards
            return False
        tolerance = 1e-3 * float(expected.abs().max()) + 1e-6
        return bool(((got - expected[None]).abs() <= tolerance).all())
