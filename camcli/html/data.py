"""The compact arrays the page reads: one short list per image instead of the whole JSON document.

Labels and method names are stored once, in tables, and referred to by index; numbers are rounded
to 6 significant digits (explanation.json, linked from every detail view, keeps the exact ones).
The layout (mirrored by constants at the top of assets/report.js):

image record: [path, dir, status, error, thumb, predictions, shots, audit, hits, size, partial, segmentation]
    path        source.path exactly as in explanation.json
    dir         URL of the image's output folder relative to report/, ending in "/" ("" if unknown)
    status      "ok" or "error"; error: its message or null
    thumb       URL of the thumbnail relative to report/, or "" for a placeholder
    predictions [[class_index, label#, probability, logit], ...]
    shots       [[method#, class_index, label#, rank, logit, probability, bbox, peak, file, kind], ...]
                file: the percent-encoded file name in dir ("" if none saved); kind: 0 overlay, 1 image
    audit       {method: {metric: value}} from per_image.jsonl, or null; hits: {method: 0|1} or null
    size        [width, height] or null; partial: 1 when only summary.jsonl knows the image
    segmentation  null, or [mask, [[class_index, label#, share], ...]] for a segmentation model: mask the
                percent-encoded file name of its predicted-class picture in dir ("" if none)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from .collect import ImageDoc, hits
from .encode import fs_bytes, url_path

LOWER_IS_BETTER = ("deletion", "drop", "error")  # metric names where a larger value is worse


class Tables:
    """Interned strings: each label or method name is written once however many images use it."""

    def __init__(self, methods: list[str]) -> None:
        self.labels: list[str] = []
        self.methods: list[str] = []
        self._labels: dict[str, int] = {}
        self._methods: dict[str, int] = {}
        for method in methods:
            self.method(method)

    def label(self, text: str) -> int:
        return _intern(text, self.labels, self._labels)

    def method(self, name: str) -> int:
        return _intern(name, self.methods, self._methods)


def image_record(
    doc: ImageDoc, tables: Tables, thumb: str | None, report_dir: Path, audit: dict[str, dict[str, Any]] | None
) -> list[Any]:
    """One image as the page's compact array (layout in the module docstring)."""
    folder = url_path(doc.folder, report_dir) + "/" if doc.folder else ""
    predictions = [[c, tables.label(label), num(p), num(logit)] for c, label, p, logit in doc.predictions]
    shots = [
        [
            tables.method(s.method),
            s.class_index,
            tables.label(s.label),
            s.rank,
            num(s.logit),
            num(s.probability),
            s.bbox,
            s.peak,
            quote(fs_bytes(s.file) or b"", safe="") if s.file else "",
            0 if s.kind == "overlay" else 1,
        ]
        for s in doc.shots
    ]
    outcome = {m: int(v) for m, v in hits(audit).items()} if audit else {}
    segmentation = None
    if doc.segmentation is not None:
        mask, areas = doc.segmentation
        shown = quote(fs_bytes(mask) or b"", safe="") if mask else ""
        segmentation = [shown, [[c, tables.label(label), num(share)] for c, label, share in areas]]
    return [
        doc.path,
        folder,
        doc.status,
        doc.error,
        thumb or "",
        predictions,
        shots,
        audit or None,
        outcome or None,
        doc.size,
        0 if doc.folder else 1,
        segmentation,
    ]


def metric_keys(audits: dict[str, dict[str, dict[str, Any]]]) -> list[list[Any]]:
    """Every (method, metric) with numeric or true/false values, for "worst first" sorting:
    [method, metric, 1 if lower is better else 0]."""
    keys = {
        (m, k)
        for audit in audits.values()
        for m, values in audit.items()
        for k, v in values.items()
        if isinstance(v, (int, float))
    }
    return [[m, k, int(any(word in k for word in LOWER_IS_BETTER))] for m, k in sorted(keys)]


def num(value: Any) -> Any:
    """A float rounded to 6 significant digits; anything else unchanged."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def _intern(text: str, values: list[str], index: dict[str, int]) -> int:
    if text not in index:
        index[text] = len(values)
        values.append(text)
    return index[text]
