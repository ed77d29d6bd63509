"""Independent computations that tests compare camcli's outputs with: written from the documented
definitions with OpenCV and NumPy (float64), sharing no code with camcli.

- A heat map as shown: the raw map upsampled bilinearly (half-pixel centres) to the model input, then
  min-max scaled to [0, 1].
- On the original image: each original pixel whose centre lies inside the recorded crop box samples the
  input-resolution map bilinearly at the corresponding point; pixels the model never saw are 0.
- An overlay: the jet colour of the map blended with the image (alpha) where the model looked; elsewhere
  the image dimmed to 35% brightness.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

DIM = 0.35


def upsample(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """h×w → size (height, width), bilinear with half-pixel centres (OpenCV's INTER_LINEAR)."""
    return cv2.resize(np.asarray(raw, np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR).astype(
        np.float64
    )


def min_max(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def seen(crop_box: tuple[float, ...], width: int, height: int) -> np.ndarray:
    """height×width: True where the pixel's centre lies inside the crop box."""
    x0, y0, x1, y1 = crop_box
    u, v = np.arange(width) + 0.5, np.arange(height) + 0.5
    return ((v >= y0) & (v <= y1))[:, None] & ((u >= x0) & (u <= x1))[None, :]


def sample(values: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear samples of an H×W array at pixel coordinates (centres at integers), clamped to its edges."""
    h, w = values.shape
    xs, ys = np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)
    xa, ya = np.floor(xs).astype(int), np.floor(ys).astype(int)
    xb, yb = np.minimum(xa + 1, w - 1), np.minimum(ya + 1, h - 1)
    fx, fy = xs - xa, ys - ya
    top = values[ya, xa] * (1 - fx) + values[ya, xb] * fx
    bottom = values[yb, xa] * (1 - fx) + values[yb, xb] * fx
    return top * (1 - fy) + bottom * fy


def on_original(input_map: np.ndarray, crop_box: tuple[float, ...], width: int, height: int) -> np.ndarray:
    """An input-resolution map placed on the original image through the crop box; 0 where unseen."""
    h, w = input_map.shape
    x0, y0, x1, y1 = crop_box
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xs = (u - x0) / (x1 - x0) * w - 0.5
    ys = (v - y0) / (y1 - y0) * h - 0.5
    return np.where(seen(crop_box, width, height), sample(input_map.astype(np.float64), xs, ys), 0.0)


def geometry(doc: dict[str, Any]) -> tuple[tuple[float, ...], tuple[int, int], int, int]:
    """(crop box, model input size (h, w), width, height) as an explanation.json records them."""
    crop = tuple(float(v) for v in doc["preprocess"]["crop_box"])
    size = (int(doc["model"]["input_size"][0]), int(doc["model"]["input_size"][1]))
    return crop, size, int(doc["source"]["width"]), int(doc["source"]["height"])


def full_map(raw: np.ndarray, doc: dict[str, Any]) -> np.ndarray:
    """The full-resolution heat map of a raw map, from the geometry its explanation.json records."""
    crop, size, width, height = geometry(doc)
    return on_original(min_max(upsample(raw, size)), crop, width, height)


def box_on_original(box: tuple[int, int, int, int], doc: dict[str, Any]) -> tuple[int, int, int, int]:
    """A model-input box (x1, y1 exclusive) as original pixels: its corners through the crop box, floor and
    ceil, clipped to the image."""
    (x0, y0, x1, y1), (h, w), width, height = geometry(doc)
    sx, sy = (x1 - x0) / w, (y1 - y0) / h
    return (
        min(max(math.floor(x0 + box[0] * sx), 0), width),
        min(max(math.floor(y0 + box[1] * sy), 0), height),
        min(max(math.ceil(x0 + box[2] * sx), 0), width),
        min(max(math.ceil(y0 + box[3] * sy), 0), height),
    )


def jet(heat: np.ndarray) -> np.ndarray:
    """OpenCV's jet colours (RGB, uint8) of values in [0, 1]."""
    index = np.round(np.clip(heat, 0, 1) * 255).astype(np.uint8)
    return cv2.applyColorMap(index, cv2.COLORMAP_JET)[..., ::-1]


def overlay(image: np.ndarray, heat: np.ndarray, crop_box: tuple[float, ...], alpha: float = 0.5) -> np.ndarray:
    """height×width×3 floats (0-255): the jet-coloured map blended over the image where the model looked,
    the image dimmed elsewhere."""
    image = image.astype(np.float64)
    blended = (1 - alpha) * image + alpha * jet(heat).astype(np.float64)
    inside = seen(crop_box, image.shape[1], image.shape[0])[..., None]
    return np.where(inside, blended, DIM * image)
