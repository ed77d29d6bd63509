"""Classifier heads: how a model's outputs become class scores to explain and probabilities to report.

- ``softmax`` (default): one logit per class; the score of class c is its pre-softmax logit y^c (as
  the Grad-CAM paper), probabilities are the softmax.
- ``sigmoid`` (multi-label): one logit per class, each an independent sigmoid probability.
- ``binary``: one logit l; class 1 ("positive") is explained by l and class 0 ("negative") by −l,
  P(positive) = sigmoid(l).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .job import HEADS

__all__ = ["HEADS", "Head"]


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
