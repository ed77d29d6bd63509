"""``camcli compare``: how much two explain runs over the same images differ, and a similarity gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EXIT_GATE_FAILED, EXIT_OK


@dataclass(frozen=True)
class CompareRequest:
    run_a: Path
    run_b: Path
    method: str | None = None  # the method whose top-1 maps are compared (default: the first heat-map one)
    threshold: float = 0.15  # masks and boxes at this share of each map's max
    min_similarity: float | None = None  # the gate: every image's Spearman ρ at least this
    out: Path | None = None  # where compare.json goes (default: RUN_B/compare)
    report: bool = False  # also write RUN_B/report with the pairs side by side


@dataclass(frozen=True)
class CompareResult:
    doc: dict[str, Any]  # compare.json
    written: Path
    gate: str | None  # the gate's verdict in words
    code: int
    report: Path | None = None


def compare(request: CompareRequest) -> CompareResult:
    from ..evaluate.compare import compare_runs, gate
    from ..outputs import COMPARE, json_text
    from ..writer import atomic_write

    doc = compare_runs(request.run_a, request.run_b, request.threshold, request.method)
    out = request.out or request.run_b / "compare"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / COMPARE, (json_text(doc, indent=2) + "\n").encode("utf-8"))
    code, verdict = EXIT_OK, None
    if request.min_similarity is not None:
        passed, verdict = gate(doc, request.min_similarity)
        code = EXIT_OK if passed else EXIT_GATE_FAILED
    page = None
    if request.report:
        from .report import ReportRequest, report

        page = report(ReportRequest(request.run_b, out / COMPARE))
    return CompareResult(doc, out / COMPARE, verdict, code, page)
