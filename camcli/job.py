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
DEFAULT_SAVE = frozenset({"overlay", "raw_map"})  # explanation.json is always written
PRECISIONS = ("fp32", "bf16", "fp16")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how: the name, where its weights come from, its labels."""

    name: str = DEFAULT_MODEL
    weights: Path | None = None
    num_classes: int | None = None
    labels_file: Path | None = None
    random_weights: bool = False


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

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.precision not in PRECISIONS:
            raise CamcliError(f"Unknown precision '{self.precision}'. Use one of {', '.join(PRECISIONS)}.")
        if self.precision == "fp16" and self.device == "cpu":
            raise CamcliError("--precision fp16 needs a GPU; on the CPU use --precision bf16 or fp32.")
        check_finite("alpha", self.alpha)
        if not 0.0 <= self.alpha <= 1.0:
            raise CamcliError(f"--alpha {self.alpha} is outside 0-1. Pass a value such as 0.5.")
        if self.smooth is not None:
            if self.smooth not in SMOOTHING:
                raise CamcliError(f"Unknown --smooth '{self.smooth}'. Use aug or eigen.")
            if not any(self.smooth in REGISTRY[m].smoothing for m in self.methods):
                fits = [m for m in REGISTRY if self.smooth in REGISTRY[m].smoothing]
                raise CamcliError(f"--smooth {self.smooth} applies to none of the methods asked for; it applies to "
                                  f"{', '.join(fits)}.")
        if self.occlusion_window < 1 or self.occlusion_stride < 1 or self.occlusion_stride > self.occlusion_window:
            raise CamcliError("--occlusion-stride must be between 1 and --occlusion-window (default 16 and 32), "
                              "so that the windows cover every pixel.")
        if self.top_k == 0 and not self.classes:
            raise CamcliError("Nothing to explain: --top-k 0 and no --class. Pass --top-k K or --class C.")

    @property
    def k(self) -> int:
        """How many of the most likely classes to explain."""
        return (0 if self.classes else 3) if self.top_k is None else self.top_k


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


__all__ = ["DEFAULT_MODEL", "DEFAULT_SAVE", "ExplainJob", "ModelSpec", "parse_methods", "parse_save"]
