"""Wire the stages: preprocess → engine → localize → write, batch by batch, for one session.

Decoding and resizing run in a thread pool ahead of the model, rendering and writing in a
bounded pool behind it, so the model is rarely idle (Pillow, ISA-L and torch release the GIL).
Both pools are fed through windows of fixed size and results come out as a generator, in input
order: memory does not grow with the number of images.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from . import maps
from . import methods as registry
from .errors import StopRequested
from .explainer import BatchExplainer, Maps
from .preprocess import prepare
from .records import (
    UNSEEN,
    Area,
    ConceptClass,
    Explanation,
    Failure,
    Geometry,
    ImageItem,
    ImageResult,
    Prediction,
    Prepared,
    Segmentation,
    Skipped,
)
from .writer import TOP_PREDICTIONS

if TYPE_CHECKING:
    from .session import Session

Outcome = ImageResult | Failure | Skipped
Done = Callable[[ImageItem, str], dict[str, Any] | None]  # (image, its sha256) → its finished explanation.json
T = TypeVar("T")
R = TypeVar("R")


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def redo_whole(finished: Sequence[bool]) -> bool:
    """The resume rule, for every runner: a batch is skipped only when all its images are finished;
    otherwise all of it is explained again, because the same batch as in an uninterrupted run gives
    bit-identical results (a batch's composition can change a convolution's rounding)."""
    return not all(finished)


def ahead(pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """``map(fn, items)`` run in ``pool`` at most ``window`` items ahead, results in order."""
    it = iter(items)
    running: deque[Future[R]] = deque(pool.submit(fn, item) for item in islice(it, window))
    while running:
        done = running.popleft()
        for item in islice(it, 1):
            running.append(pool.submit(fn, item))
        yield done.result()


def explain(
    session: Session,
    items: Sequence[ImageItem],
    decoders: Executor | None = None,
    done: Done | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Outcome]:
    """Yield one outcome per item, in input order. The session's model is already on its device.

    With ``decoders``, images are decoded and resized there, up to two batches ahead. ``done``
    recognizes images finished by an earlier run (see ``prepare``); batches follow ``redo_whole``.
    When ``stop`` is set, no further batch starts. This is a generator: the model carries camcli's
    hooks (and eval mode) until it is exhausted or closed.
    """
    job, data = session.job, session.loaded.data
    prepare_one = partial(prepare, data=data, done=done, max_pixels=job.max_pixels)
    stream: Iterable[Prepared | Failure | Skipped] = (
        ahead(decoders, prepare_one, items, 2 * job.batch_size) if decoders else map(prepare_one, items)
    )
    with session.explainer(stop) as explainer:
        for chunk in batches(stream, job.batch_size):
            if stop is not None and stop.is_set():
                return
            if redo_whole([isinstance(p, (Skipped, Failure)) for p in chunk]):
                chunk = [
                    prepare(p.item, data, max_pixels=job.max_pixels) if isinstance(p, Skipped) else p for p in chunk
                ]
            good = [p for p in chunk if isinstance(p, Prepared)]
            try:
                results = iter(explain_batch(explainer, session, good) if good else [])
            except StopRequested:  # asked to stop mid-batch: the batch is dropped, nothing of it written
                return
            for p in chunk:
                yield next(results) if isinstance(p, Prepared) else p


def run(
    session: Session,
    items: Sequence[ImageItem],
    write: Callable[[Outcome], R],
    done: Done | None = None,
    stop: threading.Event | None = None,
) -> Iterator[tuple[Outcome, R]]:
    """Explain and ``write`` every item; yields (outcome, what ``write`` returned) in input order.

    Writing runs in a pool of ``session.workers`` threads with at most two batches in flight;
    after ``stop`` is set, what was started is still written.
    """
    limit = 2 * session.job.batch_size
    with (
        ThreadPoolExecutor(session.workers, thread_name_prefix="camcli-decode") as decoders,
        ThreadPoolExecutor(session.workers, thread_name_prefix="camcli-write") as writers,
    ):
        try:
            pending: deque[tuple[Outcome, Future[R]]] = deque()
            for outcome in explain(session, items, decoders, done, stop):
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


def explain_batch(explainer: BatchExplainer, session: Session, batch: list[Prepared]) -> list[ImageResult | Failure]:
    """One batch of prepared images through the engine, localized: the results the writer takes. An image
    whose class scores or maps are not finite (NaN or infinite weights, an overflow) fails with that
    reason: a meaningless result is never written as one."""
    device, targets, labels = session.device, session.targets, session.loaded.labels
    x = torch.stack([p.tensor for p in batch])
    if device.type == "cuda":
        x = x.pin_memory()
    x = x.to(device, non_blocking=True)
    keys = [p.item.rel.as_posix() for p in batch]
    out = explainer(x, partial(targets.choose, keys=keys))
    # Ranked by score (or area), never by probability: a saturated softmax ties (underflows) far from the top.
    top = out.ranking.topk(min(TOP_PREDICTIONS, out.ranking.shape[1]), dim=1).indices
    # One transfer per batch for what localization reads on the CPU.
    _, valid, rank = targets.select(out.ranking, keys)
    scores_c, probs_c, top_c, classes_c, valid_c, rank_c = (
        t.cpu() for t in (out.scores, out.probabilities, top, out.classes, valid, rank)
    )
    located = {m: maps.locator.cpu().numpy() for m, maps in out.maps.items()}
    prediction = None if out.prediction is None else out.prediction.cpu()
    finite = torch.isfinite(out.scores).all(dim=1)
    for found in out.maps.values():
        finite &= torch.isfinite(found.raw.flatten(1)).all(dim=1)
    finite_c = finite.cpu().tolist()
    results: list[ImageResult | Failure] = []
    for b, p in enumerate(batch):
        if not finite_c[b]:
            results.append(
                Failure(p.item, "NumericalError", _not_finite(p, bool(torch.isfinite(scores_c[b]).all())), p.source)
            )
            continue
        predictions = tuple(
            Prediction(int(c), labels[c], float(scores_c[b, c]), float(probs_c[b, c]))
            for c in top_c[b].tolist()
            if prediction is None or probs_c[b, c] > 0  # segmentation: the classes it predicts somewhere
        )
        explanations, done = [], set()
        for key, found in out.maps.items():
            if found.concepts:
                explanations += _concepts(found, located[key][b], b, p, labels)
        for j, c in enumerate(classes_c[b].tolist()):
            if c in done or not valid_c[b, j]:
                continue
            done.add(c)
            for key, found in out.maps.items():
                if found.concepts:
                    continue
                where = located[key][b, j]
                heat = registry.is_heat(found.method)
                explanations.append(
                    Explanation(
                        method=found.method,
                        variant=found.variant,
                        class_index=c,
                        label=labels[c],
                        rank=int(rank_c[b, j]) or None,
                        logit=float(scores_c[b, c]),
                        probability=float(probs_c[b, c]),
                        raw_map=found.raw[b, j],
                        input_map=found.display[b, j],
                        bbox=maps.box(where, p.geometry) if heat else None,
                        peak=maps.peak(where, p.geometry),
                        params=found.params,
                    )
                )
        segmented = None if prediction is None else _segmentation(prediction[b], p.geometry, labels)
        results.append(ImageResult(p, predictions, tuple(explanations), segmented))
    return results


def _segmentation(prediction: torch.Tensor, geometry: Geometry, labels: Sequence[str]) -> Segmentation:
    """A segmentation model's predicted classes on the original image, and each class's area there."""
    mask = maps.labels_to_original(prediction, geometry, UNSEEN)
    counts = np.bincount(mask[mask != UNSEEN].ravel(), minlength=len(labels))
    seen = max(int(counts.sum()), 1)
    order = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    return Segmentation(mask, tuple(Area(c, labels[c], int(counts[c]), int(counts[c]) / seen) for c in order))


def _concepts(found: Maps, located: np.ndarray, b: int, p: Prepared, labels: Sequence[str]) -> list[Explanation]:
    """Image ``b``'s entries of a class-free method: one per concept, named by its top classes."""
    entries = []
    for n in range(found.raw.shape[1]):
        named = None
        if found.names is not None:
            named = tuple(ConceptClass(c, labels[c], float(score)) for c, score in found.names[b][n])
        title = f"concept {n}" + (": " + "; ".join(c.label for c in named) if named else "")
        entries.append(
            Explanation(
                method=found.method,
                variant=None,
                class_index=None,
                label=title,
                rank=None,
                logit=None,
                probability=None,
                raw_map=found.raw[b, n],
                input_map=found.display[b, n],
                bbox=maps.box(located[n], p.geometry),
                peak=maps.peak(located[n], p.geometry),
                params=found.params,
                concept=n,
                concept_classes=named,
                unnamed=None if named is not None else found.unnamed,
            )
        )
    return entries


def _not_finite(p: Prepared, scores_finite: bool) -> str:
    what = "maps" if scores_finite else "class scores"
    return (
        f"The model gave non-finite {what} (NaN or infinity) for {p.source.path}: its weights or this input "
        "overflow, so no explanation would mean anything. Check the weights (--weights) and --precision."
    )
