"""Helpers shared by the benchmarks: sample inputs and fair timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from camcli import methods as registry
from camcli.explainer import BatchExplainer, Explained
from camcli.heads import SOFTMAX, Head
from camcli.layers import resolve_layers
from camcli.models import LoadedModel
from camcli.preprocess import decode, to_input

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"


def sample_batch(loaded: LoadedModel, n: int) -> torch.Tensor:
    """n preprocessed sample images (cycling through the folder), as one batch."""
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
    return torch.stack([to_input(decode(files[i % len(files)])[0], loaded.data)[0] for i in range(n)])


def race(contenders: dict[str, Callable[[], object]], rounds: int) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Wall seconds of every round per contender, and each one's last result.

    One warm-up call each, then ``rounds`` rounds in which every contender runs once, in turn,
    so drift in machine load hits all of them alike: compare them round by round (``paired``).
    """
    results = {name: fn() for name, fn in contenders.items()}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            results[name] = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return times, results


def paired(slow: list[float], fast: list[float]) -> float:
    """Median over rounds of slow/fast: robust to load that drifts between rounds."""
    return statistics.median(s / f for s, f in zip(slow, fast, strict=True))


def camcli_engine(
    model: torch.nn.Module,
    layers: tuple[str, ...],
    x: torch.Tensor,
    methods: list[str],
    channels_last: bool = False,
    batch_size: int = 8,
    smooth: str | None = None,
    head: Head = SOFTMAX,
    **options: object,
) -> BatchExplainer:
    """camcli's engine for inputs shaped like ``x``, set up as a run sets it up once: use it in ``with``.
    Methods' options are the API's keywords (``occlusion_window=16``); ``head`` says how outputs become
    class scores (a segmentation model's: ``Head("softmax", "segment")``)."""
    size = (int(x.shape[-2]), int(x.shape[-1]))
    infos = resolve_layers(model, size, layers, int(x.shape[1]))
    given = registry.split_options(dict(options))
    params = registry.resolve_params(tuple(methods), {m: v for m, v in given.items() if m in methods})
    return BatchExplainer(
        model,
        [(i.name, i.layout) for i in infos],
        params,
        size,
        registry.parse_smoothing(smooth),
        head,
        batch_size=batch_size,
        channels_last=channels_last,
    )


def camcli_explain(
    model: torch.nn.Module,
    layers: tuple[str, ...],
    x: torch.Tensor,
    methods: list[str],
    k: int,
    channels_last: bool = False,
    batch_size: int = 8,
    **options: object,
) -> Explained:
    """camcli's engine from image tensors to maps, set-up included: top-``k`` classes, ``methods`` sharing one pass."""
    with camcli_engine(model, layers, x, methods, channels_last, batch_size, **options) as explainer:  # type: ignore[arg-type]
        return explainer(x, lambda scores: scores.topk(k, dim=1).indices)
