"""What a run is asked to do: a frozen, picklable description shared by the command line, the
Python API and every runner, and the checks that need no heavy library.

Everything here is plain data, so usage errors are reported before torch loads and a job can be
sent to other processes (Ray workers) as it is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CamcliError
from .methods import REGISTRY, SMOOTHING, parse_methods

DEFAULT_MODEL = "tf_efficientnet_lite0"
SAVE_CHOICES = ("overlay", "map", "raw_map", "json")
HEADS = ("softmax", "sigmoid", "binary")  # as camcli.heads, which imports torch
DEFAULT_SAVE = frozenset({"overlay", "raw_map"})  # explanation.json is always written
PRECISIONS = ("fp32", "bf16", "fp16")
ENGINES = ("local", "ray")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Preprocessing:
    """Overrides of the model's preprocessing (None keeps the model's own), checked without torch."""

    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    crop_mode: str | None = None

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None and (len(values) not in (1, 3) or not all(math.isfinite(v) for v in values)):
                raise CamcliError(f"--{name} takes 1 or 3 finite numbers (e.g. --{name} 0.485,0.456,0.406).")
        if self.std is not None and any(v <= 0 for v in self.std):
            raise CamcliError("--std values must be positive.")
        if self.crop_pct is not None and not (math.isfinite(self.crop_pct) and 0 < self.crop_pct <= 1.5):
            raise CamcliError(f"--crop-pct {self.crop_pct} is outside (0, 1.5]; timm uses e.g. 0.875 or 1.0.")
        if self.input_size is not None and min(self.input_size) < 8:
            raise CamcliError("--input-size must be at least 8 pixels a side.")

    def given(self) -> tuple[str, ...]:
        return tuple(f"--{k.replace('_', '-')}" for k, v in vars(self).items() if v is not None)

    def as_timm_args(self) -> dict[str, object]:
        """As timm's ``resolve_data_config`` args (input_size gets the model's channels from the caller)."""
        args: dict[str, object] = {k: v for k, v in vars(self).items() if v is not None and k != "input_size"}
        if self.input_size is not None:
            args["input_size"] = (3, *self.input_size)
        return args

    @property
    def any(self) -> bool:
        return any(v is not None for v in vars(self).values())


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how: the name, where its weights come from, its head, labels and
    preprocessing."""

    name: str = DEFAULT_MODEL
    weights: Path | None = None
    num_classes: int | None = None
    labels_file: Path | None = None
    random_weights: bool = False
    ema: bool = False
    head: str = "softmax"
    preprocess: Preprocessing = field(default_factory=Preprocessing)


@dataclass(frozen=True)
class ExplainJob:
    """One `camcli explain` run. ``inputs`` are files and folders (stdin already read)."""

    inputs: tuple[Path, ...]
    out: Path = Path("camcli-out")
    model: ModelSpec = field(default_factory=ModelSpec)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()  # none: the default layer
    top_k: int | None = None  # None: 3, or 0 when classes are named
    classes: tuple[str, ...] = ()  # indices or labels, resolved once the labels are known
    threshold: float | None = None  # also explain every class at least this probable
    methods: tuple[str, ...] = ("gradcam",)
    smooth: str | None = None  # "aug" | "eigen"
    occlusion_window: int = 32
    occlusion_stride: int = 16
    device: str = "auto"
    batch_size: int = 8
    workers: int | None = None
    precision: str = "fp32"
    save: frozenset[str] = DEFAULT_SAVE
    overlay_format: str = "png"
    colormap: str = "jet"
    alpha: float = 0.5
    max_pixels: int = 100_000_000
    resume: bool = True
    quiet: bool = False
    json_lines: bool = False
    config: str | None = None
    shard: tuple[int, int] | None = None  # (I, N): the I-th of N parts of the input list
    engine: str = "local"  # "local" | "ray"
    ray_address: str | None = None
    ray_workers: tuple[int, int] | None = None  # (min, max) actors
    ray_gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        check_engine(
            self.methods,
            self.smooth,
            self.occlusion_window,
            self.occlusion_stride,
            self.batch_size,
            self.precision,
            self.device,
        )
        check_finite("alpha", self.alpha)
        if not 0.0 <= self.alpha <= 1.0:
            raise CamcliError(f"--alpha {self.alpha} is outside 0-1. Pass a value such as 0.5.")
        if self.threshold is not None and not (math.isfinite(self.threshold) and 0 <= self.threshold <= 1):
            raise CamcliError(f"--threshold {self.threshold} is not a probability. Pass a value in 0-1, e.g. 0.5.")
        if self.model.head not in HEADS:
            raise CamcliError(f"Unknown head '{self.model.head}'. Use one of {', '.join(HEADS)}.")
        if self.engine not in ENGINES:
            raise CamcliError(f"Unknown engine '{self.engine}'. Use local or ray.")
        if self.ray_workers is not None and not 1 <= self.ray_workers[0] <= self.ray_workers[1]:
            raise CamcliError("--ray-workers takes MIN,MAX with 1 <= MIN <= MAX (e.g. 1,4), or one number.")
        if self.top_k == 0 and not self.classes and self.threshold is None:
            raise CamcliError("Nothing to explain: --top-k 0 and no --class. Pass --top-k K or --class C.")

    @property
    def k(self) -> int:
        """How many of the most likely classes to explain: 3 unless classes or a threshold are given."""
        return (0 if self.classes or self.threshold is not None else 3) if self.top_k is None else self.top_k


def parse_save(specs: tuple[str, ...] | list[str]) -> frozenset[str]:
    """Comma-separated, repeatable ``--save`` values → the optional outputs to write."""
    names = {n.strip().lower() for spec in specs for n in spec.split(",") if n.strip()}
    unknown = names - set(SAVE_CHOICES)
    if unknown:
        raise CamcliError(
            f"Unknown --save value(s): {', '.join(sorted(unknown))}. Use any of {','.join(SAVE_CHOICES)} "
            "(e.g. --save overlay,map,raw_map)."
        )
    return frozenset(names - {"json"}) if specs else DEFAULT_SAVE


def check_engine(
    methods: tuple[str, ...],
    smooth: str | None,
    occlusion_window: int,
    occlusion_stride: int,
    batch_size: int,
    precision: str,
    device: str,
) -> None:
    """The checks every entry point (command line, Python API) makes before any work."""
    check_device(device)
    if precision not in PRECISIONS:
        raise CamcliError(f"Unknown precision '{precision}'. Use one of {', '.join(PRECISIONS)}.")
    if precision == "fp16" and device == "cpu":
        raise CamcliError("--precision fp16 needs a GPU; on the CPU use --precision bf16 or fp32.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CamcliError(f"--batch-size {batch_size!r} must be a whole number of at least 1.")
    if smooth is not None:
        if smooth not in SMOOTHING:
            raise CamcliError(f"Unknown --smooth '{smooth}'. Use aug or eigen.")
        if not any(smooth in REGISTRY[m].smoothing for m in methods):
            fits = [m for m in REGISTRY if smooth in REGISTRY[m].smoothing]
            raise CamcliError(
                f"--smooth {smooth} applies to none of the methods asked for; it applies to {', '.join(fits)}."
            )
    if (
        not all(isinstance(v, int) and not isinstance(v, bool) for v in (occlusion_window, occlusion_stride))
        or occlusion_window < 1
        or not 1 <= occlusion_stride <= occlusion_window
    ):
        raise CamcliError(
            "--occlusion-stride must be between 1 and --occlusion-window (default 16 and 32), "
            "so that the windows cover every pixel."
        )


def parse_size(text: str) -> tuple[int, int]:
    """``--input-size``: N or HxW."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2:
        raise CamcliError(f"--input-size '{text}' is not N or HxW (e.g. 384 or 384x512).")
    return size[0], size[1]


def parse_floats(name: str, text: str) -> tuple[float, ...]:
    """``--mean``/``--std``: comma-separated numbers."""
    try:  # a TOML list in a config file arrives as its text: "[0.5, 0.5, 0.5]"
        return tuple(float(v) for v in text.strip("[]() ").split(","))
    except ValueError:
        raise CamcliError(f"--{name} '{text}' is not comma-separated numbers (e.g. 0.5,0.5,0.5).") from None


def check_device(spec: str) -> str:
    """The device's spelling, checked without torch (whether it exists is checked at run time)."""
    if not _DEVICE.match(spec):
        raise CamcliError(f"Unknown device '{spec}'. Use auto, cpu, cuda, cuda:N or mps.")
    return spec


def check_finite(name: str, value: float) -> float:
    """NaN and infinities pass range checks silently (every comparison is false): refuse them."""
    if not math.isfinite(value):
        raise CamcliError(f"--{name} must be a finite number, not {value}.")
    return value


__all__ = ["DEFAULT_MODEL", "DEFAULT_SAVE", "ExplainJob", "ModelSpec", "Preprocessing", "parse_methods", "parse_save"]
