"""The evaluations of the Grad-CAM paper and its successors, as pure, vectorized functions.

Boxes are ``(x0, y0, x1, y1)`` with x1 and y1 exclusive (camcli's convention), in the pixels of the
map they are compared with. A map is a float array; "empty" means its maximum is not positive.
Shares are in [0, 1]; average drop and increase in confidence are percentages, as Grad-CAM++
defines them. ``None`` means "undefined here" (no case to count), never 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from ..maps import BOX_THRESHOLD, largest_segment
from .schema import Box

LOC_IOU = 0.5  # ILSVRC: a box is correct at IoU >= 0.5
POINTING_TOLERANCE = 15.0  # Zhang et al. 2016: pixels
BLUR_KERNEL, BLUR_SIGMA = 11, 5.0  # RISE's insertion substrate

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # N×3×H×W → N probabilities of the explained class
ClassScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (N×3×H×W, N classes) → N probabilities


# --- boxes and localization ----------------------------------------------------------------------


def iou_matrix(boxes_a: npt.ArrayLike, boxes_b: npt.ArrayLike) -> FloatArray:
    """N×M intersection over union of x1/y1-exclusive boxes: |A ∩ B| / |A ∪ B|, 0 where the union is empty."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    wide = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    tall = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = wide * tall
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    ratio: FloatArray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return ratio


def iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """IoU of two x1/y1-exclusive boxes."""
    return float(iou_matrix(box_a, box_b)[0, 0])


def localization_box(heat: npt.ArrayLike, threshold: float = BOX_THRESHOLD) -> tuple[int, int, int, int] | None:
    """The paper's box (§4.1): keep pixels ≥ threshold × max, box the largest 8-connected segment.

    On the full map (original pixels) it is directly comparable with ground-truth boxes; camcli's
    ``bbox`` is the same rule applied at model-input resolution. None for an empty map.
    """
    values = np.asarray(heat)
    top = float(values.max())
    return largest_segment(values >= threshold * top) if top > 0 else None


@dataclass(frozen=True)
class LocalizationCase:
    """One image for the ILSVRC localization protocol.

    ``gt_boxes``: ground-truth boxes by class index (a class with no boxes counts for classification
    only); ``predicted``: the model's top-5 classes, best first (all classes if it has fewer);
    ``map_boxes``: the box of the map of every explained class (None: the map is empty; a class
    absent here was not explained).
    """

    gt_boxes: Mapping[int, Sequence[Box]]
    predicted: Sequence[int]
    map_boxes: Mapping[int, tuple[int, int, int, int] | None]


def _localized(case: LocalizationCase, cls: int) -> bool | None:
    """Is class ``cls`` both a ground-truth class and well localized by its own map? None: unknown."""
    if cls not in case.gt_boxes:
        return False
    if cls not in case.map_boxes or not case.gt_boxes[cls]:
        return None
    found = case.map_boxes[cls]
    return found is not None and bool(iou_matrix(found, case.gt_boxes[cls]).max() >= LOC_IOU)


def top_k_localization(case: LocalizationCase, k: int) -> bool | None:
    """ILSVRC top-k localization: correct iff one of the k best predicted classes is a ground-truth
    class and the box of *that class's* map has IoU ≥ 0.5 with one of its ground-truth boxes.
    (k = 1: the top-1 class must be right and well localized.) None when undecidable: a predicted
    ground-truth class whose map was not explained (pass --top-k 5), or one without boxes."""
    outcomes = [_localized(case, c) for c in case.predicted[:k]]
    if True in outcomes:
        return True
    return None if None in outcomes else False


def gt_known_localization(case: LocalizationCase) -> list[bool | None]:
    """Ground-truth-known localization, one outcome per ground-truth class with boxes: the box of the
    map of that class (whatever the prediction) has IoU ≥ 0.5 with one of its boxes. None: not explained."""
    return [_localized(case, c) for c in case.gt_boxes if case.gt_boxes[c]]


def share(outcomes: Iterable[bool | None]) -> float | None:
    """The share of True outcomes; None if there are none, or if any is undecided (None): leaving
    those out would bias the share (e.g. top-5 errors counted only where the top-1 was right)."""
    found = list(outcomes)
    return None if not found or None in found else sum(map(bool, found)) / len(found)


def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the defined values; None if there are none."""
    defined = [v for v in values if v is not None]
    return math.fsum(defined) / len(defined) if defined else None


def case_outcomes(case: LocalizationCase) -> dict[str, Any]:
    """One image's outcomes for the ILSVRC protocol, as plain JSON values (per_image.jsonl keeps them, so
    metrics can be computed again from the lines alone): classification (top-1/top-5 right), whether it
    has ground-truth boxes, top-1/top-5 localization and ground-truth-known localization per class."""
    has_boxes = any(case.gt_boxes.values())
    return {
        "top1_cls": bool(set(case.predicted[:1]) & set(case.gt_boxes)),
        "top5_cls": bool(set(case.predicted[:5]) & set(case.gt_boxes)),
        "boxes": has_boxes,
        "top1_loc": top_k_localization(case, 1) if has_boxes else None,
        "top5_loc": top_k_localization(case, 5) if has_boxes else None,
        "gt_known": gt_known_localization(case) if has_boxes else [],
    }


def localization_from_outcomes(outcomes: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Top-1/top-5 classification and localization errors (1 − share correct) and GT-known
    localization accuracy over images (their ``case_outcomes``), as ILSVRC and the Grad-CAM paper
    (Table 1) report them. Localization figures count images with ground-truth boxes; one undecidable
    image makes its figure None (e.g. top-5 without --top-k 5)."""

    def error(found: Iterable[bool | None]) -> float | None:
        right = share(found)
        return None if right is None else 1.0 - right

    with_boxes = [o for o in outcomes if o["boxes"]]
    return {
        "top1_cls_error": error(o["top1_cls"] for o in outcomes),
        "top5_cls_error": error(o["top5_cls"] for o in outcomes),
        "top1_loc_error": error(o["top1_loc"] for o in with_boxes),
        "top5_loc_error": error(o["top5_loc"] for o in with_boxes),
        "gt_known_loc_accuracy": share(v for o in with_boxes for v in o["gt_known"]),
    }


def localization_metrics(cases: Sequence[LocalizationCase]) -> dict[str, float | None]:
    """``localization_from_outcomes`` of the cases' outcomes."""
    return localization_from_outcomes([case_outcomes(c) for c in cases])


# --- pointing games ------------------------------------------------------------------------------


def _box_pixels(boxes: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """K×4 integer pixel ranges [left, top, right, bottom) that the boxes overlap."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([np.floor(b[:, :2]), np.ceil(b[:, 2:])], axis=1).astype(np.int64)


def region_mask(shape: tuple[int, int], boxes: Sequence[Box] = (), masks: Sequence[BoolArray] = ()) -> BoolArray:
    """height×width union of the pixels that the boxes overlap and the masks' True pixels."""
    region = np.zeros(shape, dtype=bool)
    for left, top, right, bottom in _box_pixels(boxes).tolist():
        region[max(top, 0) : bottom, max(left, 0) : right] = True
    for mask in masks:
        region |= mask
    return region


def pointing_hit(
    point: tuple[int, int] | None,
    boxes: Sequence[Box] = (),
    mask: BoolArray | None = None,
    tolerance: float = POINTING_TOLERANCE,
) -> bool:
    """Pointing game (Zhang et al. 2016): a hit iff the map's peak pixel (x, y) lies within
    ``tolerance`` pixels (Euclidean, between pixel indices) of a pixel of a ground-truth box or mask.

    Equivalent to testing the point against the region dilated by a disk of that radius, but only the
    disk around the point is examined. An empty map (no peak) is a miss.
    """
    if point is None:
        return False
    x, y = point
    if len(boxes):
        pixels = _box_pixels(boxes)
        dx = np.clip(np.maximum(pixels[:, 0] - x, x - (pixels[:, 2] - 1)), 0, None)
        dy = np.clip(np.maximum(pixels[:, 1] - y, y - (pixels[:, 3] - 1)), 0, None)
        if bool(np.any(dx * dx + dy * dy <= tolerance * tolerance)):
            return True
    if mask is None:
        return False
    r = math.floor(tolerance)
    top, left = max(y - r, 0), max(x - r, 0)
    window = mask[top : y + r + 1, left : x + r + 1]
    ys, xs = np.ogrid[top : top + window.shape[0], left : left + window.shape[1]]
    return bool(np.any(window & ((ys - y) ** 2 + (xs - x) ** 2 <= tolerance * tolerance)))


def energy_share(heat: npt.ArrayLike, region: BoolArray) -> float | None:
    """Energy-based pointing game (Wang et al., Score-CAM): Σ_{region} heat / Σ heat over the full
    map; None for an empty map (0/0)."""
    values = np.asarray(heat, dtype=np.float64)
    total = float(values.sum())
    return float(values.sum(where=region)) / total if total > 0 else None


# --- faithfulness: deletion and insertion (RISE) -------------------------------------------------


def gaussian_blur(x: torch.Tensor, kernel_size: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur of ...×C×H×W images (normalized kernel, reflected borders), as
    torchvision's ``gaussian_blur``; RISE's insertion substrate with kernel 11, sigma 5."""
    half = kernel_size // 2
    taps = torch.arange(-half, half + 1, dtype=torch.float32, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    flat = x.reshape(-1, 1, *x.shape[-2:])
    flat = F.conv2d(F.pad(flat, (half, half, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, half, half), mode="reflect"), kernel.view(1, 1, -1, 1))
    return flat.reshape(x.shape)


def auc(curve: npt.ArrayLike) -> float:
    """Area under a curve sampled at n equally spaced points of [0, 1] (trapezoid rule)."""
    y = np.asarray(curve, dtype=np.float64)
    return float((y.sum() - (y[0] + y[-1]) / 2) / (len(y) - 1))


@dataclass(frozen=True)
class FaithfulnessCurves:
    """Class probability after each of ``steps`` deletion / insertion steps (steps + 1 points, step 0 first)."""

    deletion: FloatArray
    insertion: FloatArray

    @property
    def deletion_auc(self) -> float:
        return auc(self.deletion)

    @property
    def insertion_auc(self) -> float:
        return auc(self.insertion)


def _scores(
    score_fn: ClassScoreFn,
    rows: int,
    build: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
) -> FloatArray:
    """Score ``rows`` images made chunk by chunk: ``build(row indices)`` gives (images, classes)."""
    out = np.empty(rows, dtype=np.float64)
    for start in range(0, rows, batch_size):
        images, classes = build(torch.arange(start, min(start + batch_size, rows)))
        out[start : start + len(classes)] = score_fn(images, classes).detach().double().cpu().numpy()
    return out


def deletion_insertion_many(
    score_fn: ClassScoreFn,
    x: torch.Tensor,
    saliency: torch.Tensor,
    classes: torch.Tensor,
    steps: int = 50,
    substrate_deletion: Callable[[torch.Tensor], torch.Tensor] = torch.zeros_like,
    substrate_insertion: Callable[[torch.Tensor], torch.Tensor] = gaussian_blur,
    batch_size: int = 64,
) -> list[FaithfulnessCurves]:
    """Deletion and insertion (Petsiuk et al. 2018, RISE) for P (image, map, class) triples at once.

    ``x``: P×3×H×W normalized inputs; ``saliency``: P×H×W maps at input resolution; ``classes``: P.
    Pixels are ranked by decreasing saliency (ties: lower flattened index first). At step s of
    ``steps``, the first ⌊s·HW/steps⌋ pixels are set to the deletion substrate (default 0 in normalized
    space, i.e. the mean colour), or, for insertion, restored from the image onto the insertion
    substrate (default a Gaussian blur of it, kernel 11, sigma 5). All 2·P·(steps + 1) images go
    through ``score_fn`` in chunks of ``batch_size``, built on the fly from one ranking per map.
    Memory: about 4·P images plus one chunk; pass a few dozen triples at a time.
    """
    pairs, _, height, width = x.shape
    pixels = height * width
    order = torch.sort(saliency.reshape(pairs, pixels), dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(pixels, device=x.device).expand(pairs, -1))
    changed = torch.div(torch.arange(steps + 1, device=x.device) * pixels, steps, rounding_mode="floor")
    starts = torch.cat([x, substrate_insertion(x)])  # deletion starts from the image, insertion from the blur
    ends = torch.cat([substrate_deletion(x), x])
    classes = classes.to(x.device)

    def build(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = rows.to(x.device)
        which, step = rows // (steps + 1), rows % (steps + 1)  # which: variant · P + pair
        done = (rank[which % pairs] < changed[step][:, None]).view(-1, 1, height, width)
        return torch.where(done, ends[which], starts[which]), classes[which % pairs]

    curves = _scores(score_fn, 2 * pairs * (steps + 1), build, batch_size).reshape(2, pairs, steps + 1)
    return [FaithfulnessCurves(curves[0, p], curves[1, p]) for p in range(pairs)]


def deletion_insertion(
    score_fn: ScoreFn,
    x: torch.Tensor,
    saliency: torch.Tensor,
    steps: int = 50,
    substrate_deletion: Callable[[torch.Tensor], torch.Tensor] = torch.zeros_like,
    substrate_insertion: Callable[[torch.Tensor], torch.Tensor] = gaussian_blur,
    batch_size: int = 64,
) -> FaithfulnessCurves:
    """Deletion and insertion curves of one 3×H×W input and its H×W map; ``score_fn`` gives the
    explained class's probability for a batch. See :func:`deletion_insertion_many`."""
    return deletion_insertion_many(
        lambda batch, _: score_fn(batch),
        x[None],
        saliency[None],
        torch.zeros(1, dtype=torch.long),
        steps,
        substrate_deletion,
        substrate_insertion,
        batch_size,
    )[0]


# --- average drop and increase in confidence (Grad-CAM++) ----------------------------------------


def masked_by_map(x: torch.Tensor, maps: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Grad-CAM++'s explanation map E = I ⊙ L^c, taken in pixel space: normalize(pixels × map).

    ``x``: N×3×H×W normalized inputs; ``maps``: N×H×W in [0, 1]; ``mean``/``std``: the model's
    normalization. (Multiplying the normalized tensor would map black to the mean colour instead.)
    """
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return ((x * s + m) * maps.to(x.dtype)[:, None] - m) / s


def class_scores(
    score_fn: ClassScoreFn, images: torch.Tensor, classes: torch.Tensor, batch_size: int = 64
) -> FloatArray:
    """``score_fn`` over N images in chunks of ``batch_size``: N probabilities."""

    def build(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images[rows.to(images.device)], classes[rows.to(classes.device)]

    return _scores(score_fn, len(images), build, batch_size)


def _confidences(y: npt.ArrayLike, o: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Y and O of the images where Y > 0 (the drop is relative to Y)."""
    yv, ov = np.asarray(y, dtype=np.float64).ravel(), np.asarray(o, dtype=np.float64).ravel()
    keep = yv > 0
    return yv[keep], ov[keep]


def average_drop(y: npt.ArrayLike, o: npt.ArrayLike) -> float | None:
    """Average drop % = 100 · mean_i max(0, Y_i − O_i) / Y_i (Y: probability on the image, O: on the
    image masked by its map); lower is better. None without images."""
    yv, ov = _confidences(y, o)
    return float(100 * np.mean(np.maximum(yv - ov, 0) / yv)) if len(yv) else None


def increase_in_confidence(y: npt.ArrayLike, o: npt.ArrayLike) -> float | None:
    """Increase in confidence % = 100 · share of images with O_i > Y_i; higher is better."""
    yv, ov = _confidences(y, o)
    return float(100 * np.mean(ov > yv)) if len(yv) else None


# --- pytorch-grad-cam's CamMultImageConfidenceChange and ARCC ----------------------------------------


def multiplied_by_map(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's perturbation for CamMultImageConfidenceChange and ARCC's coherency: the
    *normalized* input times the map (N×C×H×W × N×H×W in [0, 1]), so a map of 0 gives the mean colour,
    unlike Grad-CAM++'s pixel-space product (``masked_by_map``)."""
    return x * maps.to(x.dtype)[:, None]


def drop_in_confidence(changes: Iterable[float]) -> float | None:
    """pytorch-grad-cam's DropInConfidence, averaged: mean max(0, −Δ) over the changes Δ = O − Y of the
    class's probability (absolute, not relative to Y as Grad-CAM++'s average drop). None without any."""
    return mean(max(-c, 0.0) for c in changes)


def arcc_complexity(maps: npt.ArrayLike) -> list[float]:
    """ARCC's Complexity (pytorch-grad-cam ``metrics.arcc.Complexity``): the L1 norm of each map (...×H×W,
    in [0, 1]) divided by its pixel count, from 0 (all zero) to 1 (all one). Not Quantus's entropy
    (``complexity``)."""
    flat, _ = _magnitudes(maps)
    return [float(v) for v in flat.mean(axis=1)]


COHERENCY_EPS = 1e-8  # pytorch-grad-cam's guard in the Pearson denominator, per (n − 1)-normalized std
ARCC_EPS = 1e-8  # pytorch-grad-cam's guard in each term of the harmonic mean


def coherency(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """ARCC's Coherency: (ρ + 1) / 2 for the Pearson ρ of two same-sized maps, with pytorch-grad-cam's
    guard, cov / (σ_a σ_b + 1e-8) (sample statistics), so a constant map gives ρ = 0 and 0.5, as there."""
    va = np.asarray(a, dtype=np.float64).ravel()
    vb = np.asarray(b, dtype=np.float64).ravel()
    if va.shape != vb.shape:
        raise ValueError(f"maps of {va.size} and {vb.size} values cannot be compared")
    va, vb = va - va.mean(), vb - vb.mean()
    n = len(va) - 1  # the sample normalization cancels except against the guard
    rho = float(va @ vb) / n / (math.sqrt(float(va @ va) / n * float(vb @ vb) / n) + COHERENCY_EPS)
    return (rho + 1) / 2


def arcc_road(road_combined: float) -> float:
    """ROAD combined as ARCC uses it: (LeRF − MoRF) / 2 lies in [−0.5, 0.5]; 2× it, clipped to [0, 1]."""
    return min(max(2 * road_combined, 0.0), 1.0)


def arcc(complexity: float, coherency: float, road_combined: float) -> float:
    """ARCC (pytorch-grad-cam ``metrics.arcc.ARCC``): the harmonic mean of coherency, 1 − complexity and
    ``arcc_road``, each term guarded by 1e-8: 3 / (1/(h + ε) + 1/(1 − c + ε) + 1/(r + ε)). In [0, 1];
    any one part near 0 pulls it to 0, so a map must be coherent, simple and faithful at once."""
    parts = (coherency, 1 - complexity, arcc_road(road_combined))
    return 3 / math.fsum(1 / (p + ARCC_EPS) for p in parts)


# --- the map alone: complexity and sparseness (Quantus) -------------------------------------------


def _magnitudes(maps: npt.ArrayLike) -> tuple[FloatArray, BoolArray]:
    """The absolute values of maps (...×H×W) in float64, one flattened map per row, and which rows are not
    all zero."""
    values = np.abs(np.asarray(maps, dtype=np.float64))
    flat = values.reshape(-1, values.shape[-2] * values.shape[-1])
    return flat, flat.max(axis=1) > 0


def complexity(maps: npt.ArrayLike) -> list[float | None]:
    """Complexity (Bhatt et al. 2020, as Quantus's ``Complexity``): the entropy, in nats, of each map's
    absolute values as a distribution, p = |a| / Σ|a|: −Σ p·ln(p + 1e-12). From 0 (one pixel holds all the
    evidence) to ln(H·W) (evidence spread evenly); lower is simpler. None for an all-zero map."""
    flat, nonzero = _magnitudes(maps)
    p = flat / np.where(nonzero, flat.sum(axis=1), 1.0)[:, None]
    entropy = -(p * np.log(p + 1e-12)).sum(axis=1)
    return [float(e) if ok else None for e, ok in zip(entropy, nonzero, strict=True)]


def sparseness(maps: npt.ArrayLike) -> list[float | None]:
    """Sparseness (Chalasani et al. 2020, as Quantus's ``Sparseness``): the Gini index of each map's absolute
    values scaled by their maximum, plus 1e-7 (Quantus's guard): Σ_i (2i − n − 1)·a_(i) / (n·Σ a) over the
    n values sorted ascending. From 0 (uniform) towards 1 (one pixel); higher is sparser. None for an
    all-zero map."""
    flat, nonzero = _magnitudes(maps)
    scaled = np.sort(flat / np.where(nonzero, flat.max(axis=1), 1.0)[:, None] + 1e-7, axis=1)
    n = scaled.shape[1]
    weights = 2 * np.arange(1, n + 1) - n - 1
    gini = (scaled @ weights) / (n * scaled.sum(axis=1))
    return [float(g) if ok else None for g, ok in zip(gini, nonzero, strict=True)]


# --- map against map -----------------------------------------------------------------------------


def rankdata(values: npt.ArrayLike) -> FloatArray:
    """1-based ranks of the flattened values; tied values share the mean of their ranks."""
    _, inverse, counts = np.unique(np.asarray(values).ravel(), return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each group of equal values
    return (last - (counts - 1) / 2)[inverse.ravel()]


def spearman(a: npt.ArrayLike, b: npt.ArrayLike) -> float | None:
    """Spearman's ρ: the Pearson correlation of the average ranks of two same-sized maps (flattened).
    None when either map is constant (no ranking to correlate)."""
    ra, rb = rankdata(a), rankdata(b)
    if ra.shape != rb.shape:
        raise ValueError(f"maps of {ra.size} and {rb.size} values cannot be compared")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    scale = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / scale if scale > 0 else None


def top_mask(heat: npt.ArrayLike, threshold: float = BOX_THRESHOLD) -> BoolArray:
    """Pixels at least ``threshold`` × the map's max; nothing for an empty map."""
    values = np.asarray(heat)
    top = float(values.max())
    return np.asarray(values >= threshold * top) if top > 0 else np.zeros(values.shape, dtype=bool)


def mask_iou(a: npt.ArrayLike, b: npt.ArrayLike, threshold: float = BOX_THRESHOLD) -> float | None:
    """IoU of the two maps' ``threshold`` × max masks; None when both are empty."""
    ma, mb = top_mask(a, threshold), top_mask(b, threshold)
    union = int(np.count_nonzero(ma | mb))
    return int(np.count_nonzero(ma & mb)) / union if union else None
