"""Localization (paper's box rule) and placing maps back on the original image."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from camcli.maps import box, input_map, largest_segment, peak, seen_rect, to_original
from camcli.models import DataConfig
from camcli.preprocess import geometry_for


def _components(mask: np.ndarray) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(size, box) of every 8-connected segment, by plain flood fill."""
    h, w = mask.shape
    seen = np.zeros_like(mask)
    found = []
    for y in range(h):
        for x in range(w):
            if mask[y, x] and not seen[y, x]:
                seen[y, x] = True
                queue, pixels = deque([(y, x)]), []
                while queue:
                    cy, cx = queue.popleft()
                    pixels.append((cy, cx))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = cy + dy, cx + dx
                            if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                                seen[ny, nx] = True
                                queue.append((ny, nx))
                ys, xs = zip(*pixels, strict=False)
                found.append((len(pixels), (min(xs), min(ys), max(xs) + 1, max(ys) + 1)))
    return found


def _assert_largest(mask: np.ndarray) -> None:
    found = _components(mask)
    got = largest_segment(mask)
    if not found:
        assert got is None
        return
    biggest = max(size for size, _ in found)
    assert got in [box for size, box in found if size == biggest]  # ties may pick either


@pytest.mark.parametrize("seed", range(40))
def test_largest_segment_matches_flood_fill(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((rng.integers(1, 30), rng.integers(1, 30))) < rng.uniform(0.2, 0.6)
    _assert_largest(mask)


GEOM_DATA = DataConfig((224, 224), 256, "bilinear", (0.5,) * 3, (0.5,) * 3)


def test_to_original_places_map_in_crop_and_zero_outside():
    geometry, _ = geometry_for(451, 300, GEOM_DATA)
    maps = torch.rand(2, 224, 224)
    out = to_original(maps, geometry)
    assert out.shape == (2, 300, 451)
    left, top, right, bottom = seen_rect(geometry)
    seen = torch.zeros(300, 451, dtype=torch.bool)
    seen[top:bottom, left:right] = True
    assert float(out[:, ~seen].abs().max()) == 0.0
    assert bool((out[:, seen] > 0).all())
    # centre of the crop ↔ centre of the input map
    x0, y0, x1, y1 = geometry.crop_box
    cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
    ix, iy = (cx + 0.5 - x0) / (x1 - x0) * 224 - 0.5, (cy + 0.5 - y0) / (y1 - y0) * 224 - 0.5
    ref = maps[0, int(np.floor(iy)) : int(np.floor(iy)) + 2, int(np.floor(ix)) : int(np.floor(ix)) + 2]
    assert float(ref.min()) - 1e-6 <= float(out[0, cy, cx]) <= float(ref.max()) + 1e-6


def test_localize_box_and_peak_in_original_pixels():
    geometry, _ = geometry_for(448, 448, GEOM_DATA)  # resize 256 → crop 224: scale 1.75, offset 16 px
    heat = np.zeros((224, 224), np.float32)
    heat[50:100, 120:180] = 1.0
    heat[10:12, 10:12] = 0.5  # a smaller segment that must be ignored
    found, top = box(heat, geometry), peak(heat, geometry)
    s = 448 / 256
    assert found == (
        int(np.floor((16 + 120) * s)),
        int(np.floor((16 + 50) * s)),
        int(np.ceil((16 + 180) * s)),
        int(np.ceil((16 + 100) * s)),
    )
    assert found[0] <= top[0] < found[2]
    assert found[1] <= top[1] < found[3]
    assert box(np.zeros((224, 224), np.float32), geometry) is None


@pytest.mark.parametrize("seed", range(40))
def test_largest_segment_one_run_per_row(seed):
    """The vectorized path (at most one run per row) agrees with flood fill too."""
    rng = np.random.default_rng(1000 + seed)
    h, w = rng.integers(1, 40), rng.integers(1, 40)
    mask = np.zeros((h, w), bool)
    for y in range(h):
        if rng.random() < 0.8:
            a = rng.integers(0, w)
            mask[y, a : a + rng.integers(1, w + 1)] = True
    _assert_largest(mask)


def test_back_projection_geometry_is_exact():
    """A linear ramp sampled back onto the original shows any half-pixel or crop-offset slip."""
    geometry, _ = geometry_for(451, 300, GEOM_DATA)
    ramp = torch.arange(224, dtype=torch.float32).expand(224, 224)  # value = input column index
    out = to_original(ramp[None], geometry)[0]
    left, top, right, bottom = seen_rect(geometry)
    x0, _, x1, _ = geometry.crop_box
    u = torch.arange(left, right, dtype=torch.float32)
    expected = ((u + 0.5 - x0) / (x1 - x0) * 224 - 0.5).clamp(0, 223)
    assert torch.allclose(out[top:bottom, left:right], expected.expand(bottom - top, -1), atol=1e-3)
    assert left == 94
    assert right == 357


def test_input_map():
    cams = torch.zeros(1, 2, 7, 7)
    cams[0, 0, 3, 3] = 2.0
    up = input_map(cams, (224, 224))
    assert up.shape == (1, 2, 224, 224)
    assert float(up[0, 0].max()) == pytest.approx(1.0)
    assert float(up[0, 0].min()) == 0.0
    assert float(up[0, 1].abs().max()) == 0.0  # constant map: no evidence
