"""Pure image functions: colormaps and overlays on the original image."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

from .choices import COLORMAPS


def _jet(t: np.ndarray) -> np.ndarray:
    return np.stack([np.clip(1.5 - np.abs(4 * t - k), 0, 1) for k in (3, 2, 1)], axis=-1)


def _hot(t: np.ndarray) -> np.ndarray:
    return np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], axis=-1)


def _gray(t: np.ndarray) -> np.ndarray:
    return np.repeat(t[..., None], 3, axis=-1)


_COLORMAPS = dict(zip(COLORMAPS, (_jet, _hot, _gray), strict=True))
DIM = 0.35  # brightness kept where the model never looked
BOX_COLOR = (0, 255, 0)
BAND = 256  # rows of the picture of all concepts coloured at a time


@functools.cache
def _lut(name: str) -> np.ndarray:
    return (_COLORMAPS[name](np.linspace(0.0, 1.0, 256)) * 255 + 0.5).astype(np.uint8)


def colorize(heat: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """height×width values in [0, 1] → height×width×3 uint8 colors."""
    index = (np.clip(heat, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    colors: np.ndarray = _lut(colormap)[index]
    return colors


def dimmed(image: Image.Image) -> Image.Image:
    """The image at DIM brightness: the backdrop for what the model never saw."""
    return image.point(lambda v: int(v * DIM + 0.5))


def overlay(
    image: Image.Image,
    backdrop: Image.Image,
    heat: np.ndarray,
    seen: tuple[int, int, int, int],
    alpha: float = 0.5,
    colormap: str = "jet",
    box: tuple[int, int, int, int] | None = None,
) -> Image.Image:
    """Blend the heatmap over the original image inside ``seen``; elsewhere show ``backdrop``.

    Colormapping and blending run in Pillow's C code on the seen rectangle only.
    """
    result = backdrop.copy()
    left, top, right, bottom = seen
    if right > left and bottom > top:
        index = (np.clip(heat[top:bottom, left:right], 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        colored = Image.frombytes("P", (right - left, bottom - top), index.tobytes())
        colored.putpalette(_lut(colormap).tobytes())
        blended = Image.blend(image.crop(seen), colored.convert("RGB"), alpha)
        result.paste(blended, (left, top))
    if box is not None and box[2] > box[0] and box[3] > box[1]:
        width = max(1, round(min(image.size) / 200))
        ImageDraw.Draw(result).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=BOX_COLOR, width=width)
    return result


def rgb_image(values: np.ndarray) -> Image.Image:
    """height×width×3 floats in [0, 1] → an RGB image."""
    return Image.fromarray((np.clip(values, 0.0, 1.0) * 255 + 0.5).astype(np.uint8))


def class_colors(n: int) -> list[tuple[int, int, int]]:
    """PASCAL VOC's label colours for classes 0..n-1: each channel's bits taken in turn from the class
    index's bits, most significant first (class 0 black, 1 dark red, 2 dark green, ...), so a VOC mask
    written by camcli looks like the dataset's own."""
    colors = []
    for c in range(n):
        rgb, bits = [0, 0, 0], c
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((bits >> channel) & 1) << shift
            bits >>= 3
        colors.append((rgb[0], rgb[1], rgb[2]))
    return colors


def concept_colors(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours, evenly spaced hues from red to magenta (as the gist_rainbow colours that
    pytorch-grad-cam's ``show_factorization_on_image`` gives DFF's concepts)."""
    import colorsys

    found = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb(0.83 * i / max(n, 1), 1.0, 1.0)
        found.append((round(r * 255), round(g * 255), round(b * 255)))
    return found


def concepts_picture(
    image: Image.Image,
    backdrop: Image.Image,
    index: np.ndarray,
    value: np.ndarray,
    colors: list[tuple[int, int, int]],
    seen: tuple[int, int, int, int],
    alpha: float = 0.5,
) -> Image.Image:
    """Every concept on one picture: each pixel in the colour of the concept whose map is strongest
    there (``index``), as bright as that map's value (``value``, in [0, 1]), blended over the image
    inside ``seen``; elsewhere ``backdrop``."""
    result = backdrop.copy()
    left, top, right, bottom = seen
    if right > left and bottom > top:
        palette = np.asarray(colors, dtype=np.float32).reshape(-1, 3)
        shade = np.empty((bottom - top, right - left, 3), dtype=np.uint8)
        for y in range(top, bottom, BAND):  # a band of rows at a time: float temporaries stay small
            rows = slice(y, min(y + BAND, bottom))
            lit = palette[index[rows, left:right]] * np.clip(value[rows, left:right], 0.0, 1.0)[..., None]
            shade[y - top : rows.stop - top] = (lit + 0.5).astype(np.uint8)
        blended = Image.blend(image.crop(seen), Image.fromarray(shade), alpha)
        result.paste(blended, (left, top))
    return result
