"""The preprocessing a model expects, resolved as timm resolves it, and the user's overrides.

Precedence, as timm's: options (``--input-size``, ``--mean``, ...) > the model's pretrained config
(a timm model, a model folder's config.json, torchvision's weights) > timm's defaults (224 px, crop
0.875, bicubic, ImageNet mean and std). The geometry follows timm's eval transform for each crop mode:

- ``center``: resize the shorter side to size / crop_pct (square inputs; non-square ones keep the
  aspect ratio so the shorter side fits), then center-crop;
- ``squash``: resize each side to size / crop_pct, then center-crop;
- ``border``: resize so the longer side fits size / crop_pct, then center-crop or pad with the mean
  colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..choices import CROP_MODES
from ..errors import ModelError
from ..job import Preprocessing


@dataclass(frozen=True)
class DataConfig:
    """How to turn an image into the model's input: resize, crop (or pad), normalize."""

    input_size: tuple[int, int]  # (height, width) of the model input
    resize: tuple[int, int] | int  # int: the shorter side; (h, w): exact, or the keep-ratio target
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_mode: str = ""  # "shorter", "exact", "keep-ratio" (shorter side fits), "keep-ratio-longest"
    fill: tuple[int, ...] = (0, 0, 0)  # colour of padding where the crop passes the image
    crop_pct: float | None = None
    crop_mode: str | None = None
    source: str = "pretrained config"  # where it came from, for the record

    def __post_init__(self) -> None:
        if not self.resize_mode:
            object.__setattr__(self, "resize_mode", "shorter" if isinstance(self.resize, int) else "exact")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def describe(self) -> dict[str, Any]:
        """The "preprocess" record of explanation.json."""
        return {
            "source": self.source,
            "resize": self.resize if isinstance(self.resize, int) else list(self.resize),
            "resize_rule": {
                "shorter": "shorter side",
                "exact": "exact (height, width)",
                "keep-ratio": "aspect kept, shorter side fits (height, width)",
                "keep-ratio-longest": "aspect kept, longer side fits (height, width)",
            }[self.resize_mode],
            "interpolation": self.interpolation,
            "center_crop": list(self.input_size),
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            "mean": list(self.mean),
            "std": list(self.std),
            "channels": self.channels,
            **({"pad_fill": list(self.fill)} if self.resize_mode == "keep-ratio-longest" else {}),
        }


def from_timm_config(cfg: dict[str, Any], source: str) -> DataConfig:
    """A DataConfig from a timm data config (``resolve_data_config``'s dict)."""
    channels, h, w = cfg["input_size"]
    mean, std = tuple(float(v) for v in _values(cfg["mean"])), tuple(float(v) for v in _values(cfg["std"]))
    if len(mean) != channels or len(std) != channels:
        if len(mean) == 1 and len(std) == 1:
            mean, std = mean * channels, std * channels
        else:
            raise ModelError(
                f"The model takes {channels}-channel images but its mean/std have {len(mean)}/{len(std)} "
                f"values. Pass --mean and --std with {channels} value(s), e.g. --mean 0.5 --std 0.5."
            )
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    mode = cfg.get("crop_mode") or "center"
    if mode not in CROP_MODES:
        raise ModelError(f"Crop mode '{mode}' is not supported. Use one of {', '.join(CROP_MODES)}.")
    scaled = (math.floor(h / crop_pct), math.floor(w / crop_pct))
    interpolation = str(cfg.get("interpolation") or "bilinear")
    if mode == "squash":
        resize: tuple[int, int] | int = scaled
        rule = "exact"
    elif mode == "border":
        resize, rule = scaled, "keep-ratio-longest"
    elif scaled[0] == scaled[1]:
        resize, rule = scaled[0], "shorter"
    else:
        resize, rule = scaled, "keep-ratio"
    fill = tuple(round(255 * v) for v in mean) if mode == "border" else (0,) * channels
    return DataConfig((h, w), resize, interpolation, mean, std, rule, fill, crop_pct, mode, source)


def _values(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def resolve(model: Any, overrides: Preprocessing, has_config: bool, in_chans: int = 3) -> DataConfig:
    """The model's timm data config with ``overrides`` applied, timm's defaults where it has none.
    ``in_chans``: what the model's first convolution takes (1 for grayscale models)."""
    from timm.data.config import resolve_data_config

    args = overrides.as_timm_args()
    if overrides.input_size is not None:
        args["input_size"] = (in_chans, *overrides.input_size)
    args["in_chans"] = in_chans
    cfg = resolve_data_config(args, model=model)
    cfg["input_size"] = (in_chans, *cfg["input_size"][1:])
    source = "pretrained config" if has_config else "timm defaults (the model has no pretrained config)"
    if overrides.any:
        source += ", with " + ", ".join(overrides.given()) + " from the command line"
    return from_timm_config(cfg, source)


def torchvision_config(name: str, overrides: Preprocessing) -> DataConfig:
    """torchvision's weight transforms (resize the shorter side, center-crop), or timm's defaults for a
    model without weights; ``overrides`` as for timm models. Segmentation weights resize the shorter
    side to 520 and keep the whole image; camcli batches one size, so the image is letterboxed into a
    520×520 square (``border``): all of it is seen, its longer side fitting 520."""
    from .sources import tv_default_weights

    default = tv_default_weights(name)
    if default is None:
        cfg: dict[str, Any] = {
            "input_size": (3, 224, 224),
            "crop_pct": 0.875,
            "interpolation": "bilinear",
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
            "crop_mode": "center",
        }
        base = from_timm_config(cfg, "timm defaults (no torchvision weights for this model)")
    elif not hasattr(default.transforms(), "crop_size"):  # segmentation: the whole image, shorter side 520
        t = default.transforms()
        side, interpolation = int(t.resize_size[0]), t.interpolation.value
        base = whole_image(side, interpolation, tuple(t.mean), tuple(t.std), "torchvision weights")
    else:
        t = default.transforms()
        crop = t.crop_size[0]
        base = DataConfig(
            (crop, crop),
            t.resize_size[0],
            t.interpolation.value,
            tuple(t.mean),
            tuple(t.std),
            crop_pct=crop / t.resize_size[0],
            crop_mode="center",
            source="torchvision weights",
        )
    return overridden(base, overrides)


def overridden(base: DataConfig, overrides: Preprocessing) -> DataConfig:
    """``base`` with the command line's preprocessing options applied (geometry through timm's rules)."""
    import dataclasses

    if not overrides.any:
        return base
    geometry = {"input_size", "crop_pct", "crop_mode"} & {k for k, v in vars(overrides).items() if v is not None}
    if geometry:
        cfg = {
            "input_size": (3, *base.input_size),
            "crop_pct": base.crop_pct,
            "crop_mode": base.crop_mode,
            "interpolation": base.interpolation,
            "mean": base.mean,
            "std": base.std,
            **overrides.as_timm_args(),
        }
        return from_timm_config(cfg, base.source + ", with overrides from the command line")
    changed = {k: getattr(overrides, k) for k in ("mean", "std", "interpolation") if getattr(overrides, k) is not None}
    return dataclasses.replace(base, **changed, source=base.source + ", with overrides from the command line")


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SMP_SIDE = 512  # segmentation-models-pytorch's inputs: a multiple of 32; its usual training crop


def whole_image(
    side: int, interpolation: str, mean: tuple[float, ...], std: tuple[float, ...], source: str
) -> DataConfig:
    """A segmentation model's input: the whole image, letterboxed into side×side (``border``, crop 1)."""
    cfg = {
        "input_size": (3, side, side),
        "crop_pct": 1.0,
        "interpolation": interpolation,
        "mean": mean,
        "std": std,
        "crop_mode": "border",
    }
    return from_timm_config(cfg, f"{source} (whole image, letterboxed to a square)")


def smp_config(overrides: Preprocessing) -> DataConfig:
    """segmentation-models-pytorch models: ImageNet statistics (their encoders'), the whole image at 512."""
    base = whole_image(SMP_SIDE, "bilinear", IMAGENET_MEAN, IMAGENET_STD, "segmentation defaults")
    return overridden(base, overrides)
