"""``camcli compare``: how much two ``camcli explain`` runs over the same images differ.

Images are paired by their source path, then, among those left over, by their folder under the
output folder (the same data set explained from another place). For each pair the top-1 classes are
compared, and the heat maps of every (method, class) that both runs explained: Spearman's ρ of the
maps, IoU of their masks at 15% of the max, IoU of their boxes. An image's headline figures compare
the top-1 maps of one method, A's top-1 against B's even when the classes differ.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import outputs
from ..errors import CamcliError
from ..maps import BOX_THRESHOLD
from . import metrics

SCHEMA_VERSION = 1
Doc = dict[str, Any]


@dataclass(frozen=True)
class _Image:
    path: str  # the source path, as the run recorded it
    rel: str  # its folder under the run's output folder
    folder: Path
    doc: Doc  # its explanation.json ({} if unreadable)
    error: str | None  # why the image failed, or None


def _read_run(run: Path) -> list[_Image]:
    """The images of a run (``outputs.RunFolder``): a missing or unreadable explanation.json, or one that
    records a failure, makes its image failed in this run."""
    folder = outputs.RunFolder(run)
    if not folder.exists() or (folder.run_record() is None and not (run / outputs.SUMMARY).exists()):
        raise CamcliError(
            f"'{run}' is not a camcli explain output folder: it has no readable run.json or summary.jsonl. "
            "Pass the --out folder of a camcli explain run."
        )
    images = []
    for image in folder.images():
        doc = image.doc or {}
        line = image.line or {}
        error = image.problem or (line.get("error") if isinstance(line.get("error"), str) else None)
        if image.doc is None and image.problem is None:
            error = f"no {outputs.EXPLANATION} in {image.folder}"
        failed = doc.get("status") != "ok"
        if failed and error is None and isinstance(doc.get("error"), dict):
            error = str(doc["error"].get("message"))
        images.append(
            _Image(image.path, image.rel.as_posix(), image.folder, doc, (error or "failed") if failed else None)
        )
    return images


Pair = tuple[_Image, _Image]


def _pair(images_a: list[_Image], images_b: list[_Image]) -> tuple[list[Pair], list[_Image], list[_Image]]:
    """Pairs by source path, then the rest by output folder; and the images of one run only."""
    pairs: list[Pair] = []
    left_a, left_b = images_a, images_b
    for key in ("path", "rel"):
        by_key = {getattr(i, key): i for i in left_b}
        matched = [(a, by_key[getattr(a, key)]) for a in left_a if getattr(a, key) in by_key]
        pairs += matched
        used_a, used_b = {id(a) for a, _ in matched}, {id(b) for _, b in matched}
        left_a = [a for a in left_a if id(a) not in used_a]
        left_b = [b for b in left_b if id(b) not in used_b]
    return pairs, left_a, left_b


def _top1(doc: Doc) -> dict[str, Any] | None:
    predictions = doc.get("predictions")
    best = predictions[0] if isinstance(predictions, list) and predictions else None
    return None if not isinstance(best, dict) else {k: best.get(k) for k in ("class_index", "label", "probability")}


def _heat_methods(pairs: list[Pair]) -> list[str]:
    """Methods explained in both runs whose maps are heat maps, in run A's order."""
    first: dict[str, dict[str, Any]] = {}
    in_b: set[str] = set()
    for a, b in pairs:
        for exp in outputs.entries(a.doc):
            first.setdefault(outputs.key_of(exp), exp)
        in_b.update(outputs.key_of(e) for e in outputs.entries(b.doc))
    return [m for m, exp in first.items() if m in in_b and outputs.is_heat_map(exp)]


def _raw(image: _Image, exp: dict[str, Any]) -> npt.NDArray[Any] | None:
    name = exp.get("files", {}).get("raw_map")
    return None if not isinstance(name, str) else outputs.load_map(image.folder / name, 2)


def _full(image: _Image, exp: dict[str, Any]) -> npt.NDArray[Any] | None:
    """The map on the original image: rebuilt from the raw map, or the saved full map."""
    from ..rebuild import full_map

    files = exp.get("files", {})
    if "raw_map" in files:
        return full_map(image.folder / outputs.EXPLANATION, exp)
    return outputs.load_map(image.folder / files["map"], 2) if isinstance(files.get("map"), str) else None


def _geometry(doc: Doc) -> tuple[Any, Any]:
    return doc["model"]["input_size"], doc["preprocess"]["crop_box"]


def _maps(a: _Image, exp_a: dict[str, Any], b: _Image, exp_b: dict[str, Any]) -> tuple[Any, Any, str] | str:
    """The two maps on a common grid and its name ("input" or "original"), or why they cannot be compared.

    At model-input resolution when both runs cut the same crop at the same input size (maps rebuilt
    from the raw maps as camcli shows them); otherwise both are placed back on the original image."""
    import torch

    from ..maps import input_map
    from ..records import Geometry

    Geometry.from_doc(a.doc), Geometry.from_doc(b.doc)  # checked: they size what is allocated below
    raw_a, raw_b = _raw(a, exp_a), _raw(b, exp_b)
    if raw_a is not None and raw_b is not None and _geometry(a.doc) == _geometry(b.doc):
        size = tuple(a.doc["model"]["input_size"])
        # Raw maps may differ in resolution (a layer's grid, or the input's for --smooth aug): each alone.
        up_a, up_b = (input_map(torch.from_numpy(raw.astype(np.float32))[None], size)[0] for raw in (raw_a, raw_b))
        return up_a.numpy(), up_b.numpy(), "input"
    full_a, full_b = _full(a, exp_a), _full(b, exp_b)
    if full_a is None or full_b is None:
        return "no raw_map or map file saved (explain with --save raw_map)"
    if full_a.shape != full_b.shape:
        (ha, wa), (hb, wb) = full_a.shape, full_b.shape
        return f"the images differ in size ({wa}×{ha} and {wb}×{hb})"
    return full_a, full_b, "original"


def _similarity(
    map_a: npt.NDArray[Any], map_b: npt.NDArray[Any], box_a: Any, box_b: Any, threshold: float
) -> dict[str, float]:
    """Spearman's ρ, mask IoU and box IoU. Two empty maps agree fully (1.0 each); an empty map against
    a non-empty one shares no ranking (ρ = 0) and no box (0)."""
    flat_a, flat_b = bool(np.ptp(map_a) == 0), bool(np.ptp(map_b) == 0)
    rho = float(flat_a and flat_b) if flat_a or flat_b else metrics.spearman(map_a, map_b)
    overlap = metrics.mask_iou(map_a, map_b, threshold)
    if box_a is None or box_b is None:
        boxes = float(box_a is None and box_b is None)
    else:
        boxes = metrics.iou(box_a, box_b)
    return {"spearman": rho or 0.0, "mask_iou": 1.0 if overlap is None else overlap, "box_iou": boxes}


def _compare(a: _Image, exp_a: dict[str, Any], b: _Image, exp_b: dict[str, Any], threshold: float) -> dict[str, Any]:
    try:
        loaded = _maps(a, exp_a, b, exp_b)
    except ValueError as exc:  # a saved map that is not a map: this pair cannot be compared
        loaded = str(exc)
    found: dict[str, Any] = {
        "method": outputs.key_of(exp_a),
        "class_a": exp_a["class_index"],
        "class_b": exp_b["class_index"],
    }
    if isinstance(loaded, str):
        return {**found, "spearman": None, "mask_iou": None, "box_iou": None, "note": loaded}
    map_a, map_b, grid = loaded
    return {**found, **_similarity(map_a, map_b, exp_a.get("bbox"), exp_b.get("bbox"), threshold), "resolution": grid}


def _same_class_maps(a: _Image, b: _Image, methods: list[str], threshold: float) -> list[dict[str, Any]]:
    """Every (method, class) heat map that both runs explained, compared."""
    found = []
    for exp_a in outputs.entries(a.doc):
        key = outputs.key_of(exp_a)
        exp_b = outputs.find(b.doc, key, exp_a["class_index"]) if key in methods else None
        if exp_b is not None:
            found.append(_compare(a, exp_a, b, exp_b, threshold))
    return found


def _image_entry(a: _Image, b: _Image, methods: list[str], primary: str | None, threshold: float) -> dict[str, Any]:
    """An image's headline: the top-1 maps of ``primary`` (A's top-1 against B's when they differ); if
    a run lacks its top-1 map (e.g. --class without --top-k), the first same-class pair of ``primary``."""
    maps = _same_class_maps(a, b, methods, threshold)
    top_a, top_b = _top1(a.doc), _top1(b.doc)
    class_a, class_b = (None if t is None else t["class_index"] for t in (top_a, top_b))
    entry = {
        "path": a.path,
        "a": os.path.abspath(a.folder),
        "b": os.path.abspath(b.folder),
        "top1_a": top_a,
        "top1_b": top_b,
        "top1_changed": class_a != class_b,
        "method": primary,
        "spearman": None,
        "mask_iou": None,
        "box_iou": None,
    }
    mine = [m for m in maps if m["method"] == primary]
    head = next((m for m in mine if m["class_a"] == class_a), None) if class_a == class_b else None
    if head is None and class_a != class_b and primary is not None:
        head_a, head_b = outputs.find(a.doc, primary, class_a), outputs.find(b.doc, primary, class_b)
        head = _compare(a, head_a, b, head_b, threshold) if head_a and head_b else None
    head = head or next(iter(mine), None)
    if head is None:
        return {**entry, "note": "no heat map of this image was explained in both runs", "maps": maps}
    if head["class_a"] != head["class_b"]:
        entry["note"] = "the top-1 classes differ: A's top-1 map is compared with B's"
    return {**entry, **{k: v for k, v in head.items() if k != "method"}, "maps": maps}


def _summary(images: list[dict[str, Any]]) -> dict[str, Any]:
    rhos = [i["spearman"] for i in images if i["spearman"] is not None]
    return {
        "images": len(images),
        "compared": len(rhos),
        "top1_changed": metrics.share(i["top1_changed"] for i in images),
        "spearman_mean": statistics.fmean(rhos) if rhos else None,
        "spearman_median": statistics.median(rhos) if rhos else None,
        "spearman_min": min(rhos) if rhos else None,
        "mask_iou_mean": metrics.mean(i["mask_iou"] for i in images),
        "box_iou_mean": metrics.mean(i["box_iou"] for i in images),
    }


def compare_runs(
    run_a: Path, run_b: Path, threshold: float = BOX_THRESHOLD, method: str | None = None, most_changed: int = 10
) -> dict[str, Any]:
    """Compare two ``camcli explain`` output folders (see the module docstring).

    ``method``: the method of the headline figures (default: the first heat-map method of run A that
    run B also explained). ``most_changed``: how many images to list, lowest ρ first. Images of one
    run only, and images that failed in either run, are listed, not fatal.
    """
    pairs, only_a, only_b = _pair(_read_run(run_a), _read_run(run_b))
    ok = [(a, b) for a, b in pairs if a.error is None and b.error is None]
    methods = _heat_methods(ok)
    if method is not None and method not in methods:
        raise CamcliError(
            f"Method '{method}' has no heat maps in both runs (both have: "
            f"{', '.join(methods) or 'none'}). Pass one of those."
        )
    primary = method or next(iter(methods), None)
    images = [_image_entry(a, b, methods, primary, threshold) for a, b in ok]
    failures = [
        {"path": a.path, "run": "both" if a.error and b.error else "a" if a.error else "b", "error": a.error or b.error}
        for a, b in pairs
        if a.error or b.error
    ]
    worst = sorted((i for i in images if i["spearman"] is not None), key=lambda i: (i["spearman"], i["path"]))
    return {
        "schema_version": SCHEMA_VERSION,
        "run_a": os.path.abspath(run_a),
        "run_b": os.path.abspath(run_b),
        "method": primary,
        "threshold": threshold,
        "images": images,
        "only_in_a": [i.path for i in only_a],
        "only_in_b": [i.path for i in only_b],
        "failed": [f["path"] for f in failures],
        "failures": failures,
        "most_changed": [
            {"path": i["path"], "spearman": i["spearman"], "top1_changed": i["top1_changed"]}
            for i in worst[:most_changed]
        ],
        "summary": _summary(images),
    }


def gate(result: dict[str, Any], min_similarity: float) -> tuple[bool, str]:
    """``--min-similarity``: passes iff every image in both runs has a headline ρ ≥ ``min_similarity``.

    It fails too for an image that could not be compared (no heat map in both runs) or that failed in
    one run only (failing in both is unchanged behaviour), and when no image was compared at all.
    """
    images = result["images"]
    if not images:
        return False, "similarity gate failed: no image was explained successfully in both runs"
    below = [i for i in images if i["spearman"] is not None and i["spearman"] < min_similarity]
    unknown = [i["path"] for i in images if i["spearman"] is None]
    unknown += [f["path"] for f in result["failures"] if f["run"] != "both"]
    problems = []
    if below:
        worst = min(below, key=lambda i: i["spearman"])
        problems.append(
            f"{len(below)} of {len(images)} images below ρ = {min_similarity:g} "
            f"(worst: {worst['path']}, ρ = {worst['spearman']:.3f})"
        )
    if unknown:
        problems.append(f"{len(unknown)} could not be compared (e.g. {unknown[0]})")
    if problems:
        return False, "similarity gate failed: " + "; ".join(problems)
    lowest = result["summary"]["spearman_min"]
    return True, (f"similarity gate passed: all {len(images)} images have ρ ≥ {min_similarity:g} (lowest {lowest:.3f})")


def summary_text(result: dict[str, Any]) -> str:
    """A few readable lines for stderr: how many images, how many changed, the least similar."""
    summary = result["summary"]
    lines = [
        f"{summary['images']} images in both runs ({len(result['only_in_a'])} only in A, "
        f"{len(result['only_in_b'])} only in B, {len(result['failed'])} failed); method {result['method']}"
    ]
    if summary.get("spearman_mean") is not None:
        lines.append(
            f"top-1 changed: {summary['top1_changed']:.1%}; map similarity (Spearman ρ): mean "
            f"{summary['spearman_mean']:.3f}, median {summary['spearman_median']:.3f}, "
            f"lowest {summary['spearman_min']:.3f}"
        )
    for entry in result["most_changed"][:5]:
        if entry["spearman"] is not None:
            lines.append(
                f"  ρ {entry['spearman']:6.3f}{'  top-1 changed' if entry['top1_changed'] else ''}  {entry['path']}"
            )
    return "\n".join(lines)
