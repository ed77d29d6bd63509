"""Classifier heads: how a model's outputs become class scores to explain and probabilities to report.

- ``softmax`` (default): one logit per class; the score of class c is its pre-softmax logit y^c (as
  the Grad-CAM paper), probabilities are the softmax.
- ``sigmoid`` (multi-label): one logit per class, each an independent sigmoid probability.
- ``binary``: one logit l; class 1 ("positive") is explained by l and class 0 ("negative") by −l,
  P(positive) = sigmoid(l).

The task (``classify`` or ``segment``) says what one output is. A segmentation model gives B×C×H×W
class logits y^c_ij, one class per pixel (its argmax). Class c's score is the sum of its logits over
the pixels predicted as c, S^c = Σ_ij y^c_ij · [argmax_k y^k_ij = c] (pytorch-grad-cam's
``SemanticSegmentationTarget``; the prediction is a constant of the differentiation); the classes are
ranked by their predicted area, and a class's "probability" is its share of the pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .choices import HEADS, SCORES, TASKS
from .errors import ModelError

__all__ = ["HEADS", "SCORES", "TASKS", "Head", "explained_scores", "logits_of"]


def logits_of(output: Any) -> Any:
    """What a model's forward returned, as its logits: the tensor itself, or the ``logits`` of an output
    object or mapping (Hugging Face ``transformers`` classifiers return ``ImageClassifierOutput``), or
    the ``out`` of torchvision's segmentation models. Anything else is returned as it is, for the caller
    to refuse with its own words."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        found = output.get("logits", output.get("out"))
    else:
        found = getattr(output, "logits", None)
    return found if isinstance(found, torch.Tensor) else output


@dataclass(frozen=True)
class Head:
    name: str = "softmax"
    task: str = "classify"

    def __post_init__(self) -> None:
        if self.task == "segment" and self.name != "softmax":
            raise ModelError(
                f"--head {self.name}: a segmentation model predicts one class per pixel. Leave --head out."
            )

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """B×N model outputs (B×C×H×W for segmentation) → B×C class scores (differentiable)."""
        if self.task == "segment":
            return (outputs * predicted(outputs)).sum(dim=(-2, -1))
        if self.name == "binary":
            return torch.cat([-outputs[:, :1], outputs[:, :1]], dim=1)
        return outputs

    def ranking(self, outputs: torch.Tensor) -> torch.Tensor:
        """B×C values the classes are ranked by (top-k, thresholds): the class scores, or for segmentation
        the number of pixels predicted as each class. Not differentiated."""
        if self.task == "segment":
            return predicted(outputs.detach()).sum(dim=(-2, -1))
        return self.scores(outputs.detach())

    def probabilities(self, ranking: torch.Tensor) -> torch.Tensor:
        """B×C ranking values (``ranking``) → B×C probabilities; for segmentation each class's share of
        the pixels."""
        if self.task == "segment":
            return ranking / ranking.sum(dim=1, keepdim=True).clamp(min=1)
        if self.name == "softmax":
            return ranking.softmax(dim=1)
        return ranking.sigmoid()  # binary: sigmoid(−l) = 1 − sigmoid(l) for class 0

    def classes(self, outputs: int) -> int:
        """How many classes a model with ``outputs`` outputs has under this head."""
        return 2 if self.name == "binary" else outputs


SOFTMAX = Head()


def predicted(outputs: torch.Tensor) -> torch.Tensor:
    """B×C×H×W logits → B×C×H×W one-hot of each pixel's predicted class (a constant: no gradient)."""
    labels = outputs.detach().argmax(dim=1, keepdim=True)
    return torch.zeros_like(outputs, dtype=outputs.dtype).scatter_(1, labels, 1.0)


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
