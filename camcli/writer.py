"""Write one image's outputs atomically: every file under a temporary name, then renamed;
``explanation.json`` last, so a folder that has it is complete."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from . import maps, render
from .records import Failure, ImageResult

SCHEMA_VERSION = 1
JSON_NAME = "explanation.json"
TOP_PREDICTIONS = 5


@dataclass(frozen=True)
class RunContext:
    """Run-wide facts every explanation.json repeats, plus how to render."""

    model: dict[str, Any]
    preprocess: dict[str, Any]
    colormap: str = "jet"
    alpha: float = 0.5


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32))
    return buf.getvalue()


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def output_dir(out_root: Path, result: Union[ImageResult, Failure]) -> Path:
    item = result.prepared.item if isinstance(result, ImageResult) else result.item
    return out_root / item.rel


def write(out_root: Path, result: Union[ImageResult, Failure], ctx: RunContext) -> dict[str, Any]:
    """Write all outputs of one image; returns the explanation.json document."""
    folder = output_dir(out_root, result)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JSON_NAME).unlink(missing_ok=True)  # until rewritten, the folder reads as incomplete
    doc = _failure_doc(result, ctx) if isinstance(result, Failure) else _write_result(folder, result, ctx)
    atomic_write(folder / JSON_NAME, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return doc


def _base_doc(source, ctx: RunContext) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "ok",
        "error": None,
        "source": None if source is None else {
            "path": source.path, "sha256": source.sha256,
            "width": source.width, "height": source.height, "mode": source.mode,
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


def _write_result(folder: Path, result: ImageResult, ctx: RunContext) -> dict[str, Any]:
    prepared = result.prepared
    geometry = prepared.geometry
    doc = _base_doc(prepared.source, ctx)
    doc["preprocess"] = {
        **ctx.preprocess,
        "resized_size": list(geometry.resized),
        "crop_box": [round(v, 3) for v in geometry.crop_box],
    }
    doc["predictions"] = [
        {"class_index": p.class_index, "label": p.label, "logit": p.logit, "probability": p.probability}
        for p in result.predictions
    ]
    seen = maps.seen_mask(geometry)
    cams = [e for e in result.explanations if e.input_map.dim() == 2]
    heats = iter(maps.to_original(torch.stack([e.input_map for e in cams]), geometry).cpu().numpy() if cams else [])
    for exp in result.explanations:
        stem = f"{exp.method}_{exp.class_index}"
        if exp.input_map.dim() == 2:
            heat = next(heats)
            files = {"overlay": f"{stem}_overlay.png", "map": f"{stem}_map.npy", "raw_map": f"{stem}_raw.npy"}
            atomic_write(folder / files["map"], _npy(heat))
            picture, picture_name = render.overlay(prepared.image, heat, seen, ctx.alpha, ctx.colormap, exp.bbox), files["overlay"]
        else:
            files = {"image": f"{stem}_image.png", "raw_map": f"{stem}_raw.npy"}
            # Grey (0.5) means zero gradient, and is also what lies outside the model's view.
            rgb = maps.to_original(exp.input_map - 0.5, geometry) + 0.5
            picture, picture_name = render.rgb_image(rgb.permute(1, 2, 0).cpu().numpy()), files["image"]
        atomic_write(folder / files["raw_map"], _npy(exp.raw_map.cpu().numpy()))
        atomic_write(folder / picture_name, _png(picture))
        doc["explanations"].append({
            "method": exp.method,
            "class_index": exp.class_index,
            "label": exp.label,
            "rank": exp.rank,
            "logit": exp.logit,
            "probability": exp.probability,
            "bbox": list(exp.bbox) if exp.bbox else None,
            "peak": list(exp.peak) if exp.peak else None,
            "files": files,
        })
    return doc
