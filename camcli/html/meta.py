"""The page's header data: the run, its evaluation, the colormap legend and the lookup tables."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..choices import COLORMAPS
from ..render import colorize
from .collect import flatten, table_of

LEGEND_STOPS = 17


def run_info(run: Any) -> dict[str, Any] | None:
    """run.json without its failure list (the failed images have their own cards)."""
    if not isinstance(run, dict):
        return None
    info = {k: v for k, v in run.items() if k != "failures"}
    if isinstance(run.get("failures"), list):
        info["failures"] = len(run["failures"])
    return info


def evaluation(metrics: Any) -> dict[str, Any] | None:
    """metrics.json for display: gates with the failing ones first, per-method metrics as one table."""
    if not isinstance(metrics, dict):
        return None
    gates = [g for g in metrics.get("gates") or [] if isinstance(g, dict)]
    methods = table_of(metrics, "methods")
    rows = {str(m): flatten(v) for m, v in methods.items() if isinstance(v, dict)}
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    return {
        "images": metrics.get("images"),
        "passed": metrics.get("passed"),
        "classification": flatten(table_of(metrics, "classification")),
        "gates": sorted(gates, key=lambda g: g.get("passed") is True),
        "columns": columns,
        "rows": [[m, *(row.get(c) for c in columns)] for m, row in rows.items()],
    }


def legend(run: Any) -> dict[str, Any]:
    """The heatmap legend as CSS colour stops computed by camcli.render itself, so they match the overlays."""
    options = table_of(run, "options")
    colormap = options.get("colormap")
    name = colormap if isinstance(colormap, str) and colormap in COLORMAPS else "jet"
    colors = colorize(np.linspace(0.0, 1.0, LEGEND_STOPS)[None, :], name)[0]
    return {"name": name, "stops": ["#" + "".join(f"{int(c):02x}" for c in rgb) for rgb in colors]}
