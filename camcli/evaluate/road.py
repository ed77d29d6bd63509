"""ROAD, RemOve And Debias (Rong et al. 2022): how a class's probability changes when the pixels a map
ranks most (MoRF) or least (LeRF) relevant are removed, and their combination.

Removed pixels are not set to a constant (a shape the model can read, which leaks the map's ranking back
into the score) but imputed: each removed pixel takes the weighted mean of its in-bounds neighbours (1/6
for the four side neighbours, 1/12 for the four diagonal ones), all removed pixels of an image at once (a
linear system), plus Gaussian noise. This is the imputer of the authors' code as pytorch-grad-cam ships it
(``pytorch_grad_cam.metrics.road``), with the same percentiles, thresholds and order of noise draws, so the
values agree with it given the same seed (tests/test_road.py). It solves the system with conjugate
gradients on the pixel grid (torch, on the model's device) instead of a sparse direct solver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics
from .job import ROAD_PERCENTILES

NOISE = 0.01  # standard deviation of the imputation noise, in normalized input units
SEED = 0  # every (image, class) draws its noise from a generator seeded so: runs and shards agree
TOLERANCE = 1e-6  # relative residual at which the solve stops: its error is far below the noise


def neighbour_sum(v: torch.Tensor) -> torch.Tensor:
    """Σ_j w_j v_j over each pixel's 8 neighbours (w = 1/6 sides, 1/12 diagonals; outside the image: 0),
    for ...×H×W tensors: the stencil (1/12)·([1,2,1] ⊗ [1,2,1] − 4δ), as two separable passes."""
    padded = F.pad(v, (1, 1, 1, 1))
    rows = padded[..., :-2, :] + 2 * padded[..., 1:-1, :] + padded[..., 2:, :]
    return (rows[..., :-2] + 2 * rows[..., 1:-1] + rows[..., 2:] - 4 * v) / 12


class _Operator:
    """The imputation system's matrix A applied to N H×W fields at once (see ``impute``): reusable
    buffers, in-place arithmetic, as the solver applies it hundreds of times to the same shapes."""

    def __init__(self, unknown: torch.Tensor, weights: torch.Tensor) -> None:
        count, height, width = unknown.shape
        self.unknown, self.weights = unknown, weights
        self.diagonal = weights + 1 / 3  # A·d = unknown ⊙ ((W + 1/3)·d − ([1,2,1] ⊗ [1,2,1] ∗ d) / 12)
        self.padded = unknown.new_zeros(count, height + 2, width + 2)
        self.rows = unknown.new_empty(count, height, width + 2)

    def __call__(self, d: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        self.padded[:, 1:-1, 1:-1] = d
        torch.add(self.padded[:, :-2], self.padded[:, 2:], out=self.rows).add_(self.padded[:, 1:-1], alpha=2)
        torch.add(self.rows[..., :-2], self.rows[..., 2:], out=out).add_(self.rows[..., 1:-1], alpha=2)
        return out.mul_(-1 / 12).addcmul_(self.diagonal, d).mul_(self.unknown)

    def keep(self, rows: torch.Tensor) -> _Operator:
        """The operator of the chosen fields only."""
        return _Operator(self.unknown[rows], self.weights)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ a·b over each of N H×W fields, without an N×H×W temporary."""
    return torch.bmm(a.flatten(1)[:, None], b.flatten(1)[:, :, None]).flatten()


def impute(x: torch.Tensor, removed: torch.Tensor, tolerance: float = TOLERANCE) -> torch.Tensor:
    """Linear imputation of S images at once: ``x`` S×C×H×W, ``removed`` S×H×W (True: impute).

    Each removed pixel i satisfies W_i·v_i = Σ_j w_ij·z_j over its in-bounds neighbours j (z: the
    imputed value where removed, the image elsewhere; W_i: the sum of those neighbours' weights). Per
    image and channel the system is symmetric positive definite wherever some pixel is kept, so conjugate
    gradients solve it, until the residual is ``tolerance`` × the right-hand side's; a solved system leaves
    the batch, so each costs its own iterations only, and its iterates depend on it alone. With nothing
    kept there is no boundary to interpolate from: every pixel becomes 0 (the mean colour), as the
    reference's solver gives.
    """
    images, channels, height, width = x.shape
    image = x.reshape(images * channels, height, width)
    unknown = removed[:, None].expand(images, channels, height, width).reshape(image.shape).to(x.dtype)
    weights = neighbour_sum(torch.ones(height, width, dtype=x.dtype, device=x.device))
    rhs = unknown * neighbour_sum((1 - unknown) * image)
    solved = torch.zeros_like(rhs)
    norms = _dot(rhs, rhs)
    alive = torch.nonzero(norms > 0).flatten()  # a zero right-hand side has the solution 0
    operator = _Operator(unknown[alive], weights)
    limit, rr = tolerance**2 * norms[alive], norms[alive]
    v, residual = torch.zeros_like(rhs[alive]), rhs[alive]
    direction, moved = residual.clone(), torch.empty_like(residual)
    tiny = torch.finfo(x.dtype).tiny
    for _ in range(4 * (height + width) + 100):  # converges well within H + W iterations; the bound is a guard
        if not len(alive):
            break
        operator(direction, moved)
        step = (rr / _dot(direction, moved).clamp_min(tiny))[:, None, None]
        v.addcmul_(step, direction)
        residual.addcmul_(step, moved, value=-1)
        new_rr = _dot(residual, residual)
        direction.mul_((new_rr / rr.clamp_min(tiny))[:, None, None]).add_(residual)
        rr = new_rr
        done = rr <= limit
        if bool(done.any()):
            solved[alive[done]] = v[done]
            left = ~done
            alive, limit, v, residual, direction, rr = (t[left] for t in (alive, limit, v, residual, direction, rr))
            operator, moved = operator.keep(left), torch.empty_like(residual)
    solved[alive] = v  # none, unless the guard stopped the iterations
    return torch.where(unknown.bool(), solved, image).reshape(x.shape)


def removal_masks(heat: torch.Tensor, percentiles: Sequence[float]) -> torch.Tensor:
    """2P×H×W: the pixels LeRF removes at each percentile, then those MoRF removes (pytorch-grad-cam's
    order). MoRF at p removes the pixels whose map value is not below the map's p-th percentile (numpy's
    linear interpolation, in float32 as the reference computes it); LeRF at p the same for 1 − map."""
    heat = heat.float().cpu()
    ranked = torch.stack([1 - heat, heat]).reshape(2, -1)  # LeRF ranks by 1 − map, MoRF by the map
    masks = [
        ranked[order] >= torch.from_numpy(np.atleast_1d(np.percentile(ranked[order].numpy(), p)))
        for order in range(2)
        for p in percentiles
    ]
    return torch.stack(masks).reshape(-1, *heat.shape)


@dataclass(frozen=True)
class RoadScores:
    """Mean change of the class's probability over the percentiles: removed least / most relevant first."""

    lerf: float
    morf: float

    @property
    def combined(self) -> float:
        """(LeRF − MoRF) / 2: high when removing the least relevant pixels keeps the probability and
        removing the most relevant ones destroys it."""
        return (self.lerf - self.morf) / 2


def road(
    score_fn: metrics.ClassScoreFn,
    x: torch.Tensor,
    heat: torch.Tensor,
    cls: int,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    batch_size: int = 64,
    seed: int = SEED,
) -> RoadScores:
    """ROAD of one C×H×W input and its H×W map (in [0, 1]) for class ``cls``: at each percentile, the
    class's probability on the imputed image minus on the image. The noise of each imputed image is drawn
    in the reference's order (LeRF then MoRF, by percentile) from a generator seeded ``seed``, in the
    reference's memory layout, so torch.manual_seed(seed) before pytorch-grad-cam's ROADCombined on this
    image alone gives it the same noise (its solver's column-major solution makes its draw a contiguous
    C×N one)."""
    removed = removal_masks(heat, percentiles).to(x.device)
    imputed = impute(x[None].expand(len(removed), *x.shape), removed)
    generator = torch.Generator().manual_seed(seed)
    channels = x.shape[0]
    for s, where in enumerate(removed):
        count = int(where.sum())
        noise = torch.empty(channels, count).normal_(generator=generator)  # one C×N draw, as the reference
        imputed[s][:, where] += NOISE * noise.to(x.device, x.dtype)
    images = torch.cat([x[None], imputed])
    scores = metrics.class_scores(score_fn, images, torch.full((len(images),), cls, dtype=torch.long), batch_size)
    change = (scores[1:] - scores[0]).reshape(2, len(percentiles)).mean(axis=1)
    return RoadScores(lerf=float(change[0]), morf=float(change[1]))
