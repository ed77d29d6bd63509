"""Wire the stages: discover → preprocess → engine → localize → write → report, batch by batch.

Decoding and resizing run in a thread pool ahead of the model, rendering and writing in a
bounded pool behind it, so the model is rarely idle (Pillow, ISA-L and torch release the GIL).
Both pools are fed through windows of fixed size and results come out as a generator, in input
order: memory does not grow with the number of images.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any, TypeVar

import torch

from . import maps, methods
from .errors import CamcliError
from .explainer import BatchExplainer
from .heads import SOFTMAX, Head
from .layout import Layout
from .methods import load
from .methods.base import Settings
from .models import LoadedModel
from .preprocess import DEFAULT_MAX_PIXELS, prepare
from .records import Explanation, Failure, ImageItem, ImageResult, Prediction, Prepared, Skipped
from .targets import Targets
from .writer import TOP_PREDICTIONS

Outcome = ImageResult | Failure | Skipped
T = TypeVar("T")
R = TypeVar("R")


PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class EngineOptions:
    layers: tuple[tuple[str, Layout], ...]
    targets: Targets
    device: torch.device
    batch_size: int = 8
    methods: tuple[str, ...] = ("gradcam",)
    precision: str = "fp32"
    workers: int = 2
    max_pixels: int = DEFAULT_MAX_PIXELS
    smooth: str | None = None
    occlusion_window: int = 32
    occlusion_stride: int = 16
    head: Head = SOFTMAX

    @property
    def channels_last(self) -> bool:
        """NHWC speeds up convolutions on CPU and CUDA. Not with input-space gradients: guided and
        deconvnet gates flip on rounding differences, and those maps should match other tools exactly."""
        input_space = any(load(m).needs.rules for m in self.methods)
        return self.device.type in ("cpu", "cuda") and not input_space

    def autocast(self) -> AbstractContextManager[Any]:
        """Mixed precision for forward passes only; every map is computed in float32."""
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype) if dtype else nullcontext()

    def explainer(self, model: torch.nn.Module, input_size: tuple[int, int]) -> BatchExplainer:
        conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        settings = Settings(input_size, self.smooth, self.occlusion_window, self.occlusion_stride)
        return BatchExplainer(
            model,
            self.layers,
            self.methods,
            settings,
            self.head,
            self.batch_size,
            channels_last=conv and self.channels_last,
            autocast=self.autocast,
        )


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise CamcliError(f"Unknown device '{spec}'. Use auto, cpu, cuda, cuda:N or mps.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CamcliError(f"Device '{spec}' was requested but CUDA is not available here. Use --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CamcliError(
            f"Device '{spec}' does not exist: {torch.cuda.device_count()} CUDA device(s). "
            f"Use cuda:0 to cuda:{torch.cuda.device_count() - 1}."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CamcliError("Device 'mps' was requested but Apple MPS is not available here. Use --device cpu.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise CamcliError(f"Unsupported device '{spec}'. Use auto, cpu, cuda, cuda:N or mps.")
    return device


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _ahead(pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """``map(fn, items)`` run in ``pool`` at most ``window`` items ahead, results in order."""
    it = iter(items)
    running: deque[Future[R]] = deque(pool.submit(fn, item) for item in islice(it, window))
    while running:
        done = running.popleft()
        for item in islice(it, 1):
            running.append(pool.submit(fn, item))
        yield done.result()


def explain(
    loaded: LoadedModel,
    items: Sequence[ImageItem],
    options: EngineOptions,
    decoders: Executor | None = None,
    done: Callable[[ImageItem, str], dict[str, Any] | None] | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Outcome]:
    """Yield one outcome per item, in input order. ``loaded.model`` must already be on the device.

    With ``decoders``, images are decoded and resized there, up to two batches ahead. ``done``
    recognizes images finished by an earlier run (see ``prepare``): a batch made only of those is
    skipped; a batch only partly finished is redone whole, because the same batch as in an
    uninterrupted run gives bit-identical results. When ``stop`` is set, no further batch starts.
    This is a generator: the model carries camcli's hooks (and eval mode) until it is exhausted
    or closed.
    """
    prepare_one = partial(prepare, data=loaded.data, done=done, max_pixels=options.max_pixels)
    stream: Iterable[Prepared | Failure | Skipped] = (
        _ahead(decoders, prepare_one, items, 2 * options.batch_size) if decoders else map(prepare_one, items)
    )
    with options.explainer(loaded.model, loaded.data.input_size) as explainer:
        for chunk in batches(stream, options.batch_size):
            if stop is not None and stop.is_set():
                return
            if any(isinstance(p, Prepared) for p in chunk):  # the model runs: on the same batch as before
                chunk = [
                    prepare(p.item, loaded.data, max_pixels=options.max_pixels) if isinstance(p, Skipped) else p
                    for p in chunk
                ]
            good = [p for p in chunk if isinstance(p, Prepared)]
            results = iter(_explain_batch(explainer, loaded, good, options) if good else [])
            for p in chunk:
                yield next(results) if isinstance(p, Prepared) else p


def run(
    loaded: LoadedModel,
    items: Sequence[ImageItem],
    options: EngineOptions,
    write: Callable[[Outcome], R],
    done: Callable[[ImageItem, str], dict[str, Any] | None] | None = None,
    stop: threading.Event | None = None,
) -> Iterator[tuple[Outcome, R]]:
    """Explain and ``write`` every item; yields (outcome, what ``write`` returned) in input order.

    Writing runs in a pool of ``options.workers`` threads with at most two batches in flight;
    after ``stop`` is set, what was started is still written.
    """
    limit = 2 * options.batch_size
    with (
        ThreadPoolExecutor(options.workers, thread_name_prefix="camcli-decode") as decoders,
        ThreadPoolExecutor(options.workers, thread_name_prefix="camcli-write") as writers,
    ):
        try:
            pending: deque[tuple[Outcome, Future[R]]] = deque()
            for outcome in explain(loaded, items, options, decoders, done, stop):
                pending.append((outcome, writers.submit(write, outcome)))
                while pending and (len(pending) > limit or pending[0][1].done()):
                    outcome, finished = pending.popleft()
                    yield outcome, finished.result()
            while pending:
                outcome, finished = pending.popleft()
                yield outcome, finished.result()
        except BaseException:  # interrupted or failed: start nothing more (what runs, finishes)
            decoders.shutdown(wait=False, cancel_futures=True)
            writers.shutdown(wait=False, cancel_futures=True)
            raise


def _explain_batch(
    explainer: BatchExplainer, loaded: LoadedModel, batch: list[Prepared], options: EngineOptions
) -> list[ImageResult]:
    x = torch.stack([p.tensor for p in batch])
    if options.device.type == "cuda":
        x = x.pin_memory()
    x = x.to(options.device, non_blocking=True)
    keys = [p.item.rel.as_posix() for p in batch]
    out = explainer(x, partial(options.targets.choose, keys=keys))
    top = out.probabilities.topk(min(TOP_PREDICTIONS, out.probabilities.shape[1]), dim=1).indices
    # One transfer per batch for what localization reads on the CPU.
    _, valid, rank = options.targets.select(out.scores, keys)
    scores_c, probs_c, top_c, classes_c, valid_c, rank_c = (
        t.cpu() for t in (out.scores, out.probabilities, top, out.classes, valid, rank)
    )
    located = {m: maps.locator.cpu().numpy() for m, maps in out.maps.items()}
    results = []
    for b, p in enumerate(batch):
        predictions = tuple(
            Prediction(int(c), loaded.labels[c], float(scores_c[b, c]), float(probs_c[b, c])) for c in top_c[b].tolist()
        )
        explanations, done = [], set()
        for j, c in enumerate(classes_c[b].tolist()):
            if c in done or not valid_c[b, j]:
                continue
            done.add(c)
            for method, found in out.maps.items():
                where = located[method][b, j]
                heat = methods.kind(method) == "cam"
                explanations.append(
                    Explanation(
                        method=method,
                        class_index=c,
                        label=loaded.labels[c],
                        rank=int(rank_c[b, j]) or None,
                        logit=float(scores_c[b, c]),
                        probability=float(probs_c[b, c]),
                        raw_map=found.raw[b, j],
                        input_map=found.display[b, j],
                        bbox=maps.box(where, p.geometry) if heat else None,
                        peak=maps.peak(where, p.geometry),
                        params=out.params[method],
                    )
                )
        results.append(ImageResult(p, predictions, tuple(explanations)))
    return results
