"""Every timm family: one model each (docs/families.json, made by docs/families.py from timm itself) builds
with random weights and explains two sample images with defaults; the default layer is a grid of image
positions at the final stage's resolution, and its maps carry evidence (are not all zero)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import timm

DOCS = Path(__file__).resolve().parent.parent / "docs"
spec = importlib.util.spec_from_file_location("camcli_docs_families", DOCS / "families.py")
assert spec is not None
assert spec.loader is not None
families = importlib.util.module_from_spec(spec)
spec.loader.exec_module(families)
SELECTION = json.loads((DOCS / "families.json").read_text())["families"]
RUN = sorted(f for f, entry in SELECTION.items() if "model" in entry and "skip" not in entry)
# Where the final stage's grid is not simply input / the last feature_info reduction:
GRID_EXCEPTIONS = {
    "crossvit": "two branches (patches of 12 and 16 px): the default is the finer branch's last attention input",
}


def test_the_selection_covers_every_timm_family():
    missing = sorted(set(timm.list_modules()) - set(SELECTION))
    assert not missing, f"timm has new families {missing}: run `python docs/families.py --select`"
    skipped = {f: e["skip"] for f, e in SELECTION.items() if "skip" in e}
    assert all(reason for reason in skipped.values())  # every skip states its reason
    assert len(RUN) >= 80


@pytest.mark.slow
@pytest.mark.parametrize("family", RUN)
def test_family_default_layer_gives_a_real_map(family):
    found = families.explain_family(SELECTION[family]["model"])
    assert found["nonzero"], f"{family}: the default layer's maps are all zero"
    expected = found["expected_grid"]
    if expected is not None and family not in GRID_EXCEPTIONS:
        for got, want in zip(found["grid"], expected, strict=True):
            assert abs(got - want) <= max(1, 0.3 * want), (family, found)  # padding-free stems shrink it a little
