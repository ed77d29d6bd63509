"""Place input-resolution maps back on the original image, and localize them (paper §4.1)."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from .records import Geometry

BOX_THRESHOLD = 0.15  # the paper binarizes at 15% of the map's max


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (half-pixel centres, as OpenCV) of ...×h×w maps to ``size`` (H, W)."""
    shape = maps.shape
    up = F.interpolate(maps.reshape(-1, 1, *shape[-2:]), size=size, mode="bilinear", align_corners=False)
    return up.reshape(*shape[:-2], *size)


def min_max(maps: torch.Tensor) -> torch.Tensor:
    """Scale each H×W map to [0, 1]; a constant map (no evidence anywhere) becomes all zeros."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


def input_map(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A CAM's raw map as shown: upsampled to the model input (``size``), then min-max scaled, so its
    peak is exactly 1 (as pytorch-grad-cam scales)."""
    return min_max(upsample(raw, size))


def seen_rect(geometry: Geometry) -> tuple[int, int, int, int]:
    """Original pixels whose centres fall inside the crop: (left, top, right, bottom), exclusive."""
    x0, y0, x1, y1 = geometry.crop_box
    left, top = max(0, math.ceil(x0 - 0.5)), max(0, math.ceil(y0 - 0.5))
    right = min(geometry.width, math.floor(x1 - 0.5) + 1)
    bottom = min(geometry.height, math.floor(y1 - 0.5) + 1)
    return left, top, max(left, right), max(top, bottom)


@functools.lru_cache(maxsize=32)
def _grid(geometry: Geometry, device: torch.device) -> torch.Tensor:
    """1×h×w×2 sampling grid of the seen pixels' centres, in grid_sample's [-1, 1] input units.
    Cached: every class of an image, and the writer threads, share it."""
    x0, y0, x1, y1 = geometry.crop_box
    left, top, right, bottom = seen_rect(geometry)
    xs = (torch.arange(left, right, device=device, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
    ys = (torch.arange(top, bottom, device=device, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]


def to_original(maps: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """K×H×W (or K×C×H×W) maps at model-input resolution → K×[C×]height×width on the original image.

    Each original pixel centre inside the crop is located in the model input through the crop
    geometry and sampled bilinearly; pixels the model never saw (outside the crop) are 0.
    """
    left, top, right, bottom = seen_rect(geometry)
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    out = torch.zeros(flat.shape[0], 1, geometry.height, geometry.width, device=maps.device)
    if right > left and bottom > top:
        grid = _grid(geometry, maps.device).expand(flat.shape[0], -1, -1, -1)
        out[:, :, top:bottom, left:right] = F.grid_sample(
            flat, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
    return out.reshape(*maps.shape[:-2], geometry.height, geometry.width)


def labels_to_original(labels: torch.Tensor, geometry: Geometry, unseen: int) -> np.ndarray:
    """An H×W map of class indices at model-input resolution → height×width int32 on the original image:
    each original pixel centre inside the crop takes the class of the input pixel it falls in (nearest,
    never a blend of two classes); pixels the model never saw are ``unseen``."""
    left, top, right, bottom = seen_rect(geometry)
    out = np.full((geometry.height, geometry.width), unseen, dtype=np.int32)
    if right > left and bottom > top:
        grid = _grid(geometry, labels.device)
        sampled = F.grid_sample(labels[None, None].float(), grid, mode="nearest", align_corners=False)
        out[top:bottom, left:right] = sampled[0, 0].round().to(torch.int32).cpu().numpy()
    return out


def largest_segment(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1; x1, y1 exclusive) of the largest 8-connected True segment.

    Works on horizontal runs: runs in neighbouring rows that touch (diagonals included) are
    paired with vectorized searches and merged with union-find, so the cost follows the number
    of runs, not pixels.
    """
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1).ravel()  # +1 where a run starts, -1 one past where it ends
    starts = np.flatnonzero(edges == 1)
    if len(starts) == 0:
        return None
    rows, cols = np.divmod(starts, w + 1)
    ends = np.flatnonzero(edges == -1) % (w + 1)
    if len(rows) == 1 or np.all(np.diff(rows) > 0):
        return _largest_chain(rows, cols, ends)
    # Runs in row r that touch run j of row r + 1 (diagonals included) satisfy
    # ends[i] >= cols[j] and cols[i] <= ends[j]; runs of a row are sorted, so they form a range.
    stride = w + 2
    key_start, key_end = rows * stride + cols, rows * stride + ends
    below = rows > 0
    j = np.flatnonzero(below)
    lo = np.searchsorted(key_end, (rows[j] - 1) * stride + cols[j], side="left")
    hi = np.searchsorted(key_start, (rows[j] - 1) * stride + ends[j], side="right")
    count = np.maximum(hi - lo, 0)
    upper = np.repeat(lo, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
    lower = np.repeat(j, count)
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for u, v in zip(upper.tolist(), lower.tolist(), strict=False):
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[rv] = ru
    roots = np.array([find(i) for i in range(len(rows))])
    sizes = np.bincount(roots, weights=ends - cols)
    members = roots == int(np.argmax(sizes))
    return (
        int(cols[members].min()),
        int(rows[members].min()),
        int(ends[members].max()),
        int(rows[members].max()) + 1,
    )


def _largest_chain(rows: np.ndarray, cols: np.ndarray, ends: np.ndarray) -> tuple[int, int, int, int]:
    """Fast path, at most one run per row (the usual thresholded CAM): segments are maximal chains
    of runs in consecutive rows that touch, found without a Python loop."""
    touching = (np.diff(rows) == 1) & (cols[1:] <= ends[:-1]) & (cols[:-1] <= ends[1:])
    first = np.flatnonzero(np.concatenate(([True], ~touching)))
    sizes = np.add.reduceat(ends - cols, first)
    best = int(np.argmax(sizes))
    lo, hi = first[best], (first[best + 1] if best + 1 < len(first) else len(rows))
    return int(cols[lo:hi].min()), int(rows[lo]), int(ends[lo:hi].max()), int(rows[hi - 1]) + 1


def box_on_original(box: tuple[int, int, int, int], geometry: Geometry) -> tuple[int, int, int, int]:
    """An input-pixel box (x1, y1 exclusive) in original-image pixels, clipped to the image."""
    ax, ay = geometry.input_to_original(box[0], box[1])
    bx, by = geometry.input_to_original(box[2], box[3])
    return (
        int(np.clip(np.floor(ax), 0, geometry.width)),
        int(np.clip(np.floor(ay), 0, geometry.height)),
        int(np.clip(np.ceil(bx), 0, geometry.width)),
        int(np.clip(np.ceil(by), 0, geometry.height)),
    )


def peak(input_map: np.ndarray, geometry: Geometry) -> tuple[int, int] | None:
    """The map's maximum, in original-image pixels; None for an all-zero map."""
    if float(input_map.max()) <= 0:
        return None
    y, x = np.unravel_index(int(np.argmax(input_map)), input_map.shape)
    px, py = geometry.input_to_original(x + 0.5, y + 0.5)
    return int(min(max(px, 0), geometry.width - 1)), int(min(max(py, 0), geometry.height - 1))


def box(input_map: np.ndarray, geometry: Geometry) -> tuple[int, int, int, int] | None:
    """The paper's box: 15% of the max, largest segment, in original-image pixels."""
    top = float(input_map.max())
    if top <= 0:
        return None
    found = largest_segment(input_map >= BOX_THRESHOLD * top)
    return box_on_original(found, geometry) if found else None
