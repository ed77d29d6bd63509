"""Wire the stages: discover → preprocess → engine → localize → write → report, batch by batch.

Results stream out as a generator, so memory does not grow with the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Iterable, Iterator, Sequence, Union

import torch

from . import maps, methods
from .errors import CamcliError
from .engine import GradCam
from .models import LoadedModel
from .preprocess import prepare
from .records import Explanation, Failure, ImageItem, ImageResult, Prediction, Prepared
from .targets import Targets
from .writer import TOP_PREDICTIONS

Outcome = Union[ImageResult, Failure]


@dataclass(frozen=True)
class EngineOptions:
    layer: str
    targets: Targets
    device: torch.device
    batch_size: int = 8
    methods: tuple[str, ...] = ("gradcam",)


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
        raise CamcliError(f"Device '{spec}' does not exist: {torch.cuda.device_count()} CUDA device(s). Use cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CamcliError("Device 'mps' was requested but Apple MPS is not available here. Use --device cpu.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise CamcliError(f"Unsupported device '{spec}'. Use auto, cpu, cuda, cuda:N or mps.")
    return device


def batches(items: Iterable[ImageItem], size: int) -> Iterator[list[ImageItem]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def explain(loaded: LoadedModel, items: Sequence[ImageItem], options: EngineOptions) -> Iterator[Outcome]:
    """Yield one outcome per item, in input order. ``loaded.model`` must already be on the device."""
    with GradCam(loaded.model, options.layer, guided=methods.needs_guided(options.methods)) as cam:
        for chunk in batches(items, options.batch_size):
            prepared = [prepare(item, loaded.data) for item in chunk]
            good = [p for p in prepared if isinstance(p, Prepared)]
            results = iter(_explain_batch(cam, loaded, good, options) if good else [])
            for p in prepared:
                yield next(results) if isinstance(p, Prepared) else p


def _explain_batch(cam: GradCam, loaded: LoadedModel, batch: list[Prepared], options: EngineOptions) -> list[ImageResult]:
    x = torch.stack([p.tensor for p in batch]).to(options.device, non_blocking=True)
    out = cam(x, options.targets.choose)
    computed = {m: methods.compute(out, m, loaded.data.input_size) for m in options.methods}
    probs = out.logits.softmax(dim=1)
    top = probs.topk(min(TOP_PREDICTIONS, probs.shape[1]), dim=1).indices
    # One transfer per batch for what localization reads on the CPU.
    logits_c, probs_c, top_c, classes_c = (t.cpu() for t in (out.logits, probs, top, out.classes))
    located = {m: _locator_maps(m, raw, display).cpu().numpy() for m, (raw, display) in computed.items()}
    results = []
    for b, p in enumerate(batch):
        predictions = tuple(
            Prediction(int(c), loaded.labels[c], float(logits_c[b, c]), float(probs_c[b, c])) for c in top_c[b].tolist()
        )
        explanations, done = [], set()
        for j, c in enumerate(classes_c[b].tolist()):
            if c in done:
                continue
            done.add(c)
            for method, (raw, display) in computed.items():
                where = located[method][b, j]
                explanations.append(Explanation(
                    method=method, class_index=c, label=loaded.labels[c], rank=options.targets.rank(j),
                    logit=float(logits_c[b, c]), probability=float(probs_c[b, c]),
                    raw_map=raw[b, j], input_map=display[b, j],
                    bbox=maps.box(where, p.geometry) if method in methods.CAM_METHODS else None,
                    peak=maps.peak(where, p.geometry),
                ))
        results.append(ImageResult(p, predictions, tuple(explanations)))
    return results


def _locator_maps(method: str, raw: torch.Tensor, display: torch.Tensor) -> torch.Tensor:
    """B×K×H×W maps to find the box and peak in: the CAM itself, or the guided gradient's magnitude."""
    return display if method in methods.CAM_METHODS else raw.abs().sum(dim=2)
