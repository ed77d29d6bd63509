"""camcli.render: colormaps and overlays, compared with OpenCV's colormaps and the blend written out here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from camcli.render import BOX_COLOR, colorize, dimmed, overlay, rgb_image

RAMP = np.linspace(0.0, 1.0, 256)


def test_jet_is_opencvs_jet_and_hot_and_gray_are_their_formulas():
    opencv_jet = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_JET)[0][:, ::-1]
    assert np.abs(colorize(RAMP[None], "jet")[0].astype(int) - opencv_jet.astype(int)).max() <= 1
    hot = np.stack([np.clip(3 * RAMP, 0, 1), np.clip(3 * RAMP - 1, 0, 1), np.clip(3 * RAMP - 2, 0, 1)], axis=-1)
    np.testing.assert_array_equal(colorize(RAMP[None], "hot")[0], np.round(hot * 255))
    np.testing.assert_array_equal(colorize(RAMP[None], "gray")[0], np.repeat(np.arange(256)[:, None], 3, axis=1))
    assert colorize(np.array([[-1.0, 2.0]]), "gray").tolist() == [[[0, 0, 0], [255, 255, 255]]]  # clipped


def test_dimmed_and_rgb_image():
    image = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16).repeat(3).reshape(16, 16, 3))
    np.testing.assert_array_equal(np.asarray(dimmed(image)), np.floor(np.asarray(image) * 0.35 + 0.5))
    values = np.array([[[-0.5, 0.5, 2.0]]])
    assert np.asarray(rgb_image(values)).tolist() == [[[0, 128, 255]]]


@pytest.mark.parametrize(("colormap", "alpha"), [("jet", 0.5), ("hot", 0.3), ("gray", 1.0)])
def test_overlay_blends_where_the_model_looked_and_dims_elsewhere(colormap, alpha):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    heat = rng.random((40, 60))
    seen = (10, 5, 50, 35)
    got = np.asarray(overlay(image, dimmed(image), heat, seen, alpha, colormap)).astype(float)
    left, top, right, bottom = seen
    colours = colorize(heat, colormap).astype(float)
    blend = (1 - alpha) * pixels + alpha * colours
    inside = got[top:bottom, left:right]
    assert np.abs(inside - blend[top:bottom, left:right]).max() <= 1  # Pillow's 8-bit blend rounds
    outside = np.ones((40, 60), bool)
    outside[top:bottom, left:right] = False
    assert np.abs(got[outside] - np.floor(pixels[outside] * 0.35 + 0.5)).max() == 0


def test_the_box_is_drawn_inside_its_pixels():
    image = Image.new("RGB", (400, 200), (10, 20, 30))
    heat = np.zeros((200, 400))
    got = np.asarray(overlay(image, image, heat, (0, 0, 400, 200), 0.0, box=(100, 50, 200, 150)))
    width = 1  # round(min(400, 200) / 200)
    assert tuple(got[50, 100]) == BOX_COLOR
    assert tuple(got[149, 199]) == BOX_COLOR  # x1, y1 exclusive: the last pixels inside
    assert tuple(got[150, 200]) == (10, 20, 30)
    assert tuple(got[50 + width, 100 + width]) == (10, 20, 30)
    untouched = np.asarray(overlay(image, image, heat, (0, 0, 400, 200), 0.0, box=(5, 5, 5, 9)))
    assert (untouched == (10, 20, 30)).all()  # an empty box draws nothing
