"""Faithfulness of a method's maps, measured by running the model again on each image:

- ``--faithfulness``, for each image's ground-truth class (its top-1 class when it has none): deletion and
  insertion AUC (Petsiuk et al. 2018), and the confidences behind average drop and increase in confidence
  (Chattopadhyay et al. 2018). See ``metrics`` for the maths.
- ``--road``, for each scored class (``scoring.scored_classes``): ROAD (``road``).
- ``--occlusion-correlation``, for each scored class: the Grad-CAM paper's measure (§5.3), Spearman's ρ
  between the map and the occlusion map of the same image and class, made by camcli's own ``occlusion``
  method once per image for all its classes and shared by every method.
- ``--cam-mult-image``, for each scored class: pytorch-grad-cam's CamMultImageConfidenceChange, the change
  of the class's probability when the normalized input is multiplied by the map.
- ``--arcc``, for each scored class: pytorch-grad-cam's ARCC, from the map's L1 complexity, its coherency
  (the method run again on the input multiplied by the map) and ROAD.

The images are read again from their source path; one whose bytes no longer match the sha256 its
explanation.json records is not scored (another picture at that path would be scored against these
maps), and is counted as changed. ROAD, the occlusion correlation, CamMult and ARCC compute each image on
its own, in the same batches whatever else is evaluated, so a shard of a job array records, bit for bit,
the values a whole run would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import outputs
from ..digest import sha256_of
from ..errors import CamcliError, ImageError, StopRequested
from ..heads import logits_of
from ..maps import input_map
from ..preprocess import decode, to_input
from . import metrics
from . import road as road_metric
from .scoring import Line, input_heat, line_of, record, scored_classes
from .truth import Image

if TYPE_CHECKING:
    from ..explainer import Explained
    from ..params import Value
    from ..session import Session

CHUNK = 16  # (image, map, class) triples scored together: about 4 images each in memory


def explained_class(image: Image) -> int:
    """The class faithfulness is measured for: the image's ground-truth class, else its top-1."""
    return image.classes[0] if image.classes else int(image.doc["predictions"][0]["class_index"])


def inputs(images: Sequence[Image], session: Session, changed: list[str]) -> Iterator[tuple[Image, torch.Tensor]]:
    """Each usable image's model input, read again from its source; ``changed`` collects the images
    whose source is gone or no longer the bytes that were explained."""
    for image in images:
        if not image.ok or not image.doc.get("predictions"):
            continue
        path = image.source
        try:
            same = sha256_of(path) == image.doc["source"].get("sha256") and outputs.is_regular(path)
            if not same:
                changed.append(image.path)
                continue
            rgb, _ = decode(path, session.job.max_pixels)
        except (OSError, ImageError):
            changed.append(image.path)
            continue
        yield image, to_input(rgb, session.loaded.data)[0]


def head_probabilities(session: Session) -> Callable[[torch.Tensor], torch.Tensor]:
    """Every class's probability under the model's head, for a batch of model inputs (N×C, on the
    model's device)."""
    loaded, device = session.loaded, session.device
    model = loaded.model.eval()

    def forward(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return loaded.head.probabilities(loaded.head.scores(logits_of(model(batch.to(device))).float()))

    return forward


def probabilities(session: Session) -> metrics.ClassScoreFn:
    """The explained classes' probabilities under the model's head, for batches of model inputs."""
    forward, device = head_probabilities(session), session.device

    def score(batch: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return forward(batch).gather(1, classes.to(device)[:, None])[:, 0].cpu()

    return score


def faithfulness(
    images: Sequence[Image],
    method: str,
    session: Session,
    steps: int,
    lines: dict[str, Line],
    stop: threading.Event | None = None,
) -> list[str]:
    """Each image's deletion/insertion AUC and confidences for ``method``, into its line; the images
    that could not be scored because their source changed. Stops between chunks once ``stop`` is set."""
    score = probabilities(session)
    changed: list[str] = []
    chunk: list[tuple[Image, int, torch.Tensor, torch.Tensor]] = []
    for image, x in inputs(images, session, changed):
        cls = explained_class(image)
        heat = _input_map(image, method, cls)
        if heat is None:
            continue
        chunk.append((image, cls, x, heat))
        if len(chunk) == CHUNK:
            _score(chunk, method, score, session, steps, lines)
            chunk = []
            if stop is not None and stop.is_set():
                return changed
    if chunk:
        _score(chunk, method, score, session, steps, lines)
    return changed


def _score(
    chunk: list[tuple[Image, int, torch.Tensor, torch.Tensor]],
    method: str,
    score: metrics.ClassScoreFn,
    session: Session,
    steps: int,
    lines: dict[str, Line],
) -> None:
    data, batch = session.loaded.data, session.job.batch_size
    x = torch.stack([c[2] for c in chunk])
    heats = torch.stack([c[3] for c in chunk])
    classes = torch.tensor([c[1] for c in chunk])
    curves = metrics.deletion_insertion_many(score, x, heats, classes, steps, batch_size=batch)
    y = metrics.class_scores(score, x, classes, batch)
    o = metrics.class_scores(score, metrics.masked_by_map(x, heats, data.mean, data.std), classes, batch)
    for (image, cls, _, _), curve, yi, oi in zip(chunk, curves, y, o, strict=True):
        values = {
            "deletion_auc": curve.deletion_auc,
            "insertion_auc": curve.insertion_auc,
            "confidence": float(yi),
            "confidence_masked": float(oi),
        }
        record(line_of(lines, image), method, {str(cls): values})


def _heat(image: Image, method: str, cls: int) -> np.ndarray | None:
    """The method's map of the class at model-input resolution, unscaled; None without one (a raw map
    that is not one was reported by scoring already)."""
    entry = outputs.find(image.doc, method, cls)
    try:
        return input_heat(image, entry) if entry else None
    except ValueError:
        return None


def _input_map(image: Image, method: str, cls: int) -> torch.Tensor | None:
    """``_heat`` scaled to [0, 1], as deletion, insertion and ROAD take it (the map as shown)."""
    heat = _heat(image, method, cls)
    return None if heat is None else input_map(torch.from_numpy(heat)[None], heat.shape)[0]


def road(
    images: Sequence[Image],
    method: str,
    session: Session,
    percentiles: Sequence[float],
    lines: dict[str, Line],
    stop: threading.Event | None = None,
) -> list[str]:
    """ROAD's LeRF, MoRF and combined values of ``method`` for each scored (image, class), into the lines;
    the images whose source changed. Stops between two (image, class) pairs once ``stop`` is set."""
    score = probabilities(session)
    changed: list[str] = []
    for image, x in inputs(images, session, changed):
        for cls in scored_classes(image):
            heat = _input_map(image, method, cls)
            if heat is None:
                continue
            found = road_metric.road(
                score, x.to(session.device), heat, cls, percentiles, batch_size=session.job.batch_size
            )
            values = {"road_morf": found.morf, "road_lerf": found.lerf, "road_combined": found.combined}
            record(line_of(lines, image), method, {str(cls): values})
            if stop is not None and stop.is_set():
                return changed
    return changed


def _scored_maps(image: Image, method: str) -> dict[int, torch.Tensor]:
    """``_input_map`` of each scored class of the image that has one, by class."""
    found = {cls: _input_map(image, method, cls) for cls in scored_classes(image)}
    return {cls: heat for cls, heat in found.items() if heat is not None}


def cam_mult_image(
    images: Sequence[Image],
    method: str,
    session: Session,
    lines: dict[str, Line],
    stop: threading.Event | None = None,
) -> list[str]:
    """pytorch-grad-cam's CamMultImageConfidenceChange of ``method`` for each scored (image, class): the
    class's probability on the normalized input multiplied by the map minus on the input, into the lines;
    the images whose source changed. One forward per image of it and its products (each image on its own,
    so shards record what a whole run does); stops between images once ``stop`` is set."""
    forward = head_probabilities(session)
    changed: list[str] = []
    for image, x in inputs(images, session, changed):
        heats = _scored_maps(image, method)
        if not heats:
            continue
        x = x.to(session.device)
        maps = torch.stack(list(heats.values())).to(session.device)
        probs = forward(torch.cat([x[None], metrics.multiplied_by_map(x[None], maps)]))
        classes = torch.tensor(list(heats), device=probs.device)
        change = (probs[1:].gather(1, classes[:, None])[:, 0] - probs[0, classes]).cpu()
        by_class = {str(cls): {"cam_mult_change": float(c)} for cls, c in zip(heats, change, strict=True)}
        record(line_of(lines, image), method, by_class)
        if stop is not None and stop.is_set():
            return changed
    return changed


def arcc(
    images: Sequence[Image],
    method: str,
    session: Session,
    percentiles: Sequence[float],
    lines: dict[str, Line],
    stop: threading.Event | None = None,
) -> list[str]:
    """pytorch-grad-cam's ARCC of ``method`` for each scored (image, class), with its three parts, into the
    lines; the images whose source changed. Coherency explains the normalized input multiplied by each map
    again, with the method as the session runs it (it must be as the run explained it: else a usage
    error); ROAD is ``road``'s, taken from the line when ``--road`` computed it already. Each image on its
    own; stops between (image, class) pairs once ``stop`` is set."""
    from .. import methods as registry

    name = next((e["method"] for i in images for e in outputs.entries(i.doc) if outputs.key_of(e) == method), None)
    if name is None:  # no image holds a map of it
        return []
    if name not in registry.names():
        raise CamcliError(
            f"--arcc explains {name} again, and this camcli has no method of that name (a plugin not installed "
            "here?). Install it, or drop --arcc."
        )
    score = probabilities(session)
    changed: list[str] = []
    with session.with_methods((name,)).explainer(stop) as explain:
        for image, x in inputs(images, session, changed):
            heats = _scored_maps(image, method)
            if not heats:
                continue
            x = x.to(session.device)
            maps = torch.stack(list(heats.values()))
            classes = torch.tensor(list(heats), device=session.device)[:, None]
            try:
                found = explain(metrics.multiplied_by_map(x[None], maps.to(session.device)), _always(classes))
            except StopRequested:
                return changed
            again = _rerun_maps(found, image, method, next(iter(heats)))
            complexities = metrics.arcc_complexity(maps.numpy())
            line = line_of(lines, image)
            for k, cls in enumerate(heats):
                done = line["methods"].get(method, {}).get("by_class", {}).get(str(cls), {})
                road = done.get("road_combined")  # computed by --road already: the same number
                if road is None:
                    batch = session.job.batch_size
                    road = road_metric.road(score, x, maps[k], cls, percentiles, batch_size=batch).combined
                coherent = metrics.coherency(again[k], maps[k].numpy())
                values = {
                    "arcc": metrics.arcc(complexities[k], coherent, road),
                    "arcc_complexity": complexities[k],
                    "arcc_coherency": coherent,
                    "road_combined": road,
                }
                record(line, method, {str(cls): values})
                if stop is not None and stop.is_set():
                    return changed
    return changed


def _rerun_maps(found: Explained, image: Image, method: str, cls: int) -> np.ndarray:
    """The maps (K×H×W in [0, 1]) that ARCC's coherency compares with; a usage error unless they were made
    as the run made the image's (its entry's ``params``: layers, score, the method's parameters)."""
    maps = found.maps.get(method)
    entry = outputs.find(image.doc, method, cls) or {}
    mine = None if maps is None else json.loads(outputs.json_text(maps.params))
    if maps is None or mine != entry.get("params"):
        raise CamcliError(
            f"--arcc explains {method} again for its coherency, but {image.path} was explained with "
            f"{entry.get('params')} and this evaluation would explain it with {mine}. Pass the run's options "
            "(--layer, --layers-as, --score, --smooth, the method's own)."
        )
    return maps.display[:, 0].float().cpu().numpy()


def _always(classes: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A class chooser that picks ``classes`` whatever the scores."""
    return lambda scores: classes


def occlusion_params(window: int, stride: int, input_size: tuple[int, int]) -> dict[str, dict[str, Value]]:
    """The occlusion method's parameters for ``--correlation-window`` and ``--correlation-stride``, checked
    against the model's input size (call it before explaining: a window too large is a usage error)."""
    from .. import methods as registry

    if window > min(input_size):
        raise CamcliError(
            f"--correlation-window {window} is larger than the model input ({input_size[0]}×{input_size[1]}): every "
            f"window would cover the whole image. Pass at most {min(input_size)}."
        )
    return registry.resolve_params(("occlusion",), {"occlusion": {"window": (str(window),), "stride": stride}})


def occlusion_correlation(
    images: Sequence[Image],
    methods: Sequence[str],
    session: Session,
    window: int,
    stride: int,
    lines: dict[str, Line],
    stop: threading.Event | None = None,
) -> list[str]:
    """Spearman's ρ between each method's map (the raw map upsampled to the model input) and the occlusion
    map (``window``, ``stride``; the score the maps explain) of each scored (image, class), into the lines;
    the images whose source changed. Stops between images, and between forwards of one, once ``stop`` is
    set."""
    from ..explainer import BatchExplainer

    input_size = session.loaded.data.input_size
    params = occlusion_params(window, stride, input_size)
    explainer = BatchExplainer(
        session.loaded.model,
        tuple(info.site for info in session.layers),
        params,
        input_size,
        head=session.loaded.head,
        batch_size=session.perturbation_batch,
        channels_last=session.channels_last,
        autocast=session.autocast,
        stop=stop,
        score=session.job.score,
    )
    changed: list[str] = []
    with explainer as explain:
        for image, x in inputs(images, session, changed):
            classes = [c for c in scored_classes(image) if any(outputs.find(image.doc, m, c) for m in methods)]
            if not classes:
                continue
            try:
                found = explain(x[None].to(session.device), _always(torch.tensor([classes], device=session.device)))
                occluded = found.maps["occlusion"].raw[0]
            except StopRequested:
                return changed
            references = occluded.float().cpu().numpy()
            for method in methods:
                by_class = {}
                for k, cls in enumerate(classes):
                    heat = _heat(image, method, cls)
                    if heat is not None:
                        by_class[str(cls)] = {"occlusion_correlation": metrics.spearman(heat, references[k])}
                if by_class:
                    record(line_of(lines, image), method, by_class)
            if stop is not None and stop.is_set():
                return changed
    return changed
