"""Which classes to explain: the top-k of each image and/or classes the user names."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import TargetError
from .heads import Head


@dataclass(frozen=True)
class Targets:
    """User-chosen classes come first (rank None), then the top-k of each image, then (with a
    ``threshold``) every other class whose probability under ``head`` is at least the threshold.

    The engine needs the same number of columns for every image of a batch; with a threshold an
    image may have fewer classes than the widest: its row is padded with its first column, and
    ``valid`` says which columns are real.
    """

    classes: tuple[int, ...] = ()
    top_k: int = 3
    threshold: float | None = None
    head: Head = Head()

    def choose(self, scores: torch.Tensor) -> torch.Tensor:
        """B×C class scores → B×K class indices."""
        return self._select(scores)[0]

    def valid(self, scores: torch.Tensor) -> torch.Tensor:
        """B×K: which columns of ``choose(scores)`` are classes to explain (the rest is padding)."""
        return self._select(scores)[1]

    def _select(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n = scores.shape
        fixed = torch.tensor(self.classes, dtype=torch.long, device=scores.device).expand(b, -1)
        top = scores.topk(min(self.top_k, n), dim=1).indices
        chosen = torch.cat([fixed, top], dim=1)
        valid = torch.ones_like(chosen, dtype=torch.bool)
        if self.threshold is None:
            return chosen, valid
        probs = self.head.probabilities(scores)
        order = probs.argsort(dim=1, descending=True)
        above = probs.gather(1, order) >= self.threshold
        above &= ~(order[:, :, None] == chosen[:, None, :]).any(-1)  # not already chosen
        width = int(above.sum(dim=1).max()) if b else 0
        extra = torch.zeros(b, width, dtype=torch.long, device=scores.device)
        extra_valid = torch.zeros(b, width, dtype=torch.bool, device=scores.device)
        for i in range(b):
            picked = order[i][above[i]]
            extra[i, : len(picked)] = picked
            extra_valid[i, : len(picked)] = True
        chosen, valid = torch.cat([chosen, extra], dim=1), torch.cat([valid, extra_valid], dim=1)
        if chosen.shape[1] == 0:  # nothing anywhere: one padded column, so the batch still runs
            return order[:, :1], torch.zeros(b, 1, dtype=torch.bool, device=scores.device)
        first = chosen.gather(1, valid.float().argmax(dim=1, keepdim=True))
        return torch.where(valid, chosen, first), valid

    def rank(self, column: int) -> int | None:
        if column < len(self.classes):
            return None
        return column - len(self.classes) + 1 if column < len(self.classes) + self.top_k else None


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
    matches = [i for i, label in enumerate(labels)
               if wanted == label.lower() or wanted in (n.strip().lower() for n in label.split(","))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = "; ".join(f"{i} ({labels[i]})" for i in matches)
        raise TargetError(f"Class name '{spec}' is ambiguous: it matches {listed}. Pass the index instead, "
                          f"e.g. --class {matches[0]}.")
    names = [n.strip() for label in labels for n in label.split(",")]
    close = difflib.get_close_matches(text, names, n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
    raise TargetError(f"Unknown class '{spec}'.{hint} Pass a class index or a label name (case-insensitive).")
