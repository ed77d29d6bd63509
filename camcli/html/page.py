"""Write report/: index.html, the assets it loads and the data parts.

The page holds no inline script or style, so its Content-Security-Policy can allow scripts and
styles from the report folder only. Image data goes to data/part-NNN.js files, each a JSON string
literal handed to JSON.parse: <script src> works from file:// where fetch() is blocked, and a few
parts keep every file small however many images the run has.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from .encode import js_string, json_for_html

PART_SIZE = 5000  # records per data file
ASSETS = ("report.css", "report.js")
META_MARK = "<!--camcli:meta-->"
SCRIPTS_MARK = "<!--camcli:scripts-->"


def write_page(report_dir: Path, meta: dict[str, Any], images: Sequence[list[Any]], pairs: Sequence[list[Any]]) -> Path:
    """Write everything the page needs; index.html last, so it never points at missing parts."""
    assets = resources.files(__package__).joinpath("assets")
    for name in ASSETS:
        atomic_write(report_dir / "assets" / name, assets.joinpath(name).read_text(encoding="utf-8"))
    parts = _write_parts(report_dir, "part", "images", images) + _write_parts(report_dir, "compare", "compare", pairs)
    _remove_stale_parts(report_dir, parts)
    scripts = "\n".join(f'<script src="{name}"></script>' for name in [*parts, "assets/report.js"])
    page = (
        assets.joinpath("index.html")
        .read_text(encoding="utf-8")
        .replace(META_MARK, f'<script type="application/json" id="camcli-meta">{json_for_html(meta)}</script>')
        .replace(SCRIPTS_MARK, scripts)
    )
    index = report_dir / "index.html"
    atomic_write(index, page)
    return index


def atomic_write(path: Path, text: str) -> None:
    """Write under a temporary name, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=".tmp-", delete=False) as fh:
        fh.write(text)
    os.replace(fh.name, path)


def _write_parts(report_dir: Path, stem: str, kind: str, records: Sequence[list[Any]]) -> list[str]:
    names = []
    for number, start in enumerate(range(0, len(records), PART_SIZE)):
        name = f"data/{stem}-{number:03d}.js"
        literal = js_string(json_for_html(records[start : start + PART_SIZE]))
        script = f"(window.camcliParts = window.camcliParts || []).push([{js_string(kind)}, {literal}]);\n"
        atomic_write(report_dir / name, script)
        names.append(name)
    return names


def _remove_stale_parts(report_dir: Path, keep: list[str]) -> None:
    """Parts of an earlier, larger report would otherwise linger (unused, but confusing)."""
    for path in (report_dir / "data").glob("*.js"):
        if f"data/{path.name}" not in keep:
            path.unlink(missing_ok=True)
