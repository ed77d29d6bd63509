"""Frozen records passed between the pipeline stages (discover → preprocess → engine → write)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

MAX_INPUT_SIDE = 4096  # model inputs: a larger one is a typo, not a model (one image is 200 MB at 4096²)
MAX_PIXELS = 1_000_000_000  # a recorded image beyond it is not one camcli explained (its full map: 4 GB)

if TYPE_CHECKING:  # only for annotations: discovering files must not import torch
    import numpy as np
    import torch
    from PIL import Image


@dataclass(frozen=True)
class ImageItem:
    """One input file, and where its outputs go relative to the output folder."""

    path: Path
    rel: PurePosixPath


@dataclass(frozen=True)
class SourceInfo:
    """What the input file was, recorded so a result can be traced to exact bytes."""

    path: str
    sha256: str
    width: int | None = None
    height: int | None = None
    mode: str | None = None


@dataclass(frozen=True)
class Geometry:
    """How the model input was cut from the original (EXIF-oriented) image.

    The model saw the region ``crop_box`` of the original image (float pixel coordinates,
    x0, y0, x1, y1), resampled to ``input_size`` (height, width). Any part of the original
    outside that box was never seen.
    """

    width: int
    height: int
    resized: tuple[int, int]  # (width, height) after the resize step
    crop_box: tuple[float, float, float, float]
    input_size: tuple[int, int]

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Geometry:
        """The geometry an ``explanation.json`` records (its source, model and preprocess sections),
        checked: it sizes what readers allocate, and the file may be hostile. Raises ValueError."""
        import math

        source, pre = doc["source"], doc["preprocess"]
        (rw, rh), (x0, y0, x1, y1), (ih, iw) = pre["resized_size"], pre["crop_box"], doc["model"]["input_size"]
        geometry = cls(
            int(source["width"]),
            int(source["height"]),
            (int(rw), int(rh)),
            (float(x0), float(y0), float(x1), float(y1)),
            (int(ih), int(iw)),
        )
        if not all(8 <= v <= MAX_INPUT_SIDE for v in geometry.input_size):
            raise ValueError(f"model.input_size {list(geometry.input_size)} is outside 8 to {MAX_INPUT_SIDE} pixels")
        if not (geometry.width >= 1 and geometry.height >= 1 and geometry.width * geometry.height <= MAX_PIXELS):
            raise ValueError(f"source size {geometry.width}×{geometry.height} is not an image camcli explained")
        if not (all(math.isfinite(v) for v in geometry.crop_box) and x1 > x0 and y1 > y0):
            raise ValueError(f"preprocess.crop_box {list(geometry.crop_box)} is not a box")
        return geometry

    def input_to_original(self, x: float, y: float) -> tuple[float, float]:
        """Map a point in model-input pixel coordinates to original-image coordinates."""
        x0, y0, x1, y1 = self.crop_box
        h, w = self.input_size
        return x0 + x * (x1 - x0) / w, y0 + y * (y1 - y0) / h


@dataclass(frozen=True)
class Prepared:
    """A decoded image ready for the model."""

    item: ImageItem
    source: SourceInfo
    image: Image.Image  # RGB, EXIF-oriented: what an image viewer shows
    tensor: torch.Tensor  # 3×H×W, normalized
    geometry: Geometry


@dataclass(frozen=True)
class Failure:
    """An input that could not be explained, and why."""

    item: ImageItem
    error_type: str
    message: str
    source: SourceInfo | None = None


@dataclass(frozen=True)
class Skipped:
    """An input whose outputs from an earlier run are complete and current (``--resume``)."""

    item: ImageItem
    doc: dict[str, Any]  # its explanation.json, as written then


@dataclass(frozen=True)
class Prediction:
    class_index: int
    label: str
    logit: float
    probability: float


@dataclass(frozen=True)
class ConceptClass:
    """One of the classes the model's classifier scores highest for a concept's vector."""

    class_index: int
    label: str
    score: float  # softmax probability of the classifier's outputs on the concept's vector


@dataclass(frozen=True)
class Explanation:
    """One (method, class) map for one image, or one concept's map of a class-free method (DFF: then
    ``class_index``, ``rank``, ``logit`` and ``probability`` are None). Tensors may live on the model's device."""

    method: str
    variant: str | None  # one of the method's variants (a layer of --layers-as separate, a window), or None
    class_index: int | None
    label: str
    rank: int | None  # position in the top-k, None for a user-chosen class
    logit: float | None
    probability: float | None
    raw_map: torch.Tensor  # heat maps: h×w (a layer's grid, or the input's); pixel methods: 3×H×W; unnormalized
    input_map: torch.Tensor  # heat maps: H×W in [0, 1]; pixel methods: 3×H×W RGB in [0, 1]
    bbox: tuple[int, int, int, int] | None  # original-image pixels; None if no box applies
    peak: tuple[int, int] | None  # original-image pixels; None for an all-zero map
    params: dict[str, Any] = field(default_factory=dict)  # what reproduces it: layers, window, rule, ...
    concept: int | None = None  # a class-free method's concept, numbered from 0
    concept_classes: tuple[ConceptClass, ...] | None = None  # its top classes; None when unnamed
    unnamed: str | None = None  # why the concept has no top classes


@dataclass(frozen=True)
class Area:
    """One class's share of a segmentation model's prediction on the original image."""

    class_index: int
    label: str
    pixels: int
    share: float  # of the pixels the model saw


@dataclass(frozen=True)
class Segmentation:
    """A segmentation model's prediction for one image, on the original image's pixels."""

    mask: np.ndarray  # height×width int32 class indices; UNSEEN where the model did not see the pixel
    areas: tuple[Area, ...]  # every predicted class, largest first


UNSEEN = -1


@dataclass(frozen=True)
class ImageResult:
    """Everything computed for one image, ready to be rendered and written."""

    prepared: Prepared
    predictions: tuple[Prediction, ...]
    explanations: tuple[Explanation, ...]
    segmentation: Segmentation | None = None
