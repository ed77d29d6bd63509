"""Write one image's outputs atomically: every file under a temporary name, then renamed;
``explanation.json`` last, so a folder that has it is complete."""

from __future__ import annotations

import errno
import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from . import maps, render
from . import methods as registry
from .choices import DEFAULT_SAVE
from .discover import printable
from .encoding import encode_picture, label_png
from .outputs import (
    EXPLANATION,
    SCHEMA_VERSION,
    SEGMENTATION_MASK,
    concepts_file,
    file_name,
    json_text,
    listed_files,
    output_file_pattern,
    read_explanation,
)
from .records import UNSEEN, Explanation, Failure, ImageItem, ImageResult, Skipped, SourceInfo

TOP_PREDICTIONS = 5


@dataclass(frozen=True)
class RunContext:
    """Run-wide facts every explanation.json repeats, plus what to write and how to render."""

    model: dict[str, Any]
    preprocess: dict[str, Any]
    colormap: str = "jet"
    alpha: float = 0.5
    save: frozenset[str] = DEFAULT_SAVE  # explanation.json is always written
    overlay_format: str = "png"
    fingerprint: str = ""  # of every setting that shapes the outputs; --resume compares it


def finished_doc(out_root: Path, item: ImageItem, sha256: str, ctx: RunContext) -> dict[str, Any] | None:
    """The item's explanation.json if an earlier run finished it from these bytes with these settings.

    Finished means: the JSON exists (it is written last), names this fingerprint, this input path and
    sha256, is not a write failure (those may be transient), and every file it lists is there.
    Anything unexpected in it (hand-edited, from another tool) means not finished.
    """
    folder = out_root / item.rel
    try:
        doc = read_explanation(folder / EXPLANATION)
        source, error = doc.get("source") or {}, doc.get("error") or {}
        if (
            doc.get("fingerprint") != ctx.fingerprint
            or source.get("sha256") != sha256
            or source.get("path") != printable(item.path)
            or doc.get("status") not in ("ok", "error")
        ):
            return None
        if doc["status"] == "error" and error.get("type") == "WriteError":
            return None
        files = listed_files(doc)
        if not all(isinstance(name, str) and "/" not in name and (folder / name).is_file() for name in files):
            return None
        return doc if all(key in doc for key in ("predictions", "error", "model")) else None
    except Exception:  # unreadable, not JSON, wrong shape: redo the image
        return None


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], object]) -> None:
    """Write ``data`` (or let it write itself into the open file) under a temporary name, then rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _npy(array: np.ndarray) -> Callable[[BinaryIO], None]:
    """A float32 .npy writer: NumPy writes a real file straight from the array, with no copy in memory."""
    return partial(np.save, arr=np.ascontiguousarray(array, dtype=np.float32))


def item_of(result: ImageResult | Failure | Skipped) -> ImageItem:
    return result.prepared.item if isinstance(result, ImageResult) else result.item


def output_dir(out_root: Path, result: ImageResult | Failure) -> Path:
    return out_root / item_of(result).rel


# The output location itself is unusable: stop the run rather than fail every image after it.
FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT})


def write(out_root: Path, result: ImageResult | Failure | Skipped, ctx: RunContext) -> dict[str, Any]:
    """Write all outputs of one image; returns the explanation.json document.

    A failure that concerns this image alone (an encoder limit, a name the file system refuses)
    becomes an error document for it; an unusable output location raises OSError. A skipped
    image's document is returned as it is.
    """
    if isinstance(result, Skipped):
        return result.doc
    folder = output_dir(out_root, result)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / EXPLANATION).unlink(missing_ok=True)  # until rewritten, the folder reads as incomplete
        for stale in folder.glob(".*.tmp*"):  # left by a run that was killed while writing here
            stale.unlink(missing_ok=True)
        doc = _failure_doc(result, ctx) if isinstance(result, Failure) else _write_result(folder, result, ctx)
    except OSError as exc:
        if exc.errno in FATAL_ERRNOS:
            raise
        doc = _write_error_doc(result, ctx, exc)
    except Exception as exc:  # e.g. an image too large for the chosen overlay format
        doc = _write_error_doc(result, ctx, exc)
    try:
        _remove_stale(folder, doc)  # also after a failure: the folder holds what its JSON lists
        atomic_write(folder / EXPLANATION, (json_text(doc, indent=2) + "\n").encode("utf-8"))
    except OSError as exc:
        if exc.errno in FATAL_ERRNOS:
            raise
        doc = _write_error_doc(result, ctx, exc)  # recorded in summary.jsonl and run.json only
    return doc


@functools.cache
def _output_files() -> re.Pattern[str]:
    return output_file_pattern(registry.names())


def _remove_stale(folder: Path, doc: dict[str, Any]) -> None:
    """Remove files an earlier run wrote here under camcli's naming scheme that ``doc`` does not list,
    so the folder holds exactly what its explanation.json names (others' files are left alone)."""
    listed = set(listed_files(doc))
    pattern = _output_files()
    for path in folder.iterdir():
        if path.name not in listed and pattern.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)


def _write_error_doc(result: ImageResult | Failure, ctx: RunContext, exc: Exception) -> dict[str, Any]:
    source = result.prepared.source if isinstance(result, ImageResult) else result.source
    item = item_of(result)
    failure = Failure(item, "WriteError", f"Cannot write outputs for {item.path}: {type(exc).__name__}: {exc}", source)
    return _failure_doc(failure, ctx)


def _base_doc(source: SourceInfo | None, ctx: RunContext) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "fingerprint": ctx.fingerprint,
        "status": "ok",
        "error": None,
        "source": None
        if source is None
        else {
            "path": source.path,
            "sha256": source.sha256,
            "width": source.width,
            "height": source.height,
            "mode": source.mode,
        },
        "model": ctx.model,
        "preprocess": None,
        "predictions": [],
        "explanations": [],
    }


def _failure_doc(failure: Failure, ctx: RunContext) -> dict[str, Any]:
    doc = _base_doc(failure.source, ctx)
    doc["status"] = "error"
    doc["error"] = {"type": failure.error_type, "message": failure.message}
    return doc


def result_doc(result: ImageResult, ctx: RunContext) -> dict[str, Any]:
    """The explanation.json document of a computed image, with no files listed yet."""
    prepared = result.prepared
    geometry = prepared.geometry
    doc = _base_doc(prepared.source, ctx)
    doc["preprocess"] = {
        **ctx.preprocess,
        "resized_size": list(geometry.resized),
        "crop_box": list(geometry.crop_box),  # exact: full_map() rebuilds maps from it
    }
    doc["predictions"] = [
        {"class_index": p.class_index, "label": p.label, "logit": p.logit, "probability": p.probability}
        for p in result.predictions
    ]
    doc["explanations"] = [_entry(exp) for exp in result.explanations]
    if result.segmentation is not None:
        doc["segmentation"] = {
            "file": SEGMENTATION_MASK,
            "unseen": 255 if int(ctx.model.get("num_classes", 0)) <= 255 else 65535,
            "areas": [
                {"class_index": a.class_index, "label": a.label, "pixels": a.pixels, "share": a.share}
                for a in result.segmentation.areas
            ],
        }
    return doc


def _entry(exp: Explanation) -> dict[str, Any]:
    """One explanation's JSON entry, files not listed yet."""
    if exp.concept is not None:  # a class-free method's concept (outputs.ConceptEntryDoc)
        return {
            "method": exp.method,
            "class_index": None,
            "concept": exp.concept,
            "concept_classes": None
            if exp.concept_classes is None
            else [{"class_index": c.class_index, "label": c.label, "score": c.score} for c in exp.concept_classes],
            **({"unnamed": exp.unnamed} if exp.concept_classes is None else {}),
            "label": exp.label,
            "rank": None,
            "logit": None,
            "probability": None,
            "bbox": list(exp.bbox) if exp.bbox else None,
            "peak": list(exp.peak) if exp.peak else None,
            "params": exp.params,
            "files": {},
        }
    return {
        "method": exp.method,
        **({"variant": exp.variant} if exp.variant is not None else {}),
        "class_index": exp.class_index,
        "label": exp.label,
        "rank": exp.rank,
        "logit": exp.logit,
        "probability": exp.probability,
        "bbox": list(exp.bbox) if exp.bbox else None,
        "peak": list(exp.peak) if exp.peak else None,
        "params": exp.params,
        "files": {},
    }


def _write_result(folder: Path, result: ImageResult, ctx: RunContext) -> dict[str, Any]:
    doc = result_doc(result, ctx)
    prepared = result.prepared
    geometry = prepared.geometry
    seen = maps.seen_rect(geometry)
    backdrop = render.dimmed(prepared.image) if "overlay" in ctx.save else None
    ext = ctx.overlay_format
    strongest: dict[str, tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]] = {}  # class-free: all concepts
    for exp, entry in zip(result.explanations, doc["explanations"], strict=True):
        files: dict[str, str] = entry["files"]
        name = partial(file_name, exp.method, exp.class_index, variant=exp.variant, concept=exp.concept)
        if exp.input_map.dim() == 2 and {"overlay", "map"} & ctx.save:
            # One map at a time: at full resolution a 100-megapixel image's map alone is 400 MB.
            heat = maps.to_original(exp.input_map[None], geometry)[0].cpu().numpy()
            if backdrop is not None:  # overlays are saved
                files["overlay"] = name("overlay", ext)
                picture = render.overlay(prepared.image, backdrop, heat, seen, ctx.alpha, ctx.colormap, exp.bbox)
                atomic_write(folder / files["overlay"], encode_picture(picture, ext))
                if exp.concept is not None:
                    _strongest(strongest, exp, entry, heat)
            if "map" in ctx.save:
                files["map"] = name("map", "npy")
                atomic_write(folder / files["map"], _npy(heat))
        elif "overlay" in ctx.save:
            files["image"] = name("image", ext)
            # Grey (0.5) means zero gradient, and is also what lies outside the model's view.
            rgb = maps.to_original(exp.input_map - 0.5, geometry) + 0.5
            picture = render.rgb_image(rgb.permute(1, 2, 0).cpu().numpy())
            atomic_write(folder / files["image"], encode_picture(picture, ext))
        if "raw_map" in ctx.save:
            files["raw_map"] = name("raw", "npy")
            atomic_write(folder / files["raw_map"], _npy(exp.raw_map.cpu().numpy()))
    if result.segmentation is not None:
        mask = result.segmentation.mask
        unseen = doc["segmentation"]["unseen"]
        labelled = label_png(np.where(mask == UNSEEN, unseen, mask), render.class_colors(255))
        atomic_write(folder / SEGMENTATION_MASK, labelled)
    for method, (index, value, listed) in strongest.items():
        colors = render.concept_colors(len(listed))
        assert backdrop is not None
        picture = render.concepts_picture(prepared.image, backdrop, index, value, colors, seen, ctx.alpha)
        combined = concepts_file(method, ext)
        atomic_write(folder / combined, encode_picture(picture, ext))
        for entry, color in zip(listed, colors, strict=True):
            entry["color"] = "#{:02x}{:02x}{:02x}".format(*color)
            entry["files"]["concepts"] = combined
    return doc


def _strongest(
    found: dict[str, tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]],
    exp: Explanation,
    entry: dict[str, Any],
    heat: np.ndarray,
) -> None:
    """Fold one concept's full-resolution map into its method's running (strongest concept, its value)
    per pixel, for the picture of all concepts (ties go to the lower concept, as an argmax does)."""
    if exp.method not in found:
        found[exp.method] = (np.zeros(heat.shape, dtype=np.uint16), heat.copy(), [entry])  # ≤ 1024 concepts
        return
    index, value, listed = found[exp.method]
    better = heat > value
    index[better] = len(listed)
    np.maximum(value, heat, out=value)
    listed.append(entry)
