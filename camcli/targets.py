"""Which classes to explain: the top-k of each image and/or classes the user names."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from .errors import TargetError
from .heads import SOFTMAX, Head


@dataclass(frozen=True)
class Targets:
    """Which classes each image of a batch explains, as columns: the user's ``classes`` (rank None),
    the ``top_k`` (rank 1..k), the image's own classes from ``per_image`` (keyed by its output path;
    ``camcli evaluate`` adds each image's ground-truth classes), then, with a ``threshold``, every other
    class at least that probable under ``head``.

    The engine needs the same number of columns for every image of a batch; an image with fewer is
    padded with its first class, and ``select`` says which columns are real.
    """

    classes: tuple[int, ...] = ()
    top_k: int = 3
    threshold: float | None = None
    head: Head = SOFTMAX
    per_image: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def choose(self, scores: torch.Tensor, keys: Sequence[str] = ()) -> torch.Tensor:
        """B×C ranking (the class scores; for segmentation the predicted pixel counts, ``heads.Head.ranking``)
        → B×K class indices (``keys``: the images' output paths, for ``per_image``)."""
        return self.select(scores, keys)[0]

    def select(self, scores: torch.Tensor, keys: Sequence[str] = ()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(classes, valid, rank), each B×K: the class of each column, whether it is real (not padding),
        and its place in the top-k (0: not a top-k column)."""
        b, n = scores.shape
        device = scores.device
        columns: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        fixed = torch.tensor(self.classes, dtype=torch.long, device=device).expand(b, -1)
        columns.append((fixed, torch.ones_like(fixed, dtype=torch.bool), torch.zeros_like(fixed)))
        top = scores.topk(min(self.top_k, n), dim=1).indices
        # A segmentation model's top-k are classes it predicts somewhere: a class of no pixel is not one.
        present = scores.gather(1, top) > 0 if self.head.task == "segment" else torch.ones_like(top, dtype=torch.bool)
        columns.append(
            (
                top,
                present,
                torch.arange(1, top.shape[1] + 1, device=device).expand(b, -1),
            )
        )
        if self.per_image:
            columns.append(_ragged([self.per_image.get(k, ()) for k in keys] if keys else [()] * b, device))
        if self.threshold is not None:
            probs = self.head.probabilities(scores)
            order = probs.argsort(dim=1, descending=True)
            above = probs.gather(1, order) >= self.threshold
            columns.append(_ragged([tuple(order[i][above[i]].tolist()) for i in range(b)], device))
        chosen = torch.cat([c for c, _, _ in columns], dim=1)
        valid = torch.cat([v for _, v, _ in columns], dim=1)
        rank = torch.cat([r for _, _, r in columns], dim=1)
        if chosen.shape[1] == 0 or not valid.any(dim=1).all():  # an image with nothing: one padded column
            pad = scores.argmax(dim=1, keepdim=True)
            chosen, valid = torch.cat([chosen, pad], 1), torch.cat([valid, torch.zeros_like(pad, dtype=torch.bool)], 1)
            rank = torch.cat([rank, torch.zeros_like(pad)], 1)
        first = chosen.gather(1, valid.float().argmax(dim=1, keepdim=True))
        return torch.where(valid, chosen, first), valid, rank


def _ragged(rows: Sequence[tuple[int, ...]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image class lists as padded columns with their validity (rank 0)."""
    width = max((len(r) for r in rows), default=0)
    classes = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    valid = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    for i, row in enumerate(rows):
        classes[i, : len(row)] = torch.tensor(row, dtype=torch.long, device=device)
        valid[i, : len(row)] = True
    return classes, valid, torch.zeros_like(classes)


def resolve_class(spec: str, labels: Sequence[str]) -> int:
    """An index, or a label matched case-insensitively: a whole label, or one of its comma-separated names.

    A name that fits several classes (ImageNet has two "crane"s: 134 the bird, 517 the machine) is an
    error listing them all, never a silent first match.
    """
    text = spec.strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(labels):
            raise TargetError(f"Class index {index} is out of range: this model has classes 0 to {len(labels) - 1}.")
        return index
    wanted = text.lower()
    matches = [
        i
        for i, label in enumerate(labels)
        if wanted == label.lower() or wanted in (n.strip().lower() for n in label.split(","))
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = "; ".join(f"{i} ({labels[i]})" for i in matches)
        raise TargetError(
            f"Class name '{spec}' is ambiguous: it matches {listed}. Pass the index instead, e.g. --class {matches[0]}."
        )
    names = [n.strip() for label in labels for n in label.split(",")]
    close = difflib.get_close_matches(text, names, n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
    raise TargetError(f"Unknown class '{spec}'.{hint} Pass a class index or a label name (case-insensitive).")
