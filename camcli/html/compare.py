"""Before/after pairs from a `camcli compare` result file (shape documented in camcli.html).

Each pair shows run A's and run B's top-1 picture (overlay, or guided image) side by side with the
similarity numbers, least similar first: top-1 changed, then lowest Spearman, mask IoU, box IoU.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..outputs import EXPLANATION, try_json
from .collect import image_doc, table_of
from .data import num
from .encode import url_path

LIST_LIMIT = 1000  # only_in_a / only_in_b names embedded in the page; the rest are counted


def load_compare(path: Path, report_dir: Path) -> tuple[dict[str, Any], list[list[Any]]]:
    """The compare file's header for the page, and one record per pair:
    [path, a_picture, b_picture, a_json, b_json, top1_a, top1_b, top1_changed, spearman, mask_iou, box_iou]
    with pictures and JSON links as URLs relative to report/ ("" when missing) and top-1 as
    [label, probability, class_index]."""
    doc = try_json(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a readable compare JSON file")
    base = path.parent
    entries = [e for e in doc.get("images") or [] if isinstance(e, dict)]
    pairs = sorted((_pair(e, base, report_dir) for e in entries), key=_dissimilar_first)
    header = {
        "file": str(path),
        "run_a": str(doc.get("run_a", "")),
        "run_b": str(doc.get("run_b", "")),
        "summary": table_of(doc, "summary"),
        "only_in_a": _names(doc.get("only_in_a")),
        "only_in_b": _names(doc.get("only_in_b")),
    }
    return header, pairs


def _pair(entry: dict[str, Any], base: Path, report_dir: Path) -> list[Any]:
    a_picture, a_json = _picture(entry.get("a"), base, report_dir)
    b_picture, b_json = _picture(entry.get("b"), base, report_dir)
    return [
        str(entry.get("path", "")),
        a_picture,
        b_picture,
        a_json,
        b_json,
        _top1(entry.get("top1_a")),
        _top1(entry.get("top1_b")),
        bool(entry.get("top1_changed")),
        num(entry.get("spearman")),
        num(entry.get("mask_iou")),
        num(entry.get("box_iou")),
    ]


def _picture(rel: Any, base: Path, report_dir: Path) -> tuple[str, str]:
    """URLs of a run's picture for the image (its rank-1 entry, else its first) and of its JSON."""
    if not isinstance(rel, str) or not rel:
        return "", ""
    folder = base / rel
    doc = image_doc(folder / EXPLANATION)
    if doc is None:
        return "", ""
    with_file = [s for s in doc.shots if s.file]
    shot = next((s for s in with_file if s.rank == 1), with_file[0] if with_file else None)
    picture = url_path(folder / shot.file, report_dir) if shot and shot.file else ""
    return picture, url_path(folder / EXPLANATION, report_dir)


def _top1(value: Any) -> list[Any] | None:
    if not isinstance(value, dict):
        return None
    return [str(value.get("label", "")), num(value.get("probability")), value.get("class_index")]


def _dissimilar_first(pair: list[Any]) -> tuple[Any, ...]:
    """Sort key: changed top-1 first, then ascending similarity; unknown similarity counts as least."""

    def low(value: Any) -> float:
        return value if isinstance(value, (int, float)) and math.isfinite(value) else -math.inf

    return (not pair[7], low(pair[8]), low(pair[9]), low(pair[10]), pair[0])


def _names(value: Any) -> dict[str, Any]:
    names = [str(v) for v in value] if isinstance(value, list) else []
    return {"count": len(names), "names": names[:LIST_LIMIT]}
