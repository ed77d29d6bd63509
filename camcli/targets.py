"""Which classes to explain: the top-k of each image and/or classes the user names."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import TargetError


@dataclass(frozen=True)
class Targets:
    """User-chosen classes come first (rank None), then the top-k of each image."""

    classes: tuple[int, ...] = ()
    top_k: int = 3

    @property
    def width(self) -> int:
        return len(self.classes) + self.top_k

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """B×C logits → B×width class indices."""
        fixed = torch.tensor(self.classes, dtype=torch.long, device=logits.device).expand(logits.shape[0], -1)
        top = logits.topk(min(self.top_k, logits.shape[1]), dim=1).indices
        return torch.cat([fixed, top], dim=1)

    def rank(self, column: int) -> int | None:
        return None if column < len(self.classes) else column - len(self.classes) + 1


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
