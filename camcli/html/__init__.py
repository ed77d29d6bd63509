"""Static HTML report of a camcli output folder: ``build_report(OUT)`` writes ``OUT/report/index.html``.

The report is made from the folder alone (explanation.json files are the source of truth), so it
works for finished, interrupted and still-running runs, and it can be rebuilt at any time: source
thumbnails already made are reused. It is a plain folder that works offline from file:// — no
server, CDN, font or remote script::

    OUT/report/
      index.html          the page skeleton, run header data as <script type="application/json">
      assets/             report.js, report.css (copied from camcli/html/assets)
      data/part-NNN.js    image records, 5,000 per file (layout: camcli.html.data)
      data/compare-NNN.js before/after pairs, when a compare file is given
      thumbs/xx/*.jpg     source thumbnails, 160 px, named after the source's sha256

Optional inputs read from OUT: ``metrics.json`` (evaluation with gates) and ``per_image.jsonl``
(one object per image: ``path`` as in explanation.json's ``source.path``, ``methods`` {method:
{metric: value}}; a boolean ``pointing_hit`` or ``hit`` is the image's audit outcome).

The compare file (``compare=``, as ``camcli compare`` writes it)::

    {"schema_version": 1, "run_a": "path", "run_b": "path",
     "images": [{"path": "source path",
                 "a": "image folder of run A, relative to the compare file's folder",
                 "b": "... of run B",
                 "top1_a": {"class_index": 282, "label": "tiger cat", "probability": 0.39},
                 "top1_b": {...}, "top1_changed": false,
                 "spearman": 0.93, "mask_iou": 0.81, "box_iou": 0.88}],
     "only_in_a": ["source path", ...], "only_in_b": [...], "summary": {"name": value, ...}}

Each pair shows run A's rank-1 picture beside run B's, least similar first (top-1 changed, then
lowest Spearman, mask IoU, box IoU).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import __version__
from ..outputs import MARKER, METRICS, REPORT, RUN, try_json
from .collect import ImageDoc, audits, explanation_files, image_doc, missing_from, table_of
from .compare import load_compare
from .data import Tables, image_record, metric_keys
from .meta import evaluation, legend, run_info
from .page import write_page
from .thumbs import thumbnail

__all__ = ["build_report"]

Progress = Callable[[int, int], None]


def build_report(out_dir: Path, *, compare: Path | None = None, progress: Progress | None = None) -> Path:
    """Write ``out_dir/report/`` and return the path of its index.html.

    ``progress(done, total)`` is called as images are read and thumbnailed. ``compare`` names a
    compare result file whose pairs are shown as well. Raises ValueError when ``out_dir`` is not a
    folder or ``compare`` is unreadable.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ValueError(f"{out_dir} is not a folder: pass the output folder of `camcli explain` (-o)")
    report_dir = out_dir / REPORT
    run = try_json(out_dir / RUN)
    docs, thumbs, unreadable = _read_images(out_dir, progress)
    docs += missing_from(docs, out_dir)
    thumbs += [None] * (len(docs) - len(thumbs))
    order = sorted(range(len(docs)), key=lambda i: docs[i].path)
    per_image = audits(out_dir)
    options = table_of(run, "options")
    tables = Tables([str(m) for m in options.get("methods") or []])
    images = [image_record(docs[i], tables, thumbs[i], report_dir, per_image.get(docs[i].path)) for i in order]
    compare_header, pairs = load_compare(compare, report_dir) if compare else (None, [])
    meta = {
        "run": run_info(run),
        "found": _found(docs, unreadable),
        "evaluation": evaluation(try_json(out_dir / METRICS)),
        "legend": legend(run),
        "labels": tables.labels,
        "methods": tables.methods,
        "metricKeys": metric_keys(per_image),
        "hasAudit": any(r[8] for r in images),
        "compare": compare_header,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "camcli": __version__,
    }
    index = write_page(report_dir, meta, images, pairs)
    (report_dir / MARKER).write_text("{}\n")  # later walks of OUT never take the thumbnails for images
    return index


def _read_images(out_dir: Path, progress: Progress | None) -> tuple[list[ImageDoc], list[str | None], int]:
    """Every explanation.json and its thumbnail, in a thread pool (Pillow decodes without the GIL)."""
    files = explanation_files(out_dir)

    def one(path: Path) -> tuple[ImageDoc | None, str | None]:
        doc = image_doc(path)
        return doc, thumbnail(doc, out_dir) if doc else None

    docs: list[ImageDoc] = []
    thumbs: list[str | None] = []
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        for done, (doc, thumb) in enumerate(pool.map(one, files), 1):
            if doc is not None:
                docs.append(doc)
                thumbs.append(thumb)
            if progress:
                progress(done, len(files))
    finally:
        pool.shutdown(cancel_futures=True)  # Ctrl-C must not wait for 100,000 queued images
    return docs, thumbs, len(files) - len(docs)


def _found(docs: list[ImageDoc], unreadable: int) -> dict[str, int]:
    """What the folder holds now, which may differ from run.json's counts while a run is going."""
    return {
        "images": len(docs),
        "ok": sum(d.status == "ok" for d in docs),
        "error": sum(d.status == "error" for d in docs),
        "partial": sum(d.folder is None for d in docs),
        "unreadable": unreadable,
    }
