"""The writer places each explanation's own map on the original image, overlays it, and encodes it.

Expected maps and overlays are computed independently (tests/independent.py: OpenCV upsampling, a NumPy
bilinear sampler through the crop box explanation.json records, OpenCV's jet), not with camcli's code.
"""

from __future__ import annotations

import dataclasses

import independent
import numpy as np
import pytest
from PIL import Image

from camcli.discover import discover
from camcli.job import ExplainJob
from camcli.pipeline import explain
from camcli.session import resolve
from camcli.writer import write

# Tolerances. Maps: float32 arithmetic against float64, 1e-5 of the [0, 1] range. Overlays (8-bit): the
# colour index may round the other way (one jet step is up to 4 levels, halved by alpha 0.5), OpenCV's jet
# differs from camcli's by 1 level, the blend truncates: at most 4 levels per channel, 0.5 on average.
MAP_ATOL = 1e-5
OVERLAY_MAX, OVERLAY_MEAN = 4, 0.5


@pytest.fixture(scope="module")
def chelsea(lite0, samples):
    session = resolve(ExplainJob(methods=("gradcam", "counterfactual", "guided-gradcam"), top_k=3), lite0)
    [result] = list(explain(session, discover([samples / "chelsea.png"])))
    original = np.asarray(Image.open(samples / "chelsea.png").convert("RGB"))
    return session, result, original


def _near_outline(box: list[int], shape: tuple[int, int], band: int = 4) -> np.ndarray:
    """Pixels within ``band`` of the drawn box's outline (the box colour covers them)."""
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    outer = (xs >= x0 - 1) & (xs <= x1) & (ys >= y0 - 1) & (ys <= y1)
    inner = (xs >= x0 + band) & (xs < x1 - band) & (ys >= y0 + band) & (ys < y1 - band)
    return outer & ~inner


@pytest.mark.parametrize("save", [{"overlay", "map", "raw_map"}, {"map"}, {"overlay"}, {"raw_map"}, set()])
def test_every_file_belongs_to_its_own_explanation(chelsea, tmp_path, save):
    session, result, original = chelsea
    doc = write(tmp_path, result, dataclasses.replace(session.ctx, save=frozenset(save)))
    folder = tmp_path / "chelsea.png"
    crop, _, width, height = independent.geometry(doc)
    assert (width, height) == (451, 300)
    cams = [exp for exp in result.explanations if exp.method in ("gradcam", "counterfactual")]
    assert len(cams) == 6
    assert len({float(exp.raw_map.sum()) for exp in cams}) >= 3  # different maps: a mix-up would show
    for exp, entry in zip(result.explanations, doc["explanations"], strict=True):
        assert (entry["method"], entry["class_index"]) == (exp.method, exp.class_index)
        if "raw_map" in save:
            np.testing.assert_array_equal(np.load(folder / entry["files"]["raw_map"]), exp.raw_map.numpy())
        if exp.method == "guided-gradcam":
            assert set(entry["files"]) == ({"image"} if "overlay" in save else set()) | (save & {"raw_map"})
            continue
        assert set(entry["files"]) == save
        expected = independent.full_map(exp.raw_map.numpy(), doc)  # from this entry's own raw map
        if "map" in save:
            saved = np.load(folder / entry["files"]["map"])
            assert saved.dtype == np.float32
            assert saved.shape == (height, width)
            np.testing.assert_allclose(saved, expected, rtol=0, atol=MAP_ATOL)
        if "overlay" in save:
            with Image.open(folder / entry["files"]["overlay"]) as picture:
                assert picture.format == "PNG"
                overlay = np.asarray(picture.convert("RGB")).astype(np.float64)
            box = entry["bbox"]
            keep = np.ones((height, width), bool)
            if box is not None:  # an all-zero map (no evidence) has no box
                assert tuple(overlay[box[1], box[0]]) == (0, 255, 0)  # the box, drawn in green
                keep = ~_near_outline(box, (height, width))
            difference = np.abs(overlay - independent.overlay(original, expected, crop))[keep]
            assert difference.max() <= OVERLAY_MAX
            assert difference.mean() <= OVERLAY_MEAN
