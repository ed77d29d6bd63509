"""What a run is asked to do: frozen, picklable requests shared by the command line, the Python API and
every runner, and the checks that need no heavy library.

Everything here is plain data, so usage errors are reported before torch loads and a job can be
sent to other processes (Ray workers) as it is. Allowed values come from ``choices``, methods'
parameters from their declarations (``camcli.methods``), runners' from ``camcli.runners``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import methods, records, runners
from .choices import DEFAULT_SAVE, DEVICES, HEADS, LAYERS_AS, PRECISIONS, SAVE, SCORES, TASKS
from .errors import CamcliError

DEFAULT_MODEL = "tf_efficientnet_lite0"
DEFAULT_TOP_K = 3
MAX_INPUT_SIDE = records.MAX_INPUT_SIDE  # --input-size: a larger model input is a typo, not a model
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
        if self.input_size is not None:
            check_input_size(self.input_size, "--input-size")

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


def check_input_size(size: tuple[int, int], where: str) -> tuple[int, int]:
    """A model input of at least 8 and at most MAX_INPUT_SIDE pixels a side."""
    if min(size) < 8 or max(size) > MAX_INPUT_SIDE:
        raise CamcliError(
            f"{where} {size[0]}×{size[1]} is outside 8 to {MAX_INPUT_SIDE} pixels a side. "
            "Pass the size the model was trained at, e.g. --input-size 224 or 384x512."
        )
    return size


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
    task: str | None = None  # None: found from the model's outputs

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise CamcliError(f"Unknown head '{self.head}'. Use one of {', '.join(HEADS)}.")
        if self.task is not None and self.task not in TASKS:
            raise CamcliError(f"Unknown task '{self.task}'. Use one of {', '.join(TASKS)}, or leave --task out.")
        if self.num_classes is not None and (isinstance(self.num_classes, bool) or self.num_classes < 1):
            raise CamcliError(f"--num-classes {self.num_classes!r} must be a whole number of at least 1.")


@dataclass(frozen=True)
class ExplainJob:
    """One explain run (``camcli explain``, the explaining part of ``camcli evaluate``, the Python API).
    ``inputs`` are files and folders (stdin already read); the API's jobs have none."""

    inputs: tuple[Path, ...] = ()
    out: Path = Path("camcli-out")
    model: ModelSpec = field(default_factory=ModelSpec)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()  # none: the default layer
    layers_as: str = "average"  # several layers: "average" their scaled maps, or one map per layer ("separate")
    top_k: int | None = None  # None: DEFAULT_TOP_K, or 0 when classes or a threshold are given
    classes: tuple[str, ...] = ()  # indices or labels, resolved once the labels are known
    classes_from: Path | None = None  # a CSV path,class: each image's own classes to explain
    threshold: float | None = None  # also explain every class at least this probable
    methods: tuple[str, ...] = (methods.DEFAULT,)
    smooth: frozenset[str] = frozenset()  # "aug", "eigen"
    method_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # method → name → value
    device: str = "auto"
    batch_size: int = 8
    perturbation_batch: int | None = None  # perturbed forwards run together; None: by memory
    score: str = "logit"  # what a method explains: the class's logit, probability, or ReST score
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
    runner: str = runners.DEFAULT
    runner_params: Mapping[str, Any] = field(default_factory=dict)  # the runner's options, given ones

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.precision not in PRECISIONS:
            raise CamcliError(f"Unknown precision '{self.precision}'. Use one of {', '.join(PRECISIONS)}.")
        if self.precision == "fp16" and self.device == "cpu":
            raise CamcliError("--precision fp16 needs a GPU; on the CPU use --precision bf16 or fp32.")
        check_whole("batch-size", self.batch_size)
        if self.perturbation_batch is not None:
            check_whole("perturbation-batch", self.perturbation_batch)
        if self.workers is not None:
            check_whole("workers", self.workers)
        methods.check_methods(self.methods, self.smooth, self.method_params)
        if self.layers_as not in LAYERS_AS:
            raise CamcliError(f"Unknown --layers-as '{self.layers_as}'. Use one of {', '.join(LAYERS_AS)}.")
        class_free = [m for m in self.methods if methods.get(m).cls.concepts]
        if class_free and (self.smooth or self.layers_as == "separate"):
            given = f"--smooth {','.join(sorted(self.smooth))}" if self.smooth else "--layers-as separate"
            raise CamcliError(
                f"{given} does not apply to {class_free[0]}, which factorizes one target layer's activations of the "
                f"image itself (no augmented copies, no per-layer maps): explain {class_free[0]} in a run of its own "
                f"without {given.split()[0]}, and with one --layer."
            )
        if self.score not in SCORES:
            raise CamcliError(f"Unknown --score '{self.score}'. Use one of {', '.join(SCORES)}.")
        check_finite("alpha", self.alpha)
        if not 0.0 <= self.alpha <= 1.0:
            raise CamcliError(f"--alpha {self.alpha} is outside 0-1. Pass a value such as 0.5.")
        if self.threshold is not None and not (math.isfinite(self.threshold) and 0 <= self.threshold <= 1):
            raise CamcliError(f"--threshold {self.threshold} is not a probability. Pass a value in 0-1, e.g. 0.5.")
        runners.resolve_params(self.runner, self.runner_params)
        if self.top_k is not None:
            check_whole("top-k", self.top_k, low=0)
        if self.top_k == 0 and not self.classes and self.threshold is None and self.classes_from is None:
            raise CamcliError("Nothing to explain: --top-k 0 and no --class. Pass --top-k K or --class C.")

    @property
    def k(self) -> int:
        return top_k(
            self.top_k, self.classes or ((str(self.classes_from),) if self.classes_from else ()), self.threshold
        )

    @property
    def params(self) -> dict[str, dict[str, Any]]:
        """Every method's parameters, defaults filled in."""
        return methods.resolve_params(self.methods, self.method_params)

    @property
    def runner_options(self) -> dict[str, Any]:
        """The runner's parameters, defaults filled in."""
        return runners.resolve_params(self.runner, self.runner_params)


def top_k(given: int | None, classes: tuple[Any, ...], threshold: float | None) -> int:
    """How many of the most likely classes to explain: as given, else DEFAULT_TOP_K unless classes or a
    threshold say which to explain."""
    if given is not None:
        return given
    return 0 if classes or threshold is not None else DEFAULT_TOP_K


def parse_save(specs: tuple[str, ...] | list[str]) -> frozenset[str]:
    """Comma-separated, repeatable ``--save`` values → the optional outputs to write."""
    names = {n.strip().lower() for spec in specs for n in spec.split(",") if n.strip()}
    unknown = names - set(SAVE)
    if unknown:
        raise CamcliError(
            f"Unknown --save value(s): {', '.join(sorted(unknown))}. Use any of {','.join(SAVE)} "
            "(e.g. --save overlay,map,raw_map)."
        )
    return frozenset(names - {"json"}) if specs else DEFAULT_SAVE


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
    return check_input_size((size[0], size[1]), "--input-size")


def parse_floats(name: str, text: str) -> tuple[float, ...]:
    """``--mean``/``--std``: comma-separated numbers."""
    try:  # a TOML list in a config file arrives as its text: "[0.5, 0.5, 0.5]"
        return tuple(float(v) for v in text.strip("[]() ").split(","))
    except ValueError:
        raise CamcliError(f"--{name} '{text}' is not comma-separated numbers (e.g. 0.5,0.5,0.5).") from None


def check_device(spec: str) -> str:
    """The device's spelling, checked without torch (whether it exists is checked at run time)."""
    if not isinstance(spec, str) or not _DEVICE.match(spec):
        raise CamcliError(f"Unknown device '{spec}'. Use {DEVICES}.")
    return spec


def check_finite(name: str, value: float) -> float:
    """NaN and infinities pass range checks silently (every comparison is false): refuse them."""
    if not math.isfinite(value):
        raise CamcliError(f"--{name} must be a finite number, not {value}.")
    return value


def check_whole(name: str, value: Any, low: int = 1) -> int:
    """A whole number of at least ``low``; booleans and 2.5 are not whole numbers."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise CamcliError(f"--{name} {value!r} must be a whole number of at least {low}.")
    return value


__all__ = [
    "DEFAULT_MODEL",
    "ExplainJob",
    "ModelSpec",
    "Preprocessing",
    "check_input_size",
    "parse_save",
    "top_k",
]
