"""Scores of one run's maps against ground truth, image by image, and their summary.

Every number of metrics.json is a summary of per-image records (one line of per_image.jsonl per
image): the ILSVRC localization outcomes of each annotated image and, per ground-truth class, its
pointing hit, energy share and box IoU; for each scored class (``scored_classes``) the complexity and
sparseness of its map (and, with ``--faithfulness``, ``--road``, ``--occlusion-correlation``,
``--cam-mult-image``, ``--arcc``, the values those add). ``summarize`` computes a method's metrics from
those lines alone, so a run, and the shards of a job array merged by ``camcli merge``, give the same
metrics.json from the same lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import outputs
from ..errors import CamcliError
from ..records import Geometry
from . import annotations as gt
from . import metrics
from .schema import Box
from .truth import Image

Line = dict[str, Any]  # one image's line of per_image.jsonl


def heat_methods(images: Sequence[Image]) -> list[str]:
    """The heat-map methods the outputs hold, in the order explained."""
    found: dict[str, None] = {}
    for image in images:
        for entry in outputs.entries(image.doc):
            if outputs.is_heat_map(entry):
                found[outputs.key_of(entry)] = None
    if not found and any(outputs.concept_entries(image.doc) for image in images):
        raise CamcliError(
            "The outputs hold only class-free concept maps (dff), which have no class to score against the "
            "ground truth. Explain with --method gradcam (or another CAM) to evaluate."
        )
    if not found:
        raise CamcliError(
            "The outputs hold no heat-map explanation to evaluate (pixel-space methods such as "
            "guided-backprop have no map to box). Explain with --method gradcam (or another CAM)."
        )
    return list(found)


def input_heat(image: Image, entry: dict[str, Any]) -> np.ndarray | None:
    """The map at model-input resolution, upsampled from the raw map but not rescaled (the locator);
    None when the entry saved no raw map. A raw map that is not a finite 2-D array is a ValueError."""
    import torch

    from ..maps import upsample

    name = (entry.get("files") or {}).get("raw_map")
    if not isinstance(name, str):
        return None
    raw = torch.from_numpy(outputs.load_map(image.folder / name, 2))
    return upsample(raw[None], input_size(image.doc))[0].numpy()


def scored_classes(image: Image) -> tuple[int, ...]:
    """The classes an image's maps are measured for by the metrics that need no ground truth (complexity,
    sparseness, ROAD, occlusion correlation, CamMult, ARCC): its ground-truth classes, else its top-1 class."""
    if image.classes:
        return image.classes
    predictions = image.doc.get("predictions") or []
    return (int(predictions[0]["class_index"]),) if predictions else ()


def input_size(doc: dict[str, Any]) -> tuple[int, int]:
    """The model input size an explanation.json records, checked (``Geometry.from_doc``): it sizes what is
    allocated. Raises ValueError (or KeyError, TypeError) for a record that is not camcli's."""
    return Geometry.from_doc(doc).input_size


def line_of(lines: dict[str, Line], image: Image) -> Line:
    return lines.setdefault(image.path, {"path": image.path, "methods": {}})


def record(line: Line, method: str, by_class: dict[str, dict[str, Any]]) -> None:
    """Add per-class values of one method to an image's line: every class's under "by_class", the first
    ground-truth class's also at the top (what the report sorts and filters by)."""
    found = line["methods"].setdefault(method, {"by_class": {}})
    for cls, values in by_class.items():
        found["by_class"].setdefault(cls, {}).update(values)
    if found["by_class"]:
        first = next(iter(found["by_class"]))
        found.update({"class": int(first), **found["by_class"][first]})
    hits = [v["pointing_hit"] for m in line["methods"].values() for v in m["by_class"].values() if "pointing_hit" in v]
    if hits:
        line["pointing_hit"] = all(hits)


def score_method(
    images: Sequence[Image],
    method: str,
    lines: dict[str, Line],
    loc_threshold: float,
    tolerance: float,
    max_pixels: int,
) -> dict[str, str]:
    """Classification, localization and pointing games of one method, into each annotated image's line.
    An image whose own files cannot be used (a raw map missing or not a map, a broken record) is not
    scored: the result maps its path to why."""
    problems: dict[str, str] = {}
    for image in images:
        if not image.ok or not image.classes:
            continue
        try:
            _score_image(image, method, lines, loc_threshold, tolerance, max_pixels)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            problems[image.path] = f"{image.folder / outputs.EXPLANATION}: {exc}"
    return problems


def _score_image(
    image: Image, method: str, lines: dict[str, Line], loc_threshold: float, tolerance: float, max_pixels: int
) -> None:
    import torch

    from ..maps import box_on_original, input_map, to_original

    geometry = Geometry.from_doc(image.doc)
    boxes: dict[int, list[Box]] = {c: [] for c in image.classes}
    masks: dict[int, list[np.ndarray]] = {c: [] for c in image.classes}
    for cls, obj in image.objects:
        if obj.box is not None:
            boxes[cls].append(obj.box)
        if obj.mask is not None:
            size = (geometry.width, geometry.height)
            masks[cls].append(gt.load_mask(obj.mask, size, str(image.rel), max_pixels))
    heats: dict[int, np.ndarray | None] = {}
    map_boxes: dict[int, tuple[int, int, int, int] | None] = {}
    for explained in outputs.entries(image.doc):
        if outputs.key_of(explained) != method:
            continue
        heat = heats[explained["class_index"]] = input_heat(image, explained)
        if heat is None:
            continue
        found = metrics.localization_box(heat, loc_threshold)
        map_boxes[explained["class_index"]] = box_on_original(found, geometry) if found else None
    predictions = image.doc.get("predictions") or []
    predicted = [p["class_index"] for p in predictions if isinstance(p, dict)][:5]
    case = metrics.LocalizationCase({c: boxes[c] for c in image.classes}, predicted, map_boxes)
    by_class: dict[str, dict[str, Any]] = {}
    for cls in image.classes:
        entry = outputs.find(image.doc, method, cls)
        if entry is None or not (boxes[cls] or masks[cls]):
            continue
        mask = np.logical_or.reduce(masks[cls]) if masks[cls] else None
        peak = entry.get("peak")
        hit = metrics.pointing_hit(tuple(peak) if peak else None, boxes[cls], mask, tolerance)
        heat = heats.get(cls)
        full = (
            to_original(input_map(torch.from_numpy(heat)[None], heat.shape), geometry)[0].numpy()
            if heat is not None
            else None
        )
        region = metrics.region_mask((geometry.height, geometry.width), boxes[cls], masks[cls])
        by_class[str(cls)] = {
            "pointing_hit": hit,
            "energy": metrics.energy_share(full, region) if full is not None else None,
            "iou": _best_iou(map_boxes.get(cls), boxes[cls]),
        }
    line = line_of(lines, image)
    record(line, method, by_class)
    line["methods"][method]["localization"] = metrics.case_outcomes(case)


def map_statistics(images: Sequence[Image], method: str, lines: dict[str, Line]) -> dict[str, str]:
    """Complexity and sparseness (``metrics``) of each scored class's map at model-input resolution, into
    the image's line; like ``score_method``, the images whose files cannot be used, with why."""
    problems: dict[str, str] = {}
    for image in images:
        if not image.ok:
            continue
        try:
            heats = {}
            for cls in scored_classes(image):
                entry = outputs.find(image.doc, method, cls)
                heat = input_heat(image, entry) if entry is not None else None
                if heat is not None:
                    heats[cls] = heat
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            problems[image.path] = f"{image.folder / outputs.EXPLANATION}: {exc}"
            continue
        if not heats:
            continue
        stacked = np.stack(list(heats.values()))
        values = zip(heats, metrics.complexity(stacked), metrics.sparseness(stacked), strict=True)
        record(
            line_of(lines, image),
            method,
            {str(cls): {"complexity": entropy, "sparseness": gini} for cls, entropy, gini in values},
        )
    return problems


def _best_iou(found: tuple[int, int, int, int] | None, boxes: Sequence[Box]) -> float | None:
    if found is None or not boxes:
        return None
    return float(metrics.iou_matrix(found, boxes).max())


def summarize(
    lines: Sequence[Line],
    method: str,
    faithfulness: bool,
    road: bool = False,
    occlusion_correlation: bool = False,
    cam_mult_image: bool = False,
    arcc: bool = False,
) -> dict[str, float | None]:
    """One method's metrics from the images' lines (keys: ``schema.METRICS``), in line order; the flags
    say which optional measures were asked for (absent otherwise)."""
    entries = [line["methods"][method] for line in lines if method in line.get("methods", {})]
    values = [v for e in entries for v in e.get("by_class", {}).values()]
    pointed = [v for v in values if "pointing_hit" in v]
    found = metrics.localization_from_outcomes([e["localization"] for e in entries if "localization" in e])
    found["pointing_game"] = metrics.share(v["pointing_hit"] for v in pointed)
    found["energy_pointing_game"] = metrics.mean(v["energy"] for v in pointed)
    for key in ("complexity", "sparseness"):
        found[key] = metrics.mean(v[key] for v in values if key in v)
    if faithfulness:
        faithful = [v for v in values if "deletion_auc" in v]
        y = [v["confidence"] for v in faithful]
        o = [v["confidence_masked"] for v in faithful]
        found["deletion_auc"] = metrics.mean(v["deletion_auc"] for v in faithful)
        found["insertion_auc"] = metrics.mean(v["insertion_auc"] for v in faithful)
        found["average_drop_pct"] = metrics.average_drop(y, o)
        found["increase_in_confidence_pct"] = metrics.increase_in_confidence(y, o)
    if road:
        for key in ("road_morf", "road_lerf", "road_combined"):
            found[key] = metrics.mean(v[key] for v in values if key in v)
    if occlusion_correlation:
        found["occlusion_correlation"] = metrics.mean(
            v["occlusion_correlation"] for v in values if "occlusion_correlation" in v
        )
    if cam_mult_image:
        changes = [v["cam_mult_change"] for v in values if "cam_mult_change" in v]
        found["cam_mult_confidence_change"] = metrics.mean(changes)
        found["cam_mult_drop_in_confidence"] = metrics.drop_in_confidence(changes)
        found["cam_mult_increase_in_confidence"] = metrics.share(c > 0 for c in changes)
    if arcc:
        parts = [v for v in values if "arcc" in v]
        found["arcc"] = metrics.mean(v["arcc"] for v in parts)
        found["arcc_complexity"] = metrics.mean(v["arcc_complexity"] for v in parts)
        found["arcc_coherency"] = metrics.mean(v["arcc_coherency"] for v in parts)
        found["arcc_road"] = metrics.mean(metrics.arcc_road(v["road_combined"]) for v in parts)
    return found
