"""The Python API: the engine behind ``camcli explain``, for notebooks and scripts.

    from camcli.api import Explainer

    explainer = Explainer("resnet50", weights="resnet50.pth", methods=["gradcam", "occlusion"], occlusion_window=16)
    for image in explainer.explain(["cat.jpg", "dog.png"], top_k=3):
        for exp in image.explanations:
            print(exp.method, exp.label, exp.bbox)   # exp.raw, exp.map, exp.full_map()

A model is a name (as ``--model``) or your own ``nn.Module``; images are paths, PIL images, HxWx3
uint8 arrays, or tensors already preprocessed for the model (3×H×W or B×3×H×W). A module you pass is
left exactly as it was: not moved, not switched to eval mode for good, no hook left behind.

Methods' parameters are keywords named as the command line's options: ``--occlusion-window 16`` is
``occlusion_window=16``, a plugin's ``--toycam-power 2`` is ``toycam_power=2.0``. The explainer is
set up as ``camcli explain`` sets up a run (``camcli.session.resolve``), so its maps equal the CLI's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from . import methods as registry
from .errors import CamcliError
from .heads import Head
from .job import DEFAULT_MODEL, ExplainJob, ModelSpec, Preprocessing, check_device
from .job import top_k as resolve_top_k
from .maps import to_original
from .models import DataConfig, LoadedModel, ModelRef, count_outputs, load_spec, module_data_config, read_labels
from .outputs import entry_key
from .pipeline import explain_batch
from .preprocess import decode, to_input, to_rgb
from .records import Failure, Geometry, ImageItem, ImageResult, Prepared, SourceInfo
from .session import Session, resolve, resolve_device
from .targets import Targets, resolve_class
from .writer import result_doc

ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class MethodMap:
    """One (method, class) explanation of one image, on the CPU; or one concept of a class-free method
    (``dff``: ``class_index``, ``logit`` and ``probability`` None, ``concept`` its number, ``concept_classes``
    its top classes as (class index, label, score), or None with ``unnamed`` saying why)."""

    method: str
    class_index: int | None
    label: str
    rank: int | None  # place in the top-k; None for a class asked for by name or index
    logit: float | None
    probability: float | None
    bbox: tuple[int, int, int, int] | None  # original-image pixels, x1/y1 exclusive
    peak: tuple[int, int] | None
    params: dict[str, Any]
    raw: np.ndarray  # heat maps: h×w unnormalized; pixel methods: 3×H×W
    map: np.ndarray  # at the model input: H×W in [0, 1], or 3×H×W RGB in [0, 1]
    geometry: Geometry
    variant: str | None = None  # one of the method's variants (a layer of layers_as="separate", a window)
    concept: int | None = None
    concept_classes: tuple[tuple[int, str, float], ...] | None = None
    unnamed: str | None = None

    def full_map(self) -> np.ndarray:
        """The map on the original image (height×width, or 3×height×width for pixel methods)."""
        placed = to_original(torch.from_numpy(self.map - (0.5 if self.map.ndim == 3 else 0.0))[None], self.geometry)[0]
        return (placed + (0.5 if self.map.ndim == 3 else 0.0)).numpy()


@dataclass(frozen=True)
class ImageExplanation:
    """Everything explained for one image: its predictions, its maps and its JSON-ready record."""

    source: str
    predictions: tuple[tuple[int, str, float, float], ...]  # (class index, label, logit, probability), top 5
    explanations: tuple[MethodMap, ...]
    record: dict[str, Any]  # as explanation.json, without files
    # Segmentation models: each original pixel's predicted class (height×width int32, -1 where unseen);
    # record["segmentation"]["areas"] has each class's area.
    segmentation: np.ndarray | None = None

    def get(self, method: str, class_index: int, variant: str | None = None) -> MethodMap:
        for exp in self.explanations:
            if (exp.method, exp.class_index, exp.variant) == (method, class_index, variant):
                return exp
        raise KeyError(f"no {entry_key(method, variant)} map for class {class_index}")

    def concepts(self, method: str = "dff") -> tuple[MethodMap, ...]:
        """A class-free method's maps, one per concept, in concept order."""
        return tuple(exp for exp in self.explanations if exp.method == method and exp.concept is not None)


class Explainer:
    """Explain images with one model and a set of methods (see ``camcli explain --help`` for each option)."""

    def __init__(
        self,
        model: str | nn.Module = DEFAULT_MODEL,
        *,
        weights: str | Path | None = None,
        num_classes: int | None = None,
        labels: Sequence[str] | str | Path | None = None,
        random_weights: bool = False,
        layers: Sequence[str] | str = (),
        layers_as: str = "average",
        methods: Sequence[str] = (registry.DEFAULT,),
        device: str | None = None,
        batch_size: int = 8,
        perturbation_batch: int | None = None,
        score: str = "logit",
        precision: str = "fp32",
        smooth: str | Sequence[str] | None = None,
        data: DataConfig | None = None,
        head: str = "softmax",
        ema: bool = False,
        preprocess: Preprocessing | None = None,
        task: str | None = None,
        **method_options: Any,
    ) -> None:
        options = dict(method_options)
        given = registry.split_options(options)
        if options:
            known = [p.keyword(i.name) for i in registry.registry().values() for p in i.params]
            raise CamcliError(
                f"Unknown keyword '{next(iter(options))}'. Methods' options are: {', '.join(known) or 'none'}."
            )
        labels_file = Path(labels) if isinstance(labels, (str, Path)) else None
        spec = ModelSpec(
            model if isinstance(model, str) else DEFAULT_MODEL,
            Path(weights) if weights else None,
            num_classes,
            labels_file,
            random_weights,
            ema,
            head,
            preprocess or Preprocessing(),
            task,
        )
        self.job = ExplainJob(
            model=spec,
            layers=(layers,) if isinstance(layers, str) else tuple(layers),
            layers_as=layers_as,
            methods=registry.parse_methods(list(methods)),
            smooth=registry.parse_smoothing(smooth),
            method_params=given,
            device=check_device(device or "auto"),
            batch_size=batch_size,
            perturbation_batch=perturbation_batch,
            score=score,
            precision=precision,
        )
        if isinstance(model, nn.Module):
            loaded = _own_module(model, labels, data, head, task)
        else:
            loaded = load_spec(spec)
            if labels is not None and not isinstance(labels, (str, Path)):
                loaded = dataclasses.replace(loaded, labels=_checked_labels(labels, loaded.num_classes))
            if data is not None:
                loaded = dataclasses.replace(loaded, data=data)
            device_ = resolve_device(self.job.device)
            if precision == "fp16" and device_.type == "cpu":
                raise CamcliError("--precision fp16 needs a GPU; on the CPU use --precision bf16 or fp32.")
            loaded.model.to(device_)
        self.session: Session = resolve(self.job, loaded)
        self.loaded = self.session.loaded
        self.layers = self.session.layers
        self.device = self.session.device

    @property
    def methods(self) -> tuple[str, ...]:
        return self.session.methods

    @property
    def labels(self) -> tuple[str, ...]:
        return self.loaded.labels

    def explain(
        self,
        images: ImageLike | Iterable[ImageLike],
        *,
        top_k: int | None = None,
        classes: Sequence[int | str] = (),
        threshold: float | None = None,
        methods: Sequence[str] | None = None,
    ) -> list[ImageExplanation]:
        """Explain ``images`` for their ``top_k`` classes (default 3, or 0 with ``classes`` or ``threshold``),
        ``classes`` (indices or labels) and every class at least ``threshold`` probable, with ``methods``
        (default: those given to the constructor)."""
        chosen = tuple(dict.fromkeys(resolve_class(str(c), self.loaded.labels) for c in classes))
        k = resolve_top_k(top_k, chosen, threshold)
        if k == 0 and not chosen and threshold is None:
            raise CamcliError("Nothing to explain: top_k=0 and no classes or threshold.")
        session = self.session
        if methods:
            session = session.with_methods(registry.parse_methods(list(methods)))
        session = session.with_targets(Targets(chosen, min(k, self.loaded.num_classes), threshold, self.loaded.head))
        prepared = [self._prepare(image, i) for i, image in enumerate(_as_list(images))]
        results: list[ImageExplanation] = []
        size = session.job.batch_size
        with session.explainer() as explainer:
            for start in range(0, len(prepared), size):
                batch = prepared[start : start + size]
                for result in explain_batch(explainer, session, batch):
                    if isinstance(result, Failure):
                        raise CamcliError(result.message)
                    results.append(self._wrap(result, session))
        return results

    def _prepare(self, image: ImageLike, index: int) -> Prepared:
        data = self.loaded.data
        if isinstance(image, torch.Tensor):
            if image.dim() != 3 or tuple(image.shape[-2:]) != data.input_size:
                raise CamcliError(
                    f"Tensor {index} has shape {list(image.shape)}; pass 3×{data.input_size[0]}×"
                    f"{data.input_size[1]} tensors preprocessed for the model, or images."
                )
            h, w = data.input_size
            geometry = Geometry(w, h, (w, h), (0.0, 0.0, float(w), float(h)), (h, w))
            shown = (
                image.detach().float().cpu() * torch.tensor(data.std)[:, None, None]
                + torch.tensor(data.mean)[:, None, None]
            )
            rgb = (
                Image.fromarray((shown.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
                if shown.shape[0] == 3
                else Image.new("RGB", (w, h))
            )
            source = SourceInfo(f"<tensor {index}>", "", w, h, "tensor")
            return Prepared(
                ImageItem(Path(f"tensor-{index}"), PurePosixPath(f"tensor-{index}")),
                source,
                rgb,
                image.detach().float().cpu(),
                geometry,
            )
        if isinstance(image, (str, Path)):
            rgb, mode = decode(Path(image))
            name = str(image)
        elif isinstance(image, (Image.Image, np.ndarray)):
            # As files are: EXIF orientation applied, 16-bit and float images scaled rather than clipped.
            picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
            mode, name = picture.mode, f"<{'image' if isinstance(image, Image.Image) else 'array'} {index}>"
            rgb = to_rgb(ImageOps.exif_transpose(picture))
        else:
            raise CamcliError(
                f"Cannot explain an object of type {type(image).__name__}: pass paths, PIL images, arrays or tensors."
            )
        tensor, geometry = to_input(rgb, data)
        source = SourceInfo(name, "", rgb.width, rgb.height, mode)
        return Prepared(ImageItem(Path(name), PurePosixPath(Path(name).name)), source, rgb, tensor, geometry)

    def _wrap(self, result: ImageResult, session: Session) -> ImageExplanation:
        geometry = result.prepared.geometry
        maps = tuple(
            MethodMap(
                e.method,
                e.class_index,
                e.label,
                e.rank,
                e.logit,
                e.probability,
                e.bbox,
                e.peak,
                e.params,
                e.raw_map.cpu().numpy(),
                e.input_map.cpu().numpy(),
                geometry,
                e.variant,
                e.concept,
                None
                if e.concept_classes is None
                else tuple((c.class_index, c.label, c.score) for c in e.concept_classes),
                e.unnamed,
            )
            for e in result.explanations
        )
        predictions = tuple((p.class_index, p.label, p.logit, p.probability) for p in result.predictions)
        record = result_doc(result, session.ctx)
        if result.segmentation is None:
            return ImageExplanation(result.prepared.source.path, predictions, maps, record)
        record["segmentation"] = {"areas": record["segmentation"]["areas"]}  # no file: the mask is below
        return ImageExplanation(result.prepared.source.path, predictions, maps, record, result.segmentation.mask)


def _as_list(images: ImageLike | Iterable[ImageLike]) -> list[ImageLike]:
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return list(images)
    if isinstance(images, (str, Path, Image.Image, np.ndarray, torch.Tensor)):
        return [images]
    return list(images)


def _checked_labels(labels: Sequence[str], n: int) -> tuple[str, ...]:
    if len(labels) != n:
        raise CamcliError(f"{len(labels)} labels given but the model has {n} classes.")
    return tuple(str(label) for label in labels)


def _own_module(
    model: nn.Module, labels: Sequence[str] | str | Path | None, data: DataConfig | None, head: str, task: str | None
) -> LoadedModel:
    """A caller's module as a loaded model: its outputs counted by one probe, timm's default
    preprocessing unless ``data`` says otherwise."""
    ref = ModelRef("module", type(model).__name__)
    data = data or module_data_config(model)
    outputs, found = count_outputs(model, data, ref, task)
    the_head = Head(head, found)
    n = the_head.classes(outputs)
    if isinstance(labels, (str, Path)):
        names = read_labels(Path(labels), n)
    elif labels is not None:
        names = _checked_labels(labels, n)
    else:
        names = ("negative", "positive") if head == "binary" else tuple(f"class_{i}" for i in range(n))
    return LoadedModel(ref, model, "caller's module", names, data, the_head, "caller's module")


__all__ = ["Explainer", "ImageExplanation", "MethodMap"]
