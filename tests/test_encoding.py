"""Overlay encoders produce files that decode back to the same pixels (PNG) or close (lossy)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from camcli.encoding import encode_picture, png_bytes


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (37, 53), (300, 451)])
def test_png_roundtrip(shape):
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(png_bytes(pixels))) as img:
        img.load()
        assert img.format == "PNG"
        assert img.mode == "RGB"
        assert np.array_equal(np.asarray(img), pixels)


@pytest.mark.parametrize(("fmt", "name"), [("jpg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_formats(fmt, name, samples):
    with Image.open(samples / "chelsea.png") as img:
        original = img.convert("RGB")
    with Image.open(io.BytesIO(encode_picture(original, fmt))) as back:
        assert back.format == name
        assert back.size == original.size
        error = np.abs(np.asarray(back.convert("RGB"), np.int16) - np.asarray(original, np.int16)).mean()
        assert error < 3
