"""``camcli report``: OUT/report/index.html, the visual report of an output folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import CamcliError


@dataclass(frozen=True)
class ReportRequest:
    out: Path
    compare: Path | None = None  # a compare.json shown as before/after pairs


def report(request: ReportRequest) -> Path:
    """Write the report; returns its index.html."""
    from ..html import build_report

    try:
        return build_report(request.out, compare=request.compare)
    except ValueError as exc:
        raise CamcliError(str(exc)) from exc
