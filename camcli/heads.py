"""Classifier heads: how a model's outputs become class scores to explain and probabilities to report.

- ``softmax`` (default): one logit per class; the score of class c is its pre-softmax logit y^c (as
  the Grad-CAM paper), probabilities are the softmax.
- ``sigmoid`` (multi-label): one logit per class, each an independent sigmoid probability.
- ``binary``: one logit l; class 1 ("positive") is explained by l and class 0 ("negative") by −l,
  P(positive) = sigmoid(l).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .choices import HEADS, SCORES

__all__ = ["HEADS", "SCORES", "Head", "explained_scores", "logits_of"]


def logits_of(output: Any) -> Any:
    """What a model's forward returned, as its logits: the tensor itself, or the ``logits`` of an output
    object or mapping (Hugging Face ``transformers`` classifiers return ``ImageClassifierOutput``).
    Anything else is returned as it is, for the caller to refuse with its own words."""
    if isinstance(output, torch.Tensor):
        return output
    found = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    return found if isinstance(found, torch.Tensor) else output


@dataclass(frozen=True)
class Head:
    name: str = "softmax"

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """B×N model outputs → B×C class scores (differentiable)."""
        if self.name == "binary":
            return torch.cat([-outputs[:, :1], outputs[:, :1]], dim=1)
        return outputs

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """B×C class scores → B×C probabilities."""
        if self.name == "softmax":
            return scores.softmax(dim=1)
        return scores.sigmoid()  # binary: sigmoid(−l) = 1 − sigmoid(l) for class 0

    def classes(self, outputs: int) -> int:
        """How many classes a model with ``outputs`` outputs has under this head."""
        return 2 if self.name == "binary" else outputs


SOFTMAX = Head()


def explained_scores(scores: torch.Tensor, kind: str = "logit", head: Head = SOFTMAX) -> torch.Tensor:
    """B×C class scores → the B×C values a method explains (``--score``), differentiable:

    - ``logit``: the class score itself, y^c (the Grad-CAM paper: before the softmax);
    - ``probability``: the head's probability of the class (pytorch-grad-cam's
      ``ClassifierOutputSoftmaxTarget``);
    - ``rest``: y^c − CE(y, c) = 2 y^c − log Σ_j exp y^j, the pre- and post-softmax scores together
      (pytorch-grad-cam's ``ClassifierOutputReST``, arXiv 2501.06261).
    All three rank classes alike, so the explained classes do not depend on it.
    """
    if kind == "probability":
        return head.probabilities(scores)
    if kind == "rest":
        return 2 * scores - scores.logsumexp(dim=1, keepdim=True)
    return scores
