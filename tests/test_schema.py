"""metrics.json's documented layout (README, "Evaluate and compare") is checked against the table that
builds it (camcli/evaluate/schema.py): every metric's place is documented, and nothing documented is
missing from the table."""

from __future__ import annotations

import re
from pathlib import Path

from camcli.evaluate.schema import METRICS

README = Path(__file__).resolve().parent.parent / "README.md"


def documented_layout() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("`metrics.json`'s layout per")
    return text[start : text.index("\n\n", start)]


def test_every_metric_has_its_documented_place():
    layout = documented_layout()
    for metric in METRICS:
        *parents, leaf = metric.path
        if parents:
            found = re.search(rf"`{re.escape('.'.join(parents))}\.(?:\{{[^}}]*\b{leaf}\b[^}}]*\}}|{leaf})`", layout)
        else:
            found = re.search(rf"`{leaf}`", layout)
        assert found, f"README does not say where metrics.json holds {metric.key} ({'.'.join(metric.path)})"


def test_the_documented_layout_holds_nothing_else():
    layout = documented_layout()
    documented = set()
    for code in re.findall(r"`([^`]+)`", layout):
        if code.endswith("}"):
            head, _, inner = code.partition(".{")
            documented |= {f"{head}.{leaf.strip()}" for leaf in inner.rstrip("}").split(",")}
        else:
            documented.add(code)
    known = {".".join(m.path) for m in METRICS} | {"localization.threshold", "localization.iou"}
    known |= {"pointing_game.tolerance_px"}
    flags = {c for c in documented if c.startswith("--") or c.endswith((".json", ".py")) or c.startswith("schema_")}
    assert documented - flags <= known, documented - flags - known
