"""Helpers shared by the benchmarks: sample inputs and fair timing."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

import torch

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
