"""Pure image functions: colormaps and overlays on the original image."""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image, ImageDraw


def _jet(t: np.ndarray) -> np.ndarray:
    return np.stack([np.clip(1.5 - np.abs(4 * t - k), 0, 1) for k in (3, 2, 1)], axis=-1)


def _hot(t: np.ndarray) -> np.ndarray:
    return np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], axis=-1)


def _gray(t: np.ndarray) -> np.ndarray:
    return np.repeat(t[..., None], 3, axis=-1)


_COLORMAPS = {"jet": _jet, "hot": _hot, "gray": _gray}
COLORMAPS = tuple(_COLORMAPS)
DIM = 0.35  # brightness kept where the model never looked
BOX_COLOR = (0, 255, 0)


def _lut(name: str) -> np.ndarray:
    return (_COLORMAPS[name](np.linspace(0.0, 1.0, 256)) * 255 + 0.5).astype(np.uint8)


def colorize(heat: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """height×width values in [0, 1] → height×width×3 uint8 colors."""
    index = (np.clip(heat, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return _lut(colormap)[index]


def overlay(
    image: Image.Image,
    heat: np.ndarray,
    seen: np.ndarray,
    alpha: float = 0.5,
    colormap: str = "jet",
    box: Optional[tuple[int, int, int, int]] = None,
) -> Image.Image:
    """Blend the heatmap over the original image; dim what the model never saw; outline the box."""
    base = np.asarray(image, dtype=np.float32)
    blended = (1.0 - alpha) * base + alpha * colorize(heat, colormap).astype(np.float32)
    out = np.where(seen[..., None], blended, DIM * base)
    result = Image.fromarray((out + 0.5).clip(0, 255).astype(np.uint8))
    if box is not None and box[2] > box[0] and box[3] > box[1]:
        width = max(1, round(min(image.size) / 200))
        ImageDraw.Draw(result).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=BOX_COLOR, width=width)
    return result


def rgb_image(values: np.ndarray) -> Image.Image:
    """height×width×3 floats in [0, 1] → an RGB image."""
    return Image.fromarray((np.clip(values, 0.0, 1.0) * 255 + 0.5).astype(np.uint8))
