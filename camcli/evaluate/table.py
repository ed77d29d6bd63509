"""metrics.json as a fixed-width text table for stderr: one column per method, one row per metric,
then the gates with PASS/FAIL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .gates import GATES
from .schema import BY_KEY, METRICS

MISSING, UNDEFINED = "-", "n/a"  # not computed; computed over no usable case


def _cell(key: str, value: Any) -> str:
    if value is None:
        return UNDEFINED
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if key in BY_KEY:
        return f"{value:.1f}" if BY_KEY[key].percent else f"{value:.3f}"
    return f"{value:g}"


def _lay_out(rows: Sequence[Sequence[str]], right: bool = True) -> list[str]:
    """Columns padded to their widest cell; the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 or not right else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        ).rstrip()
        for row in rows
    ]


def format_table(doc: Mapping[str, Any]) -> str:
    """``doc``: {"methods": {METHOD: {KEY: value}}, "gates": [gate results]} (both optional).
    Known metrics come first, in a fixed order with readable names; other keys follow, sorted."""
    methods: Mapping[str, Mapping[str, Any]] = doc.get("methods") or {}
    names = list(methods)
    present = {key for values in methods.values() for key in values}
    keys = [m.key for m in METRICS if m.key in present] + sorted(present - set(BY_KEY))
    lines: list[str] = []
    if names and keys:
        rows = [["metric", *names]]
        rows += [
            [
                BY_KEY[k].label if k in BY_KEY else k,
                *(_cell(k, methods[n][k]) if k in methods[n] else MISSING for n in names),
            ]
            for k in keys
        ]
        lines += _lay_out(rows)
    gates: Sequence[Mapping[str, Any]] = doc.get("gates") or []
    if gates:
        lines += ["", "gates"]
        rows = [
            [
                f"  {g['name']} {'≤' if GATES[g['name']].bound == 'max' else '≥'} {g['threshold']:g}",
                g["method"] or "",
                _cell(g["metric"], g["value"]),
                "PASS" if g["passed"] else "FAIL",
                g.get("reason") or "",
            ]
            for g in gates
        ]
        lines += _lay_out(rows, right=False)
    return "\n".join(lines)
