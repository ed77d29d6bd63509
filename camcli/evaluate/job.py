"""What ``camcli evaluate`` is asked to do: an explain job (top-5 at least) plus the ground truth, what to
compute and the gates. Light (no torch): usage errors are reported before heavy libraries load."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import methods
from ..errors import CamcliError
from ..job import ExplainJob
from ..methods.occlusion import Occlusion
from .gates import Gate

# The evaluate-only options, as the command line and config files name them (besides the gates).
EVALUATION_OPTIONS = (
    "annotations",
    "masks",
    "class_map",
    "loc_threshold",
    "tolerance",
    "faithfulness",
    "steps",
    "sanity",
    "road",
    "road_percentiles",
    "occlusion_correlation",
    "correlation_window",
    "correlation_stride",
    "cam_mult_image",
    "arcc",
)
ROAD_PERCENTILES = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)  # pytorch-grad-cam's ROADCombined
_OCCLUSION = {p.name: p.default for p in Occlusion.params}  # the occlusion correlation's defaults are the method's
CORRELATION_WINDOW, CORRELATION_STRIDE = int(_OCCLUSION["window"][0]), int(_OCCLUSION["stride"])


def parse_percentiles(specs: Iterable[str | float]) -> tuple[float, ...]:
    """``--road-percentiles`` (comma-separated, repeatable) as sorted distinct numbers in (0, 100); none
    given: pytorch-grad-cam's 10, 20, ..., 90."""
    found: set[float] = set()
    for spec in specs:
        for item in str(spec).split(","):
            try:
                value = float(item)
            except ValueError:
                raise CamcliError(f"--road-percentiles '{spec}' is not a list of numbers, e.g. 10,20,30.") from None
            if not (math.isfinite(value) and 0 < value < 100):
                raise CamcliError(f"--road-percentiles {item.strip()} is not a percentile between 0 and 100.")
            found.add(value)
    return tuple(sorted(found)) or ROAD_PERCENTILES


@dataclass(frozen=True)
class EvaluateJob:
    """One `camcli evaluate` run. With ``source`` (``--from``) nothing is explained: that folder's maps
    are read; the results go to ``explain.out`` (the source itself unless -o says otherwise)."""

    explain: ExplainJob
    annotations: Path | None = None
    masks: Path | None = None
    class_map: Path | None = None
    source: Path | None = None
    loc_threshold: float = 0.15
    tolerance: float = 15.0
    faithfulness: bool = False
    steps: int = 50
    sanity: bool = False
    road: bool = False
    road_percentiles: tuple[float, ...] = ROAD_PERCENTILES
    occlusion_correlation: bool = False
    correlation_window: int = CORRELATION_WINDOW
    correlation_stride: int = CORRELATION_STRIDE
    cam_mult_image: bool = False
    arcc: bool = False  # with ROAD's percentiles (road_percentiles)
    gates: tuple[Gate, ...] = ()

    @property
    def reruns_model(self) -> bool:
        """Whether a metric asked for runs the model again (on perturbed, masked or randomized inputs)."""
        asked = (self.faithfulness, self.sanity, self.road, self.occlusion_correlation, self.cam_mult_image, self.arcc)
        return any(asked)

    def __post_init__(self) -> None:
        if self.annotations is None and self.masks is None:
            raise CamcliError(
                "camcli evaluate needs ground truth: --annotations FILE (CSV, COCO JSON, a Pascal VOC "
                "folder) and/or --masks DIR."
            )
        if not 0 < self.loc_threshold < 1:
            raise CamcliError(f"--loc-threshold {self.loc_threshold} is outside (0, 1); the paper uses 0.15.")
        if self.steps < 2:
            raise CamcliError("--steps must be at least 2.")
        if not 1 <= self.correlation_stride <= self.correlation_window:
            raise CamcliError(
                f"--correlation-stride {self.correlation_stride} is not between 1 and --correlation-window "
                f"{self.correlation_window}: some pixels would never be occluded."
            )
        class_free = [m for m in self.explain.methods if methods.get(m).cls.concepts]
        if class_free:
            raise CamcliError(
                f"camcli evaluate scores a class's map against that class's ground truth, and {class_free[0]} "
                f"makes no map per class (its maps are concepts, named by classes after the fact). Evaluate a "
                f"class map method instead (--method gradcam, or another CAM), and look at {class_free[0]}'s "
                f"concepts with camcli explain and camcli report."
            )
        if self.explain.classes_from is not None:
            raise CamcliError(
                "camcli evaluate explains each image's ground-truth classes (from --annotations/--masks) already: "
                "drop --classes-from."
            )
        shard, runner = self.explain.shard, self.explain.runner
        if self.source is not None and shard is not None:
            raise CamcliError(
                "--shard splits the images to explain; --from reads a finished run whole. Drop --shard, or "
                "explain with --shard I/N and then run 'camcli merge OUT'."
            )
        if self.source is not None and runner != "local":
            raise CamcliError(f"--from explains nothing, so --runner {runner} has nothing to run. Drop --runner.")
        if self.sanity and shard is not None:
            raise CamcliError(
                "--sanity randomizes the model over the first images of the whole run, which one shard cannot "
                "see. Run the sanity check unsharded (or afterwards: camcli evaluate --from OUT --sanity)."
            )

    @property
    def out(self) -> Path:
        return self.explain.out
