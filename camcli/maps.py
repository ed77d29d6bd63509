"""Place input-resolution maps back on the original image, and localize them (paper §4.1)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .records import Geometry

BOX_THRESHOLD = 0.15  # the paper binarizes at 15% of the map's max


def to_original(maps: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """K×H×W maps at model-input resolution → K×height×width on the original image.

    Each original pixel centre is located in the model input through the crop geometry and
    sampled bilinearly; pixels the model never saw (outside the crop) are 0.
    """
    x0, y0, x1, y1 = geometry.crop_box
    device = maps.device
    xs = ((torch.arange(geometry.width, device=device, dtype=torch.float32) + 0.5) - x0) / (x1 - x0) * 2 - 1
    ys = ((torch.arange(geometry.height, device=device, dtype=torch.float32) + 0.5) - y0) / (y1 - y0) * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
    out = F.grid_sample(maps[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    seen = ((ys.abs() <= 1)[:, None] & (xs.abs() <= 1)[None, :]).to(out.dtype)
    return out * seen


def seen_mask(geometry: Geometry) -> np.ndarray:
    """height×width bool: True where the model saw the original image."""
    x0, y0, x1, y1 = geometry.crop_box
    xs = np.arange(geometry.width) + 0.5
    ys = np.arange(geometry.height) + 0.5
    return ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]


def largest_segment(mask: np.ndarray) -> Optional[tuple[int, int, int, int]]:
    """Bounding box (x0, y0, x1, y1; x1, y1 exclusive) of the largest 8-connected True segment.

    Works on horizontal runs: runs in neighbouring rows that touch (diagonals included) are
    merged with union-find, so the cost follows the number of runs, not pixels.
    """
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    starts = np.argwhere(edges == 1)
    ends = np.argwhere(edges == -1)[:, 1]
    if len(starts) == 0:
        return None
    rows, cols = starts[:, 0], starts[:, 1]
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rows, np.arange(h + 1))
    for r in range(1, h):
        a, a_end = row_first[r - 1], row_first[r]
        b, b_end = row_first[r], row_first[r + 1]
        while a < a_end and b < b_end:
            if cols[a] <= ends[b] and cols[b] <= ends[a]:  # touching, diagonals included
                parent[find(b)] = find(a)
            if ends[a] < ends[b]:
                a += 1
            else:
                b += 1
    roots = np.array([find(i) for i in range(len(rows))])
    sizes = np.bincount(roots, weights=ends - cols)
    members = roots == int(np.argmax(sizes))
    return (
        int(cols[members].min()),
        int(rows[members].min()),
        int(ends[members].max()),
        int(rows[members].max()) + 1,
    )


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


def peak(input_map: np.ndarray, geometry: Geometry) -> Optional[tuple[int, int]]:
    """The map's maximum, in original-image pixels; None for an all-zero map."""
    if float(input_map.max()) <= 0:
        return None
    y, x = np.unravel_index(int(np.argmax(input_map)), input_map.shape)
    px, py = geometry.input_to_original(x + 0.5, y + 0.5)
    return int(min(max(px, 0), geometry.width - 1)), int(min(max(py, 0), geometry.height - 1))


def box(input_map: np.ndarray, geometry: Geometry) -> Optional[tuple[int, int, int, int]]:
    """The paper's box: 15% of the max, largest segment, in original-image pixels."""
    top = float(input_map.max())
    if top <= 0:
        return None
    found = largest_segment(input_map >= BOX_THRESHOLD * top)
    return box_on_original(found, geometry) if found else None
