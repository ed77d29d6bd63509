"""Decode an image and cut the model input from it exactly as the model's eval transform does.

The resize / center-crop arithmetic mirrors torchvision's ``Resize`` and ``CenterCrop`` on PIL
images (which timm's and torchvision's eval transforms use), and also returns the geometry so
maps can be placed back on the original image.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .digest import sha256_of
from .discover import printable
from .errors import ImageError
from .models import DataConfig
from .records import Failure, Geometry, ImageItem, Prepared, Skipped, SourceInfo

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


# camcli applies its own pixel limit (--max-pixels) to each image from its header; PIL's global
# one would otherwise warn below it and refuse, with its own message, above twice its value.
Image.MAX_IMAGE_PIXELS = None
DEFAULT_MAX_PIXELS = 100_000_000
HUGE_RESIZE = 8  # resized image over 8× the crop's area: resample the crop alone


def decode(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, str]:
    """Open an image as RGB the way a viewer shows it (EXIF orientation applied; an animation's
    first frame). Images over ``max_pixels`` are refused from the header, before decoding.

    Returns the image and its original mode.
    """
    try:
        with Image.open(path) as opened:
            mode = opened.mode
            if opened.width * opened.height > max_pixels:
                pixels = opened.width * opened.height
                raise ImageError(
                    f"Image {printable(path)} has {opened.width}×{opened.height} = {pixels:,} pixels, "
                    f"over the limit of {max_pixels:,} (a decompression-bomb guard). Raise --max-pixels to allow it."
                )
            rgb = to_rgb(ImageOps.exif_transpose(opened))
            rgb.load()
    except FileNotFoundError as exc:
        raise ImageError(f"File not found: {printable(path)}") from exc
    except PermissionError as exc:
        raise ImageError(f"Permission denied reading {printable(path)}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"Not a readable image (format not recognised): {printable(path)}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"Corrupt or truncated image {printable(path)}: {exc}") from exc
    return rgb, mode


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img.copy()
    if img.mode in ("P", "PA") and "transparency" in img.info:
        img = img.convert("RGBA")  # then like any RGBA: alpha dropped, as torchvision's loader does
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Scale 16/32-bit integer and float grayscale to 8 bits instead of clipping it.
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1e-12)
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def resized_size(width: int, height: int, data: DataConfig | tuple[int, int] | int) -> tuple[int, int]:
    """(width, height) after the resize step: torchvision's Resize (an int sets the shorter side, a
    pair is exact) or timm's ResizeKeepRatio (the aspect kept, the shorter or longer side fitting)."""
    resize, mode = (
        (data.resize, data.resize_mode)
        if isinstance(data, DataConfig)
        else (data, "shorter" if isinstance(data, int) else "exact")
    )
    if isinstance(resize, int):
        if width <= height:
            return resize, int(resize * height / width)
        return int(resize * width / height), resize
    if mode == "exact":
        return resize[1], resize[0]
    ratio_h, ratio_w = height / resize[0], width / resize[1]
    ratio = max(ratio_h, ratio_w) if mode == "keep-ratio-longest" else min(ratio_h, ratio_w)
    return round(width / ratio), round(height / ratio)


def _crop_start(resized: int, crop: int) -> int:
    """torchvision's CenterCrop (and timm's CenterCropOrPad): pad (crop − resized) // 2 before when the
    image is smaller, else start at round((resized − crop) / 2)."""
    return -((crop - resized) // 2) if crop > resized else round((resized - crop) / 2.0)


def geometry_for(width: int, height: int, data: DataConfig) -> tuple[Geometry, tuple[int, int, int, int]]:
    """The geometry, and the crop box in resized-image pixels (may extend past it: padding)."""
    rw, rh = resized_size(width, height, data)
    ch, cw = data.input_size
    left, top = _crop_start(rw, cw), _crop_start(rh, ch)
    sx, sy = rw / width, rh / height
    crop_box = (left / sx, top / sy, (left + cw) / sx, (top + ch) / sy)
    return Geometry(width, height, (rw, rh), crop_box, (ch, cw)), (left, top, left + cw, top + ch)


def to_input(rgb: Image.Image, data: DataConfig) -> tuple[torch.Tensor, Geometry]:
    """Resize, center-crop (or pad) and normalize one RGB image into a C×H×W float tensor; a
    one-channel model gets its luminance (Pillow's ``convert("L")``)."""
    geometry, box = geometry_for(rgb.width, rgb.height, data)
    source = rgb.convert("L") if data.channels == 1 else rgb
    resample = _RESAMPLE.get(data.interpolation, Image.Resampling.BILINEAR)
    x0, y0, x1, y1 = geometry.crop_box
    resized_area = geometry.resized[0] * geometry.resized[1]
    inside = x0 >= 0 and y0 >= 0 and x1 <= rgb.width and y1 <= rgb.height
    if inside and resized_area > HUGE_RESIZE * (box[2] - box[0]) * (box[3] - box[1]):
        # A thin strip (1×5000 would resize to 256×1,280,000): resample only the crop, same pixel
        # centres and filter, equal to resize-then-crop within one grey level.
        cropped = source.resize((box[2] - box[0], box[3] - box[1]), resample, box=geometry.crop_box)
    else:  # bit-identical to the model's own transform
        resized = source.resize(geometry.resized, resample)
        if inside or not any(data.fill):
            cropped = resized.crop(box)  # past the image edge: zero padding, as torchvision's CenterCrop
        else:  # timm's border mode pads with the mean colour
            fill = data.fill[0] if data.channels == 1 else tuple(data.fill)
            cropped = Image.new(resized.mode, (box[2] - box[0], box[3] - box[1]), fill)
            cropped.paste(resized, (-box[0], -box[1]))
    arr: np.ndarray = np.asarray(cropped, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr = (arr - np.asarray(data.mean, np.float32)) / np.asarray(data.std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), geometry


def prepare(
    item: ImageItem,
    data: DataConfig,
    done: Callable[[ImageItem, str], dict[str, Any] | None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Prepared | Failure | Skipped:
    """Decode and preprocess one item; an unusable file becomes a Failure, never an exception.

    ``done(item, sha256)`` may return the item's finished explanation.json: it is then not decoded.
    """
    try:
        if not stat.S_ISREG(os.stat(item.path).st_mode):  # a FIFO or device would block or never end
            return Failure(item, "ImageError", f"Not a regular file: {printable(item.path)}")
        digest = sha256_of(item.path)
    except OSError as exc:
        reason = "Permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
        return Failure(item, "ImageError", f"Cannot read {printable(item.path)}: {reason}")
    previous = done(item, digest) if done else None
    if previous is not None:
        return Skipped(item, previous)
    source = SourceInfo(printable(item.path), digest)
    try:
        rgb, mode = decode(item.path, max_pixels)
        tensor, geometry = to_input(rgb, data)
    except ImageError as exc:
        return Failure(item, "ImageError", str(exc), source)
    except Exception as exc:  # whatever a decoder throws, it fails this image only
        return Failure(item, type(exc).__name__, f"Cannot use {printable(item.path)}: {exc}", source)
    source = SourceInfo(printable(item.path), digest, rgb.width, rgb.height, mode)
    return Prepared(item=item, source=source, image=rgb, tensor=tensor, geometry=geometry)
